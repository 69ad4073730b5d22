"""Sora Long Video: a video longer than the model's trained length, made in windows that each continue
the one before (``sora_core.long_video``), as IMAGE frames or streamed straight to a file in the output
folder. A progress bar over every window's steps with latent previews; Cancel stops it between steps
(a file being written is then removed, nothing is left half-written)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sora_core import budget, configs, geometry, long_video
from sora_core.diffusion import conditions, samplers
from sora_core.media import clips, outputs

from . import graph_ops, host
from .sampler import AUTO, CONDITION_MODES
from .video import FPS, frames_to_image, workflow_metadata

CATEGORY = "Sora/sampling"
NODE = "Sora Long Video"
ANCHORS = ("auto", "on", "off")
FILE_FORMATS = tuple(ext.lstrip(".") for ext in long_video.STREAM_EXTS)
MAX_SECONDS = 3600.0
_SCHEDULE = configs.ScheduleConfig()


class LongVideoInputError(ValueError):
    """A Sora Long Video input that does not fit; the message names the node and the input."""


def _bad(name: str, message: str) -> LongVideoInputError:
    return LongVideoInputError(f"{NODE}: input '{name}': {message}")


# ---------------------------------------------------------------------------------------------
# The request, checked before any work
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Request:
    """A checked request: sizes in pixels / frames, the window layout and the prompt schedule."""
    frames: int
    height: int
    width: int
    window: int
    overlap: int
    windows: list
    cues: tuple
    negative: str


def _start_frames(start_image, start_video) -> torch.Tensor | None:
    """The IMAGE to start from (one frame of ``start_image``, or all of ``start_video``), or None."""
    if start_image is not None and start_video is not None:
        raise _bad("start_video", "give start_image (animate it) or start_video (continue it), not both")
    if start_image is not None:
        return clips.check_clip(start_image, "start_image")[:1]
    return None if start_video is None else clips.check_clip(start_video, "start_video")


def check_request(handle, prompt: str, negative: str, seconds: float, fps: float, width: int, height: int,
                  window: int, overlap: int, start: torch.Tensor | None = None) -> Request:
    """Every input against the model, before any weights move: sizes (0 = the start frames' or the
    model's), the frame counts of the length, window and overlap (``long_video.plan_windows``, as
    ``sora generate --window / --overlap``), the prompt schedule, the start frames' size, and the
    memory of one window (``graph_ops.check_budget``)."""
    model = handle.model
    d, ft = model.defaults, int(model.spec.vae.temporal_factor)
    if not 0 < seconds <= MAX_SECONDS:
        raise _bad("seconds", f"must be in (0, {MAX_SECONDS:g}], got {seconds!r}")
    if start is not None and (width, height) == (0, 0):
        height, width = int(start.shape[1]), int(start.shape[2])
    height, width = height or d.height, width or d.width
    window = window or d.frames
    overlap = overlap or geometry.pixel_frames(conditions.EXTEND_CONTEXT, ft)
    frames = geometry.frames_for_seconds(seconds, fps, ft)
    try:
        wins = long_video.plan_windows(frames, window, overlap, ft)
        geo = model.geometry(wins[0].frames(ft), height, width)
    except (geometry.GeometryError, long_video.LongVideoError) as e:
        name = next((n for n in ("overlap", "window", "width", "height") if n in str(e)), "window")
        raise _bad(name, str(e)) from None
    try:
        cues = long_video.parse_schedule(prompt, frames / fps)
    except long_video.ScheduleError as e:
        raise _bad("prompt", str(e)) from None
    if start is not None and tuple(start.shape[1:3]) != (height, width):
        raise _bad("start_image" if start.shape[0] == 1 else "start_video",
                   f"frames are {start.shape[2]}x{start.shape[1]}, the video {width}x{height}: resize them "
                   f"with Sora Resize Clip, or set width and height to 0")
    if start is not None and start.shape[0] > 1 and start.shape[0] < overlap:
        raise _bad("start_video", f"has {start.shape[0]} frames; continuing it takes the last overlap={overlap}")
    graph_ops.check_budget(handle, geo)
    return Request(frames, height, width, window, overlap, wins, cues, negative)


def check_image_memory(req: Request, what: str = NODE) -> None:
    """IMAGE output: every frame as float32 in memory at once (plus the uint8 chunks); refused with a
    pointer to ``to_file`` when it does not fit."""
    need = req.frames * req.height * req.width * 3 * 5
    budget.check_bytes(need, f"{what}: {req.frames} frames of {req.width}x{req.height} as IMAGE (turn on "
                             f"to_file to stream them to a video file instead)")


def _first_plan(handle, start: torch.Tensor | None, req: Request) -> tuple[conditions.ConditionPlan | None, int]:
    """(the first window's condition plan, frames of the output that repeat the start video's end)."""
    if start is None:
        return None, 0
    vae = handle.model.vae
    video = clips.clip_to_video(start).to(handle.use("vae"))                       # (1, 3, T, H, W)
    if start.shape[0] == 1:
        return conditions.image_to_video(vae, video), 0
    ft = int(handle.model.spec.vae.temporal_factor)
    plan = conditions.extend_forward(vae, video, geometry.latent_frames(req.overlap, ft))
    return plan, plan.drop_start


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def _progress_callback(handle, progress: host.Progress, steps: int):
    """The sampler callback: the bar over all windows' steps, with a latent preview."""
    def step(info: dict) -> None:
        preview = graph_ops.preview_image(handle, info["denoised"]).numpy() if progress.wants_preview() else None
        progress.update(info["window"] * steps + info["i"] + 1, preview)
    return step


def start_windows(handle, req: Request, seed: int, steps: int, cfg: float | None, sampler: str, shift: float | None,
                  anchor: str, match_colors: bool, condition_mode: str | None, start: torch.Tensor | None):
    """(chunk iterator, progress bar, overlap with the start video) for a checked request."""
    if sampler not in samplers.SAMPLERS:
        raise _bad("sampler_name", f"{sampler!r} is unknown; allowed: {', '.join(samplers.SAMPLERS)}")
    for kind in host.MANAGED_KINDS:
        handle.use(kind)
    first, overlap = _first_plan(handle, start, req)
    progress = host.Progress(len(req.windows) * steps, "long video")
    try:
        chunks = long_video.long_video(
            handle.model, req.cues, req.negative, frames=req.frames, window=req.window, overlap=req.overlap,
            height=req.height, width=req.width, steps=steps, cfg=cfg, sampler=sampler, shift=shift, seed=seed,
            match_colors_at_joins=match_colors, anchor={"auto": None, "on": True, "off": False}[anchor],
            condition_mode=condition_mode, callback=_progress_callback(handle, progress, steps),
            autocast_dtype=handle.dtype, first=first)
    except long_video.LongVideoError as e:
        progress.close()
        raise _bad("anchor" if "anchor" in str(e) else "prompt", str(e)) from None
    return chunks, progress, overlap


def _write(chunks, req: Request, prefix: str, fmt: str, fps: float, metadata: dict | None) -> tuple[dict, torch.Tensor]:
    """Stream the chunks to a numbered file in the output folder: (ui entry, IMAGE of the last frame
    of every window). Cancel is checked between windows too; an interrupted write leaves no file."""
    folder = host.output_dir()
    thumbs = []

    def on_chunk(chunk) -> None:
        thumbs.append(chunk.frames[-1])
        host.check_interrupted()
    path = long_video.write_long_video(outputs.numbered_output(folder, prefix, f".{fmt}"), chunks, fps,
                                       on_chunk=on_chunk, metadata=metadata)
    return outputs.ui_entry(path, folder, "output"), frames_to_image(np.stack(thumbs))


class SoraLongVideo:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Generate a long video (up to an hour; a minute is the Sora report's headline) in windows "
                   "of the model's trained length, each continuing the last frames of the one before, the "
                   "first frame kept as context against drift. The prompt can change over time "
                   "('0:a red ball moving right | 20:a blue box moving left'). Outputs IMAGE frames, or with "
                   "to_file streams them to a video in the output folder (flat memory at any length).")
    RETURN_TYPES = ("IMAGE", "INT", "INT", "STRING")
    RETURN_NAMES = ("images", "frame_count", "overlap", "path")
    OUTPUT_TOOLTIPS = ("The frames (T, H, W, 3); with to_file, the last frame of each window.",
                       "Frames of the whole video.",
                       "Frames at the start that repeat the end of start_video (the overlap input of Sora "
                       "Concatenate Clips); 0 without start_video.",
                       "The written file with to_file (relative to the output folder), else empty.")
    FUNCTION = "generate"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 0, "min": 0, "max": 4096, "step": 8}
        frames = {"default": 0, "min": 0, "max": 1025}
        return {"required": {
            "model": ("SORA_MODEL", {"tooltip": "The Sora model."}),
            "prompt": ("STRING", {"default": "a red ball moving right", "multiline": True,
                                  "tooltip": "One prompt, or a schedule 'SECONDS:prompt | SECONDS:prompt ...' (the "
                                             "first at 0): prompts change at window boundaries, blended over one "
                                             "window. Unused when conditioning is linked."}),
            "negative": ("STRING", {"default": "", "multiline": True, "tooltip": "Negative prompt (cfg > 1)."}),
            "seconds": ("FLOAT", {"default": 60.0, "min": 0.125, "max": MAX_SECONDS, "step": 1.0,
                                  "tooltip": "Length of the video."}),
            "fps": FPS,
            "width": ("INT", {**size, "tooltip": "Width in pixels; 0 = the start frames' or the model's."}),
            "height": ("INT", {**size, "tooltip": "Height in pixels; 0 = the start frames' or the model's."}),
            "window": ("INT", {**frames, "tooltip": "Frames per window (1 + k * temporal factor); 0 = the "
                                                    "model's trained length (17 for the default model)."}),
            "overlap": ("INT", {**frames, "tooltip": "Frames each window continues from the one before (1 + k * "
                                                     "temporal factor, shorter than the window); 0 = the "
                                                     "model's default (5 for the default model)."}),
            "anchor": (list(ANCHORS), {"default": "auto", "tooltip": "Keep the first frame as context of every "
                                       "window against drift. auto: on for models with per-frame timesteps "
                                       "(the default model), off otherwise (Wan 2.1)."}),
            "match_colors": ("BOOLEAN", {"default": False, "tooltip": "Match each window's colours to the one "
                                         "before at the join (drifts more on the default model: "
                                         "docs/long_video.md)."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                             "tooltip": "Seed of the noise; each window draws from its own seed derived from it."}),
            "steps": ("INT", {"default": _SCHEDULE.steps, "min": 1, "max": 500, "tooltip": "Steps per window."}),
            "cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 30.0, "step": 0.1,
                              "tooltip": "Classifier-free guidance scale; 1 = off. 0 = the model's own (the "
                                         "default model's 3, Wan 2.1 / 2.2: 5)."}),
            "sampler_name": (list(samplers.SAMPLERS), {"default": _SCHEDULE.sampler, "tooltip": "The solver."}),
            "shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                "tooltip": "Schedule shift; 0 = the model's own."}),
            "to_file": ("BOOLEAN", {"default": False, "tooltip": "Stream the frames to a video in the output "
                                    "folder as they are made (for lengths that do not fit in memory)."}),
            "filename_prefix": ("STRING", {"default": "sora/long", "tooltip": "File name prefix (to_file)."}),
            "format": (list(FILE_FORMATS), {"default": "mp4", "tooltip": "mp4 (H.264) or animated webp (to_file)."}),
        }, "optional": {
            "conditioning": ("SORA_CONDITIONING", {"tooltip": "Prompts from Sora Text Encode instead of the "
                                                              "prompt and negative inputs (its positive prompt "
                                                              "may be a schedule)."}),
            "start_image": ("IMAGE", {"tooltip": "Start the video on this image (its first frame)."}),
            "start_video": ("IMAGE", {"tooltip": "Continue this video: its last overlap frames open the first "
                                                 "window."}),
            "condition_mode": (list(CONDITION_MODES), {"default": AUTO, "tooltip": "How context frames are "
                                                       "held: the model's way (auto), per-frame timesteps, "
                                                       "or replacement."}),
        }, "hidden": {"prompt_graph": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    @classmethod
    def VALIDATE_INPUTS(cls, seconds=None, filename_prefix=None):
        """Before anything runs: the length (declared here, so its range is checked here) and the
        file name prefix. Window, overlap and the schedule need the model: checked when the node runs,
        before any work."""
        if seconds is not None and not (isinstance(seconds, (int, float)) and 0 < seconds <= MAX_SECONDS):
            return f"input 'seconds': must be in (0, {MAX_SECONDS:g}], got {seconds!r}"
        if filename_prefix is not None:
            try:
                outputs.resolve_prefix(host.output_dir(), filename_prefix)
            except outputs.OutputPathError as e:
                return f"input 'filename_prefix': {e}"
        return True

    def generate(self, model, prompt, negative, seconds, fps, width, height, window, overlap, anchor, match_colors,
                 seed, steps, cfg, sampler_name, shift, to_file, filename_prefix, format, conditioning=None,
                 start_image=None, start_video=None, condition_mode=AUTO, prompt_graph=None, extra_pnginfo=None):
        if conditioning is not None:
            prompt, negative = conditioning.positive, conditioning.negative
        if to_file:
            outputs.resolve_prefix(host.output_dir(), filename_prefix)       # OutputPathError names it
            if format not in FILE_FORMATS:
                raise _bad("format", f"{format!r} is unknown; allowed: {', '.join(FILE_FORMATS)}")
        start = _start_frames(start_image, start_video)
        req = check_request(model, prompt, negative, seconds, fps, width, height, window, overlap, start)
        if not to_file:
            check_image_memory(req)
        chunks, progress, repeat = start_windows(model, req, seed, steps, cfg or None, sampler_name, shift or None, anchor,
                                                 match_colors, None if condition_mode == AUTO else condition_mode, start)
        try:
            if to_file:
                meta = workflow_metadata(prompt_graph, extra_pnginfo)     # an mp4 carries its graph
                entry, thumbs = _write(chunks, req, filename_prefix, format, fps, meta)
                path = "/".join(p for p in (entry["subfolder"], entry["filename"]) if p)
                return {"ui": {"images": [entry], "animated": [True]},
                        "result": (thumbs, req.frames, repeat, path)}
            video = np.concatenate([c.frames for c in chunks])
        finally:
            progress.close()
        return (frames_to_image(video), req.frames, repeat, "")


NODE_CLASS_MAPPINGS = {"SoraLongVideo": SoraLongVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraLongVideo": "Sora Long Video"}
