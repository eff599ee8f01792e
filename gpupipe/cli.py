"""The user's command line: ``gpupipe submit FILES...``, ``gpupipe status [--wait]``, ``gpupipe results JOB_OR_KEY``,
``gpupipe retry JOB_OR_KEY | --failed [--step S]``.

It finds the stack from Terraform's outputs: ``--outputs FILE`` (``terraform output -json``
saved), or ``--terraform-dir DIR`` (default terraform/examples/complete). ``AWS_ENDPOINT_URL``
points it at a local emulator, as ``make demo`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

from pipeline_core.jobs import TERMINAL_JOB_STATUSES, split_s3_uri
from pipeline_core.jobstore import JobStore, from_dynamo, is_job_item
from pipeline_core.segments import progress


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def output_values(raw: dict[str, Any]) -> dict[str, Any]:
    """``terraform output -json`` ({name: {"value": ...}}) -> {name: value}; plain values pass through."""
    return {name: value["value"] if isinstance(value, dict) and "value" in value else value for name, value in raw.items()}


def load_outputs(args: argparse.Namespace) -> dict[str, Any]:
    if args.outputs:
        if not args.outputs.exists():
            raise CliError(f"no outputs file at {args.outputs}: run `terraform output -json > {args.outputs}` in your stack's folder")
        raw = json.loads(args.outputs.read_text())
    else:
        try:
            raw = json.loads(
                subprocess.run(
                    ["terraform", f"-chdir={args.terraform_dir}", "output", "-json"], capture_output=True, text=True, check=True
                ).stdout
            )
        except FileNotFoundError:
            raise CliError("terraform is not installed; pass --outputs with saved `terraform output -json`") from None
        except subprocess.CalledProcessError as error:
            raise CliError(f"cannot read Terraform outputs in {args.terraform_dir}: {error.stderr.strip()[:300]}") from None
    outputs = output_values(raw)
    missing = [name for name in ("bucket_name", "input_prefix", "results_prefix", "jobs_table_name") if name not in outputs]
    if missing:
        raise CliError(f"the Terraform outputs lack {', '.join(missing)}: is this a gpu-pipeline stack?")
    return outputs


def scan_jobs(outputs: dict[str, Any]) -> list[dict[str, Any]]:
    """Every job item (the table also holds split steps' segment items: their counts are on the job item)."""
    table = boto3.resource("dynamodb").Table(outputs["jobs_table_name"])
    items, kwargs = [], {}
    while True:
        page = table.scan(**kwargs)
        items += [from_dynamo(item) for item in page["Items"] if is_job_item(item)]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda item: item.get("created_at", 0))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


# --- commands ---------------------------------------------------------------------------------


def submit(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    s3 = boto3.client("s3")
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise CliError(f"{name}: no such file")
    for name in args.files:
        path = Path(name)
        key = f"{outputs['input_prefix']}{path.name}"
        s3.put_object(Bucket=outputs["bucket_name"], Key=key, Body=path.read_bytes())
        print(f"submitted {path.name} -> s3://{outputs['bucket_name']}/{key}")
    return 0


def progress_bar(done: int, total: int, width: int = 30) -> str:
    filled = round(width * done / total) if total else 0
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}"


def step_state(name: str, step: dict[str, Any]) -> str:
    """``detect:running`` or, for a video split into segments, ``detect:running(segments 3/8)``."""
    split = progress(step)
    return f"{name}:{step['state']}" + (f"(segments {split[0]}/{split[1]})" if split else "")


def status(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        jobs = scan_jobs(outputs)
        counts = Counter(job["status"] for job in jobs)
        finished = sum(counts[s] for s in TERMINAL_JOB_STATUSES)
        line = f"{progress_bar(finished, len(jobs))}  " + "  ".join(
            f"{name} {counts[name]}" for name in ("pending", "running", "succeeded", "failed")
        )
        if not args.wait or (jobs and finished == len(jobs)):
            break
        if time.monotonic() > deadline:
            print(f"\r{line}", file=sys.stderr)
            raise CliError(f"gave up waiting after {args.timeout:.0f}s: {len(jobs) - finished} jobs unfinished")
        print(f"\r{line}", end="", file=sys.stderr, flush=True)
        time.sleep(1)
    if args.wait:
        print(file=sys.stderr)
    print(line)
    print()
    print(f"{'job':<34}{'status':<11}{'steps':<28}key")
    for job in jobs:
        steps = " ".join(step_state(name, job["steps"][name]) for name in job["step_names"])
        print(f"{job['job_id']:<34}{job['status']:<11}{steps:<28}{job['key']}")
        for name in job["step_names"]:
            if job["steps"][name].get("error") and job["status"] == "failed":
                print(f"{'':<34}{'':<11}{name}: {job['steps'][name]['error']}")
    if counts["failed"]:
        print(f"\n{counts['failed']} failed: fix the cause, then `gpupipe retry --failed` (or `gpupipe retry JOB_OR_KEY`)")
    return 0 if counts["failed"] == 0 else 1


def results(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    jobs = matching_jobs(scan_jobs(outputs), args.job)
    if not jobs:
        raise CliError(f"no job with id or key {args.job!r}; `gpupipe status` lists them")
    job = jobs[-1]
    s3 = boto3.client("s3")
    bucket = outputs["bucket_name"]
    out = args.out / job["job_id"]
    for step in job["step_names"]:
        result_file = job["steps"][step].get("result_file")
        if not result_file:
            print(f"{step}: no results yet ({job['steps'][step]['state']})")
            continue
        # The job item names the committed attempt's result; the files it lists lie beside it.
        bucket, key = split_s3_uri(result_file)
        prefix = key.rsplit("/", 1)[0] + "/"
        objects = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        for obj in objects:
            target = out / step / obj["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
        print(describe_result(job, step, out / step))
    return 0


def describe_result(job: dict[str, Any], step: str, folder: Path) -> str:
    """One line per step: what was found, and where the pictures are."""
    result = json.loads((folder / "result.json").read_text())
    summary = result.get("output", {}).get("summary")
    found = ", ".join(f"{label} max {s['max_count']} (in {s['frames_with']} frames)" for label, s in sorted((summary or {}).items()))
    pictures = "  ".join(str(folder / name) for name in result.get("files", []))
    media = result.get("output", {}).get("media", {})
    kind = f"{media.get('kind', '?')} {media.get('width', '?')}x{media.get('height', '?')}" if media else ""
    return f"{Path(job['key']).name:<16} {step:<8} {job['status']:<10} {kind:<16} {found or '-'}\n{'':<16} pictures: {pictures or '-'}"


def matching_jobs(jobs: list[dict[str, Any]], wanted: str) -> list[dict[str, Any]]:
    return [job for job in jobs if wanted in (job["job_id"], job["key"], Path(job["key"]).name)]


def retry(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    """Put failed steps back to pending with a fresh retry budget; the router sends each to its queue again."""
    if bool(args.job) == args.failed:
        raise CliError("name one job (id, key or file name), or pass --failed for every failed job")
    jobs = scan_jobs(outputs)
    if args.job:
        jobs = matching_jobs(jobs, args.job)
        if not jobs:
            raise CliError(f"no job with id or key {args.job!r}; `gpupipe status` lists them")
    if args.step:
        known = {name for job in jobs for name in job["step_names"]}
        if jobs and args.step not in known:
            raise CliError(f"no step named {args.step!r}; the steps are {sorted(known)}")
    store = JobStore(boto3.resource("dynamodb").Table(outputs["jobs_table_name"]))
    retried = 0
    for job in jobs:
        failed = [name for name in job["step_names"] if job["steps"][name]["state"] == "failed" and args.step in (None, name)]
        for step in failed:
            error = job["steps"][step].get("error", "")
            if store.retry_failed_step(job["job_id"], step, time.time()):
                retried += 1
                print(f"retried {job['job_id']} {job['key']} step {step} (was: {error})")
            else:
                print(f"not retried {job['job_id']} {job['key']} step {step}: no longer failed")
    if not retried:
        print("nothing to retry: no failed step matched" if jobs else "nothing to retry: no jobs")
        return 1
    print(f"{retried} step{'s' if retried != 1 else ''} back to pending; `gpupipe status --wait` follows them")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpupipe", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--outputs", type=Path, default=os.environ.get("GPUPIPE_OUTPUTS") and Path(os.environ["GPUPIPE_OUTPUTS"]))
    source.add_argument("--terraform-dir", default="terraform/examples/complete")
    commands = parser.add_subparsers(dest="command", required=True)
    submit_parser = commands.add_parser("submit", help="upload files to the input prefix: one job each")
    submit_parser.add_argument("files", nargs="+")
    status_parser = commands.add_parser("status", help="jobs by state")
    status_parser.add_argument("--wait", action="store_true", help="show a progress bar until every job has finished")
    status_parser.add_argument("--timeout", type=float, default=900)
    results_parser = commands.add_parser("results", help="download a job's result JSON and pictures")
    results_parser.add_argument("job", help="job id, key, or file name")
    results_parser.add_argument("--out", type=Path, default=Path("results"))
    retry_parser = commands.add_parser("retry", help="run failed steps again, with a fresh retry budget")
    retry_parser.add_argument("job", nargs="?", help="job id, key, or file name")
    retry_parser.add_argument("--failed", action="store_true", help="every failed job")
    retry_parser.add_argument("--step", help="only this step")
    args = parser.parse_args(argv)
    try:
        outputs = load_outputs(args)
        if outputs.get("region") and not (os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")):
            boto3.setup_default_session(region_name=outputs["region"])
        return {"submit": submit, "status": status, "results": results, "retry": retry}[args.command](args, outputs)
    except CliError as error:
        print(f"gpupipe: {error}", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print("gpupipe: no AWS credentials: configure a profile (AWS_PROFILE) or set AWS_ACCESS_KEY_ID", file=sys.stderr)
        return 2
    except NoRegionError:
        print("gpupipe: no AWS region: set AWS_REGION, or add the stack's region output", file=sys.stderr)
        return 2
    except EndpointConnectionError as error:
        print(f"gpupipe: cannot reach the stack ({error}); is it deployed, and is AWS_ENDPOINT_URL right?", file=sys.stderr)
        return 2
    except (ClientError, BotoCoreError) as error:
        print(f"gpupipe: AWS refused: {error}", file=sys.stderr)
        return 2
