"""Write the workflows in workflows/ (ComfyUI's UI format, as the frontend saves them) from compact
graph descriptions, using the pack's own /object_info so widget order and slots are always right.

    python scripts/make_workflows.py            # (re)writes workflows/*.json

Each graph: nodes as ``id: (type, (column, row), {widget: value}, {input: (source id, output name)})``;
nodes of a column are stacked in row order.
Widgets not given take their defaults; seeds are saved with control "fixed" so shared files reproduce.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:
    import sora_core  # noqa: F401
except ImportError:                       # not installed: use the checkout this script lives in
    sys.path.insert(0, str(ROOT))

from comfyui_sora.headless import workflow  # noqa: E402

OUT = ROOT / "workflows"
COL, GAP = 400, 40

MODEL = {"model": (1, "model")}


def loader(col=0, row=0):
    return ("SoraModelLoader", (col, row), {}, {})


def encode(prompt, negative="", col=1, row=0, **links):
    return ("SoraTextEncode", (col, row), {"positive": prompt, "negative": negative}, {**MODEL, **links})


def latent(col=1, row=2, **widgets):
    return ("SoraEmptyLatent", (col, row), widgets, dict(MODEL))


def sampler(cond, lat, col=2, row=0, conds=None, **widgets):
    links = {**MODEL, "conditioning": (cond, "conditioning"), "latent": lat}
    if conds is not None:
        links["frame_conditions"] = (conds, "frame_conditions")
    return ("SoraSampler", (col, row), widgets, links)


def decode(src, col=3, row=0):
    return ("SoraVAEDecode", (col, row), {}, {**MODEL, "latent": (src, "latent")})


def save(images, fps, prefix, fmt="mp4", col=4, row=0):
    return ("SoraSaveVideo", (col, row), {"filename_prefix": prefix, "format": fmt}, {"images": images, "fps": fps})


def load(name, col=0, row=2):
    return ("SoraLoadVideo", (col, row), {"video": f"sora-samples/{name}"}, {})


def note(text, col=0, row=4):
    return ("Note", (col, row), {"text": text}, {})


# ---------------------------------------------------------------------------------------------
# The graphs
# ---------------------------------------------------------------------------------------------

GRAPHS = {
    "text_to_video": {
        1: loader(), 2: ("SoraPromptExpand", (0, 1), {"text": "a red ball bouncing", "seed": 0}, {}),
        3: ("SoraTextEncode", (1, 0), {}, {**MODEL, "positive": (2, "prompt")}), 4: latent(),
        5: sampler(3, (4, "latent")), 6: decode(5), 7: save((6, "images"), (4, "fps"), "sora/text_to_video"),
        8: note("Text to video: a short prompt is expanded into a detailed caption, encoded, and the "
                "sampler fills a 64x64x17 patch grid. Change the size and duration on the latent node."),
    },
    "text_to_image": {
        1: loader(), 2: encode("A large green triangle standing still, on a plain navy background."),
        3: latent(frames=1), 4: sampler(2, (3, "latent")), 5: decode(4),
        6: save((5, "images"), (3, "fps"), "sora/text_to_image", "png"),
        7: note("Text to image: an image is a video of one frame, so the same model makes stills."),
    },
    "image_to_video": {
        1: loader(), 2: encode("A large yellow ball bouncing, on a gradient from black to gray."),
        3: load("yellow_ball.png"), 4: ("SoraImageToVideo", (1, 3), {}, {**MODEL, "image": (3, "images")}),
        5: latent(row=1), 6: sampler(2, (5, "latent"), conds=4), 7: decode(6),
        8: save((7, "images"), (5, "fps"), "sora/image_to_video"),
        9: note("Image to video: the image is pinned as the first frame and the prompt animates it."),
    },
    "extend_forward": {
        1: loader(), 2: encode("A large red ball moving right, on a plain green background."),
        3: load("red_ball_right.mp4"),
        4: ("SoraExtendForward", (1, 3), {"latent_frames": 2}, {**MODEL, "video": (3, "images")}),
        5: latent(row=1), 6: sampler(2, (5, "latent"), conds=4), 7: decode(6),
        8: ("SoraConcatClips", (4, 1), {"drop_from": "second_start"},
            {"first": (3, "images"), "second": (7, "images"), "overlap": (4, "overlap")}),
        9: save((8, "images"), (3, "fps"), "sora/extend_forward", col=5),
        10: note("Extend forward: the last frames of the video open a new clip; the two are joined with "
                 "the repeated frames dropped once."),
    },
    "extend_backward": {
        1: loader(), 2: encode("A large red ball moving right, on a plain green background."),
        3: load("red_ball_right.mp4"),
        4: ("SoraExtendBackward", (1, 3), {"latent_frames": 1}, {**MODEL, "video": (3, "images")}),
        5: latent(row=1), 6: sampler(2, (5, "latent"), conds=4), 7: decode(6),
        8: ("SoraConcatClips", (4, 1), {"drop_from": "first_end"},
            {"first": (7, "images"), "second": (3, "images"), "overlap": (4, "overlap")}),
        9: save((8, "images"), (3, "fps"), "sora/extend_backward", col=5),
        10: note("Extend backward: the first frames of the video close a new clip that leads into it."),
    },
    "seamless_loop": {
        1: loader(), 2: encode("A large yellow ball bouncing, on a gradient from black to gray."),
        3: load("yellow_ball.png"), 4: ("SoraSeamlessLoop", (1, 3), {}, {**MODEL, "image": (3, "images")}),
        5: latent(row=1), 6: sampler(2, (5, "latent"), conds=4), 7: decode(6),
        8: ("SoraTrimClip", (4, 1), {}, {"images": (7, "images"), "skip_start": (4, "drop_start"),
                                                 "skip_end": (4, "drop_end")}),
        9: save((8, "images"), (5, "fps"), "sora/seamless_loop", "webp", col=5),
        10: note("Seamless loop: the image is pinned at both ends; trimming the first frame and the closing "
                 "still after its first frame makes the clip end on the image and wrap straight on (the webp "
                 "loops forever)."),
    },
    "video_to_video_sdedit": {
        1: loader(), 2: encode("A large blue ball moving right, on a plain green background."),
        3: load("red_ball_right.mp4"), 4: ("SoraVAEEncode", (1, 2), {}, {**MODEL, "images": (3, "images")}),
        5: sampler(2, (4, "latent"), denoise=0.6), 6: decode(5),
        7: save((6, "images"), (3, "fps"), "sora/video_to_video"),
        8: note("Video to video (SDEdit): the source is noised part of the way (denoise) and re-generated "
                "under the new prompt, so motion and layout stay while the prompt changes the look."),
    },
    "connect_videos": {
        1: loader(), 2: encode("A large red ball moving right, then a large blue box moving down."),
        3: load("red_ball_right.mp4", row=2), 4: load("blue_box_down.mp4", row=3),
        5: ("SoraConnectClips", (1, 3), {}, {**MODEL, "first": (3, "images"), "second": (4, "images")}),
        6: latent(row=1), 7: sampler(2, (6, "latent"), conds=5), 8: decode(7),
        9: ("SoraConcatClips", (4, 1), {"drop_from": "second_start"},
            {"first": (3, "images"), "second": (8, "images"), "overlap": (5, "overlap_first")}),
        10: ("SoraConcatClips", (5, 1), {"drop_from": "first_end"},
             {"first": (9, "images"), "second": (4, "images"), "overlap": (5, "overlap_second")}),
        11: save((10, "images"), (3, "fps"), "sora/connect_videos", col=6),
        12: note("Connect two videos: the end of the first and the start of the second are pinned at the "
                 "two ends of a new clip; the three are joined into one video."),
    },
    "blend_transition": {
        1: loader(), 2: encode("A large red ball moving right, then a large blue box moving down."),
        3: load("red_ball_right.mp4", row=2), 4: load("blue_box_down.mp4", row=3),
        5: ("SoraClipBlend", (1, 3), {}, {**MODEL, "first": (3, "images"), "second": (4, "images")}),
        6: latent(row=1), 7: sampler(2, (6, "latent"), conds=5), 8: decode(7),
        9: save((8, "images"), (3, "fps"), "sora/blend_transition"),
        10: note("Gradual transition: the two clips' latents are interpolated along a curve over the "
                 "middle of the duration and the sampler makes the passage coherent."),
    },
    "long_video_chained": {
        1: loader(), 2: encode("A large red ball moving right, on a plain green background."),
        3: latent(row=1), 4: sampler(2, (3, "latent")), 5: decode(4),
        6: ("SoraExtendForward", (4, 2), {"latent_frames": 2}, {**MODEL, "video": (5, "images")}),
        7: sampler(2, (3, "latent"), col=5, conds=6, seed=1), 8: decode(7, col=6),
        9: ("SoraConcatClips", (7, 0), {}, {"first": (5, "images"), "second": (8, "images"),
                                            "overlap": (6, "overlap")}),
        10: ("SoraExtendForward", (7, 2), {"latent_frames": 2}, {**MODEL, "video": (9, "images")}),
        11: sampler(2, (3, "latent"), col=8, conds=10, seed=2), 12: decode(11, col=9),
        13: ("SoraConcatClips", (10, 0), {}, {"first": (9, "images"), "second": (12, "images"),
                                              "overlap": (10, "overlap")}),
        14: save((13, "images"), (3, "fps"), "sora/long_video", col=11),
        15: note("Long video by chained extension: each window continues the last frames of the video so "
                 "far; add more extend / sample / decode / concatenate groups for a longer video (memory "
                 "stays flat: one window at a time)."),
    },
}


# ---------------------------------------------------------------------------------------------
# UI-format writer
# ---------------------------------------------------------------------------------------------

def _widget_values(kind: str, info: dict, given: dict) -> list:
    if kind == "Note":
        return [given["text"]]
    values = []
    for _, name, spec in workflow.ordered_inputs(info):
        if not workflow.is_widget(spec):
            continue
        opts = workflow.spec_options(spec)
        default = opts.get("default", (workflow.combo_choices(spec) or [None])[0])
        values.append(given.get(name, default))
        if workflow.has_control_widget(name, spec):
            values.append("fixed")
    unknown = set(given) - {n for _, n, _ in workflow.ordered_inputs(info)}
    if unknown:
        raise ValueError(f"{kind} has no input(s) {sorted(unknown)}")
    return values


def build(graph: dict, info: dict) -> dict:
    """UI-format workflow for a compact graph (see module doc)."""
    nodes, links, out_links = [], [], {}
    for target, (kind, _, _, ins) in graph.items():
        for name, (src, out_name) in ins.items():
            slot = info[graph[src][0]]["output_name"].index(out_name)
            link_id = len(links) + 1
            links.append([link_id, src, slot, target, name, info[graph[src][0]]["output"][slot]])
            out_links.setdefault((src, slot), []).append(link_id)
    tops: dict[int, float] = {}                   # next free y per column (nodes stack by row)
    for order, (nid, (kind, (col, row), widgets, ins)) in enumerate(sorted(graph.items(), key=lambda kv: kv[1][1][::-1])):
        node_info = info.get(kind, {"input": {}, "input_order": {}, "output": [], "output_name": []})
        inputs = []
        for _, name, spec in workflow.ordered_inputs(node_info):
            link = next((l[0] for l in links if l[3] == nid and l[4] == name), None)
            if workflow.is_widget(spec) and link is None:
                continue
            entry = {"name": name, "type": workflow.spec_type(spec), "link": link}
            if workflow.is_widget(spec):
                entry["widget"] = {"name": name}
            inputs.append(entry)
        for l in links:
            if l[3] == nid:
                l[4] = next(i for i, e in enumerate(inputs) if e["name"] == l[4])
        outputs = [{"name": n, "type": t, "links": out_links.get((nid, i), []), "slot_index": i}
                   for i, (n, t) in enumerate(zip(node_info["output_name"], node_info["output"]))]
        values = _widget_values(kind, node_info, widgets)
        size = [340, 40 + 26 * (len(values) + max(len(inputs), len(outputs)))]
        if kind == "Note":
            size = [340, 40 + 26 * (len(values[0]) // 40 + 1)]
        y = tops.get(col, 40)
        tops[col] = y + size[1] + GAP
        node = {"id": nid, "type": kind, "pos": [40 + col * COL, y], "size": size,
                "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind}, "widgets_values": values}
        if kind == "Note":
            node.update(color="#432", bgcolor="#653")
        nodes.append(node)
    nodes.sort(key=lambda n: n["id"])
    return {"last_node_id": max(graph), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": [], "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}


def main() -> None:
    pack = workflow.load_pack(ROOT)
    info = workflow.object_info_from_classes(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    for name, graph in GRAPHS.items():
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(build(graph, info), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
