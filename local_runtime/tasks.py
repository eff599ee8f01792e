"""ECS on EC2, played locally: each service's desired count of real worker processes.

Tasks start with their task definition's environment. Scale-in stops only
unprotected tasks (a busy worker has scale-in protection on), with SIGTERM and
then SIGKILL after the container's stopTimeout, as the ECS agent does.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_runtime.agent import AgentServer

log = logging.getLogger("local_runtime.tasks")
REPO = Path(__file__).resolve().parents[1]


@dataclass
class LocalTask:
    id: str
    step: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_timeout: float
    stopping_since: float | None = None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass
class TaskRunner:
    ecs: Any
    cluster: str
    agent: AgentServer
    base_env: dict[str, str]
    log_dir: Path
    tasks: dict[str, list[LocalTask]] = field(default_factory=dict)

    def reconcile(self, step: str, service: str) -> None:
        """Start or stop workers until the step's running tasks match the service's desired count."""
        described = self.ecs.describe_services(cluster=self.cluster, services=[service])["services"][0]
        desired = int(described["desiredCount"])
        tasks = self.tasks.setdefault(step, [])
        for task in [t for t in tasks if not t.alive]:
            log.info("task exited", extra={"step": step, "task": task.id, "exit_code": task.process.returncode})
            tasks.remove(task)
        now = time.monotonic()
        for task in tasks:
            if task.stopping_since is not None and now - task.stopping_since > task.stop_timeout:
                log.warning("task killed after its stopTimeout", extra={"step": step, "task": task.id})
                task.process.kill()
        running = [t for t in tasks if t.stopping_since is None]
        if len(running) < desired:
            definition = self.ecs.describe_task_definition(taskDefinition=described["taskDefinition"])["taskDefinition"]
            for _ in range(desired - len(running)):
                tasks.append(self._start(step, definition["containerDefinitions"][0]))
        elif len(running) > desired:
            idle = [t for t in running if not self.agent.is_protected(t.id)]
            for task in idle[: len(running) - desired]:
                log.info("task stopping (scale-in)", extra={"step": step, "task": task.id})
                task.process.send_signal(signal.SIGTERM)
                task.stopping_since = now
            deferred = len(running) - desired - len(idle)
            if deferred > 0:
                log.info("scale-in deferred: tasks are protected", extra={"step": step, "protected": deferred})

    def _start(self, step: str, container: dict[str, Any]) -> LocalTask:
        task_id = uuid.uuid4().hex[:12]
        env = {item["name"]: item["value"] for item in container.get("environment", [])}
        env.update(self.base_env)
        env.update(
            {
                "ECS_AGENT_URI": self.agent.uri(task_id),
                "WORKER_ID": f"local-{step}-{task_id}",
                "HEALTH_FILE": str(self.log_dir / f"{task_id}.alive"),
                # The repository, then the runtime's own entries (a folder with a sitecustomize.py, say).
                "PYTHONPATH": os.pathsep.join(p for p in dict.fromkeys([str(REPO), *os.environ.get("PYTHONPATH", "").split(":")]) if p),
                "PATH": os.environ.get("PATH", ""),
            }
        )
        log_path = self.log_dir / f"worker-{step}-{task_id}.log"
        with log_path.open("wb") as output:
            process = subprocess.Popen([sys.executable, "-m", "worker"], cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
        log.info("task started", extra={"step": step, "task": task_id, "pid": process.pid, "log": str(log_path)})
        return LocalTask(task_id, step, process, log_path, float(container.get("stopTimeout", 30)))

    def stop_all(self, grace: float = 30.0) -> None:
        everyone = [task for tasks in self.tasks.values() for task in tasks if task.alive]
        for task in everyone:
            task.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for task in everyone:
            try:
                task.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                task.process.kill()
                task.process.wait()
