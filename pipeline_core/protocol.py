"""The job protocol's rules for split steps, pure: which segments no message carries, and which dead letters
end a step. ``jobstore`` does the I/O; the worker and the dead-letter consumer only carry these decisions out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline_core.jobs import StepState
from pipeline_core.segments import progress


def unclaimed(step_item: Mapping[str, Any], segments: Mapping[int, Mapping[str, Any]]) -> list[int]:
    """The segments of a split step no message is known to carry: no item yet, or pending with no ``message_id``.

    ``segments`` are the step's segment items by index (``JobStore.get_segments``). The splitter records each
    segment's message id once it is sent (a claim records it again); a segment has none when the splitter died
    before sending or recording it, or after ``gpupipe retry`` (which drops it), so only the step's message sends
    theirs (``worker.segments.Splitter.resume``). A segment put back to pending after an error or a hand-back
    keeps its ``message_id``: its message was requeued.
    """
    count = int(step_item.get("segment_count") or 0)
    return [
        index
        for index in range(count)
        if (segments.get(index) or {}).get("state", StepState.PENDING) == StepState.PENDING
        and not (segments.get(index) or {}).get("message_id")
    ]


def needs_step_message(step_item: Mapping[str, Any], segments: Mapping[int, Mapping[str, Any]], message_id: str) -> bool:
    """Whether a split step still needs the step's message ``message_id`` to move on (so that, dead-lettered, it
    must fail the step rather than be dropped).

    Put back to pending by ``gpupipe retry``, only a step message resumes it. Running with segments left, the
    step's message sends those no message carries (``unclaimed``) and nothing else. With every segment done, the
    step's ``carrier`` names the message that resumed it after a retry or holds its merge (the splitter's message
    is never one): only that one; with none recorded, the segment messages that completed the set carry the merge.
    """
    if step_item.get("state") == StepState.PENDING:
        return True
    done, planned = progress(step_item) or (0, 0)
    if done < planned:
        return bool(unclaimed(step_item, segments))
    return bool(step_item.get("carrier") == message_id)


def segment_message_holds_merge(step_item: Mapping[str, Any], segment: Mapping[str, Any] | None, message_id: str) -> bool:
    """Whether a dead-lettered message of a done segment was what carried the step's merge, so that the step must
    fail ("merge: ..."): every segment done, the step still running, and either no merge recorded (the
    message completed the set, or saw it completed, and its merge never took) or the merge held through this very
    message. A merge another message holds is left to it (it comes back to take an expired lease over)."""
    if (segment or {}).get("state") != StepState.DONE or step_item.get("state") != StepState.RUNNING:
        return False
    done, planned = progress(step_item) or (0, -1)
    if done != planned:
        return False
    holder = step_item.get("carrier")
    return holder is None or holder == message_id
