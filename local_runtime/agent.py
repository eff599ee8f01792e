"""The ECS agent's task-protection endpoint, one URI per local task, on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AgentServer:
    """``PUT /tasks/<task id>/task-protection/v1/state`` records whether that task is protected.

    A task told to ``refuse`` answers as amazon-ecs-agent does when ECS refuses the update (a standalone
    task, a task being stopped): HTTP 200 with a ``failure`` body, and its protection unchanged.
    """

    def __init__(self) -> None:
        self.protected: dict[str, bool] = {}
        self.refusals: dict[str, str] = {}
        self.requests: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        agent = self

        class Handler(BaseHTTPRequestHandler):
            def do_PUT(self) -> None:
                parts = self.path.strip("/").split("/")
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if len(parts) != 5 or parts[0] != "tasks" or parts[2:] != ["task-protection", "v1", "state"]:
                    self.send_error(404)
                    return
                task = parts[1]
                with agent._lock:
                    agent.requests.append({"path": self.path, **body})
                    reason = agent.refusals.get(task)
                    if reason is None:
                        agent.protected[task] = bool(body.get("ProtectionEnabled"))
                        answer: dict[str, Any] = {"protection": {"ProtectionEnabled": agent.protected[task]}}
                    else:
                        arn = f"arn:aws:ecs:us-east-1:123456789012:task/local/{task}"
                        answer = {"failure": {"Arn": arn, "Reason": reason, "Detail": None}}
                reply = json.dumps({**answer, "requestID": "local"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="agent", daemon=True)
        self.thread.start()

    def uri(self, task_id: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/tasks/{task_id}"

    def refuse(self, task_id: str, reason: str | None) -> None:
        """Answer the task's protection requests with a failure (``reason``), or again normally (None)."""
        with self._lock:
            if reason is None:
                self.refusals.pop(task_id, None)
            else:
                self.refusals[task_id] = reason

    def is_protected(self, task_id: str) -> bool:
        with self._lock:
            return self.protected.get(task_id, False)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
