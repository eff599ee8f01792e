"""A loopback proxy in front of moto that makes chosen AWS calls behave as AWS can and moto does not.

Point a client (or a worker process, through ``AWS_ENDPOINT_URL``) at ``proxy.url``. Every call is
forwarded to moto unless a rule matches it; a matching rule can delay the call (a throttled or slow
dependency), answer with an AWS error instead (throttling, 5xx, a stale receipt handle, SQS's
12-hour visibility cap), or both. Rules match on the operation (``UpdateItem``, ``ReceiveMessage``,
``ChangeMessageVisibility``, ``S3.PUT``...) and optionally on a substring of the request body or path
(an S3 key), can let the first matches through (``after``), and can be limited to a number of matches.
A rule with ``fail_entries`` answers a batch call (``DeleteMessageBatch``, ``ChangeMessageVisibilityBatch``)
as SQS does when some entries fail: those entries are not forwarded, and come back in the answer's ``Failed``
list with the rule's code, beside the others' ``Successful``.

``latency`` adds AWS's per-call latency, by service: a seeded lognormal draw around a median per call
(``Latency``), so that a benchmark on loopback waits on calls as a worker on AWS does.

It also counts what passes through: ``calls`` (requests by operation, faults included), ``bytes_out``
(response body bytes by operation) and ``s3_read`` (S3 GETs' body bytes by path, ``/bucket/key``), which the
benchmarks turn into AWS calls and S3 bytes per file.
"""

from __future__ import annotations

import http.client
import json
import math
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "server", "date"}


@dataclass(frozen=True)
class Latency:
    """A call's added latency: lognormal around ``median`` seconds (``sigma`` is the log's spread; 0: always the median)."""

    median: float
    sigma: float = 0.5

    def draw(self, rng: random.Random) -> float:
        return self.median * math.exp(rng.gauss(0.0, self.sigma)) if self.sigma else self.median


def service_of(operation_target: str, operation: str) -> str:
    """``sqs``, ``dynamodb`` or ``s3``: which service a call goes to (its JSON target, else S3's methods)."""
    if operation_target.startswith("DynamoDB"):
        return "dynamodb"
    if operation_target.startswith("AmazonSQS") or not operation.startswith("S3."):
        return "sqs"
    return "s3"


@dataclass
class Rule:
    operations: frozenset[str]
    body_contains: str | None = None
    path_contains: str | None = None  # a substring of the request path: an S3 call's bucket and key
    after: int = 0  # matches let through before the rule acts (e.g. the first read of a key)
    delay: float = 0.0
    error: tuple[int, str, str] | None = None  # (HTTP status, AWS error code, message)
    fail_entries: tuple[str, str] | None = None  # a batch call's first ``entries`` entries fail: (AWS error code, message)
    entries: int = 1
    times: int | None = None  # matches left; None: every match
    probability: float = 1.0
    hits: int = 0

    def matches(self, operation: str, body: bytes, draw: float, path: str = "") -> bool:
        if operation not in self.operations or (self.times is not None and self.times <= 0):
            return False
        if self.body_contains is not None and self.body_contains.encode() not in body:
            return False
        if self.path_contains is not None and self.path_contains not in path:
            return False
        if draw >= self.probability:
            return False
        if self.after > 0:
            self.after -= 1
            return False
        return True


def operation_of(method: str, path: str, headers: dict[str, str], body: bytes) -> str:
    """The AWS operation a request calls: the JSON target (DynamoDB, SQS), the query Action, or S3's method."""
    target = headers.get("x-amz-target", "")
    if target:
        return target.rsplit(".", 1)[-1]
    if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        action = parse_qs(body.decode(errors="replace")).get("Action")
        if action:
            return action[0]
    return f"S3.{method}"


def error_body(operation_target: str, code: str, message: str) -> tuple[bytes, str, dict[str, str]]:
    """An error answer in the protocol of the call: JSON for DynamoDB and SQS, XML for S3."""
    if operation_target.startswith("DynamoDB"):
        return (
            json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": message}).encode(),
            "application/x-amz-json-1.0",
            {},
        )
    if operation_target.startswith("AmazonSQS"):
        body = json.dumps({"__type": f"com.amazonaws.sqs#{code}", "message": message}).encode()
        return body, "application/x-amz-json-1.0", {"x-amzn-query-error": f"{code};Sender"}
    xml = f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"
    return xml.encode(), "application/xml", {}


class FaultProxy:
    def __init__(self, upstream: str, seed: int = 0):
        self.upstream = urlsplit(upstream)
        self.rules: list[Rule] = []
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.bytes_out: Counter[str] = Counter()  # response body bytes sent back, by operation (S3.GET: bytes read from S3)
        self.s3_read: Counter[str] = Counter()  # S3 GETs' body bytes by request path ("/bucket/key"): which object was read
        self.refused: Counter[str] = Counter()  # conditional writes DynamoDB refused (ConditionalCheckFailed), by operation
        self._lock = threading.Lock()
        self._random = random.Random(seed)  # fault injection, not security
        self.latency: dict[str, Latency] = {}  # by service (``service_of``): added before each call is answered
        self._latency_random = random.Random(seed + 1)  # a separate stream: latency leaves the faults' draws as they were
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # An answer goes out as two writes, its headers then its body: with Nagle's algorithm the body waits for
            # the client to acknowledge the headers, which it delays by up to 40 ms, so a call through the proxy took
            # 60 ms where its added latency was 10 (a PutItem, measured): latency that neither AWS nor moto has.
            disable_nagle_algorithm = True
            _upstream: http.client.HTTPConnection | None = None  # this client connection's own, to moto

            def log_message(self, *_args: object) -> None:
                pass

            def _read_body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _answer(self, status: int, payload: bytes, content_type: str, extra: dict[str, str]) -> None:
                self.send_response(status)
                for name, value in {"Content-Type": content_type, **extra}.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _handle(self) -> None:
                body = self._read_body()
                headers = {name.lower(): value for name, value in self.headers.items()}
                operation = operation_of(self.command, self.path, headers, body)
                rule = proxy._match(operation, body, self.path)
                wait = proxy._latency(service_of(headers.get("x-amz-target", ""), operation))
                if rule is not None and rule.delay:
                    wait += rule.delay
                if wait:
                    time.sleep(wait)
                failed: list[dict[str, object]] = []
                if rule is not None and rule.fail_entries is not None:
                    body, failed = _without_entries(body, rule.entries, *rule.fail_entries)
                    if not json.loads(body).get("Entries"):  # every entry failed: SQS answers without doing anything
                        self._answer(200, _with_failed(b"{}", failed), "application/x-amz-json-1.0", {})
                        return
                if rule is not None and rule.error is not None:
                    status, code, message = rule.error
                    self._answer(status, *error_body(headers.get("x-amz-target", ""), code, message))
                    return
                forward = {name: value for name, value in self.headers.items() if name.lower() not in ("transfer-encoding", "connection")}
                forward["Content-Length"] = str(len(body))
                status, upstream_headers, payload = self._forward(body if body or self.command in ("POST", "PUT") else None, forward)
                if failed and status == 200:
                    payload = _with_failed(payload, failed)
                self.send_response(status)
                for name, value in upstream_headers:
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    with proxy._lock:  # counted before it is sent: a client that has the answer sees it counted
                        proxy.bytes_out[operation] += len(payload)
                        if status == 400 and b"ConditionalCheckFailed" in payload:
                            proxy.refused[operation] += 1
                        if operation == "S3.GET":
                            proxy.s3_read[urlsplit(self.path).path] += len(payload)
                    self.wfile.write(payload)

            def _forward(self, body: bytes | None, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
                """The request sent on to moto over this client connection's own upstream connection, kept alive (a
                new connection per call costs moto a thread and the machine a handshake, which the benchmarks count as
                call cost); a kept connection found closed before it answered is opened again, once."""
                for fresh in (False, True):
                    upstream = self._upstream
                    if upstream is None or fresh:
                        if upstream is not None:
                            upstream.close()
                        upstream = http.client.HTTPConnection(proxy.upstream.hostname or "127.0.0.1", proxy.upstream.port, timeout=120)
                        self._upstream = upstream
                    try:
                        upstream.request(self.command, self.path, body=body, headers=headers)
                        response = upstream.getresponse()
                        payload = response.read()
                    except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                        upstream.close()
                        self._upstream = None
                        if fresh:
                            raise
                        continue
                    if response.will_close:
                        upstream.close()
                        self._upstream = None
                    return response.status, response.getheaders(), payload
                raise AssertionError("unreachable")

            def finish(self) -> None:
                if self._upstream is not None:
                    self._upstream.close()
                super().finish()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                # A client killed mid-call (the soak SIGKILLs workers) resets its connection: not an error here.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self._server = Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _match(self, operation: str, body: bytes, path: str = "") -> Rule | None:
        with self._lock:
            self.calls[operation] += 1
            draw = self._random.random()
            for rule in self.rules:
                if rule.matches(operation, body, draw, path):
                    rule.hits += 1
                    if rule.times is not None:
                        rule.times -= 1
                    self.faults[operation] += 1
                    return rule
        return None

    def _latency(self, service: str) -> float:
        latency = self.latency.get(service)
        if latency is None:
            return 0.0
        with self._lock:
            return latency.draw(self._latency_random)

    def add(self, *operations: str, **options: object) -> Rule:
        rule = Rule(frozenset(operations), **options)  # type: ignore[arg-type]
        with self._lock:
            self.rules.append(rule)
        return rule

    def remove(self, rule: Rule) -> None:
        with self._lock:
            self.rules = [kept for kept in self.rules if kept is not rule]

    def clear(self) -> None:
        with self._lock:
            self.rules.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _without_entries(body: bytes, count: int, code: str, message: str) -> tuple[bytes, list[dict[str, object]]]:
    """A JSON batch request less its first ``count`` entries, and those entries' ``Failed`` answers."""
    request = json.loads(body)
    entries = request.get("Entries", [])
    failing, request["Entries"] = entries[:count], entries[count:]
    failed: list[dict[str, object]] = [{"Id": entry["Id"], "SenderFault": True, "Code": code, "Message": message} for entry in failing]
    return json.dumps(request).encode(), failed


def _with_failed(payload: bytes, failed: list[dict[str, object]]) -> bytes:
    answer = json.loads(payload or b"{}")
    answer["Failed"] = [*answer.get("Failed", []), *failed]
    answer.setdefault("Successful", [])
    return json.dumps(answer).encode()


@contextmanager
def fault_proxy(upstream: str, seed: int = 0) -> Iterator[FaultProxy]:
    proxy = FaultProxy(upstream, seed)
    try:
        yield proxy
    finally:
        proxy.close()
