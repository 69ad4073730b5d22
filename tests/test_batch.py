"""``sora batch`` and the ComfyUI client against local stub servers (tests/comfy_stub_server.py).

The stubs speak ComfyUI's HTTP and websocket messages; a UI-format workflow is converted with the
stub's own /object_info, as against a real server.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from comfy_stub_server import PREVIEW, StubComfy  # noqa: E402

from sora_core import comfy_client as cc  # noqa: E402
from sora_core.cli import batch, main  # noqa: E402
from sora_core.workflow import WorkflowError  # noqa: E402

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
    a, b = stubs("a"), stubs("b")
    rows = write(tmp_path, "rows.csv", "job,2.steps,2.sampler\ngood,2,heun\nzero,0,euler\nbadlist,3,dpm\n")
    jobs, log = run([a, b], workflow, tmp_path, rows=rows)
    assert jobs["good"].status == "ok"
    assert jobs["zero"].status == "rejected" and jobs["badlist"].status == "rejected"
    assert jobs["zero"].tries == 1 and jobs["badlist"].tries == 1           # a rejection is not retried
    assert "node 2 (StubSampler) input 'steps': Value 0 smaller than min of 1" in jobs["zero"].message
    assert "node 2 (StubSampler) input 'sampler'" in jobs["badlist"].message and "dpm" in jobs["badlist"].message
    assert f"[zero] ({rows} line 3)" in log and f"[badlist] ({rows} line 4)" in log
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
    rows = write(tmp_path, "rows.csv", "job,2.steps\nfine,2\nbroken,0\n")
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
    ("unknown-node.csv", "2.steps,9.seed\n2,1\n", "unknown-node.csv line 2: --set '9.seed=1': no node with id"),
    ("unknown-input.jsonl", '{"2.stepz": 4}\n', "unknown-input.jsonl line 1: --set '2.stepz=4': node 2 (StubSampler) "
                                                "has no input 'stepz'"),
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


# ======================================================================================== client


def test_client_follows_progress_and_previews(stubs, tmp_path):
    stub = stubs("a")
    client = cc.ComfyClient(stub.url)
    from sora_core.workflow import ui_to_api
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
