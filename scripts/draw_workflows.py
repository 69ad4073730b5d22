"""Draw a picture of each workflow graph in workflows/ (for the README) with opencv.

    python scripts/draw_workflows.py            # writes docs/workflows/<name>.png

Nodes are drawn at their saved positions with their title and widget values; links are coloured by
type, as in ComfyUI's canvas. Existing pictures are replaced (they are generated files).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "workflows"
SCALE = 0.6                                    # canvas units -> pixels
TITLE_H, ROW_H = int(30 * SCALE), 26 * SCALE
BG, NODE, TITLE, TEXT, NOTE = (32, 32, 32), (53, 53, 53), (70, 70, 70), (225, 225, 225), (40, 60, 90)
LINK = {"SORA_MODEL": (120, 200, 255), "SORA_CONDITIONING": (160, 230, 160), "LATENT": (255, 160, 200),
        "IMAGE": (160, 220, 100), "SORA_FRAME_CONDITIONS": (90, 190, 250), "INT": (200, 200, 120),
        "FLOAT": (200, 170, 120), "STRING": (170, 170, 240)}


def _label(value) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def _box(node: dict, x0: float, y0: float) -> tuple[int, int, int, int]:
    (x, y), (w, h) = node["pos"], node["size"]
    return int((x - x0) * SCALE) + 20, int((y - y0) * SCALE) + 20, int(w * SCALE), int(h * SCALE)


def _title(node: dict, names: dict) -> str:
    return node.get("title") or names.get(node["type"], node["type"])


def _draw_node(img, node: dict, box, names: dict) -> None:
    x, y, w, h = box
    fill = NOTE if node["type"] == "Note" else NODE
    cv2.rectangle(img, (x, y), (x + w, y + h), fill, -1)
    cv2.rectangle(img, (x, y), (x + w, y + TITLE_H), TITLE, -1)
    cv2.putText(img, _title(node, names), (x + 8, y + 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, TEXT, 1, cv2.LINE_AA)
    inputs, outputs = node.get("inputs") or [], node.get("outputs") or []
    values = [_label(v) for v in node.get("widgets_values") or []]
    if node["type"] == "Note":
        text = str((node.get("widgets_values") or [""])[0])
        values = [text[i:i + 40] for i in range(0, len(text), 40)]
    slots = max(len(inputs), len(outputs))
    rows = [(i["name"], 10) for i in inputs] + [("", 0)] * (slots - len(inputs)) + [(v, 14) for v in values]
    for k, (row, indent) in enumerate(rows):
        cv2.putText(img, row, (x + indent, y + TITLE_H + int(13 + k * ROW_H)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.38, (190, 190, 190), 1, cv2.LINE_AA)
    for k, out in enumerate(outputs):
        cv2.putText(img, out["name"], (x + w - 8 - 7 * len(out["name"]), y + TITLE_H + int(13 + k * ROW_H)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.38, TEXT, 1, cv2.LINE_AA)


def _curve(img, a, b, colour) -> None:
    (x1, y1), (x2, y2) = a, b
    d = max(40, abs(x2 - x1) // 2)
    t = np.linspace(0, 1, 40)[:, None]
    p0, p1, p2, p3 = np.array([x1, y1]), np.array([x1 + d, y1]), np.array([x2 - d, y2]), np.array([x2, y2])
    pts = (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t ** 2 * p2 + t ** 3 * p3
    cv2.polylines(img, [pts.astype(np.int32)], False, colour, 2, cv2.LINE_AA)


def draw(workflow: dict, names: dict | None = None) -> np.ndarray:
    """RGB picture (H, W, 3) uint8 of a UI-format workflow; ``names``: node type -> display name."""
    nodes = {n["id"]: n for n in workflow["nodes"]}
    x0 = min(n["pos"][0] for n in nodes.values())
    y0 = min(n["pos"][1] for n in nodes.values())
    boxes = {k: _box(n, x0, y0) for k, n in nodes.items()}
    width = max(x + w for x, _, w, _ in boxes.values()) + 20
    height = max(y + h for _, y, _, h in boxes.values()) + 20
    img = np.full((height, width, 3), BG, np.uint8)
    for link in workflow["links"]:
        _, src, slot, dst, dslot, kind = link[:6]
        sx, sy, sw, _ = boxes[src]
        dx, dy, _, _ = boxes[dst]
        _curve(img, (sx + sw, sy + TITLE_H + int(9 + slot * ROW_H)), (dx, dy + TITLE_H + int(9 + dslot * ROW_H)),
               LINK.get(kind, (200, 200, 200)))
    for k, n in nodes.items():
        _draw_node(img, n, boxes[k], names or {})
    return img


def main() -> None:
    try:
        import sora_core  # noqa: F401
    except ImportError:                   # not installed: use the checkout this script lives in
        sys.path.insert(0, str(ROOT))
    from comfyui_sora.headless import workflow
    names = workflow.load_pack(ROOT).NODE_DISPLAY_NAME_MAPPINGS
    OUT.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "workflows").glob("*.json")):
        img = draw(json.loads(path.read_text()), names)
        target = OUT / f"{path.stem}.png"
        if not cv2.imwrite(str(target), img[:, :, ::-1]):
            sys.exit(f"could not write {target}")
        print(f"wrote {target.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
