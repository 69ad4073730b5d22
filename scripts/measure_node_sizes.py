"""Measure the size the real ComfyUI frontend gives a new node of each type the workflows use, and keep
it as data (scripts/node_sizes.json) for the layout of make_workflows.py (scripts/workflow_layout.py).

    python scripts/measure_node_sizes.py              # starts ComfyUI from ../shared/comfyui
    python scripts/measure_node_sizes.py --url URL    # a running ComfyUI with this pack

Each type is created in the page (LiteGraph.createNode, added to the graph so the pack's extensions add
their widgets) and its size read after the next frames: the larger of the size it was given and what
its widgets need (computeSize), which is what the frontend grows a loaded node to. Needs Debian's
chromium and Python playwright (tests/frontend.py).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "tests")]

import comfyui_server  # noqa: E402
import frontend  # noqa: E402
import make_workflows  # noqa: E402
import workflow_layout  # noqa: E402

MEASURE_JS = """async (types) => {
  window.app.graph.clear();
  const made = [];
  for (const type of types) {
    const node = window.LiteGraph.createNode(type);
    if (!node) continue;
    node.pos = [0, 0];
    window.app.graph.add(node);
    made.push(node);
  }
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  await new Promise((r) => setTimeout(r, 500));
  const out = {};
  for (const n of made) {
    const need = n.computeSize();
    out[n.type] = [Math.max(n.size[0], need[0]), Math.max(n.size[1], need[1])].map((v) => Math.ceil(v));
  }
  window.app.graph.clear();
  return {sizes: out, version: window.__COMFYUI_FRONTEND_VERSION__ ?? null};
}"""


def node_types() -> list[str]:
    """Every node type of the pack, the ComfyUI nodes the workflows use, and Note."""
    from comfyui_sora.headless import workflow
    pack = workflow.load_pack(ROOT)
    return sorted(set(pack.NODE_CLASS_MAPPINGS) | set(make_workflows.CORE) | {"Note"})


def measure(url: str) -> dict:
    types = node_types()
    with frontend.open_frontend(url) as page:
        result = page.page.evaluate(MEASURE_JS, types)
    missing = sorted(set(types) - set(result["sizes"]))
    if missing:
        raise SystemExit(f"the frontend does not know these node types: {missing}")
    return {"frontend": f"comfyui-frontend-package {result['version']}",
            "measured_by": "scripts/measure_node_sizes.py",
            "sizes": dict(sorted(result["sizes"].items()))}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running ComfyUI with this pack (default: start one)")
    args = parser.parse_args(argv)
    server = None if args.url else comfyui_server.start()
    try:
        data = measure(args.url or server.url)
    finally:
        if server is not None:
            server.stop()
    workflow_layout.SIZES_FILE.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {workflow_layout.SIZES_FILE.relative_to(ROOT)}: {len(data['sizes'])} node types "
          f"({data['frontend']})")


if __name__ == "__main__":
    main()
