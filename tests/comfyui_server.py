"""A real ComfyUI server for the tests: a temporary copy of a ComfyUI source tree with this pack linked
into its custom_nodes/, started with ``--cpu`` on a free loopback port.

Where it comes from, in order:

- ``SORA_COMFYUI_URL``: a server that is already running (docs/comfyui_host.md); used as it is.
- ``SORA_COMFYUI_SRC`` (default ``../shared/comfyui`` beside this checkout, the ComfyUI 0.8.0 tree CI
  provides) and ``SORA_COMFYUI_PYTHON`` (default ``~/.cache/comfyui-sora/comfyui-venv/bin/python``, the
  virtual environment ``scripts/comfyui_host.sh ci-venv`` creates with ComfyUI's requirements): the
  tree is copied (it is read-only and ComfyUI writes into its own folders), started, and stopped at
  the end of the session.

Without either, the tests that need the server are skipped with the reason; ``SORA_REQUIRE_COMFYUI=1``
(set by ``.ci/run``) turns that skip into a failure, so CI never passes by skipping them.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SRC = ROOT.parent / "shared" / "comfyui"
DEFAULT_PYTHON = Path.home() / ".cache" / "comfyui-sora" / "comfyui-venv" / "bin" / "python"
PACK_LINK = "comfyui-sora"
TEST_NODES = (ROOT / "tests" / "comfy_test_nodes",)   # test-only custom nodes, linked beside the pack
START_TIMEOUT = 240.0


class ComfyUIUnavailable(RuntimeError):
    """No server could be found or started; the message says what is missing."""


@dataclass
class ComfyServer:
    """A running ComfyUI: its URL, and for a server started here its folder (models/, input/,
    output/ can be written to) and log."""
    url: str
    root: Path | None = None
    log: Path | None = None
    process: subprocess.Popen | None = None
    owned_dir: Path | None = None      # the temporary folder start() made, removed by stop()

    def models_dir(self, kind: str) -> Path:
        """``models/KIND`` of a server started here (created if missing)."""
        if self.root is None:
            raise ComfyUIUnavailable("the server at SORA_COMFYUI_URL was not started here: its model "
                                     "folders are not known")
        folder = self.root / "models" / kind
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def log_tail(self, lines: int = 60) -> str:
        if self.log is None or not self.log.is_file():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self.owned_dir is not None:
            shutil.rmtree(self.owned_dir, ignore_errors=True)
            self.owned_dir = None


def alive(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/system_stats", timeout=timeout) as r:
            return r.status == 200
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _source_and_python() -> tuple[Path, Path]:
    src = Path(os.environ.get("SORA_COMFYUI_SRC", "") or DEFAULT_SRC)
    python = Path(os.environ.get("SORA_COMFYUI_PYTHON", "") or DEFAULT_PYTHON)
    if not (src / "main.py").is_file():
        raise ComfyUIUnavailable(f"no ComfyUI source tree at {src} (set SORA_COMFYUI_SRC, or SORA_COMFYUI_URL "
                                 f"to a running server; docs/comfyui_host.md)")
    if not python.is_file():
        raise ComfyUIUnavailable(f"no Python with ComfyUI's requirements at {python}: run "
                                 f"'scripts/comfyui_host.sh ci-venv' or set SORA_COMFYUI_PYTHON")
    return src, python


def _import_failure(log: str) -> str | None:
    """ComfyUI's own report of this pack failing to import, if the log has one."""
    lines = log.splitlines()
    for i, line in enumerate(lines):
        if PACK_LINK in line and ("Cannot import" in line or "IMPORT FAILED" in line):
            return "\n".join(lines[max(0, i - 30):i + 1])
    return None


def start(base: Path | None = None, extra_nodes: tuple[Path, ...] = TEST_NODES) -> ComfyServer:
    """Copy the source tree under ``base`` (a new temporary folder by default), link the pack and the
    ``extra_nodes`` folders (custom nodes only the tests use), start the server and wait until it
    answers; raise ComfyUIUnavailable with the log on failure."""
    src, python = _source_and_python()
    owned = base is None
    base = Path(tempfile.mkdtemp(prefix="sora-comfyui-")) if base is None else base
    root = base / "ComfyUI"
    shutil.copytree(src, root, ignore=shutil.ignore_patterns(".git", "__pycache__"))
    for sub in ("", "custom_nodes", "models", "input", "output", "temp", "user"):
        (root / sub).mkdir(exist_ok=True)
        (root / sub).chmod(0o755)
    for path in root.rglob("*"):                 # the source may be read-only; the copy must not be
        if path.is_dir() and not os.access(path, os.W_OK):
            path.chmod(0o755)
    (root / "custom_nodes" / PACK_LINK).symlink_to(ROOT, target_is_directory=True)
    for folder in extra_nodes:
        (root / "custom_nodes" / f"sora-test-{folder.name}").symlink_to(folder, target_is_directory=True)
    port = free_port()
    log = base / "server.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    with open(log, "wb") as out:
        process = subprocess.Popen([str(python), "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
                                    "--disable-auto-launch"], cwd=root, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, env=env)
    server = ComfyServer(f"http://127.0.0.1:{port}", root, log, process)
    failure = None
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline and failure is None:
        if process.poll() is not None:
            failure = f"ComfyUI exited during start-up (code {process.returncode}):\n{server.log_tail()}"
        elif alive(server.url, timeout=2):
            broken = _import_failure(log.read_text(errors="replace"))
            if not broken:
                server.owned_dir = base if owned else None
                return server
            failure = f"ComfyUI could not import the pack:\n{broken}"
        else:
            time.sleep(1.0)
    failure = failure or f"ComfyUI did not answer within {START_TIMEOUT:.0f} s:\n{server.log_tail()}"
    server.stop()
    if owned:
        shutil.rmtree(base, ignore_errors=True)
    raise ComfyUIUnavailable(failure)


def find_or_start() -> ComfyServer:
    """The server of SORA_COMFYUI_URL when it answers, else one started from the source tree."""
    url = os.environ.get("SORA_COMFYUI_URL", "").strip()
    if url:
        if not alive(url):
            raise ComfyUIUnavailable(f"no ComfyUI answers at SORA_COMFYUI_URL={url}")
        return ComfyServer(url)
    return start()


if __name__ == "__main__":                         # start one by hand: python tests/comfyui_server.py
    srv = start()
    print(f"ComfyUI at {srv.url} (folder {srv.root}, log {srv.log}); Ctrl-C stops it", flush=True)
    try:
        srv.process.wait()
    except KeyboardInterrupt:
        srv.stop()
        sys.exit(0)
