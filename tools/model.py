"""``make model MODEL=<name>``: fetch a detection model on your machine, check it, put it in the bucket.

1. Looks ``name`` up in ``models.lock.json`` (its archive URL and sha256).
2. Downloads the archive over HTTPS (plain HTTP only from this machine, file URLs too) into
   ``build/models/``, hashing as it goes.
3. Refuses it unless its sha256 equals the lock's. When the lock has no checksum for it (the model
   zoo publishes none), the download is **trusted on first use**: its sha256 is printed, said to be
   unverified, and recorded in the lock, so every later download is held to it (commit the lock).
   ``--sha256`` (``SHA256=<hex>``) pins a checksum you trust from elsewhere instead; it is checked
   against the download before it is recorded. A recorded checksum always wins.
4. Unpacks the SavedModel (no member may leave the folder) and uploads it to
   ``s3://<bucket>/<models prefix><name>/``: bucket and prefix come from the Terraform outputs of
   the applied example (``bucket_name``, ``models_prefix``), or from ``--bucket``/``--prefix``.

Workers copy it from there at start-up (``"model": "${MODELS_URI}<name>"``); nothing is downloaded
from the internet at run time. See docs/choosing-a-model.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.parse
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "models.lock.json"
SHA256 = re.compile(r"^[0-9a-f]{64}$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class Refused(Exception):
    """The model is not uploaded; the message says why and what to do."""


def read_lock(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {"models": {}}


def write_lock(path: Path, lock: dict[str, Any]) -> None:
    lock["models"] = dict(sorted(lock["models"].items()))
    path.write_text(json.dumps(lock, indent=2) + "\n")


def expected_checksum(name: str, entry: dict[str, Any] | None, given: str | None) -> tuple[str | None, bool]:
    """(the sha256 the download must have, None to trust it on first use; whether it is to be recorded)."""
    locked = (entry or {}).get("sha256")
    if given is not None:
        given = given.strip().lower()
        if not SHA256.match(given):
            raise Refused(f"SHA256 must be 64 hexadecimal digits, not {given!r}")
    if locked:
        if given and given != locked:
            raise Refused(f"{name}: the lock records sha256 {locked}, you passed {given}; the lock wins (edit it only if you know why)")
        return locked, False
    return given or None, True


def check_url(url: str) -> None:
    """HTTPS, a file, or plain HTTP from this machine (a local mirror); anything else could be changed on the way."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme in ("https", "file") or (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")):
        return
    raise Refused(f"{url}: download models over https:// (plain HTTP could be changed on the way)")


def download(url: str, target: Path) -> str:
    """Fetch ``url`` into ``target``; its sha256."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(target.suffix + ".part")
    digest = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:  # noqa: S310 - https/http/file by design
        for chunk in iter(lambda: response.read(1 << 20), b""):
            digest.update(chunk)
            out.write(chunk)
    partial.replace(target)
    return digest.hexdigest()


def unpack_savedmodel(archive: Path, destination: Path) -> Path:
    """Extract ``archive`` into ``destination`` (members may not leave it, no links); the folder holding saved_model.pb."""
    if destination.exists():
        shutil.rmtree(destination)
    destination.mkdir(parents=True)
    root = destination.resolve()
    with tarfile.open(archive, "r:*") as tar:
        members = tar.getmembers()
        for member in members:
            if not (member.isfile() or member.isdir()):
                raise Refused(f"{archive.name}: member {member.name!r} is a link or device; refusing to unpack")
            if not (root / member.name).resolve().is_relative_to(root):
                raise Refused(f"{archive.name}: member {member.name!r} would land outside the folder")
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.11.4 checks again
        tar.extractall(destination, members=members, **safe)  # noqa: S202 - every member checked above
    found = sorted(destination.rglob("saved_model.pb"), key=lambda p: len(p.parts))
    if not found:
        raise Refused(f"{archive.name} holds no saved_model.pb: not a TensorFlow SavedModel archive")
    return found[0].parent


def terraform_outputs(directory: Path) -> dict[str, Any]:
    out = subprocess.run(["terraform", f"-chdir={directory}", "output", "-json"], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise Refused(f"terraform output failed in {directory} (apply it first, or pass --bucket): {out.stderr.strip()}")
    return {key: value["value"] for key, value in json.loads(out.stdout or "{}").items()}


def upload(folder: Path, bucket: str, prefix: str) -> list[str]:
    import boto3

    s3 = boto3.client("s3")
    keys = []
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = prefix + file.relative_to(folder).as_posix()
        s3.upload_file(str(file), bucket, key)
        keys.append(key)
    return keys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="model name, as in models.lock.json")
    parser.add_argument("--sha256", help="the archive's sha256 from a source you trust, when the lock has none (then recorded)")
    parser.add_argument("--url", help="archive URL, for a model the lock does not know")
    parser.add_argument("--lock", type=Path, default=LOCK)
    parser.add_argument("--cache", type=Path, default=REPO / "build" / "models")
    parser.add_argument("--terraform-dir", type=Path, default=REPO / "terraform" / "examples" / "complete")
    parser.add_argument("--bucket", help="bucket to upload to (default: the terraform output bucket_name)")
    parser.add_argument("--prefix", help="models prefix in it (default: the terraform output models_prefix)")
    args = parser.parse_args(argv)
    try:
        if not NAME.match(args.name):
            raise Refused(f"model name {args.name!r}: letters, digits, '.', '_' and '-' only")
        lock = read_lock(args.lock)
        entry = lock["models"].get(args.name)
        url = args.url or (entry or {}).get("url")
        if not url:
            raise Refused(f"{args.name}: models.lock.json does not know it; pass URL=<archive URL> and SHA256=<hex>")
        check_url(url)
        expected, record = expected_checksum(args.name, entry, args.sha256)
        archive = args.cache / f"{args.name}.tar.gz"
        print(f"downloading {url}", flush=True)
        actual = download(url, archive)
        if expected is None:
            how = "trust on first use"
            print(
                f"sha256 {actual}: trust on first use. models.lock.json had no checksum for {args.name}, so this download "
                "is not verified against anything; the checksum is recorded and every later download must match it. "
                "Compare it with one from a source you trust if you have one.",
                flush=True,
            )
        elif actual != expected:
            archive.unlink()
            raise Refused(f"{args.name}: the download's sha256 is {actual}, expected {expected}: refusing it (deleted)")
        else:
            how = "SHA256=... given"
            print(f"sha256 {actual} matches", flush=True)
        if record:
            kept = {key: value for key, value in (entry or {}).items() if key != "note"}
            lock["models"][args.name] = {
                **kept,
                "url": url,
                "sha256": actual,
                "recorded": f"make model, {how}, on {datetime.now(UTC).date().isoformat()}",
            }
            write_lock(args.lock, lock)
            print(f"recorded in {args.lock.name}: commit it", flush=True)
        folder = unpack_savedmodel(archive, args.cache / args.name)
        bucket, prefix = args.bucket, args.prefix
        if bucket is None or prefix is None:
            outputs = terraform_outputs(args.terraform_dir)
            bucket = bucket or outputs["bucket_name"]
            prefix = prefix if prefix is not None else outputs["models_prefix"]
        destination = f"{prefix}{args.name}/"
        keys = upload(folder, bucket, destination)
        print(f"uploaded {len(keys)} files to s3://{bucket}/{destination}")
        print(f'use it in a step: {{"name": "tf-savedmodel", "model": "${{MODELS_URI}}{args.name}", "label_map": {{"1": "person"}}}}')
        return 0
    except Refused as error:
        print(f"refused: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
