"""DynamoDB I/O for job items and segment items (``store.JobStore`` and its rooms)."""

from pipeline_core.jobstore.claims import Claim, ClaimLost, ClaimRefused
from pipeline_core.jobstore.store import JobStore
from pipeline_core.jobstore.updates import UNANSWERED

__all__ = ["UNANSWERED", "Claim", "ClaimLost", "ClaimRefused", "JobStore"]
