"""The AWS emulator that the demo, the tests and the benches run against: moto's server, with DynamoDB's item atomicity.

moto applies an ``UpdateItem`` as read, change, write, with no lock around the three, so two requests
updating one item at the same moment can lose one of the updates: two segments finishing within
milliseconds both counted ``segments_done`` to 2, and their video was never merged. DynamoDB applies every
write to an item atomically, and the job model relies on that (conditional updates, counters). This server
serves moto's DynamoDB and DynamoDB Streams requests one at a time; every other service as moto does.

moto's S3 event notifications carry no ``versionId``; AWS's do for an object in a versioned bucket
(docs: "Event message structure"), and the pipeline makes a versioned object's job from it (its id, and
reads pinned to that version). The emulator's notifications name the version as AWS's do, so the local
stack and the end-to-end tests run the versioned path a deployed stack runs.

    python -m local_runtime.emulator -H 127.0.0.1 -p 5055      # what `make demo` runs
    with Emulator() as endpoint: ...                            # what the tests and benches use
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import threading
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import BaseWSGIServer, make_server

Wsgi = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class ItemAtomicity:
    """WSGI middleware: DynamoDB requests (``X-Amz-Target: DynamoDB_...`` and ``DynamoDBStreams_...``) one at a time."""

    def __init__(self, app: Wsgi):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB"):
            return self.app(environ, start_response)
        # The body is read off the socket first: a client slow to send it must not hold every other request up.
        length, stream = environ.get("CONTENT_LENGTH"), environ["wsgi.input"]
        body = stream.read(int(length)) if length else stream.read() if environ.get("wsgi.input_terminated") else b""
        environ["wsgi.input"] = io.BytesIO(body)
        with self.lock:  # the whole answer is made under the lock, and written to the socket after it
            response = self.app(environ, start_response)
            try:
                return [b"".join(response)]
            finally:
                if hasattr(response, "close"):
                    response.close()


def _notifications_with_version_ids() -> None:
    """Make moto's S3 event notifications name the object's version in a versioned bucket, as AWS's do."""
    from moto.s3 import notifications

    original = notifications._get_s3_event
    if getattr(original, "with_version_ids", False):
        return

    def event(event_name: str, bucket: Any, key: Any, notification_id: str) -> dict[str, Any]:
        body: dict[str, Any] = original(event_name, bucket, key, notification_id)
        version = getattr(key, "version_id", None)
        if getattr(bucket, "is_versioned", False) and version not in (None, "null"):
            for record in body["Records"]:
                record["s3"]["object"]["versionId"] = version
        return body

    event.with_version_ids = True  # type: ignore[attr-defined]
    notifications._get_s3_event = event


def _ranged_gets_read_their_range() -> None:
    """Make moto read only the requested bytes of a ranged GET, as S3's cost does not grow with the object's size.

    moto answers ``Range: bytes=a-b`` by reading the whole stored object and slicing it: a 256 KiB read of a
    300 MB video cost the emulator 0.2 s of CPU, so a benchmark of segments that read their ranges measured the
    emulator re-reading the file. During a ranged GET the stored value is a window that reads what is sliced
    from it; moto's answer (status, headers, the range, errors, version pinning) is otherwise its own.
    """
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    if getattr(S3Response.key_response, "reads_ranges", False):
        return
    ranged = threading.local()
    stored: Any = FakeKey.value  # the property

    class Window:
        def __init__(self, key: Any):
            self.key = key

        def __len__(self) -> int:
            return int(self.key.contentsize)

        def __getitem__(self, part: slice) -> bytes:
            start, stop, _ = part.indices(len(self))
            with self.key.lock:
                self.key._value_buffer.seek(start)
                data: bytes = self.key._value_buffer.read(max(0, stop - start))
                return data

    def value(key: Any) -> Any:
        return Window(key) if getattr(ranged, "active", False) else stored.fget(key)

    original = S3Response.key_response

    def key_response(self: Any, request: Any, full_url: str, headers: Any) -> Any:
        ranged.active = request.method == "GET" and bool(request.headers.get("range"))
        try:
            status, answer_headers, body = original(self, request, full_url, headers)
        finally:
            ranged.active = False
        if isinstance(body, Window):
            body = body[:]  # moto answered with the whole object (a range it does not serve)
        return status, answer_headers, body

    key_response.reads_ranges = True  # type: ignore[attr-defined]
    FakeKey.value = property(value, stored.fset)  # type: ignore[method-assign,assignment]
    S3Response.key_response = key_response  # type: ignore[method-assign]


def _services_listed_once() -> None:
    """List moto's service packages once, not on every request.

    moto finds a request's service by checking its host against the names of its own package's folders, and it
    lists and stats that folder (about 150 entries) anew for every request, under the dispatcher's one lock: 3 ms of
    CPU per call on this project's machine, a tenth of what a benchmark measured as the cost of AWS calls. The
    folders do not change while the server runs.
    """
    from moto import backends

    if getattr(backends.list_of_moto_modules, "listed_once", False):
        return
    services = tuple(backends.list_of_moto_modules())

    def list_of_moto_modules() -> Iterable[str]:
        return services

    list_of_moto_modules.listed_once = True  # type: ignore[attr-defined]
    backends.list_of_moto_modules = list_of_moto_modules


def _receives_cost_what_they_return() -> None:
    """Make an SQS receive check each message's retention against the queue's retention period alone.

    moto reads the period through ``get_queue_attributes``, which computes every attribute of the queue, its
    approximate counts included, by walking every message in it: each message received cost a walk of the whole
    queue, so receiving from a queue 500 deep took 16 ms of the emulator's CPU per message, and a receive cost
    more the longer the backlog. On SQS a receive's cost does not grow with the queue. The answer (which messages
    are still within the retention period) is moto's own.
    """
    from moto.core.utils import unix_time
    from moto.sqs.models import SQSBackend

    if getattr(SQSBackend.is_message_valid_based_on_retention_period, "reads_the_period", False):
        return

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        period = int(self.get_queue(queue_name).message_retention_period)
        return bool(period + message.sent_timestamp / 1000 > unix_time())

    is_message_valid_based_on_retention_period.reads_the_period = True  # type: ignore[attr-defined]
    SQSBackend.is_message_valid_based_on_retention_period = is_message_valid_based_on_retention_period  # type: ignore[method-assign]


def application() -> Wsgi:
    _notifications_with_version_ids()
    _ranged_gets_read_their_range()
    _services_listed_once()
    _receives_cost_what_they_return()
    return ItemAtomicity(DomainDispatcherApplication(create_backend_app))


class Emulator:
    """The emulator on a loopback port (0: any free one), served from a thread of this process."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0):
        self.server: BaseWSGIServer = make_server(host, port, application(), threaded=True)
        self.thread = threading.Thread(target=self.server.serve_forever, name="aws-emulator", daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> str:
        self.thread.start()
        return self.endpoint

    def stop(self) -> None:
        self.server.shutdown()
        self.thread.join()
        self.server.server_close()

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *_exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description="moto's AWS emulator, with DynamoDB's item atomicity.")
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))  # as `python -m moto.server` does: moto builds some URLs from it
    emulator = Emulator(args.host, args.port)
    print(f"AWS emulator on {emulator.endpoint}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        emulator.server.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
