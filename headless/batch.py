"""``sora batch``: run a workflow many times over one or more running ComfyUI servers.

    sora batch --server http://127.0.0.1:8188 [--server URL ...] WORKFLOW.json
               [--set NODE_ID.input=value ...] [--rows FILE.csv|FILE.jsonl]
               [--out DIR] [--retries N] [--timeout S]

One job per row of ``--rows`` (CSV with a header of ``NODE_ID.input`` columns, or JSON Lines of
``{"NODE_ID.input": value}`` objects; an optional ``job`` column/key names the job; an empty CSV cell
keeps the workflow's value), or one job from ``--set`` alone. ``--set`` applies to every job, a row's
values override it. A UI-format workflow is converted to the API format with the first reachable
server's own ``/object_info``.

Values take the type their input declares in that ``/object_info``, and every row is checked before
anything is submitted (errors name the row, job, column and what is allowed). CSV cells and --set
values are text: STRING inputs get the text as it is (``123``, ``true``, ``null`` stay words), INT an
integer and FLOAT a finite number within the widget's min..max, BOOLEAN true/false, yes/no or 1/0,
COMBO one of its choices. JSONL values must already have the JSON type (a string for STRING, a number
for INT/FLOAT, true/false for BOOLEAN; NaN and Infinity are refused). A link to another node's output
is never read from a value: name the column (JSONL key, --set target) ``NODE_ID.input@link`` and give
``NODE_ID:SLOT``, e.g. ``--set 2.latent@link=4:0`` feeds output 0 of node 4 into input latent of node 2.

One worker per server pulls jobs from a shared queue, submits them (POST /prompt), follows them over
the websocket (a progress bar per server on a terminal, log lines always) and downloads the saved
files through /view into ``--out/JOB/`` (new names if files exist; nothing local is overwritten).

Retries: a job is retried, up to ``--retries`` more times and on another server when one is left,
when its server failed: unreachable, HTTP 5xx, websocket lost mid-run, the run interrupted on the
server, out of memory, or the server lacks the workflow's node types. A worker whose server no longer
answers stops taking jobs; so does one that hits an unexpected error on this machine (e.g. the disk
full while downloading: the files of that try are removed), and its job is retried like a server
failure. Not retried, since they would fail the same way anywhere: prompts the server rejects (HTTP
400: every failing node and input is printed for that job), a node raising an error while running
(``execution_error``), and time-outs (``--timeout`` seconds from submission, a finite number > 0; the
prompt is cancelled on that server). Ends with a summary table; exit code 0 when every job succeeded,
1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from . import comfy_client as cc
from sora_core.cli import CLIError
from .overrides import Row, apply_row, read_rows, set_row
from .workflow import WorkflowError, read_workflow, to_api

JOB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


# ======================================================================================== jobs


@dataclass
class Job:
    """One prompt to run. ``source`` says where its values came from, for messages."""

    name: str
    prompt: dict
    source: str
    status: str = "pending"          # pending | ok | failed | rejected | error | timeout | not run
    server: str = ""
    seconds: float = 0.0
    tries: int = 0
    failed_on: set = field(default_factory=set)
    files: list = field(default_factory=list)
    message: str = ""
    preview: cc.Preview | None = None  # the last latent preview the server sent


def build_jobs(api: dict, sets: list[str], rows: list[Row] | None, object_info: dict) -> list[Job]:
    """One Job per row (or a single job), each with its own copy of the API prompt, ``--set`` then the
    row's values applied, converted by their inputs' declared types (see ``overrides``); unknown
    nodes and inputs and values of the wrong type are errors naming the row, job and column."""
    base = json.loads(json.dumps(api))
    apply_row(base, set_row(sets), object_info)
    jobs, names = [], set()
    for i, row in enumerate(rows or [Row("--set", {}, True)], start=1):
        name = str(row.values.get("job", f"job{i:03d}"))
        if not JOB_NAME.match(name) or name in names:
            raise WorkflowError(f"{row.where}: job name {name!r} must be unique and use letters, digits, '_', '.', '-'")
        names.add(name)
        prompt = json.loads(json.dumps(base))
        apply_row(prompt, row, object_info, name)
        jobs.append(Job(name, prompt, row.where))
    return jobs


# ======================================================================================== queue


class JobQueue:
    """Jobs shared by the server workers. A job that failed on a server goes to another live server
    when there is one; it goes back to the same one only when no other is left."""

    def __init__(self, jobs: list[Job], retries: int, servers: list[str]):
        self.pending, self.retries = list(jobs), retries
        self.live, self.running = set(servers), 0
        self.cond = threading.Condition()

    def take(self, server: str) -> Job | None:
        with self.cond:
            while server in self.live:
                for job in self.pending:
                    if server not in job.failed_on or job.failed_on >= self.live:
                        self.pending.remove(job)
                        self.running += 1
                        return job
                if not self.pending and self.running == 0:
                    return None
                self.cond.wait(0.5)
            return None

    def finish(self, job: Job, error: cc.ComfyError | None = None) -> bool:
        """Record the outcome; returns True when the job was put back for a retry."""
        with self.cond:
            self.running -= 1
            retry = error is not None and error.retryable and job.tries <= self.retries
            if retry:
                job.failed_on.add(job.server)
                self.pending.insert(0, job)
            self.cond.notify_all()
            return retry

    def retire(self, server: str) -> None:
        """The server is gone: its worker stops. With no server left, pending jobs end: "failed" (with
        their last error) when they were tried, else "not run"."""
        with self.cond:
            self.live.discard(server)
            if not self.live:
                for job in self.pending:
                    job.status = "failed" if job.tries else "not run"
                    job.message = (job.message + "; " if job.message else "") + "no server left"
                self.pending.clear()
            self.cond.notify_all()


# ======================================================================================== workers


class Display:
    """A progress bar per server (on a terminal) and log lines, safe across worker threads."""

    def __init__(self, servers: list[str], stream=None):
        self.stream = stream or sys.stderr
        self.lock = threading.Lock()
        self.bars = {s: tqdm(total=1, position=i, desc=s, leave=False, file=self.stream, disable=None,
                             bar_format="{desc} {bar} {n_fmt}/{total_fmt} {postfix}") for i, s in enumerate(servers)}

    def log(self, text: str) -> None:
        with self.lock:
            tqdm.write(text, file=self.stream)

    def event(self, server: str, job: Job, ev) -> None:
        bar = self.bars[server]
        with self.lock:
            if isinstance(ev, cc.Preview):
                job.preview = ev
                bar.set_postfix_str(f"{job.name} preview {ev.mime}", refresh=False)
            elif ev.kind == "executing" and ev.data.get("node") is not None:
                bar.reset(total=1)
                bar.set_description(f"{server} {job.name} node {ev.data['node']}", refresh=False)
            elif ev.kind == "progress":
                bar.total, bar.n = ev.data.get("max", 1), ev.data.get("value", 0)
                bar.refresh()

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class WorkerFailure(cc.ComfyError):
    """An unexpected error on this side while a job ran (the disk full while saving its outputs, a
    bug): the job may still succeed elsewhere, so it is retried; its server takes no more jobs."""

    retryable = True


def run_worker(client: cc.ComfyClient, queue: JobQueue, out: Path, timeout: float, display: Display,
               extra_data: dict | None = None) -> None:
    """Pull jobs for one server until the queue is empty or the server is gone. Nothing is raised:
    an unexpected error retires the server (its job is retried elsewhere, see ``_attempt``)."""
    server = client.url
    try:
        known = set(client.object_info())
    except Exception as e:  # noqa: BLE001 - any failure to list the nodes means: do not use this server
        display.log(f"[{server}] not used: {e}")
        queue.retire(server)
        return
    try:
        while (job := queue.take(server)) is not None:
            if not _attempt(client, job, queue, known, out, timeout, display, extra_data):
                return
    except Exception as e:  # noqa: BLE001 - a worker must not die silently with its server still counted live
        display.log(f"[{server}] worker stopped by {type(e).__name__}: {e}\n{traceback.format_exc()}")
        queue.retire(server)


def _attempt(client: cc.ComfyClient, job: Job, queue: JobQueue, known: set, out: Path, timeout: float,
             display: Display, extra_data: dict | None) -> bool:
    """Run one try of ``job`` on the client's server and record it; False when the server is retired."""
    server = client.url
    job.server, job.tries = server, job.tries + 1
    try:
        error = _run_job(client, job, known, out, timeout, display, extra_data)
    except Exception as e:  # noqa: BLE001 - anything that is not a ComfyError: retire the server, retry the job
        error = WorkerFailure(f"{type(e).__name__}: {e}")
        job.status, job.message = "failed", f"on this machine: {error}"
        detail = "" if isinstance(e, OSError) else "\n" + traceback.format_exc()
        display.log(f"[{job.name}] ({job.source}) unexpected error with {server}: {error}{detail}")
    if queue.finish(job, error):
        display.log(f"[{job.name}] failed on {server} (try {job.tries}): {job.message}; retrying")
    if isinstance(error, WorkerFailure):
        display.log(f"[{server}] no more jobs for it after the unexpected error")
        queue.retire(server)
        return False
    if isinstance(error, cc.ServerUnavailable) and not client.alive():
        display.log(f"[{server}] does not answer any more: no more jobs for it")
        queue.retire(server)
        return False
    return True


def _run_job(client: cc.ComfyClient, job: Job, known: set, out: Path, timeout: float,
             display: Display, extra_data: dict | None) -> cc.ComfyError | None:
    t0 = time.monotonic()
    job.preview = None
    try:
        missing = sorted({n["class_type"] for n in job.prompt.values()} - known)
        if missing:
            raise cc.MissingNodes(f"{client.url} lacks node types {', '.join(missing)}")
        result = client.run(job.prompt, lambda ev: display.event(client.url, job, ev), timeout, extra_data)
        job.files = _save_outputs(client, job, result, out / job.name)
        job.status, job.seconds = "ok", time.monotonic() - t0
        display.log(f"[{job.name}] done on {client.url} in {job.seconds:.1f} s: {len(job.files)} file(s)"
                    + (f", {result.previews} preview(s)" if result.previews else ""))
        return None
    except cc.ComfyError as e:
        job.seconds, job.message = time.monotonic() - t0, str(e)
        if isinstance(e, cc.ValidationFailed):
            job.message = "; ".join(e.lines)
        job.status = {cc.ValidationFailed: "rejected", cc.ExecutionFailed: "error",
                      cc.JobTimeout: "timeout"}.get(type(e), "failed")
        if isinstance(e, cc.ValidationFailed):
            display.log(f"[{job.name}] ({job.source}) {e}")
        elif not e.retryable:
            display.log(f"[{job.name}] ({job.source}) {job.status} on {client.url}: {e}")
        return e
    finally:
        job.seconds = time.monotonic() - t0


def _save_outputs(client: cc.ComfyClient, job: Job, result: cc.JobResult, dest: Path) -> list[str]:
    """Download the job's files (and its last preview) into ``dest``; when any of it fails, the files
    this try wrote are removed again, so a retry does not leave a half set beside its own."""
    written: list[Path] = []
    try:
        for ref in result.files():
            written.append(client.download(ref, dest))
        if job.preview is not None:  # the last latent preview, beside the outputs
            ext = ".png" if job.preview.mime == "image/png" else ".jpg"
            cc.write_new(dest / f"last_preview{ext}", job.preview.image)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return [str(p) for p in written]


def run_batch(servers: list[str], jobs: list[Job], out: Path, retries: int, timeout: float,
              stream=None, previews: bool = False) -> list[Job]:
    """Run ``jobs`` over ``servers`` (a worker thread per server); returns the jobs with outcomes.
    ``previews``: ask the servers for latent previews (the last one is saved beside the outputs)."""
    queue = JobQueue(jobs, retries, servers)
    display = Display(servers, stream)
    extra = {"preview_method": "auto"} if previews else None
    clients = [cc.ComfyClient(s) for s in servers]
    threads = [threading.Thread(target=run_worker, args=(c, queue, out, timeout, display, extra), daemon=True)
               for c in clients]
    try:
        for t in threads:
            t.start()
        for t in threads:
            while t.is_alive():
                t.join(0.2)
    except KeyboardInterrupt:  # leave nothing of ours running on the servers
        for c in clients:
            if c.current is not None:
                c.cancel(c.current)
        raise
    finally:
        display.close()
    return jobs


# ======================================================================================== command


def summary_table(jobs: list[Job]) -> str:
    """job | server | status | tries | seconds | outputs, one line per job."""
    head = ("job", "server", "status", "tries", "seconds", "outputs")
    rows = [(j.name, j.server or "-", j.status, str(j.tries), f"{j.seconds:.1f}",
             ", ".join(j.files) if j.files else (j.message.splitlines()[0][:70] if j.message else "-"))
            for j in jobs]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head) - 1)]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
    return "\n".join([fmt(head), fmt(tuple("-" * w for w in widths) + ("-" * 7,)), *map(fmt, rows)])


def prepare(workflow_path: str, servers: list[str], sets: list[str], rows_path: str | None) -> list[Job]:
    """Read the workflow and rows, convert with the first reachable server's /object_info, build jobs."""
    workflow = read_workflow(workflow_path)
    rows = read_rows(rows_path) if rows_path else None
    errors = []
    for url in servers:
        try:
            info = cc.ComfyClient(url).object_info()
            break
        except cc.ComfyError as e:
            errors.append(str(e))
    else:
        raise ConnectionError("no server answered GET /object_info:\n  " + "\n  ".join(errors))
    return build_jobs(to_api(workflow, info), sets, rows, info)


def _check_options(args: argparse.Namespace) -> None:
    """--retries >= 0; every float option (--timeout) a finite number > 0 (NaN would disable the limit)."""
    if args.retries < 0:
        raise CLIError(f"--retries must be >= 0, got --retries={args.retries}")
    for name in ("timeout",):
        value = getattr(args, name)
        if not math.isfinite(value) or value <= 0:
            raise CLIError(f"--{name} must be a finite number of seconds > 0, got --{name}={value}")


def _run(args: argparse.Namespace) -> int:
    _check_options(args)
    servers = list(dict.fromkeys(cc.ComfyClient(s).url for s in args.server))
    try:
        jobs = prepare(args.workflow, servers, args.set or [], args.rows)
    except ConnectionError as e:
        raise CLIError(str(e)) from e
    print(f"{len(jobs)} job(s) over {len(servers)} server(s) -> {args.out}", file=sys.stderr)
    run_batch(servers, jobs, Path(args.out), args.retries, args.timeout, previews=args.previews)
    print(summary_table(jobs))
    ok = sum(j.status == "ok" for j in jobs)
    print(f"{ok} of {len(jobs)} job(s) succeeded")
    return 0 if ok == len(jobs) else 1


def register(subparsers) -> None:
    p = subparsers.add_parser("batch", help="run a workflow over running ComfyUI servers (rows of values)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", metavar="WORKFLOW.json", help="UI- or API-format workflow")
    p.add_argument("--server", action="append", required=True, metavar="URL",
                   help="a ComfyUI server, e.g. http://127.0.0.1:8188 (repeat for several)")
    p.add_argument("--set", action="append", metavar="NODE_ID.input=value",
                   help="override for every job, converted to the input's type; NODE_ID.input@link=NODE_ID:SLOT "
                        "links the input to another node's output")
    p.add_argument("--rows", metavar="FILE",
                   help="CSV or JSONL: one job per row of NODE_ID.input values (NODE_ID.input@link columns: links)")
    p.add_argument("--out", default="batch_out", help="folder for the downloaded outputs (default batch_out)")
    p.add_argument("--retries", type=int, default=2, help="extra tries of a job after a server failure")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds a job may take from submission (finite, > 0)")
    p.add_argument("--previews", action="store_true",
                   help="ask for latent previews while sampling; the last one is saved as JOB/last_preview.jpg")
    p.set_defaults(func=_run)
