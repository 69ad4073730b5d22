"""Where make_workflows.py puts each node: sizes from the real frontend, groups by stage, a note on top.

Every node gets the size the ComfyUI frontend gives its type (scripts/node_sizes.json, measured in
headless Chromium by scripts/measure_node_sizes.py; a type not measured yet is estimated from its
inputs and reported). The nodes of a graph are sorted into stages, left to right:

    model -> prompt -> latent and frame conditions -> sampling -> decode and save

each stage one group (a titled rectangle on the canvas) holding only its own nodes. Inside a group the
nodes keep the order of the graph's ``(column, row)`` hints, stacked in columns no taller than
MAX_COLUMN. The workflow's note sits above the groups, as wide as they are. Nothing here knows a
particular workflow: any graph of make_workflows' form is laid out the same way.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

SIZES_FILE = Path(__file__).resolve().with_name("node_sizes.json")

# (key, group title, group colour: LiteGraph's palette, as the frontend's group colour menu offers)
STAGES = (("model", "Model", "#3f789e"), ("text", "Prompt", "#8A8"),
          ("latent", "Latent and frame conditions", "#b58b2a"), ("sampling", "Sampling", "#8AA"),
          ("output", "Decode and save", "#88A"))
STAGE_OF_TYPE = {
    "SoraModelLoader": "model", "UNETLoader": "model", "VAELoader": "model", "CLIPLoader": "model",
    "SoraPromptExpand": "text", "SoraTextEncode": "text", "CLIPTextEncode": "text",
    "SoraEmptyLatent": "latent", "EmptyHunyuanLatentVideo": "latent", "SoraLoadVideo": "latent",
    "SoraResizeClip": "latent", "SoraVAEEncode": "latent",
    "SoraSampler": "sampling", "KSampler": "sampling",
    "SoraVAEDecode": "output", "VAEDecode": "output", "SoraMatchColors": "output",
}
STAGE_OF_CATEGORY = {"Sora/model": "model", "Sora/text": "text", "Sora/latent": "latent",
                     "Sora/conditions": "latent", "Sora/native latents": "latent", "Sora/sampling": "sampling",
                     "Sora/clips": "output", "Sora/video": "output"}

TITLE = 30              # LiteGraph.NODE_TITLE_HEIGHT: a node's title bar is drawn above its pos
MIN_WIDTH = 300         # narrower measured nodes are widened to this (combo values stay readable)
GAP = 30                # between nodes of a column (below the next node's title bar)
COLUMN_GAP = 40         # between columns of a group
GROUP_GAP = 60          # between groups
PAD = 20                # inside a group, around its nodes
GROUP_TITLE = 50        # a group's title band (font 24) above its first node's title bar
MAX_COLUMN = 1100       # a stage's nodes start a new column past this height
NOTE_WIDTH = (600, 1000)                 # a note spans the groups, within these widths
NOTE_CHAR_PX, NOTE_LINE_PX = 7.2, 17     # the Note's text area (measured font), for its height
ORIGIN = (0.0, 0.0)


def measured_sizes(path: Path = SIZES_FILE) -> dict[str, list[float]]:
    """{node type: [width, height]} as the frontend sizes a new node of that type."""
    return json.loads(path.read_text(encoding="utf-8"))["sizes"]


def stage_of(kind: str, info: dict) -> str:
    """The stage key of a node type: the table, else its category, else "sampling" (a node that makes
    frames from a model and a prompt), or "output" for an output node of another category."""
    if kind in STAGE_OF_TYPE:
        return STAGE_OF_TYPE[kind]
    node_info = info.get(kind, {})
    if node_info.get("category") in STAGE_OF_CATEGORY:
        return STAGE_OF_CATEGORY[node_info["category"]]
    return "output" if node_info.get("output_node") else "sampling"


def estimated_size(node: dict) -> list[float]:
    """A size for a type missing from node_sizes.json: LiteGraph's rows (20 px a slot, 24 a widget)."""
    slots = max(len(node.get("inputs") or []), len(node.get("outputs") or []))
    return [MIN_WIDTH, 26 + 20 * slots + 24 * len(node.get("widgets_values") or [])]


def node_size(node: dict, sizes: dict, missing: set) -> list[float]:
    size = sizes.get(node["type"])
    if size is None:
        missing.add(node["type"])
        size = estimated_size(node)
    return [max(MIN_WIDTH, math.ceil(size[0])), math.ceil(size[1])]


def columns(ids: list[int], hints: dict, heights: dict) -> list[list[int]]:
    """The stage's nodes (in hint order) in columns: whole hint columns are kept together and a
    column is closed when the next hint column would make it taller than MAX_COLUMN."""
    by_hint: dict[int, list[int]] = {}
    for nid in ids:
        by_hint.setdefault(hints[nid][0], []).append(nid)
    out: list[list[int]] = []
    height = 0.0
    for _, group in sorted(by_hint.items()):
        extra = sum(heights[n] + TITLE + GAP for n in group)
        if out and height + extra <= MAX_COLUMN:
            out[-1].extend(group)
            height += extra
        else:
            out.append(list(group))
            height = extra
    return out


def place_stage(ids: list[int], hints: dict, nodes: dict, sizes: dict, x: float, top: float) -> float:
    """Place one stage's nodes in columns from ``x``; return the right edge of the last column."""
    heights = {n: sizes[n][1] for n in ids}
    right = x
    for column in columns(ids, hints, heights):
        width = max(sizes[n][0] for n in column)
        y = top + GROUP_TITLE + TITLE
        for nid in column:
            nodes[nid]["pos"] = [right, y]
            nodes[nid]["size"] = [width, sizes[nid][1]]
            y += sizes[nid][1] + TITLE + GAP
        right += width + COLUMN_GAP
    return right - COLUMN_GAP


def note_height(text: str, width: float, floor: float) -> float:
    per_line = max(1, int((width - 24) / NOTE_CHAR_PX))
    lines = sum(max(1, math.ceil(len(part) / per_line)) for part in text.split("\n"))
    return max(floor, 40 + NOTE_LINE_PX * (lines + 1))


def arrange(hints: dict[int, tuple[int, int]], nodes: dict[int, dict], info: dict,
            sizes: dict | None = None) -> list[dict]:
    """Set ``pos`` and ``size`` of every UI-format node in ``nodes`` ({id: node}; ``hints`` {id: (column,
    row)}) and return the workflow's groups, one per stage present."""
    sizes = measured_sizes() if sizes is None else sizes
    missing: set[str] = set()
    size = {nid: node_size(n, sizes, missing) for nid, n in nodes.items()}
    if missing:
        print(f"not measured in the frontend (estimated; run scripts/measure_node_sizes.py): "
              f"{', '.join(sorted(missing))}", file=sys.stderr)
    notes = [nid for nid, n in nodes.items() if n["type"] == "Note"]
    order = sorted((nid for nid in nodes if nid not in notes), key=lambda n: (hints[n][0], hints[n][1], n))
    x, top = ORIGIN[0] + PAD, ORIGIN[1] + TITLE
    note_top = top
    top += sum(size[n][1] + TITLE + GAP for n in notes) - TITLE * bool(notes)   # moved down in _place_notes
    groups, members = [], []
    for key, title, color in STAGES:
        ids = [n for n in order if stage_of(nodes[n]["type"], info) == key]
        if not ids:
            continue
        right = place_stage(ids, hints, nodes, size, x + PAD, top)
        groups.append({"title": title, "bounding": [x, top, right + PAD - x, 0], "color": color,
                       "font_size": 24, "flags": {}})
        members.append(ids)
        x = right + PAD + GROUP_GAP
    for i, (group, ids) in enumerate(zip(groups, members), 1):
        group["id"] = i
        group["bounding"][3] = max(nodes[n]["pos"][1] + nodes[n]["size"][1] for n in ids) + PAD - top
    width = min(max(NOTE_WIDTH[0], (x - GROUP_GAP) - (ORIGIN[0] + PAD)), NOTE_WIDTH[1])
    return _place_notes(notes, nodes, size, width, note_top, groups)


def _place_notes(notes, nodes, size, width, y, groups) -> list[dict]:
    """The notes above the groups, as wide as they are (within NOTE_WIDTH); the groups move down when
    a note's text needs more than its measured height."""
    shift = 0.0
    for nid in notes:
        height = note_height(str(nodes[nid]["widgets_values"][0]), width, size[nid][1])
        nodes[nid]["pos"], nodes[nid]["size"] = [ORIGIN[0] + PAD, y], [width, height]
        shift += height - size[nid][1]
        y += height + TITLE + GAP
    for nid, node in nodes.items():
        if nid not in notes:
            node["pos"][1] += shift
    for group in groups:
        group["bounding"][1] += shift
    return groups
