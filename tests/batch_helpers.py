"""Helpers of the ``sora batch`` tests (test_batch.py, test_batch_rows.py): a UI-format workflow for
the stub servers of tests/comfy_stub_server.py, the servers' factory behind the ``stubs`` fixture, and a
``run`` that prepares and runs a batch against them."""

from __future__ import annotations

import io
import json
import socket
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from comfy_stub_server import StubComfy  # noqa: E402

from comfyui_sora.headless import batch  # noqa: E402


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


def write_workflow(tmp_path: Path) -> Path:
    """``ui_workflow()`` saved as tmp_path/workflow.json (the ``workflow`` fixture)."""
    path = tmp_path / "workflow.json"
    path.write_text(json.dumps(ui_workflow()))
    return path


def stub_servers(tmp_path):
    """Generator behind the ``stubs`` fixture: yields a factory of started stub servers and stops them
    all when resumed."""
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


# the fixtures both batch test files use (imported there by name)
@pytest.fixture
def workflow(tmp_path) -> Path:
    return write_workflow(tmp_path)


@pytest.fixture
def stubs(tmp_path):
    """A factory of started stub servers, all stopped at the end."""
    yield from stub_servers(tmp_path)
