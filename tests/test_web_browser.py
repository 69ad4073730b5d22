"""The web extension in the real frontend: headless Chromium (Debian's chromium, driven by Python playwright
with that executable, tests/frontend.py) on the real ComfyUI of the ``comfyui_server`` fixture.

Every workflow in workflows/ opens through app.loadGraphData with every node type known and no two nodes
overlapping, each node inside its stage's group only, at the sizes it was saved with (the frontend did not
have to grow any: scripts/node_sizes.json is current); new nodes fit their widgets; Sora Empty Latent's
readout follows width / frames (nearest valid values shown) and the sampler's timeline follows the
latent's length; after a short run of the default model the preview plays on Sora Save Video, alone
(not beside the frontend's own); Load Video plays its choice and uploads a file.

Skipped without chromium or without a ComfyUI (the fixture's rules: SORA_REQUIRE_COMFYUI=1 fails instead);
with chromium present under SORA_REQUIRE_COMFYUI=1 a missing playwright fails too.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import pytest

from frontend import boxes_overlap, chromium_path, node_box, open_frontend, overlapping, playwright_available

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((ROOT / "workflows").glob("*.json"))
SIZES = json.loads((ROOT / "scripts" / "node_sizes.json").read_text())["sizes"]
RUN_TIMEOUT_MS = 900_000

if chromium_path() is None:
    pytest.skip("chromium is not installed (apt-get install chromium)", allow_module_level=True)
if not playwright_available():
    if os.environ.get("SORA_REQUIRE_COMFYUI", "") == "1":
        raise RuntimeError("SORA_REQUIRE_COMFYUI=1 and chromium is installed, but Python playwright is not "
                           "(pip install -e '.[test]')")
    pytest.skip("Python playwright is not installed (pip install -e '.[test]')", allow_module_level=True)


@pytest.fixture(scope="module")
def front(comfyui_server):
    with open_frontend(comfyui_server.url) as page:
        yield page
        assert not page.errors, "the page reported errors:\n" + "\n".join(page.errors)


def load(front, name: str) -> list[dict]:
    return front.load(json.loads((ROOT / "workflows" / f"{name}.json").read_text()))


def node_of(nodes: list[dict], kind: str) -> int:
    return next(n["id"] for n in nodes if n["type"] == kind)


def set_widgets(front, node_id: int, **values) -> None:
    """Change widgets as the canvas does: the value, then the widget's callback."""
    front.page.evaluate("""([id, values]) => { const n = window.app.graph.getNodeById(id);
      for (const [name, v] of Object.entries(values)) {
        const w = n.widgets.find((w) => w.name === name); w.value = v; w.callback?.(v, window.app.canvas, n);
      } }""", [node_id, values])


def readout_after(front, node_id: int, needle: str) -> str:
    """The readout's text once it contains ``needle`` (the route answers after a short debounce)."""
    front.page.wait_for_function("""([id, needle]) => (window.app.graph.getNodeById(id).soraReadoutElement
      ?.textContent ?? "").includes(needle)""", arg=[node_id, needle], timeout=30_000)
    return front.page.evaluate("(id) => window.app.graph.getNodeById(id).soraReadoutElement.textContent", node_id)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_opens_with_known_nodes_apart_in_their_groups(front, path):
    saved = {n["id"]: n for n in json.loads(path.read_text())["nodes"]}
    nodes = front.load(json.loads(path.read_text()))
    assert [n["type"] for n in nodes if not n["registered"]] == [], "missing node types"
    assert overlapping(nodes) == []
    for n in nodes:
        assert n["size"] == pytest.approx(saved[n["id"]]["size"], abs=1), (
            f"the frontend resized node {n['id']} {n['type']}: rerun scripts/measure_node_sizes.py and "
            f"scripts/make_workflows.py")
    groups = front.groups()
    assert {g["title"] for g in groups} >= {"Model", "Sampling"}
    for n in nodes:
        box = node_box(n)
        inside = [g["title"] for g in groups if _contains(g["bounding"], box)]
        cut = [g["title"] for g in groups if boxes_overlap(g["bounding"], box) and g["title"] not in inside]
        assert len(inside) == (n["type"] != "Note") and not cut, (n["id"], n["type"], inside, cut)


def _contains(outer: list[float], inner: list[float]) -> bool:
    return (outer[0] <= inner[0] and outer[1] <= inner[1] and inner[0] + inner[2] <= outer[0] + outer[2]
            and inner[1] + inner[3] <= outer[1] + outer[3])


def test_new_nodes_fit_their_widgets(front):
    """A node added from the library is at least as large as its widgets need (the extension's DOM
    widgets are added after the frontend sized the node: they grow it)."""
    sizes = front.page.evaluate("""() => { window.app.graph.clear();
      return ["SoraEmptyLatent", "SoraSampler", "SoraExtendForward", "SoraLoadVideo", "SoraSaveVideo"].map((t) => {
        const n = window.LiteGraph.createNode(t); window.app.graph.add(n);
        return [t, [...n.size], [...n.computeSize()]]; }); }""")
    for kind, size, need in sizes:
        assert size[0] >= need[0] and size[1] >= need[1], (kind, size, need)


def test_readout_follows_width_and_frames_and_the_timeline_follows_the_latent(front, comfyui_server):
    nodes = load(front, "text_to_video")
    latent, sampler = node_of(nodes, "SoraEmptyLatent"), node_of(nodes, "SoraSampler")
    first = readout_after(front, latent, "tokens")
    assert "17 frames × 64×64 px" in first and "⚠" not in first
    set_widgets(front, latent, width=128)
    text = readout_after(front, latent, "× 128×64 px")
    assert text != first and "latent 1×8×5×16×32" in text
    set_widgets(front, latent, width=100, frames=18)             # the frontend rounds width to its step (8)
    text = readout_after(front, latent, "nearest")
    width = front.page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
      .find((w) => w.name === "width").value""", latent)
    assert text.startswith("⚠ frames 18 is not valid (1 or 1 + 4k): nearest 17\n")
    assert f"17 frames × {width}×64 px" in text and "⚠ width" not in text
    set_widgets(front, latent, width=64, frames=33)
    text = readout_after(front, latent, "33 frames")
    assert "⚠" not in text and "latent 1×8×9×16×16" in text
    front.page.wait_for_function("""(id) => (window.app.canvas.setDirty(true, true),
      (window.app.graph.getNodeById(id).soraTimelineKey ?? "").includes(",9,"))""", arg=sampler, timeout=10_000)


def run_small(front, seed: int) -> None:
    """Queue the loaded graph at 9 frames, 2 sampler steps (the default model on the CPU)."""
    front.page.evaluate("""async (seed) => {
      for (const n of window.app.graph._nodes) for (const w of n.widgets ?? []) {
        const v = {steps: 2, seed}[w.name] ?? (n.type === "SoraEmptyLatent" && w.name === "frames" && w.value > 1 ? 9 : undefined);
        if (v !== undefined) { w.value = v; w.callback?.(v); }
      }
      await window.app.queuePrompt(0, 1);
    }""", seed)


def player_state(front, node_id: int) -> dict:
    return front.page.evaluate("""(id) => { const n = window.app.graph.getNodeById(id), p = n.soraPlayer;
      const videos = n.widgets.flatMap((w) => w.element ? [...w.element.querySelectorAll("video")] : []);
      return {plan: p.plan, ready: p.video.readyState, paused: p.video.paused, time: p.video.currentTime,
              error: p.video.error?.message ?? null, status: p.status.textContent,
              image: p.image.naturalWidth, videos: videos.length,
              frontendPreview: Boolean(n.videoContainer) || Boolean(n.imgs?.length)}; }""", node_id)


def test_preview_plays_on_save_video_after_a_run(front):
    nodes = load(front, "text_to_video")
    save = node_of(nodes, "SoraSaveVideo")
    run_small(front, seed=random.randrange(1 << 30))
    front.page.wait_for_function("""(id) => { const p = window.app.graph.getNodeById(id).soraPlayer;
      return p.plan && p.video.readyState >= 2 && p.video.currentTime > 0; }""", arg=save, timeout=RUN_TIMEOUT_MS)
    state = player_state(front, save)
    assert state["plan"]["kind"] == "video" and state["plan"]["paths"][0].startswith("/view?filename=")
    assert state["error"] is None and not state["paused"]
    assert state["status"].endswith("/ 9 · 8 fps"), state["status"]
    front.page.wait_for_timeout(300)                                 # the frontend's own preview would be here
    state = player_state(front, save)
    assert state["videos"] == 1 and not state["frontendPreview"], state


def test_single_frame_output_shows_as_an_image(front):
    nodes = load(front, "text_to_image")
    save = node_of(nodes, "SoraSaveVideo")
    run_small(front, seed=random.randrange(1 << 30))
    front.page.wait_for_function("""(id) => { const p = window.app.graph.getNodeById(id).soraPlayer;
      return p.plan && p.image.naturalWidth > 0; }""", arg=save, timeout=RUN_TIMEOUT_MS)
    state = player_state(front, save)
    assert state["plan"]["kind"] == "frames" and state["status"].startswith("frame 1 / 1")
    assert not state["frontendPreview"], state


def test_load_video_plays_its_choice_and_uploads_a_file(front, tmp_path):
    nodes = load(front, "extend_forward")
    loader = node_of(nodes, "SoraLoadVideo")
    front.page.wait_for_function("""(id) => window.app.graph.getNodeById(id).soraPlayer.video.readyState >= 2""",
                                 arg=loader, timeout=30_000)
    assert player_state(front, loader)["plan"]["paths"][0].startswith("/sora/sample?name=sora-samples")
    upload = tmp_path / f"upload_{random.randrange(1 << 30)}.mp4"
    shutil.copy(ROOT / "workflows" / "media" / "red_ball_right.mp4", upload)
    with front.page.expect_file_chooser() as chooser:
        front.page.evaluate("""(id) => window.app.graph.getNodeById(id).widgets
          .find((w) => w.name === "choose video to upload").callback()""", loader)
    chooser.value.set_files(str(upload))
    front.page.wait_for_function("""([id, name]) => { const n = window.app.graph.getNodeById(id);
      return n.widgets.find((w) => w.name === "video").value === name && n.soraPlayer.video.readyState >= 2; }""",
                                 arg=[loader, upload.name], timeout=30_000)
    assert player_state(front, loader)["plan"]["paths"][0].endswith("type=input")
