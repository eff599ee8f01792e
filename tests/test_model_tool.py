"""`make model` (tools/model.py) offline: a tar.gz the test builds, served from loopback, checked, uploaded to moto."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import boto3
import numpy as np
import pytest

from tests.support.savedmodel import build_detection_savedmodel
from tools import model as tool
from worker.detection.model import build_detector
from worker.models import local_models

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[1]
NAME = "people-test_coco17"
BUCKET = "media"


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A zoo-shaped archive: <name>/saved_model/{saved_model.pb, variables/}, plus a checkpoint beside it."""
    folder = tmp_path_factory.mktemp("zoo")
    build_detection_savedmodel(folder / NAME / "saved_model")
    (folder / NAME / "pipeline.config").write_text("model {}\n")
    path = folder / f"{NAME}.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(folder / NAME, arcname=NAME)
    return path


@pytest.fixture(scope="module")
def served(archive: Path) -> Iterator[str]:
    """The archive's folder over HTTP on loopback; yields the archive's URL."""
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(archive.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
    server.shutdown()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    client = boto3.client("s3")
    if BUCKET not in [b["Name"] for b in client.list_buckets()["Buckets"]]:
        client.create_bucket(Bucket=BUCKET)
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=BUCKET, Key=obj["Key"])
    return client


def sha256(path: Path) -> str:
    return sha256_of(path.read_bytes())


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def write_lock(path: Path, **entry: object) -> Path:
    path.write_text(json.dumps({"models": {NAME: entry}}))
    return path


def make_model(tmp_path: Path, lock: Path, *extra: str) -> int:
    return tool.main([NAME, "--lock", str(lock), "--cache", str(tmp_path / "cache"), "--bucket", BUCKET, "--prefix", "models/", *extra])


def keys(s3) -> list[str]:
    return sorted(obj["Key"] for obj in s3.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_a_locked_model_is_checked_uploaded_under_models_and_loads_from_there(tmp_path, archive, served, s3, monkeypatch) -> None:
    lock = write_lock(tmp_path / "lock.json", url=served, sha256=sha256(archive))
    assert make_model(tmp_path, lock) == 0
    uploaded = keys(s3)
    assert f"models/{NAME}/saved_model.pb" in uploaded
    assert all(key.startswith(f"models/{NAME}/") for key in uploaded)
    assert not any("pipeline.config" in key for key in uploaded), "only the SavedModel folder goes up"
    # What a worker does with it: MODELS_URI is what the Terraform module sets.
    monkeypatch.setenv("MODELS_URI", f"s3://{BUCKET}/models/")
    spec = {"name": "tf-savedmodel", "model": "${MODELS_URI}" + NAME, "label_map": {"1": "person"}, "classes": ["person"]}
    detector = build_detector(local_models(spec))  # what the worker does at start-up, before it builds the processor
    assert detector.version == f"savedmodel:{NAME}" and detector.device == "CPU"
    [found] = detector.detect([np.full((16, 16, 3), 255, np.uint8)])
    assert [d.label for d in found] == ["person"]


def test_a_download_that_does_not_match_the_lock_is_refused_and_deleted(tmp_path, archive, served, s3, capsys) -> None:
    lock = write_lock(tmp_path / "lock.json", url=served, sha256="0" * 64)
    assert make_model(tmp_path, lock) == 1
    assert f"the download's sha256 is {sha256(archive)}, expected {'0' * 64}" in capsys.readouterr().err
    assert keys(s3) == []
    assert list((tmp_path / "cache").glob("*.tar.gz")) == []


def test_a_user_checksum_cannot_override_the_lock(tmp_path, archive, served, s3, capsys) -> None:
    lock = write_lock(tmp_path / "lock.json", url=served, sha256="1" * 64)
    assert make_model(tmp_path, lock, "--sha256", sha256(archive)) == 1
    assert "the lock wins" in capsys.readouterr().err
    assert keys(s3) == []


def test_an_entry_without_a_checksum_is_trusted_on_first_use_recorded_and_held_to_after(tmp_path, archive, served, s3, capsys) -> None:
    lock = write_lock(tmp_path / "lock.json", url=served, sha256=None, note="no checksum yet")
    assert make_model(tmp_path, lock) == 0
    out = capsys.readouterr().out
    assert "trust on first use" in out and sha256(archive) in out, "the computed checksum is printed and said to be unverified"
    recorded = json.loads(lock.read_text())["models"][NAME]
    assert recorded["sha256"] == sha256(archive) and recorded["url"] == served and "note" not in recorded
    assert "trust on first use" in recorded["recorded"]
    assert f"models/{NAME}/saved_model.pb" in keys(s3)
    # Every later download is held to the recorded checksum: a changed archive is refused.
    original = archive.read_bytes()
    try:
        archive.write_bytes(original + b"\0")
        assert make_model(tmp_path, lock) == 1
        assert f"expected {sha256_of(original)}" in capsys.readouterr().err
    finally:
        archive.write_bytes(original)


def test_a_user_checksum_pins_an_entry_without_one(tmp_path, archive, served, s3) -> None:
    lock = write_lock(tmp_path / "lock.json", url=served, sha256=None)
    assert make_model(tmp_path, lock, "--sha256", "2" * 64) == 1, "a wrong user checksum is refused"
    assert json.loads(lock.read_text())["models"][NAME]["sha256"] is None
    assert make_model(tmp_path, lock, "--sha256", sha256(archive).upper()) == 0
    assert json.loads(lock.read_text())["models"][NAME]["sha256"] == sha256(archive)


def test_plain_http_is_refused_except_from_this_machine(tmp_path, s3, capsys) -> None:
    lock = write_lock(tmp_path / "lock.json", url="http://download.example.com/m.tar.gz", sha256=None)
    assert make_model(tmp_path, lock) == 1
    assert "https" in capsys.readouterr().err


def test_a_model_not_in_the_lock_needs_its_url(tmp_path, archive, served, s3, capsys) -> None:
    lock = tmp_path / "lock.json"
    lock.write_text(json.dumps({"models": {}}))
    assert make_model(tmp_path, lock) == 1
    assert "does not know it" in capsys.readouterr().err
    assert make_model(tmp_path, lock, "--url", served, "--sha256", sha256(archive)) == 0
    assert json.loads(lock.read_text())["models"][NAME]["sha256"] == sha256(archive)


def test_an_archive_member_that_leaves_the_folder_is_refused(tmp_path, s3) -> None:
    evil = tmp_path / "evil.tar.gz"
    with tarfile.open(evil, "w:gz") as tar:
        info = tarfile.TarInfo("../outside.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    lock = write_lock(tmp_path / "lock.json", url=evil.as_uri(), sha256=sha256(evil))
    assert make_model(tmp_path, lock) == 1
    assert not (tmp_path / "cache" / "outside.txt").exists()
    assert keys(s3) == []


def test_the_committed_lock_holds_the_example_model_and_only_checksums_or_none() -> None:
    lock = json.loads((REPO / "models.lock.json").read_text())["models"]
    example = (REPO / "terraform" / "examples" / "complete" / "main.tf").read_text()
    assert "$${MODELS_URI}${local.people_model}" in example
    [used] = re.findall(r'people_model = "([^"]+)"', example)
    assert used in lock
    for name, entry in lock.items():
        assert entry["url"].endswith(f"/{name}.tar.gz"), name
        assert entry["sha256"] is None or re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), name
        assert entry["url"].startswith("https://"), f"{name}: make model downloads over HTTPS"
