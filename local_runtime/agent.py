"""The ECS agent's task-protection endpoint, one URI per local task, on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class AgentServer:
    """``PUT /tasks/<task id>/task-protection/v1/state`` records whether that task is protected."""

    def __init__(self) -> None:
        self.protected: dict[str, bool] = {}
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
                with agent._lock:
                    agent.protected[parts[1]] = bool(body.get("ProtectionEnabled"))
                    agent.requests.append({"path": self.path, **body})
                reply = json.dumps({"protection": {"ProtectionEnabled": agent.protected[parts[1]]}}).encode()
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

    def is_protected(self, task_id: str) -> bool:
        with self._lock:
            return self.protected.get(task_id, False)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
