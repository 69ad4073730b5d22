"""Screenshots of the web extension in the real ComfyUI frontend, for docs/web_extension.md and README:
every workflow in workflows/ as the frontend draws it, and close-ups of the readout (Sora Empty
Latent), the frame-condition timeline (Sora Sampler and the condition nodes) and the video preview
(Sora Load Video, and Sora Save Video after a short run of the default model).

    python scripts/web_screenshots.py              # starts ComfyUI from ../shared/comfyui
    python scripts/web_screenshots.py --url URL    # a running ComfyUI with this pack
    python scripts/web_screenshots.py --only widgets

Writes docs/images/web/*.png (replaced: they are generated), palette PNGs to keep them small. Needs
Debian's chromium and Python playwright (tests/frontend.py).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import comfyui_server  # noqa: E402
import frontend  # noqa: E402

OUT = ROOT / "docs" / "images" / "web"
WORKFLOWS = ROOT / "workflows"
MAX_WIDTH = 1400              # px of a workflow picture
CLOSE_UP_SCALE = 1.5          # canvas zoom of the close-ups


def save_png(data: bytes, path: Path, max_width: int | None = None) -> None:
    """Write a screenshot as a 256-colour PNG, scaled down to ``max_width``."""
    from PIL import Image
    image = Image.open(io.BytesIO(data)).convert("RGB")
    if max_width and image.width > max_width:
        image = image.resize((max_width, round(image.height * max_width / image.width)), Image.LANCZOS)
    image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def shoot_workflow(front: frontend.Frontend, path: Path) -> None:
    """The whole graph in view, the page's size set to the graph's aspect."""
    workflow = json.loads(path.read_text())
    front.load(workflow)
    nodes, groups = front.nodes(), front.groups()
    boxes = [frontend.node_box(n) for n in nodes] + [g["bounding"] for g in groups]
    width = max(b[0] + b[2] for b in boxes) - min(b[0] for b in boxes) + 60
    height = max(b[1] + b[3] for b in boxes) - min(b[1] for b in boxes) + 60
    page_w = 1800
    front.page.set_viewport_size({"width": page_w, "height": max(400, round(page_w * height / width))})
    front.page.wait_for_timeout(600)                   # the canvas takes the new size on its resize event
    front.fit(margin=30)
    front.page.wait_for_timeout(1500)                  # previews load, readouts answer
    save_png(front.page.screenshot(), OUT / f"workflow_{path.stem}.png", MAX_WIDTH)


def close_up(front: frontend.Frontend, node_ids: list[int], name: str, margin: int = 12) -> None:
    """The nodes ``node_ids`` (in view, zoomed) clipped from the page."""
    front.page.evaluate("""([ids, scale]) => {
      const c = window.app.canvas, nodes = ids.map((i) => window.app.graph.getNodeById(i));
      const t = window.LiteGraph.NODE_TITLE_HEIGHT;
      const x0 = Math.min(...nodes.map((n) => n.pos[0])), y0 = Math.min(...nodes.map((n) => n.pos[1] - t));
      c.ds.scale = scale; c.ds.offset[0] = -x0 + 40 / scale; c.ds.offset[1] = -y0 + 40 / scale;
      c.setDirty(true, true);
    }""", [node_ids, CLOSE_UP_SCALE])
    front.page.wait_for_timeout(1200)
    boxes = [front.screen_box(i) for i in node_ids]
    x0, y0 = min(b["x"] for b in boxes) - margin, min(b["y"] for b in boxes) - margin
    x1 = max(b["x"] + b["width"] for b in boxes) + margin
    y1 = max(b["y"] + b["height"] for b in boxes) + margin
    clip = {"x": max(0, x0), "y": max(0, y0), "width": x1 - max(0, x0), "height": y1 - max(0, y0)}
    save_png(front.page.screenshot(clip=clip), OUT / f"{name}.png")


def ids_of(front: frontend.Frontend, *types: str) -> list[int]:
    return [n["id"] for n in front.nodes() if n["type"] in types]


def shoot_widgets(front: frontend.Frontend) -> None:
    """Close-ups: readout (valid, then an invalid width and frame count), timeline, previews."""
    front.page.set_viewport_size({"width": 1800, "height": 1200})
    front.load(json.loads((WORKFLOWS / "text_to_video.json").read_text()))
    latent = ids_of(front, "SoraEmptyLatent")
    close_up(front, latent, "readout")
    front.page.evaluate("""(id) => { const n = window.app.graph.getNodeById(id);
      for (const [name, v] of [["width", 100], ["frames", 18]]) {
        const w = n.widgets.find((w) => w.name === name); w.value = v; w.callback?.(v);
      } }""", latent[0])
    front.page.wait_for_function("""(id) => window.app.graph.getNodeById(id).soraReadoutElement
      .textContent.includes("nearest")""", arg=latent[0], timeout=30_000)
    close_up(front, latent, "readout_invalid")
    front.load(json.loads((WORKFLOWS / "connect_videos.json").read_text()))
    close_up(front, ids_of(front, "SoraConnectClips", "SoraSampler"), "timeline")
    front.load(json.loads((WORKFLOWS / "blend_transition.json").read_text()))
    close_up(front, ids_of(front, "SoraClipBlend"), "timeline_blend")
    front.load(json.loads((WORKFLOWS / "extend_forward.json").read_text()))
    close_up(front, ids_of(front, "SoraLoadVideo"), "preview_load_video")
    front.load(json.loads((WORKFLOWS / "text_to_video.json").read_text()))
    save = ids_of(front, "SoraSaveVideo")
    run_small(front, seed=1)
    front.page.wait_for_function("""(id) => { const p = window.app.graph.getNodeById(id).soraPlayer;
      return p.plan && p.video.readyState >= 2; }""", arg=save[0], timeout=600_000)
    close_up(front, save, "preview_save_video")


def run_small(front: frontend.Frontend, seed: int) -> None:
    """Queue the loaded graph with 4 sampler steps and 9 frames (the default model on the CPU)."""
    front.page.evaluate("""async (seed) => {
      for (const n of window.app.graph._nodes) {
        for (const w of n.widgets ?? []) {
          const v = {steps: 4, frames: 9, seed}[w.name];
          if (v !== undefined && (w.name !== "frames" || n.type === "SoraEmptyLatent")) { w.value = v; w.callback?.(v); }
        }
      }
      await window.app.queuePrompt(0, 1);
    }""", seed)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running ComfyUI with this pack (default: start one)")
    parser.add_argument("--only", choices=["workflows", "widgets"], help="one kind of picture only")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    server = None if args.url else comfyui_server.start()
    try:
        with frontend.open_frontend(args.url or server.url) as front:
            front.clean()
            if args.only != "widgets":
                for path in sorted(WORKFLOWS.glob("*.json")):
                    shoot_workflow(front, path)
            if args.only != "workflows":
                shoot_widgets(front)
            if front.errors:
                raise SystemExit("the page reported errors:\n" + "\n".join(front.errors))
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
