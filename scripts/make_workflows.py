"""Write the workflows in workflows/ (ComfyUI's UI format, as the frontend saves them) from compact
graph descriptions, using the pack's own /object_info so widget order and slots are always right.

    python scripts/make_workflows.py            # (re)writes workflows/*.json
    python scripts/make_workflows.py NAME ...   # only these

Each graph: nodes as ``id: (type, (column, row), {widget: value}, {input: (source id, output name)})``;
scripts/workflow_layout.py places them: groups by stage (model, prompt, latent, sampling, output) at the
sizes the frontend gives each type (scripts/node_sizes.json), the ``(column, row)`` hints ordering the
nodes inside their group, the note above.
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
from sora_core.pipeline import ModelSpec, default_model_dir  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
import workflow_layout  # noqa: E402

OUT = ROOT / "workflows"

MODEL = {"model": (1, "model")}
# the guidance scale the default model ships with (its DiT's sora.schedule), which `sora generate` uses:
# the Sora graphs carry it instead of the sampler widget's generic default
DEFAULT_CFG = ModelSpec.read(default_model_dir()).schedule.cfg


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
    return ("SoraSampler", (col, row), {"cfg": DEFAULT_CFG, **widgets}, links)


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
    "minute_long_video": {
        1: loader(),
        2: ("SoraPromptExpand", (0, 1), {"text": "0:a red ball moving right | 30:a red ball bouncing", "seed": 0}, {}),
        3: ("SoraLongVideo", (1, 0), {"seconds": 60.0, "to_file": True, "filename_prefix": "sora/minute_long_video",
                                      "cfg": DEFAULT_CFG},
            {**MODEL, "prompt": (2, "prompt")}),
        4: note("A minute of video in one node: windows of the model's trained length (17 frames for the "
                "default model), each continuing the last frames of the one before, the first frame kept as "
                "context against drift. The prompt schedule (SECONDS:prompt | ...) changes at 30 s; the "
                "expander turns each prompt into a detailed caption. to_file streams the frames to an mp4 in "
                "the output folder as they are made, so memory stays that of one window at any length; the "
                "node's images output holds the last frame of each window."),
    },
}


# ---------------------------------------------------------------------------------------------
# Wan 2.1 / 2.2 graphs: ComfyUI's standard file names in models/diffusion_models, vae, text_encoders
# (docs/real_models.md); shift 0 and condition_mode auto take the family's own
# ---------------------------------------------------------------------------------------------

WAN_FILES = {
    "wan2.1": {"dit": "wan2.1_t2v_1.3B_bf16.safetensors", "vae": "wan_2.1_vae.safetensors",
               "text_encoder": "umt5_xxl_fp16.safetensors"},
    "wan2.2": {"dit": "wan2.2_ti2v_5B_fp16.safetensors", "vae": "wan2.2_vae.safetensors",
               "text_encoder": "umt5_xxl_fp16.safetensors"},
}
WAN_NEGATIVE = "blurry, low quality, distorted, static, overexposed, jpeg artifacts, extra limbs, text, watermark"


def wan_loader(family, col=0, row=0):
    return ("SoraModelLoader", (col, row), dict(WAN_FILES[family]), {})


def wan_sampler(cond, lat, col=2, row=0, conds=None, **widgets):
    return sampler(cond, lat, col, row, conds, **{"steps": 30, "cfg": 5.0, **widgets})


WAN_GRAPHS = {
    "wan21_t2v_1.3b": {
        1: wan_loader("wan2.1"),
        2: encode("A red fox trotting through fresh snow in a birch forest at golden hour, low tracking shot, "
                  "soft backlight, breath visible in the cold air.", WAN_NEGATIVE),
        3: latent(width=832, height=480, frames=81, fps=16.0), 4: wan_sampler(2, (3, "latent")), 5: decode(4),
        6: save((5, "images"), (3, "fps"), "sora/wan21_t2v"),
        7: note("Wan 2.1 T2V 1.3B at its default 832x480, 81 frames (5 s at 16 fps). Put "
                "wan2.1_t2v_1.3B_bf16.safetensors in models/diffusion_models, wan_2.1_vae.safetensors in "
                "models/vae and umt5_xxl_fp16.safetensors (or the fp8 one) in models/text_encoders "
                "(docs/real_models.md). Shift 0 and condition mode auto use the family's own (5.0)."),
    },
    "wan22_ti2v_5b_image_to_video": {
        1: wan_loader("wan2.2"),
        2: encode("A large yellow ball bouncing across the frame, casting a soft shadow, smooth camera.",
                  WAN_NEGATIVE),
        3: load("yellow_ball.png"), 4: latent(row=1, width=1280, height=704, frames=121, fps=24.0),
        5: ("SoraResizeClip", (1, 3), {}, {"images": (3, "images"), "width": (4, "width"), "height": (4, "height")}),
        6: ("SoraImageToVideo", (1, 4), {}, {**MODEL, "image": (5, "images")}),
        7: wan_sampler(2, (4, "latent"), conds=6), 8: decode(7),
        9: save((8, "images"), (4, "fps"), "sora/wan22_image_to_video"),
        10: note("Wan 2.2 TI2V 5B image to video at 1280x704, 121 frames (5 s at 24 fps): the image is resized "
                 "to the latent's size and pinned as the first frame; condition mode auto gives it its own "
                 "timestep (t = 0), as the model was trained. Files: wan2.2_ti2v_5B_fp16.safetensors, "
                 "wan2.2_vae.safetensors, umt5_xxl_fp16.safetensors (docs/real_models.md)."),
    },
    "wan21_extend_loop": {
        1: wan_loader("wan2.1"),
        2: encode("Waves rolling onto a pebble beach under a pale morning sky, steady wide shot.", WAN_NEGATIVE),
        3: latent(row=1, width=832, height=480, frames=81, fps=16.0),
        4: wan_sampler(2, (3, "latent")), 5: decode(4),
        6: ("SoraExtendForward", (4, 2), {"latent_frames": 2}, {**MODEL, "video": (5, "images")}),
        7: wan_sampler(2, (3, "latent"), col=5, conds=6, seed=1), 8: decode(7, col=6),
        9: ("SoraConcatClips", (7, 0), {"drop_from": "second_start"},
            {"first": (5, "images"), "second": (8, "images"), "overlap": (6, "overlap")}),
        10: save((9, "images"), (3, "fps"), "sora/wan21_extended", col=8),
        11: ("SoraSeamlessLoop", (4, 4), {}, {**MODEL, "image": (5, "images")}),
        12: wan_sampler(2, (3, "latent"), col=5, row=4, conds=11, seed=2), 13: decode(12, col=6, row=4),
        14: ("SoraTrimClip", (7, 4), {}, {"images": (13, "images"), "skip_start": (11, "drop_start"),
                                           "skip_end": (11, "drop_end")}),
        15: save((14, "images"), (3, "fps"), "sora/wan21_loop", "webp", col=8, row=4),
        16: note("Wan 2.1 T2V 1.3B: a clip, continued forward from its last frames (joined without the "
                 "repeated frames), and a seamless loop through its first frame (the webp loops forever). "
                 "Wan 2.1 was trained without frame masks, so condition mode auto re-noises the pinned frames "
                 "each step (replace)."),
    },
}
GRAPHS.update(WAN_GRAPHS)


# ---------------------------------------------------------------------------------------------
# Native workflows: ComfyUI's own loaders, KSampler and VAE Decode around the Sora/native latents
# nodes. They run only inside ComfyUI (tests/test_real_comfyui.py); the headless tests leave out every
# workflows/native_*.json. CORE holds the inputs of the ComfyUI 0.8.0 nodes they use (nodes.py,
# comfy_extras/nodes_hunyuan.py) so the files get ComfyUI's widget order.
# ---------------------------------------------------------------------------------------------

NATIVE_FILES = {"unet_name": "wan2.1_t2v_1.3B_fp16.safetensors", "vae_name": "wan_2.1_vae.safetensors",
                "clip_name": "umt5_xxl_fp8_e4m3fn_scaled.safetensors"}
NATIVE_SIZE = {"width": 832, "height": 480}
NATIVE_NEGATIVE = "blurry, static, distorted, low quality"


def _core(required: dict, outputs: tuple, optional: dict | None = None) -> dict:
    return {"input": {"required": required, "optional": optional or {}},
            "input_order": {"required": list(required), "optional": list(optional or {})},
            "output": list(outputs), "output_name": list(outputs)}


CORE = {
    "UNETLoader": _core({"unet_name": ([NATIVE_FILES["unet_name"]],),
                         "weight_dtype": (["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"],)}, ("MODEL",)),
    "VAELoader": _core({"vae_name": ([NATIVE_FILES["vae_name"]],)}, ("VAE",)),
    "CLIPLoader": _core({"clip_name": ([NATIVE_FILES["clip_name"]],), "type": (["wan"],)}, ("CLIP",),
                        {"device": (["default", "cpu"], {"advanced": True})}),
    "CLIPTextEncode": _core({"text": ("STRING", {"multiline": True}), "clip": ("CLIP",)}, ("CONDITIONING",)),
    "EmptyHunyuanLatentVideo": _core({"width": ("INT", {"default": 848}), "height": ("INT", {"default": 480}),
                                      "length": ("INT", {"default": 25}), "batch_size": ("INT", {"default": 1})},
                                     ("LATENT",)),
    "KSampler": _core({"model": ("MODEL",), "seed": ("INT", {"default": 0, "control_after_generate": True}),
                       "steps": ("INT", {"default": 20}), "cfg": ("FLOAT", {"default": 8.0}),
                       "sampler_name": (["euler", "uni_pc"],), "scheduler": (["simple", "normal"],),
                       "positive": ("CONDITIONING",), "negative": ("CONDITIONING",), "latent_image": ("LATENT",),
                       "denoise": ("FLOAT", {"default": 1.0})}, ("LATENT",)),
    "VAEDecode": _core({"samples": ("LATENT",), "vae": ("VAE",)}, ("IMAGE",)),
}


def native_base(prompt: str, length: int) -> dict:
    """Loaders (1-3), prompts (4, 5), the empty latent (8), KSampler (10) and VAE Decode (11) of a Wan
    2.1 graph; the caller adds the Sora node 9 whose latent KSampler samples."""
    return {
        1: ("UNETLoader", (0, 0), {"unet_name": NATIVE_FILES["unet_name"]}, {}),
        2: ("VAELoader", (0, 1), {"vae_name": NATIVE_FILES["vae_name"]}, {}),
        3: ("CLIPLoader", (0, 2), {"clip_name": NATIVE_FILES["clip_name"], "type": "wan"}, {}),
        4: ("CLIPTextEncode", (1, 0), {"text": prompt}, {"clip": (3, "CLIP")}),
        5: ("CLIPTextEncode", (1, 1), {"text": NATIVE_NEGATIVE}, {"clip": (3, "CLIP")}),
        8: ("EmptyHunyuanLatentVideo", (1, 2), {**NATIVE_SIZE, "length": length}, {}),
        10: ("KSampler", (3, 0), {"steps": 30, "cfg": 6.0, "sampler_name": "uni_pc", "scheduler": "simple"},
             {"model": (1, "MODEL"), "positive": (4, "CONDITIONING"), "negative": (5, "CONDITIONING"),
              "latent_image": (9, "latent")}),
        11: ("VAEDecode", (4, 0), {}, {"samples": (10, "LATENT"), "vae": (2, "VAE")}),
    }


def resized(source: int, col=1, row=4) -> tuple:
    return ("SoraResizeClip", (col, row), NATIVE_SIZE, {"images": (source, "images")})


NATIVE_GRAPHS = {
    "native_wan_extend_backward": {
        **native_base("A red ball rolls in from the left and keeps moving right, on a plain green background.", 33),
        6: load("red_ball_right.mp4", row=3), 7: resized(6),
        9: ("SoraNativeExtendBackward", (2, 2), {"latent_frames": 2},
            {"vae": (2, "VAE"), "video": (7, "images"), "latent": (8, "LATENT")}),
        12: ("SoraMatchColors", (5, 0), {"at": "end"}, {"images": (11, "IMAGE"), "reference": (7, "images"),
                                                         "overlap": (9, "overlap")}),
        13: ("SoraConcatClips", (6, 0), {"drop_from": "first_end"},
             {"first": (12, "images"), "second": (7, "images"), "overlap": (9, "overlap")}),
        14: save((13, "images"), (6, "fps"), "sora/native_wan_extend_backward", col=7),
        15: note("Extend backward with Wan 2.1 and ComfyUI's own KSampler: the first frames of the video are "
                 "written at the end of the latent (noise mask 0 there) and the sampler generates what leads "
                 "into them; the new clip's colours are matched to the video over the shared frames, then the "
                 "two are joined.", row=5),
    },
    "native_wan_seamless_loop": {
        **native_base("A yellow ball bouncing, on a gradient from black to gray.", 33),
        6: load("yellow_ball.png", row=3), 7: resized(6),
        9: ("SoraNativeSeamlessLoop", (2, 2), {}, {"vae": (2, "VAE"), "image": (7, "images"),
                                                   "latent": (8, "LATENT")}),
        12: ("SoraTrimClip", (5, 0), {}, {"images": (11, "IMAGE"), "skip_start": (9, "drop_start"),
                                          "skip_end": (9, "drop_end")}),
        13: save((12, "images"), (6, "fps"), "sora/native_wan_seamless_loop", "webp", col=6),
        14: note("Seamless loop with Wan 2.1: the image is kept at the first and the last latent frame; "
                 "trimming drop_start and drop_end makes the clip end on the image and wrap on (the webp loops).",
                 row=5),
    },
    "native_wan_connect": {
        **native_base("A red ball moving right, then a blue box moving down.", 33),
        6: load("red_ball_right.mp4", row=3), 7: resized(6),
        16: load("blue_box_down.mp4", row=5), 17: resized(16, row=6),
        9: ("SoraNativeConnect", (2, 2), {}, {"vae": (2, "VAE"), "first": (7, "images"), "second": (17, "images"),
                                              "latent": (8, "LATENT")}),
        12: ("SoraConcatClips", (5, 0), {"drop_from": "second_start"},
             {"first": (7, "images"), "second": (11, "IMAGE"), "overlap": (9, "overlap_first")}),
        13: ("SoraConcatClips", (6, 0), {"drop_from": "first_end"},
             {"first": (12, "images"), "second": (17, "images"), "overlap": (9, "overlap_second")}),
        14: save((13, "images"), (6, "fps"), "sora/native_wan_connect", col=7),
        15: note("Connect two videos with Wan 2.1: the end of the first is kept at the start of the latent, "
                 "the start of the second at its end; the three clips are joined into one video.", row=7),
    },
}
GRAPHS.update(NATIVE_GRAPHS)


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
        node = {"id": nid, "type": kind, "pos": [0, 0], "size": [0, 0],           # set by workflow_layout
                "flags": {}, "order": order, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind}, "widgets_values": values}
        if kind == "Note":
            node.update(color="#432", bgcolor="#653")
        nodes.append(node)
    nodes.sort(key=lambda n: n["id"])
    groups = workflow_layout.arrange({nid: g[1] for nid, g in graph.items()}, {n["id"]: n for n in nodes}, info)
    return {"last_node_id": max(graph), "last_link_id": len(links), "nodes": nodes, "links": links,
            "groups": groups, "config": {}, "extra": {"ds": {"scale": 1.0, "offset": [0, 0]}}, "version": 0.4}


def main(names: list[str] | None = None) -> None:
    """Write every graph, or only ``names`` (``python scripts/make_workflows.py wan21_t2v_1.3b ...``)."""
    pack = workflow.load_pack(ROOT)
    info = workflow.object_info_from_classes(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)
    unknown = sorted(set(names or ()) - set(GRAPHS))
    if unknown:
        raise SystemExit(f"unknown workflow(s) {unknown}; known: {', '.join(GRAPHS)}")
    for name, graph in GRAPHS.items():
        if names and name not in names:
            continue
        path = OUT / f"{name}.json"
        path.write_text(json.dumps(build(graph, {**CORE, **info}), indent=1) + "\n", encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
