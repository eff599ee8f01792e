"""The job protocol in one place.

- ``phases``: every state a step or a segment can be in, and the events that move them.
- ``guards``: the named conditions every DynamoDB write is built from.
- ``table``: the transition table ``(phase, event) -> phase``, each row citing its guards and the ``JobStore``
  method that makes it; ``docs/job-lifecycle.md``'s picture and table are generated from it
  (``tools/lifecycle_doc.py``).
- ``decisions``: the pure decisions the worker, the dead-letter consumer and ``gpupipe`` carry out.

Records (``pipeline_core.records``) are parsed once from each item; no caller reads an item's fields for a decision.
"""
