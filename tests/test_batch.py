"""``sora batch`` and the ComfyUI client against local stub servers (tests/comfy_stub_server.py): jobs
spread over servers, retries, timeouts, Ctrl-C, unexpected errors, the client's progress and
previews. The rows files and typed values of a batch are in test_batch_rows.py.

The stubs speak ComfyUI's HTTP and websocket messages; a UI-format workflow is converted with the
stub's own /object_info, as against a real server.
"""

from __future__ import annotations

import errno
import io
import json
import struct
from pathlib import Path

import pytest
from batch_helpers import free_url, run, saved, stub_servers, stubs, ui_workflow, workflow, write  # noqa: F401 (fixtures)
from comfy_stub_server import PREVIEW

from comfyui_sora.headless import batch
from comfyui_sora.headless import comfy_client as cc
from comfyui_sora.headless.cli import main

pytestmark = pytest.mark.timeout(60)


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
