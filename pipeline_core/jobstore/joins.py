"""A step of a graph queued once every step it runs after has succeeded: the router's write, before it sends."""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_core.dynamo.expressions import Update, Value
from pipeline_core.dynamo.table import Table, Write
from pipeline_core.jobs import StepState
from pipeline_core.jobstore.updates import touched
from pipeline_core.protocol.guards import job_open, parents_succeeded, pending, queued_by, waiting
from pipeline_core.records import StepAt, job_key


class Joins:
    def __init__(self, table: Table):
        self.table = table

    def queue(self, job_id: str, step: str, parents: Sequence[str], token: str, now: float) -> bool:
        """waiting -> pending while the job runs and every parent is done, recording the stream record (``token``)
        that found it ready; True when the step's message is to be sent.

        A record delivered again (a retried batch) finds the step queued by itself and is told to send again: the
        first try may have died between this write and its send, and a second message is a duplicate the claims
        refuse. Any other record, or one that comes after the step was claimed, is refused: exactly one queueing
        per attempt.
        """
        at = StepAt(step)
        update = Update().set_all({at.state: StepState.PENDING, at.queued_by: Value("token", token)}) + touched(now)
        condition = job_open() & ((waiting(at) & parents_succeeded(parents)) | (pending(at) & queued_by(at, token)))
        return self.table.update_if(Write(job_key(job_id), update, condition))
