"""``sora batch`` and the ComfyUI client against local stub servers (tests/comfy_stub_server.py).

The stubs speak ComfyUI's HTTP and websocket messages; a UI-format workflow is converted with the
stub's own /object_info, as against a real server.
"""

from __future__ import annotations

import errno
import io
import json
import socket
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from comfy_stub_server import PREVIEW, StubComfy  # noqa: E402

from comfyui_sora.headless import comfy_client as cc  # noqa: E402
from comfyui_sora.headless import batch
from comfyui_sora.headless.cli import main  # noqa: E402
from comfyui_sora.headless.workflow import WorkflowError  # noqa: E402

pytestmark = pytest.mark.timeout(60)


# ======================================================================================== fixtures


def ui_workflow() -> dict:
    """noise -> sampler -> save, in ComfyUI's UI format (seed with its control widget, a note)."""
    return {
        "last_node_id": 4, "last_link_id": 2, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "StubNoise", "mode": 0, "inputs": [],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [1]}],
             "widgets_values": [64, 9, 7, "randomize"]},
            {"id": 2, "type": "StubSampler", "mode": 0, "inputs": [{"name": "latent", "type": "LATENT", "link": 1}],
             "outputs": [{"name": "LATENT", "type": "LATENT", "links": [2]}],
             "widgets_values": ["a red ball", 3, 5.0, "euler", False]},
            {"id": 3, "type": "StubSave", "mode": 0, "inputs": [{"name": "latent", "type": "LATENT", "link": 2}],
             "outputs": [], "widgets_values": ["sora"]},
            {"id": 4, "type": "Note", "mode": 0, "inputs": [], "outputs": [], "widgets_values": ["a note"]},
        ],
        "links": [[1, 1, 0, 2, 0, "LATENT"], [2, 2, 0, 3, 0, "LATENT"]],
    }


@pytest.fixture
def workflow(tmp_path) -> Path:
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(ui_workflow()))
    return path


@pytest.fixture
def stubs(tmp_path):
    """A factory of started stub servers, all stopped at the end."""
    started = []

    def make(name: str, **kw) -> StubComfy:
        stub = StubComfy(tmp_path / f"server-{name}", **kw)
        stub.start()
        started.append(stub)
        return stub
    yield make
    for stub in started:
        stub.stop()


def free_url() -> str:
    """The URL of a port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run(servers, workflow, tmp_path, sets=(), rows=None, retries=2, timeout=20.0, previews=False):
    urls = [s if isinstance(s, str) else s.url for s in servers]
    jobs = batch.prepare(str(workflow), urls, list(sets), str(rows) if rows else None)
    log = io.StringIO()
    batch.run_batch(urls, jobs, tmp_path / "out", retries, timeout, stream=log, previews=previews)
    return {j.name: j for j in jobs}, log.getvalue()


def saved(job) -> dict:
    """The inputs the stub recorded in the job's downloaded file."""
    assert len(job.files) == 1, job
    return json.loads(Path(job.files[0]).read_text())


# ======================================================================================== batch


def test_jobs_spread_over_servers_and_outputs_downloaded(stubs, workflow, tmp_path):
    a, b = stubs("a", step_delay=0.02), stubs("b", step_delay=0.02)
    rows = write(tmp_path, "rows.csv", "2.prompt,1.seed\n" + "".join(f'"ball {i}, blue",{100 + i}\n' for i in range(6)))
    jobs, _ = run([a, b], workflow, tmp_path, sets=["2.steps=2"], rows=rows)
    assert [j.status for j in jobs.values()] == ["ok"] * 6
    assert len(a.received) > 0 and len(b.received) > 0 and len(a.received) + len(b.received) == 6
    for i, name in enumerate(sorted(jobs)):
        job = jobs[name]
        got = saved(job)
        assert got["server"] == job.server
        assert got["inputs"]["2.prompt"] == f"ball {i}, blue" and got["inputs"]["1.seed"] == 100 + i
        assert got["inputs"]["2.steps"] == 2 and got["inputs"]["1.width"] == 64   # --set, and the UI value
        assert Path(job.files[0]).parent == tmp_path / "out" / name
        assert not (tmp_path / "out" / name / "last_preview.png").exists()


def test_last_preview_saved_when_asked(stubs, workflow, tmp_path):
    a = stubs("a")
    jobs, log = run([a], workflow, tmp_path, sets=["2.steps=4"], previews=True)
    assert jobs["job001"].status == "ok" and "4 preview(s)" in log
    assert (tmp_path / "out" / "job001" / "last_preview.png").read_bytes() == PREVIEW + bytes([4])


def test_failed_servers_jobs_are_retried_elsewhere(stubs, workflow, tmp_path):
    good, crashing, refusing = stubs("good", step_delay=0.02), stubs("crash", fail="drop"), stubs("500", fail="http500")
    rows = write(tmp_path, "rows.jsonl", "".join(json.dumps({"1.seed": i}) + "\n" for i in range(6)))
    jobs, log = run([good, crashing, refusing, free_url()], workflow, tmp_path, rows=rows)
    assert all(j.status == "ok" and j.server == good.url for j in jobs.values()), log
    assert sorted(saved(j)["inputs"]["1.seed"] for j in jobs.values()) == list(range(6))
    assert len(crashing.received) == 1                      # it took one job, then went down
    assert refusing.posts >= 1 and len(refusing.received) == 0
    assert sum(j.tries for j in jobs.values()) == 6 + 1 + refusing.posts
    assert "retrying" in log and "not used" in log           # the dead URL was never used


def test_retries_are_bounded(stubs, workflow, tmp_path):
    a, b = stubs("a", fail="http500"), stubs("b", fail="http500")
    jobs, _ = run([a, b], workflow, tmp_path, retries=2)
    job = jobs["job001"]
    assert job.status == "failed" and job.tries == 3 and "HTTP 500" in job.message
    assert a.posts + b.posts == 3 and a.posts >= 1 and b.posts >= 1   # the retry went to the other server


def test_validation_errors_are_reported_per_job(stubs, workflow, tmp_path):
    # values /object_info allows but a node's own validation rejects: the server answers 400 per job
    a, b = stubs("a"), stubs("b")
    rows = write(tmp_path, "rows.csv", "job,2.prompt,2.sampler\ngood,a ball,heun\nbad1,forbidden ball,euler\n"
                                       "bad2,a forbidden box,heun\n")
    jobs, log = run([a, b], workflow, tmp_path, rows=rows)
    assert jobs["good"].status == "ok"
    assert jobs["bad1"].status == "rejected" and jobs["bad2"].status == "rejected"
    assert jobs["bad1"].tries == 1 and jobs["bad2"].tries == 1           # a rejection is not retried
    assert "node 2 (StubSampler) input 'prompt': Invalid prompt: 'forbidden ball'" in jobs["bad1"].message
    assert "node 2 (StubSampler) input 'prompt'" in jobs["bad2"].message and "forbidden box" in jobs["bad2"].message
    assert f"[bad1] ({rows} line 3)" in log and f"[bad2] ({rows} line 4)" in log
    assert a.posts + b.posts == 3


def test_execution_errors_are_not_retried(stubs, workflow, tmp_path):
    a, b = stubs("a"), stubs("b")
    jobs, log = run([a, b], workflow, tmp_path, sets=["2.fail=true"])
    job = jobs["job001"]
    assert job.status == "error" and job.tries == 1
    assert "node 2 (StubSampler) raised RuntimeError: stub node asked to fail" in job.message
    assert len(a.received) + len(b.received) == 1


def test_timeout_cancels_and_is_not_retried(stubs, workflow, tmp_path):
    slow = stubs("slow", step_delay=0.5)
    jobs, _ = run([slow], workflow, tmp_path, sets=["2.steps=20"], timeout=0.5)
    assert jobs["job001"].status == "timeout" and jobs["job001"].tries == 1


def test_ctrl_c_cancels_the_running_prompts(stubs, workflow, tmp_path):
    import signal
    # a process started in the background of a non-interactive shell inherits SIGINT ignored, and then
    # interrupt_main() does nothing: give it Python's own handler, as in a terminal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        _ctrl_c_while_running(stubs, workflow, tmp_path)
    finally:
        signal.signal(signal.SIGINT, previous)


def _ctrl_c_while_running(stubs, workflow, tmp_path):
    import _thread
    import threading
    import time
    slow = stubs("slow", step_delay=0.5)
    jobs = batch.prepare(str(workflow), [slow.url], ["2.steps=40"], None)

    def press_ctrl_c_once_running():     # the prompt is on the server (20 s of work left) before Ctrl+C
        deadline = time.monotonic() + 15.0
        while not slow.received and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c_once_running, daemon=True).start()
    stream = io.StringIO()
    try:
        batch.run_batch([slow.url], jobs, tmp_path / "out", 0, 60.0, stream=stream)
    except KeyboardInterrupt:
        pass
    else:
        pytest.fail("run_batch returned before Ctrl+C: " + "; ".join(f"{j.name} {j.status} {j.message}" for j in jobs)
                    + "\n" + stream.getvalue())
    assert len(slow.received) == 1 and slow.interrupted == [slow.accepted_ids[0]]


def test_cli_prints_summary_and_exit_code(stubs, workflow, tmp_path, capsys):
    a = stubs("a")
    rows = write(tmp_path, "rows.csv", "job,2.prompt\nfine,a ball\nbroken,forbidden\n")
    out = tmp_path / "cli-out"
    code = main(["batch", "--server", a.url, str(workflow), "--rows", str(rows), "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    lines = captured.out.splitlines()
    assert lines[0].split() == ["job", "server", "status", "tries", "seconds", "outputs"]
    fine = next(line for line in lines if line.startswith("fine "))
    assert " ok " in fine and str(out / "fine") in fine
    assert any(line.startswith("broken ") and "rejected" in line for line in lines)
    assert "1 of 2 job(s) succeeded" in captured.out


def test_no_server_reachable_is_a_clear_error(workflow, capsys):
    code = main(["batch", "--server", free_url(), str(workflow)])
    assert code == 2 and "no server answered GET /object_info" in capsys.readouterr().err


# ======================================================================================== rows


@pytest.mark.parametrize("name, text, expected", [
    ("ragged.csv", "2.steps,1.seed\n2,1\n3\n", "ragged.csv line 3: 1 fields, the header has 2"),
    ("header.csv", "steps\n2\n", "header.csv line 1: column 'steps' must be NODE_ID.input"),
    ("empty.csv", "2.steps\n", "empty.csv: no rows below the header"),
    ("bad.jsonl", '{"2.steps": 2}\n{"2.steps": \n', "bad.jsonl line 2: not valid JSON"),
    ("list.jsonl", '\n[1, 2]\n', "list.jsonl line 2: each line must be a JSON object"),
    ("node.csv", "2.steps\n2\n\n", None),
    ("unknown-node.csv", "2.steps,9.seed\n2,1\n", "unknown-node.csv line 2 (job job001), column 9.seed: no node "
                                                  "with id or unique title '9'; node ids: 1, 2, 3"),
    ("unknown-input.jsonl", '{"2.stepz": 4}\n', "unknown-input.jsonl line 1 (job job001), column 2.stepz: node 2 "
                                                "(StubSampler) has no input 'stepz'; its inputs: latent, prompt"),
    ("dup-column.csv", "2.steps,2.steps\n2,3\n", "dup-column.csv line 1: column '2.steps' appears twice"),
    ("same-input.csv", "2.steps,2.steps@link\n2,1:0\n", "column 2.steps@link: input 'steps' of node 2 is already "
                                                       "set by column 2.steps"),
    ("deep.jsonl", "[" * 100000 + "]" * 100000 + "\n", "deep.jsonl line 1: the JSON is nested too deeply"),
    ("dup.csv", "job,2.steps\nx,1\nx,2\n", "dup.csv line 3: job name 'x' must be unique"),
    ("rows.txt", "2.steps\n2\n", "use a .csv or .jsonl file"),
])
def test_malformed_rows_name_the_line(stubs, workflow, tmp_path, name, text, expected):
    a = stubs("a")
    rows = write(tmp_path, name, text)
    if expected is None:                                      # blank lines are skipped
        assert len(batch.prepare(str(workflow), [a.url], [], str(rows))) == 1
        return
    with pytest.raises(WorkflowError) as info:
        batch.prepare(str(workflow), [a.url], [], str(rows))
    assert expected in str(info.value)
    assert a.posts == 0                                       # nothing was submitted


def test_not_utf8_rows_are_refused(stubs, workflow, tmp_path):
    a = stubs("a")
    rows = tmp_path / "latin1.csv"
    rows.write_bytes(b"2.prompt\nna\xefve\n")
    with pytest.raises(WorkflowError, match=r"latin1.csv: not UTF-8 text"):
        batch.prepare(str(workflow), [a.url], [], str(rows))


# ======================================================================================== typed values


def test_csv_cells_take_their_inputs_declared_types(stubs, workflow, tmp_path):
    """A prompt column keeps its text (it was parsed as JSON: 123 a number, true a bool, null None,
    NaN a float, ["1",0] a link); numbers, booleans and choices are converted by the input's type."""
    a = stubs("a")
    texts = ["123", "true", "null", "NaN", '["1",0]', " two  spaces ", "@link:1:0"]
    rows = write(tmp_path, "rows.csv", "2.prompt,1.seed,2.cfg,2.fail,2.sampler,2.steps\n" + "".join(
        f'"{t.replace(chr(34), 2 * chr(34))}",{i},2.5,{b},heun,+3\n' for i, (t, b) in enumerate(zip(texts, [
            "no", "FALSE", "0", "false", "No", "false", "0"]))))
    jobs, log = run([a], workflow, tmp_path, rows=rows)
    assert [j.status for j in jobs.values()] == ["ok"] * len(texts), log
    for i, job in enumerate(jobs.values()):
        got = saved(job)["inputs"]
        assert got["2.prompt"] == texts[i] and got["1.seed"] == i
        assert got["2.cfg"] == 2.5 and got["2.fail"] is False and got["2.sampler"] == "heun" and got["2.steps"] == 3
    assert all(p["2"]["inputs"]["latent"] == ["1", 0] for p in a.received)   # the workflow's link, untouched


def test_set_values_are_typed_like_csv_cells(stubs, workflow, tmp_path):
    a = stubs("a")
    jobs, _ = run([a], workflow, tmp_path, sets=["2.prompt=42", "2.fail=no", "1.seed=7"])
    got = saved(jobs["job001"])["inputs"]
    assert got["2.prompt"] == "42" and got["2.fail"] is False and got["1.seed"] == 7


@pytest.mark.parametrize("column, cell, expected", [
    ("2.steps", "1.5", "'1.5' is not allowed; it expects an integer from 1 to 100"),
    ("2.steps", "true", "'true' is not allowed; it expects an integer from 1 to 100"),
    ("2.steps", '"[""1"",0]"', "'[\"1\",0]' is not allowed; it expects an integer from 1 to 100"),
    ("2.steps", "0", "value 0 is below the minimum 1"),
    ("1.width", "1e9", "it expects an integer from 16 to 512"),
    ("2.cfg", "NaN", "'NaN' is not allowed; it expects a finite number from 0.0 to 30.0"),
    ("2.cfg", "inf", "'inf' is not allowed; it expects a finite number"),
    ("2.cfg", "1e999", "'1e999' is not allowed; it expects a finite number"),
    ("2.cfg", "31", "value 31.0 is above the maximum 30.0"),
    ("2.fail", "maybe", "'maybe' is not allowed; it expects true or false (also yes/no, 1/0)"),
    ("2.sampler", "dpm", "value 'dpm' is not one of the allowed values: 'euler', 'heun'"),
    ("2.latent", "1:0", "the input takes a LATENT, which only a link gives: use the column 2.latent@link"),
    ("2.latent@link", "1", "'1' is not a link; write NODE_ID:SLOT"),
    ("2.latent@link", "9:0", "cannot link to node '9'; node ids: 1, 2, 3"),
    ("2.latent@link", "2:0", "cannot link to node '2'; it is the node itself"),
    ("2.latent@link", "1:1", "node 1 (StubNoise) has 1 output(s), no output 1"),
    ("2.steps@link", "1:0", "the input takes a INT but output 0 of node 1 (StubNoise) gives LATENT"),
])
def test_bad_csv_cells_name_row_job_column_and_what_is_allowed(stubs, workflow, tmp_path, column, cell, expected):
    a = stubs("a")
    rows = write(tmp_path, "rows.csv", f"job,{column}\nfine,\nodd,{cell}\n")
    with pytest.raises(WorkflowError) as info:
        batch.prepare(str(workflow), [a.url], [], str(rows))
    assert str(info.value).startswith(f"{rows} line 3 (job odd), column {column}: ")
    assert expected in str(info.value)
    assert a.posts == 0                                       # checked before anything is submitted


@pytest.mark.parametrize("line, expected", [
    ('{"2.prompt": 123}', "column 2.prompt: 123 is not allowed; it expects text"),
    ('{"2.prompt": null}', "column 2.prompt: None is not allowed; it expects text"),
    ('{"2.steps": "4"}', "column 2.steps: '4' is not allowed; it expects an integer from 1 to 100"),
    ('{"2.steps": 4.5}', "column 2.steps: 4.5 is not allowed"),
    ('{"2.steps": true}', "column 2.steps: True is not allowed"),
    ('{"2.fail": "true"}', "column 2.fail: 'true' is not allowed; it expects true or false"),
    ('{"2.cfg": NaN}', "line 1: NaN is not allowed (numbers must be finite)"),
    ('{"2.cfg": -Infinity}', "line 1: -Infinity is not allowed (numbers must be finite)"),
    ('{"2.cfg": 1e999}', "column 2.cfg: inf is not allowed; it expects a finite number"),
    ('{"2.latent": ["1", 0]}', "column 2.latent: the input takes a LATENT, which only a link gives: use the column "
                               "2.latent@link with NODE_ID:SLOT"),
    ('{"2.prompt": ["1", 0]}', "column 2.prompt: a JSON list is not a value, it expects text (to link the input, "
                               "use the key 2.prompt@link with \"NODE_ID:SLOT\")"),
    ('{"2.latent@link": ["1", 0]}', "column 2.latent@link: ['1', 0] is not a link; write NODE_ID:SLOT"),
])
def test_jsonl_values_are_checked_against_declared_types(stubs, workflow, tmp_path, line, expected):
    a = stubs("a")
    rows = write(tmp_path, "rows.jsonl", line + "\n")
    with pytest.raises(WorkflowError) as info:
        batch.prepare(str(workflow), [a.url], [], str(rows))
    assert str(info.value).startswith(f"{rows} line 1") and expected in str(info.value)
    assert a.posts == 0


def test_links_through_the_explicit_syntax(stubs, workflow, tmp_path):
    """--set / column / JSONL key NODE.input@link = NODE_ID:SLOT rewires an input; JSONL typed values pass."""
    a = stubs("a")
    api = {"1": {"class_type": "StubNoise", "inputs": {"width": 64, "frames": 9, "seed": 1}},
           "4": {"class_type": "StubNoise", "inputs": {"width": 32, "frames": 5, "seed": 2}},
           "2": {"class_type": "StubSampler", "inputs": {"latent": ["1", 0], "prompt": "x", "steps": 1, "cfg": 1.0,
                                                         "sampler": "euler", "fail": False}},
           "3": {"class_type": "StubSave", "inputs": {"latent": ["2", 0], "filename_prefix": "s"}}}
    api_path = write(tmp_path, "api.json", json.dumps(api))
    rows = write(tmp_path, "rows.jsonl", '{"job": "csvlike", "2.cfg": 3, "2.fail": true}\n'
                                         '{"job": "back", "2.latent@link": "1:0", "2.steps": 2.0}\n')
    jobs = {j.name: j for j in batch.prepare(str(api_path), [a.url], ["2.latent@link=4:0"], str(rows))}
    assert jobs["csvlike"].prompt["2"]["inputs"]["latent"] == ["4", 0]               # from --set
    assert jobs["csvlike"].prompt["2"]["inputs"]["cfg"] == 3.0 and jobs["csvlike"].prompt["2"]["inputs"]["fail"] is True
    assert jobs["back"].prompt["2"]["inputs"]["latent"] == ["1", 0]                  # the row overrides --set
    assert jobs["back"].prompt["2"]["inputs"]["steps"] == 2
    with pytest.raises(WorkflowError, match=r"^--set 2.latent@link=4:1: node 4 \(StubNoise\) has 1 output"):
        batch.prepare(str(api_path), [a.url], ["2.latent@link=4:1"], None)
    with pytest.raises(WorkflowError, match=r"^--set '2.steps' must look like NODE_ID.input=value"):
        batch.prepare(str(api_path), [a.url], ["2.steps"], None)


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1"])
def test_timeout_must_be_finite_and_positive(workflow, capsys, value):
    code = main(["batch", "--server", free_url(), str(workflow), f"--timeout={value}"])
    err = capsys.readouterr().err
    assert code == 2 and "--timeout must be a finite number of seconds > 0" in err and "no server" not in err


# ======================================================================================== unexpected errors


def _failing_download(monkeypatch, fail_calls: set, exc: Exception):
    """Make ComfyClient.download raise ``exc`` on the given call numbers (1-based), counted over all threads."""
    import threading
    original, calls, lock = cc.ComfyClient.download, [0], threading.Lock()

    def download(self, ref, out_dir, prefix=""):
        with lock:
            calls[0] += 1
            n = calls[0]
        if n in fail_calls:
            raise exc
        return original(self, ref, out_dir, prefix)
    monkeypatch.setattr(cc.ComfyClient, "download", download)
    return calls


@pytest.mark.parametrize("exc", [OSError(errno.ENOSPC, "No space left on device"), KeyError("a bug")])
def test_unexpected_error_retires_the_server_and_requeues_the_job(stubs, workflow, tmp_path, monkeypatch, exc):
    a, b = stubs("a", step_delay=0.02), stubs("b", step_delay=0.02)
    _failing_download(monkeypatch, {1}, exc)
    rows = write(tmp_path, "rows.jsonl", "".join(json.dumps({"1.seed": i}) + "\n" for i in range(4)))
    jobs, log = run([a, b], workflow, tmp_path, rows=rows)
    assert all(j.status == "ok" for j in jobs.values()), log
    retried = [j for j in jobs.values() if j.tries == 2]
    assert len(retried) == 1 and type(exc).__name__ in log and "retrying" in log
    first = retried[0].failed_on.pop()
    assert retried[0].server != first                      # retried on the other server...
    failed_stub = a if first == a.url else b
    assert len(failed_stub.received) == 1                  # ...which took no more jobs after the error
    assert sorted(saved(j)["inputs"]["1.seed"] for j in jobs.values()) == [0, 1, 2, 3]


def test_a_failed_try_leaves_no_partial_outputs(stubs, tmp_path, monkeypatch):
    """Two output files per job; the second download fails: the first file of that try is removed."""
    a, b = stubs("a"), stubs("b")
    api = {"1": {"class_type": "StubNoise", "inputs": {"width": 64, "frames": 9, "seed": 1}},
           "2": {"class_type": "StubSave", "inputs": {"latent": ["1", 0], "filename_prefix": "x"}},
           "3": {"class_type": "StubSave", "inputs": {"latent": ["1", 0], "filename_prefix": "y"}}}
    _failing_download(monkeypatch, {2}, OSError(errno.ENOSPC, "No space left on device"))
    jobs, log = run([a, b], write(tmp_path, "api.json", json.dumps(api)), tmp_path)
    job = jobs["job001"]
    assert job.status == "ok" and job.tries == 2, log
    assert sorted(p.name for p in (tmp_path / "out" / "job001").iterdir()) == sorted(Path(f).name for f in job.files)
    assert len(job.files) == 2


def test_unexpected_errors_exhaust_retries_and_fail_the_batch(stubs, workflow, tmp_path, monkeypatch, capsys):
    a, b = stubs("a"), stubs("b")
    _failing_download(monkeypatch, set(range(1, 100)), OSError(errno.ENOSPC, "No space left on device"))
    code = main(["batch", "--server", a.url, "--server", b.url, str(workflow), "--retries", "1",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 1 and "0 of 1 job(s) succeeded" in out
    line = next(line for line in out.splitlines() if line.startswith("job001 "))
    assert " failed " in line and "No space left on device" in line and line.split()[3] == "2"
    assert len(a.received) == len(b.received) == 1


# ======================================================================================== client


def test_client_follows_progress_and_previews(stubs, tmp_path):
    stub = stubs("a")
    client = cc.ComfyClient(stub.url)
    from comfyui_sora.headless.workflow import ui_to_api
    prompt = ui_to_api(ui_workflow(), client.object_info())
    events = []
    result = client.run(prompt, events.append, timeout=10, extra_data={"preview_method": "auto"})
    kinds = [e.kind for e in events if isinstance(e, cc.Event) and e.kind != "status"]
    assert kinds[0] == "execution_start" and "execution_success" in kinds
    progress = [e.data["value"] for e in events if isinstance(e, cc.Event) and e.kind == "progress"]
    assert progress == [1, 2, 3]
    previews = [e for e in events if isinstance(e, cc.Preview)]
    assert result.previews == len(previews) == 3 and previews[0].mime == "image/png"
    assert [p.image for p in previews] == [PREVIEW + bytes([i]) for i in (1, 2, 3)]
    assert client.run(prompt, timeout=10).previews == 0                 # only when asked for
    ref = result.files()[0]
    first, second = client.download(ref, tmp_path / "dl"), client.download(ref, tmp_path / "dl")
    assert first.name == ref["filename"] and second != first          # never overwritten
    assert first.read_bytes() == second.read_bytes() == (stub.out_dir / ref["filename"]).read_bytes()


def test_decode_preview_with_metadata():
    meta = json.dumps({"image_type": "image/jpeg", "node_id": "4"}).encode()
    frame = struct.pack(">II", 4, len(meta)) + meta + b"JPEGDATA"
    preview = cc.decode_preview(frame)
    assert preview.mime == "image/jpeg" and preview.image == b"JPEGDATA" and preview.metadata["node_id"] == "4"
    assert cc.decode_preview(struct.pack(">II", 3, 0) + b"text") is None


def test_validation_error_formatting_without_node_errors():
    err = cc.ValidationFailed({"type": "invalid_prompt", "message": "Cannot execute because node X does not exist.",
                               "details": "Node ID '#5'"}, {})
    assert err.lines == ["Cannot execute because node X does not exist. (Node ID '#5')"] and not err.retryable


def test_bad_server_url_is_refused():
    with pytest.raises(ValueError, match="http://host:port"):
        cc.ComfyClient("ftp://example")


def test_validation_lines_carry_a_nodes_own_reason():
    """ComfyUI reports a node's VALIDATE_INPUTS refusal as 'Custom validation failed for node' with the
    reason in ``details``: the line shows the reason, not only the generic message."""
    from comfyui_sora.headless.comfy_client import format_validation_errors
    errors = {"1": {"class_type": "SoraModelLoader", "errors": [{
        "type": "custom_validation_failed", "message": "Custom validation failed for node",
        "details": "model_dir - no absolute paths: '/etc'", "extra_info": {"input_name": "model_dir"}}]}}
    (line,) = format_validation_errors("", errors)
    assert line.startswith("node 1 (SoraModelLoader) input 'model_dir': Custom validation failed")
    assert "no absolute paths: '/etc'" in line
