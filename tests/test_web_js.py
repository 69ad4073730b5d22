"""The web extension's pure JavaScript (web/lib/*.js: readout formatting, timeline layout, preview URLs
and scrubbing) tested with node's built-in runner (tests/js/*.test.mjs), so the Python suite and CI run
them; skipped where node is not installed. Also: the extension's files exist and are what ComfyUI serves
(WEB_DIRECTORY)."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"


def test_web_directory_is_registered_and_the_extensions_import_comfyui_by_the_frontend_paths():
    from comfyui_sora.headless import workflow
    pack = workflow.load_pack()
    assert pack.WEB_DIRECTORY == "./web" and (ROOT / pack.WEB_DIRECTORY).is_dir()
    for name in ("sora_readout.js", "sora_timeline.js", "sora_preview.js"):
        source = (WEB / name).read_text()
        assert 'from "../../scripts/app.js"' in source, name
        assert "app.registerExtension(" in source, name
    for lib in WEB.glob("lib/*.js"):
        imports = re.findall(r'from\s+"([^"]+)"', lib.read_text())
        assert all(i.startswith("./") for i in imports), f"{lib.name} must stay free of DOM / ComfyUI imports: {imports}"


def test_pyproject_ships_the_web_files():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"web/*.js"' in text and '"web/**/*.js"' in text


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed (the JS tests need node >= 18)")
def test_node_test_runner_passes_the_js_tests():
    files = sorted(str(p) for p in (ROOT / "tests" / "js").glob("*.test.mjs"))
    assert files, "no tests/js/*.test.mjs"
    run = subprocess.run(["node", "--test", *files], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert re.search(r"^# fail 0$", run.stdout, re.M) and not re.search(r"^# pass 0$", run.stdout, re.M)
