"""Holding on to work: the message heartbeat and ECS task scale-in protection."""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from types import TracebackType
from typing import Any

from worker import health

log = logging.getLogger(__name__)


class Heartbeat:
    """Keeps a message invisible (and its claim's lease alive) while work goes on.

    Every ``interval`` seconds it sets the message's visibility timeout to
    ``visibility_timeout`` from now and calls ``on_beat(until)`` so the lease in
    the job table moves with it. A failed beat is logged and retried at the next.
    """

    def __init__(
        self,
        sqs: Any,
        queue_url: str,
        receipt_handle: str,
        visibility_timeout: int,
        interval: float,
        on_beat: Callable[[float], None] | None = None,
    ):
        self.sqs, self.queue_url, self.receipt_handle = sqs, queue_url, receipt_handle
        self.visibility_timeout, self.interval = visibility_timeout, interval
        self.on_beat = on_beat
        self.beats = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def beat(self) -> None:
        until = time.time() + self.visibility_timeout
        try:
            self.sqs.change_message_visibility(
                QueueUrl=self.queue_url, ReceiptHandle=self.receipt_handle, VisibilityTimeout=self.visibility_timeout
            )
            if self.on_beat is not None:
                self.on_beat(until)
            self.beats += 1
            health.touch()
        except Exception:
            log.warning("heartbeat failed", exc_info=True)


class TaskProtection:
    """ECS task scale-in protection through the agent endpoint, on while busy.

    Without ``ECS_AGENT_URI`` (outside ECS) it does nothing. Requests are only
    sent when the state changes, or to renew protection before it expires.
    """

    def __init__(self, agent_uri: str | None, expires_minutes: int = 60, timeout: float = 2.0):
        if agent_uri and not agent_uri.startswith(("http://", "https://")):
            raise ValueError(f"ECS_AGENT_URI must be an http(s) URL, got {agent_uri!r}")
        self.agent_uri = agent_uri.rstrip("/") if agent_uri else None
        self.expires_minutes = expires_minutes
        self.timeout = timeout
        self.enabled: bool | None = None
        self._sent_at = 0.0

    def set(self, enabled: bool) -> None:
        if self.agent_uri is None:
            return
        renew_due = enabled and time.monotonic() - self._sent_at > self.expires_minutes * 30
        if self.enabled == enabled and not renew_due:
            return
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
                response.read()
        except OSError as error:
            log.warning("task protection request failed", extra={"protection": enabled, "error": str(error)})
            return
        self.enabled = enabled
        self._sent_at = time.monotonic()
        log.info("task protection set", extra={"protection": enabled})
