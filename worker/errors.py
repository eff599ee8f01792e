"""Which failures are worth retrying.

Permanent: the input can never succeed (not media, corrupt, empty, too large,
gone). The step is marked failed and the message deleted.
Transient: anything else (throttling, network, memory, a bug fixed by the next
deploy). The message is left for redelivery; the queue's redrive policy moves
it to the DLQ after its max receive count.
"""

from __future__ import annotations

from enum import StrEnum


class PermanentError(Exception):
    """The input cannot be processed, however often we try."""


class TransientError(Exception):
    """A failure that a later attempt may not meet."""


class Severity(StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"


def classify(error: BaseException) -> Severity:
    """Permanent only for errors known to be about the input; unknown errors get retried."""
    return Severity.PERMANENT if isinstance(error, PermanentError) else Severity.TRANSIENT


def describe(error: BaseException) -> str:
    """A one-line reason for the job item and the logs."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
