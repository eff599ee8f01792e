"""Holding on to work: one heartbeat for every held message and claim, and ECS task scale-in protection.

Each beat does three things, each in its own try so that one failing never skips the others:

1. moves the visibility of every held message to ``visibility_timeout`` from now, in batches of ten,
   never past SQS's cap of 12 hours from the message's receive;
2. extends the lease of every held claim in the jobs table (a claim found taken over is marked
   ``lost``, which stops its step from writing anything);
3. renews task scale-in protection while anything is held, and touches the health file.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from pipeline_core.jobstore import Claim, ClaimLost, JobStore
from worker import health

log = logging.getLogger(__name__)

SQS_MAX_VISIBILITY = 43200  # seconds from the receive; AWS refuses a longer total
GONE_CODES = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight", "AWS.SimpleQueueService.MessageNotInflight"})


def error_code(error: BaseException) -> str:
    return error.response.get("Error", {}).get("Code", "") if isinstance(error, ClientError) else type(error).__name__


@dataclass(eq=False)
class Held:
    """One received message the worker holds, and the claim it currently works under (if any)."""

    message_id: str
    receipt_handle: str
    received_at: float  # wall-clock time of the receive: SQS's 12-hour cap counts from it
    claim: Claim | None = None
    lost: threading.Event = field(default_factory=threading.Event)  # the claim was taken over: write nothing
    gone: bool = False  # the message can no longer be changed (deleted elsewhere, or moved to the DLQ)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, claim: Claim) -> None:
        """Work under ``claim`` from now on (a message can hold several in turn: a segment, then the merge)."""
        with self._lock:
            self.claim = claim
            self.lost.clear()

    def let_go(self) -> None:
        with self._lock:
            self.claim = None

    def lose(self, claim: Claim) -> bool:
        """``claim`` was found taken over: mark it lost, if it is still the one held (a beat can be answered
        after the worker moved on to the message's next claim). True when it was."""
        with self._lock:
            if self.claim is not claim:
                return False
            self.lost.set()
            return True

    def visibility_left(self, now: float, wanted: int) -> int:
        """The visibility to ask for now: ``wanted``, cut to what SQS's cap still allows."""
        return max(0, min(wanted, int(self.received_at + SQS_MAX_VISIBILITY - now)))


class Keepalive:
    """A thread that beats every ``interval`` seconds for everything held."""

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        store: JobStore,
        visibility_timeout: int,
        interval: float,
        protection: TaskProtection,
        clock: Callable[[], float] = time.time,
    ):
        self.sqs, self.queue_url, self.store = sqs, queue_url, store
        self.visibility_timeout, self.interval = visibility_timeout, interval
        self.protection = protection
        self.clock = clock
        self.beats = 0
        self._held: dict[int, Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keepalive", daemon=True)

    # --- what is held ------------------------------------------------------------------------------

    def hold(self, message_id: str, receipt_handle: str, received_at: float) -> Held:
        held = Held(message_id, receipt_handle, received_at)
        with self._lock:
            self._held[id(held)] = held
        return held

    def drop(self, held: Held) -> None:
        with self._lock:
            self._held.pop(id(held), None)

    def held(self) -> list[Held]:
        with self._lock:
            return list(self._held.values())

    # --- the beat ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        entries = self.held()
        now = self.clock()
        self._extend_visibility([held for held in entries if not held.gone], now)
        self._extend_leases([held for held in entries if held.claim is not None and not held.lost.is_set()], now)
        if entries:
            self.protection.set(True)
        self.beats += 1
        health.touch()

    def _extend_visibility(self, entries: list[Held], now: float) -> None:
        for start in range(0, len(entries), 10):
            chunk = {str(index): held for index, held in enumerate(entries[start : start + 10])}
            requests = [
                {"Id": key, "ReceiptHandle": held.receipt_handle, "VisibilityTimeout": held.visibility_left(now, self.visibility_timeout)}
                for key, held in chunk.items()
            ]
            try:
                response = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=requests)
            except (ClientError, BotoCoreError) as error:
                log.warning("visibility extension failed", extra={"error": str(error), "messages": len(requests)})
                continue
            for failure in response.get("Failed", []):
                held = chunk[failure["Id"]]
                if failure.get("Code") in GONE_CODES:
                    held.gone = True
                log.warning(
                    "visibility extension refused",
                    extra={"message_id": held.message_id, "code": failure.get("Code"), "error": failure.get("Message")},
                )

    def _extend_leases(self, entries: list[Held], now: float) -> None:
        for held in entries:
            claim = held.claim
            if claim is None:
                continue
            try:
                self.store.claims.extend_lease(claim, now + self.visibility_timeout)
            except ClaimLost:
                if held.lose(claim):
                    log.warning("claim lost: the step was taken over; this attempt writes nothing", extra=_claim_fields(claim))
            except (ClientError, BotoCoreError) as error:
                log.warning("lease extension failed", extra={**_claim_fields(claim), "error": str(error)})


def _claim_fields(claim: Claim) -> dict[str, Any]:
    return {"job_id": claim.job_id, "step": claim.step, "attempt": claim.attempt}


class TaskProtection:
    """ECS task scale-in protection through the agent endpoint, on while busy.

    Without ``ECS_AGENT_URI`` (outside ECS) it does nothing. Requests are only
    sent when the state changes, or, while on, to renew it once half of
    ``expires_minutes`` has passed (the keepalive asks on every beat).
    """

    def __init__(self, agent_uri: str | None, expires_minutes: int = 60, timeout: float = 2.0, clock: Callable[[], float] = time.monotonic):
        if agent_uri and not agent_uri.startswith(("http://", "https://")):
            raise ValueError(f"ECS_AGENT_URI must be an http(s) URL, got {agent_uri!r}")
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.expires_minutes = expires_minutes
        self.timeout = timeout
        self.clock = clock
        self.enabled: bool | None = None
        self._sent_at = 0.0
        self._lock = threading.Lock()

    def set(self, enabled: bool) -> None:
        if self.agent_uri is None:
            return
        with self._lock:
            renew_due = enabled and self.clock() - self._sent_at >= self.expires_minutes * 30
            if self.enabled == enabled and not renew_due:
                return
            self._send(enabled)

    def _send(self, enabled: bool) -> None:
        body: dict[str, Any] = {"ProtectionEnabled": enabled}
        if enabled:
            body["ExpiresInMinutes"] = self.expires_minutes
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked in __init__
            f"{self.agent_uri}/task-protection/v1/state",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="PUT",
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 - scheme checked
                answer = response.read()
        except OSError as error:
            log.warning("task protection request failed", extra={"protection": enabled, "error": str(error)})
            return
        refusal = protection_refusal(answer)
        if refusal is not None:
            # Not protected: the state is left as it was, so the next beat asks again.
            log.warning("task protection refused", extra={"protection": enabled, "reason": refusal})
            return
        self.enabled = enabled
        self._sent_at = self.clock()
        log.info("task protection set", extra={"protection": enabled})


def protection_refusal(answer: bytes) -> str | None:
    """Why the ECS agent refused a protection update, or None when it was applied.

    amazon-ecs-agent answers an update that ECS refused (UpdateTaskProtection's ``failures``) with HTTP 200 and
    ``{"failure": {"Arn", "Reason", "Detail"}}``; an applied one carries ``{"protection": {...}}``.
    """
    try:
        body = json.loads(answer or b"{}")
    except ValueError:
        return f"unreadable answer from the ECS agent: {answer[:200]!r}"
    if not isinstance(body, dict):
        return f"unexpected answer from the ECS agent: {body!r}"
    for key in ("failure", "error"):
        problem = body.get(key)
        if problem:
            if isinstance(problem, dict):
                parts = [str(problem.get(name)) for name in ("Reason", "Code", "Message", "Detail") if problem.get(name)]
                return ": ".join(parts) or json.dumps(problem)
            return str(problem)
    if "protection" not in body:
        return f"no protection in the ECS agent's answer: {body!r}"
    return None
