"""The user's command line (``gpupipe --help`` says what each command does, with examples).

Commands: submit, status, results, report (gpupipe/report.py), retry, doctor (gpupipe/doctor.py). The stack is found from Terraform's
outputs (``--outputs`` or ``--terraform-dir``).
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

from gpupipe.region import choose as choose_region
from gpupipe.region import planned_region
from pipeline_core.jobs import TERMINAL_JOB_STATUSES, JobStatus, StepState, split_s3_uri
from pipeline_core.jobstore import JobStore
from pipeline_core.records import JobRecord, StepRecord

# The session of the command being run (main sets it): its region is the one chosen, and no other boto3 user in the
# process (a test, a caller embedding the CLI) has its default session changed.
_SESSION: list[boto3.session.Session] = []


def _session() -> boto3.session.Session:
    return _SESSION[0] if _SESSION else boto3.session.Session()


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


def job_store(outputs: dict[str, Any]) -> JobStore:
    return JobStore(_session().resource("dynamodb").Table(outputs["jobs_table_name"]))


def scan_jobs(outputs: dict[str, Any]) -> list[JobRecord]:
    """Every job, oldest first (the table also holds split steps' segment items: their counts are on the job item)."""
    return job_store(outputs).every_job()


# --- commands ---------------------------------------------------------------------------------


def submit(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    s3 = _session().client("s3")
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


def step_state(step: StepRecord) -> str:
    """``detect:running`` or, for a video split into segments, ``detect:running(segments 3/8)``."""
    split = step.progress
    return f"{step.name}:{step.state.value}" + (f"(segments {split[0]}/{split[1]})" if split else "")


def status(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    deadline = time.monotonic() + args.timeout
    while True:
        jobs = scan_jobs(outputs)
        counts = Counter(job.status.value for job in jobs)
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
        steps = " ".join(step_state(step) for step in job.steps.values())
        print(f"{job.job_id:<34}{job.status.value:<11}{steps:<28}{job.key}")
        for name, step in job.steps.items():
            if step.error and job.status == JobStatus.FAILED:
                print(f"{'':<34}{'':<11}{name}: {step.error}")
    if counts["failed"]:
        print(f"\n{counts['failed']} failed: fix the cause, then `gpupipe retry --failed` (or `gpupipe retry JOB_OR_KEY`)")
    return 0 if counts["failed"] == 0 else 1


def results(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    jobs = matching_jobs(scan_jobs(outputs), args.job)
    if not jobs:
        raise CliError(f"no job with id or key {args.job!r}; `gpupipe status` lists them")
    job = jobs[-1]
    s3 = _session().client("s3")
    out = args.out / job.job_id
    for step, record in job.steps.items():
        if not record.result_file:
            print(f"{step}: no results yet ({record.state.value})")
            continue
        # The job item names the committed attempt's result; the files it lists lie beside it.
        bucket, key = split_s3_uri(record.result_file)
        prefix = key.rsplit("/", 1)[0] + "/"
        objects = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
        for obj in objects:
            target = out / step / obj["Key"][len(prefix) :]
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
        print(describe_result(job, step, out / step))
    return 0


def describe_result(job: JobRecord, step: str, folder: Path) -> str:
    """One line per step: what was found, and where the pictures are."""
    result = json.loads((folder / "result.json").read_text())
    summary = result.get("output", {}).get("summary")
    found = ", ".join(f"{label} max {s['max_count']} (in {s['frames_with']} frames)" for label, s in sorted((summary or {}).items()))
    pictures = "  ".join(str(folder / name) for name in result.get("files", []))
    media = result.get("output", {}).get("media", {})
    kind = f"{media.get('kind', '?')} {media.get('width', '?')}x{media.get('height', '?')}" if media else ""
    return f"{Path(job.key).name:<16} {step:<8} {job.status.value:<10} {kind:<16} {found or '-'}\n{'':<16} pictures: {pictures or '-'}"


def matching_jobs(jobs: list[JobRecord], wanted: str) -> list[JobRecord]:
    return [job for job in jobs if wanted in (job.job_id, job.key, Path(job.key).name)]


def report(args: argparse.Namespace, outputs: dict[str, Any]) -> int:
    """One HTML page of the named jobs (or every job; with --failed, the failed ones, also listed here)."""
    from gpupipe import report as pages

    jobs = scan_jobs(outputs)
    if args.jobs:
        wanted = [job for name in args.jobs for job in matching_jobs(jobs, name)]
        unknown = [name for name in args.jobs if not matching_jobs(jobs, name)]
        if unknown:
            raise CliError(f"no job with id or key {', '.join(map(repr, unknown))}; `gpupipe status` lists them")
        jobs = list({job.job_id: job for job in wanted}.values())
    if args.failed:
        jobs = [job for job in jobs if job.status == JobStatus.FAILED]
        lines = pages.failed_lines(jobs)
        print("\n".join(lines) if lines else "no failed jobs")
    if not 1 <= args.expires <= 604800:
        raise CliError("--expires must be 1..604800 seconds (presigned URLs last at most 7 days)")
    s3 = _session().client("s3")
    title = "gpupipe report: failed jobs" if args.failed else "gpupipe report"
    page = pages.write_report(s3, jobs, args.out, title, args.expires if args.upload else None)
    print(f"report: {page}")
    if args.upload:
        key = f"{outputs['results_prefix']}reports/report-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.html"
        s3.upload_file(str(page), outputs["bucket_name"], key, ExtraArgs={"ContentType": "text/html; charset=utf-8"})
        url = s3.generate_presigned_url("get_object", Params={"Bucket": outputs["bucket_name"], "Key": key}, ExpiresIn=args.expires)
        print(f"uploaded: s3://{outputs['bucket_name']}/{key}\n{url}")
    return 0


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
        known = {name for job in jobs for name in job.step_names}
        if jobs and args.step not in known:
            raise CliError(f"no step named {args.step!r}; the steps are {sorted(known)}")
    store = job_store(outputs)
    if args.from_step:
        return _retry_from(store, jobs, args)
    retried = 0
    for job in jobs:
        failed = [step for name, step in job.steps.items() if step.state == StepState.FAILED and args.step in (None, name)]
        for step in failed:
            if store.retries.retry_step(job.job_id, step.name, time.time()):
                retried += 1
                print(f"retried {job.job_id} {job.key} step {step.name} (was: {step.error or ''})")
            else:
                print(f"not retried {job.job_id} {job.key} step {step.name}: no longer failed")
    if not retried:
        print("nothing to retry: no failed step matched" if jobs else "nothing to retry: no jobs")
        return 1
    print(f"{retried} step{'s' if retried != 1 else ''} back to pending; `gpupipe status --wait` follows them")
    return 0


def _retry_from(store: JobStore, jobs: list[JobRecord], args: argparse.Namespace) -> int:
    """``--from STEP``: run STEP and every step after it again, keeping the results of the steps before it."""
    if args.failed or len(jobs) != 1:
        raise CliError("--from reruns one job: name it (id, key or file name)")
    job = jobs[0]
    if job.step(args.from_step) is None:
        raise CliError(f"no step named {args.from_step!r}; the steps are {list(job.step_names)}")
    if not job.ended:
        raise CliError(f"job {job.job_id} is still {job.status.value}: wait for it to end (`gpupipe status --wait`)")
    moved = store.retries.retry_from(job.job_id, args.from_step, time.time())
    if not moved:
        print(f"not retried {job.job_id} {job.key}: it changed meanwhile (`gpupipe status {job.job_id}`)")
        return 1
    print(f"retried {job.job_id} {job.key} from step {args.from_step}: {', '.join(moved)} run again")
    failed_elsewhere = [name for name in job.states(StepState.FAILED) if name not in moved]
    if failed_elsewhere:
        names = ", ".join(failed_elsewhere)
        print(f"note: {names} failed too and is not after {args.from_step}: the job fails again; `gpupipe retry {job.job_id}` reruns it")
    return 0


def doctor(args: argparse.Namespace) -> int:
    from gpupipe import doctor as checks

    try:
        outputs: dict[str, Any] | None = load_outputs(args)
    except CliError as error:
        print(f"(no stack outputs yet: {error})")
        outputs = None
    planned = None if outputs is not None or args.outputs else planned_region(args.terraform_dir)
    region = choose_region((outputs or {}).get("region"), planned, os.environ)
    return checks.report(checks.run_checks(boto3.session.Session(region_name=region.name), outputs, region))


DESCRIPTION = """\
Submit media to a gpu-pipeline stack, follow its jobs, and look at what they found.

gpupipe finds the stack from Terraform's outputs: by default it runs `terraform output -json` in
--terraform-dir; --outputs reads that output saved to a file instead. AWS credentials come from the
usual places (AWS_PROFILE, ...); the region is the stack's region output, whatever AWS_REGION says (a
mismatch is named), and before an apply the example's region variable or AWS_REGION; AWS_ENDPOINT_URL
points it at a local emulator, as `make demo` does."""

EPILOG = """\
examples:
  gpupipe submit race.mp4 day1/*.jpg          upload files: one job each
  gpupipe status --wait                       a progress bar until every job has finished
  gpupipe results race.mp4 --out results/     download a job's result JSON, pictures and annotated video
  gpupipe report --out report/                one HTML page of every job: open report/index.html
  gpupipe report --failed                     failed jobs, their reasons and the command that retries each
  gpupipe retry --failed                      run every failed step again
  gpupipe doctor                              read-only checks of the account and the stack, before and after apply

  gpupipe --outputs outputs.json status       with `terraform output -json > outputs.json` saved

Run `gpupipe COMMAND --help` for a command's options and examples."""


def _command(commands: Any, name: str, summary: str, description: str, examples: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpupipe", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--outputs",
        type=Path,
        metavar="FILE",
        default=os.environ.get("GPUPIPE_OUTPUTS") and Path(os.environ["GPUPIPE_OUTPUTS"]),
        help="the stack's `terraform output -json`, saved to a file (default: $GPUPIPE_OUTPUTS); e.g. --outputs outputs.json",
    )
    source.add_argument(
        "--terraform-dir",
        metavar="DIR",
        default="terraform/examples/complete",
        help="the Terraform folder whose outputs name the stack (default: %(default)s); e.g. --terraform-dir infra/prod",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    submit_parser = _command(
        commands,
        "submit",
        "upload files to the input prefix: one job each",
        "Upload each file to the stack's input prefix under its own name. Each upload is a job; a file uploaded\n"
        "again (a new version) is a new job.",
        "  gpupipe submit street.mp4\n  gpupipe submit photos/*.jpg videos/*.mp4",
    )
    submit_parser.add_argument("files", nargs="+", metavar="FILE", help="image or video files to upload")
    status_parser = _command(
        commands,
        "status",
        "list jobs by state, with failure reasons",
        "List every job with its status and each step's state (a split video shows its segments). Exits 1\nwhen a job has failed.",
        "  gpupipe status\n  gpupipe status --wait --timeout 600",
    )
    status_parser.add_argument("--wait", action="store_true", help="show a progress bar until every job has finished")
    status_parser.add_argument(
        "--timeout", type=float, default=900, metavar="SECONDS", help="with --wait, give up after this long (default: %(default)g)"
    )
    results_parser = _command(
        commands,
        "results",
        "download a job's result JSON, pictures and annotated media",
        "Download the committed result of each step of a job (the latest job for that key or name) into\n"
        "OUT/JOB_ID/STEP/: result.json, the contact sheet, the timeline and, where the step annotates, the\n"
        "annotated video or image; print one line of what was found.",
        "  gpupipe results street.mp4\n  gpupipe results 0443fdc7c0b15e633174dcd8fde76816 --out /tmp/results",
    )
    results_parser.add_argument(
        "job", metavar="JOB_OR_KEY", help="a job id, an object key (uploads/street.mp4) or a file name (street.mp4)"
    )
    results_parser.add_argument("--out", type=Path, default=Path("results"), metavar="DIR", help="where to download (default: %(default)s)")
    report_parser = _command(
        commands,
        "report",
        "write one HTML page of jobs: annotated video, timeline, tables",
        "Write one static HTML page (DIR/index.html) showing, per job: status, timings, model and device,\n"
        "the annotated video with a timeline of detections under it (click to seek), the contact sheet,\n"
        "a table per label and, for a failure, its reason and the retry command. The page needs no server\n"
        "and no network: open it from the folder, or pass --upload to put it in the bucket and print a\n"
        "presigned URL. With --failed it also lists the failed jobs on the terminal.",
        "  gpupipe report                              every job, into report/index.html\n"
        "  gpupipe report street.mp4 long-walk.avi --out /tmp/report\n"
        "  gpupipe report --failed                     failed jobs: reasons and `gpupipe retry` commands\n"
        "  gpupipe report --upload --expires 86400     a link to share for a day",
    )
    report_parser.add_argument("jobs", nargs="*", metavar="JOB_OR_KEY", help="job ids, keys or file names (default: every job)")
    report_parser.add_argument(
        "--out", type=Path, default=Path("report"), metavar="DIR", help="where to write the page (default: %(default)s)"
    )
    report_parser.add_argument("--failed", action="store_true", help="only failed jobs; list each with its reason and retry command")
    report_parser.add_argument(
        "--upload", action="store_true", help="also upload the page beside the results and print a presigned URL (videos by presigned URL)"
    )
    report_parser.add_argument(
        "--expires",
        type=int,
        default=86400,
        metavar="SECONDS",
        help="with --upload, how long the URLs work (default: %(default)s; at most 604800)",
    )
    retry_parser = _command(
        commands,
        "retry",
        "run failed steps again, with a fresh retry budget",
        "Put a failed job's failed steps back to pending with a fresh retry budget; the pipeline sends each\n"
        "to its queue again. Fix the cause first (`gpupipe report --failed` shows the reasons).",
        "  gpupipe retry street.mp4\n  gpupipe retry --failed\n  gpupipe retry --failed --step detect\n"
        "  gpupipe retry street.mp4 --from anonymize",
    )
    retry_parser.add_argument("job", nargs="?", metavar="JOB_OR_KEY", help="a job id, an object key or a file name")
    retry_parser.add_argument("--failed", action="store_true", help="every failed job instead of one")
    retry_parser.add_argument("--step", metavar="STEP", help="only this step (e.g. --step detect)")
    retry_parser.add_argument(
        "--from",
        dest="from_step",
        metavar="STEP",
        help="run STEP of an ended job and every step after it again (done or not), keeping the results before it",
    )
    _command(
        commands,
        "doctor",
        "read-only checks of the account and the stack, each with what to do",
        "Check, reading only: credentials and region, the G and VT vCPU quotas against what max_tasks needs, the\n"
        "Auto Scaling service-linked role, the worker image in ECR, the AMI, the models under models/, and the\n"
        "notification subscriptions. Each miss says what to do. Run it before the first apply and after each\n"
        "(make preflight does).",
        "  gpupipe doctor\n  gpupipe --terraform-dir terraform/examples/complete doctor",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "doctor":
        return doctor(args)
    try:
        outputs = load_outputs(args)
        region = choose_region(outputs.get("region"), None, os.environ)
        if region.mismatch:
            print(f"gpupipe: {region.mismatch}: using {region.name} ({region.source})", file=sys.stderr)
        _SESSION[:] = [boto3.session.Session(region_name=region.name)]  # this command's region, not the process's
        return {"submit": submit, "status": status, "results": results, "report": report, "retry": retry}[args.command](args, outputs)
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
