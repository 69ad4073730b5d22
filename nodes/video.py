"""Video files: load from the input folder, save to the output folder, preview in the temp folder.

Frames travel as IMAGE (T, H, W, 3) in [0, 1] with the frame rate as a FLOAT beside them. Saved mp4s
are H.264 yuv420p (plays in every browser); the saved / previewed file is shown animated on the node.
"""

from __future__ import annotations

import json
import secrets

import numpy as np
import torch

from sora_core import budget
from sora_core.media import clips, outputs, video_io

from . import host

CATEGORY = "Sora/video"
VIDEO_FORMATS = ("mp4", "webp", "gif", "png")
FPS = ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                 "tooltip": "Frames per second of the video."})


def frames_to_image(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> IMAGE float (T, H, W, 3) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float() / 255.0


def image_to_frames(images: torch.Tensor) -> np.ndarray:
    """IMAGE (T, H, W, 3) in [0, 1] -> uint8 (T, H, W, 3)."""
    clips.check_clip(images)
    return (images.detach().float().clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def workflow_metadata(prompt: dict | None, extra_pnginfo: dict | None) -> dict[str, str] | None:
    """ComfyUI's embedded metadata: the API prompt and the UI workflow as JSON text tags, so a saved
    video dragged back onto the canvas restores its graph."""
    if not host.metadata_enabled():
        return None
    tags = {k: json.dumps(v) for k, v in (extra_pnginfo or {}).items()}
    if prompt is not None:
        tags["prompt"] = json.dumps(prompt)
    return tags or None


def write_clip(images: torch.Tensor, fps: float, folder, prefix: str, fmt: str, kind: str,
               metadata: dict[str, str] | None = None) -> dict:
    """Write IMAGE frames as ``fmt`` into ``folder`` under a numbered name; return the node's ui dict.
    ``metadata`` text tags go into mp4 files."""
    if fmt not in VIDEO_FORMATS:
        raise ValueError(f"format {fmt!r} is unknown; allowed: {', '.join(VIDEO_FORMATS)}")
    frames = image_to_frames(images)
    written = []
    if fmt == "png":
        for frame in frames:
            written.append(video_io.write_image(outputs.numbered_output(folder, prefix, ".png"), frame))
    else:
        written.append(video_io.write_video(outputs.numbered_output(folder, prefix, f".{fmt}"), frames, fps,
                                            metadata=metadata))
    entries = [outputs.ui_entry(p, folder, kind) for p in written]
    return {"images": entries, "animated": [fmt != "png"]}


def check_load_memory(video: str, path, stop: int | None, skip: int, cap: int, nth: int) -> None:
    """Refuse (budget.BudgetError) a load whose decoded frames cannot fit in memory, from the file's
    frame count and size (read from its header, before decoding). Unknown counts are not checked."""
    info = video_io.probe_video(path)
    if info is None or info[0] is None:
        return
    total, h, w = info
    read = total if stop is None else min(total, stop)
    kept = max(0, -(-(read - skip) // nth))
    kept = min(kept, cap) if cap else kept
    frame = h * w * 3
    need = read * frame * 2 + kept * frame * 4          # decoded uint8 frames, their stack, the float IMAGE
    budget.check_bytes(need, f"Sora Load Video: video {video!r} ({read} frames of {w}x{h}; lower "
                             f"frame_load_cap or raise select_every_nth)")


# ---------------------------------------------------------------------------------------------
# Nodes
# ---------------------------------------------------------------------------------------------

class SoraLoadVideo:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Load a video, animation, image or image folder from ComfyUI's input folder (or the "
                   "pack's sample media) as IMAGE frames with its frame rate.")
    RETURN_TYPES = ("IMAGE", "INT", "FLOAT")
    RETURN_NAMES = ("images", "frame_count", "fps")
    OUTPUT_TOOLTIPS = ("The frames, (T, H, W, 3) in 0..1.", "Number of frames loaded.",
                       "Frame rate of the loaded frames (divided by select_every_nth).")
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        files = host.input_files(video_io.READ_EXTS) or ["(no videos in the input folder)"]
        return {"required": {
            "video": (files, {"tooltip": "A file in the input folder; sora-samples/ are the pack's samples."}),
            "frame_load_cap": ("INT", {"default": 0, "min": 0, "max": 100000,
                                       "tooltip": "Load at most this many frames (0 = all)."}),
            "skip_first_frames": ("INT", {"default": 0, "min": 0, "max": 100000,
                                          "tooltip": "Frames to skip at the start."}),
            "select_every_nth": ("INT", {"default": 1, "min": 1, "max": 100,
                                         "tooltip": "Keep one frame in n (lowers the frame rate n times)."}),
        }}

    @classmethod
    def IS_CHANGED(cls, video, **_):
        """Re-run when the file changes on disk (ComfyUI caches by inputs otherwise)."""
        try:
            st = host.input_path(video).stat()
        except (OSError, ValueError):
            return float("nan")                          # always re-run; load() reports the problem
        return f"{st.st_mtime_ns}-{st.st_size}"

    def load(self, video, frame_load_cap, skip_first_frames, select_every_nth):
        path = host.input_path(video)
        stop = None if frame_load_cap == 0 else skip_first_frames + frame_load_cap * select_every_nth
        check_load_memory(video, path, stop, skip_first_frames, frame_load_cap, select_every_nth)
        frames, fps = video_io.read_video(path, max_frames=stop)
        frames = frames[skip_first_frames::select_every_nth][: frame_load_cap or None]
        if len(frames) == 0:
            raise ValueError(f"video {video!r}: skip_first_frames={skip_first_frames} leaves no frames")
        return (frames_to_image(frames), len(frames), float(fps) / select_every_nth)


class SoraSaveVideo:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Save frames to ComfyUI's output folder as a browser-playable H.264 mp4 (or animated "
                   "webp / gif, or one png per frame). Existing files are never overwritten and the "
                   "prefix cannot leave the output folder; an mp4 carries the workflow that made it.")
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The frames to save."}),
            "fps": FPS,
            "filename_prefix": ("STRING", {"default": "sora/video",
                                           "tooltip": "File name prefix, may contain subfolders; a number is added."}),
            "format": (list(VIDEO_FORMATS), {"default": "mp4",
                                             "tooltip": "mp4 (H.264), animated webp, gif, or png frames."}),
        }, "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}}

    @classmethod
    def VALIDATE_INPUTS(cls, fps=None, filename_prefix=None, format=None):
        """Before anything runs: the prefix can make a file name, the format is known, and the rate is
        one the format stores (a gif keeps whole-centisecond delays: at most 50 fps). Declaring these
        inputs here takes their checks over from ComfyUI, so the widget range is checked here too. A
        linked input is not known yet (None): it is checked when the node runs."""
        if format is not None and format not in VIDEO_FORMATS:
            return f"input 'format': {format!r} is unknown; allowed: {', '.join(VIDEO_FORMATS)}"
        lo, hi = FPS[1]["min"], FPS[1]["max"]
        if filename_prefix is not None:
            try:
                outputs.check_prefix(filename_prefix)
            except outputs.OutputPathError as e:
                return f"input 'filename_prefix': {e}"
        if fps is None:
            return True
        if not (isinstance(fps, (int, float)) and lo <= fps <= hi):
            return f"input 'fps': must be in [{lo:g}, {hi:g}], got {fps!r}"
        if format not in (None, "png"):
            try:
                video_io.check_fps(fps, f".{format}")
            except video_io.VideoIOError as e:
                return f"input 'fps': {e}"
        return True

    def save(self, images, fps, filename_prefix, format, prompt=None, extra_pnginfo=None):
        meta = workflow_metadata(prompt, extra_pnginfo)
        return {"ui": write_clip(images, fps, host.output_dir(), filename_prefix, format, "output", meta)}


class SoraPreviewVideo:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Show frames animated on the node. Writes a temporary mp4 to ComfyUI's temp folder "
                   "(a png for a single frame) and saves nothing in the output folder.")
    RETURN_TYPES = ()
    FUNCTION = "preview"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE", {"tooltip": "The frames to preview."}), "fps": FPS}}

    def preview(self, images, fps):
        fmt = "png" if images.shape[0] == 1 else "mp4"
        prefix = f"sora_preview_{secrets.token_hex(4)}"
        return {"ui": write_clip(images, fps, host.temp_dir(), prefix, fmt, "temp")}


NODE_CLASS_MAPPINGS = {"SoraLoadVideo": SoraLoadVideo, "SoraSaveVideo": SoraSaveVideo,
                       "SoraPreviewVideo": SoraPreviewVideo}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraLoadVideo": "Sora Load Video", "SoraSaveVideo": "Sora Save Video",
                              "SoraPreviewVideo": "Sora Preview Video"}
