"""Clip utilities for composing graphs: stitch clips (dropping overlap frames), trim, pick, resize."""

from __future__ import annotations

from sora_core.media import clips

CATEGORY = "Sora/clips"
IMAGES = ("IMAGE", {"tooltip": "Frames (T, H, W, 3)."})


class SoraConcatClips:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Join two clips in time. A chained extension repeats some frames of the clip it "
                   "continues: `overlap` of them are kept once, cross-faded from the first clip's version "
                   "to the second's (fade), or dropped from the start of the second clip or the end of "
                   "the first.")
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("images", "frame_count")
    OUTPUT_TOOLTIPS = ("The joined frames.", "Number of frames of the joined clip.")
    FUNCTION = "concat"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "first": ("IMAGE", {"tooltip": "The clip that plays first."}),
            "second": ("IMAGE", {"tooltip": "The clip that plays after it (same frame size)."}),
            "overlap": ("INT", {"default": 0, "min": 0, "max": 10000,
                                "tooltip": "Frames shared by the two clips, dropped once (link the "
                                           "overlap output of an extend / connect node)."}),
            "drop_from": (list(clips.STITCH_DROP), {
                "default": "second_start",
                "tooltip": "Drop the overlap from the start of the second clip (extend forward) or the "
                           "end of the first (extend backward). Not used when fade is on."}),
        }, "optional": {
            "fade": ("BOOLEAN", {
                "default": True,
                "tooltip": "Keep the overlap frames once as a cross-fade from the first clip's version to "
                           "the second's, so the join does not jump from the given frames to their slightly "
                           "softer generated copies. Off: drop one version (drop_from)."}),
        }}

    def concat(self, first, second, overlap, drop_from, fade=True):
        out = clips.stitch(first, second, overlap, drop_from, fade=fade)
        return (out, out.shape[0])


class SoraTrimClip:
    CATEGORY = CATEGORY
    DESCRIPTION = "Drop frames from the start and the end of a clip."
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("images", "frame_count")
    OUTPUT_TOOLTIPS = ("The kept frames.", "Number of kept frames.")
    FUNCTION = "trim"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": IMAGES,
            "skip_start": ("INT", {"default": 0, "min": 0, "max": 100000,
                                   "tooltip": "Frames dropped at the start (link the drop_start output of the loop node)."}),
            "skip_end": ("INT", {"default": 0, "min": 0, "max": 100000,
                                 "tooltip": "Frames dropped at the end (link the drop_end output of the loop node)."}),
        }}

    def trim(self, images, skip_start, skip_end):
        out = clips.trim(images, skip_start, -skip_end if skip_end else 0)
        return (out, out.shape[0])


class SoraPickFrames:
    CATEGORY = CATEGORY
    DESCRIPTION = "Pick frames by index: '0, 8, -1' or ranges 'start:stop:step' (Python rules)."
    RETURN_TYPES = ("IMAGE", "INT")
    RETURN_NAMES = ("images", "frame_count")
    OUTPUT_TOOLTIPS = ("The picked frames, in the order listed.", "Number of picked frames.")
    FUNCTION = "pick"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": IMAGES,
            "frames": ("STRING", {"default": "0", "tooltip": "Indices and ranges, comma separated; -1 is the last frame."}),
        }}

    def pick(self, images, frames):
        out = clips.pick(images, frames)
        return (out, out.shape[0])


class SoraResizeClip:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Resize frames to a width and height (e.g. to the size of the video being generated, "
                   "before making frame conditions from them).")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The resized frames.",)
    FUNCTION = "resize"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": IMAGES,
            "width": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 8, "tooltip": "Target width in pixels."}),
            "height": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 8, "tooltip": "Target height in pixels."}),
            "mode": (list(clips.RESIZE_MODES), {"default": "crop",
                                                "tooltip": "crop: cover and cut the centre; stretch; pad: fit with black bars."}),
        }}

    def resize(self, images, width, height, mode):
        return (clips.resize(images, height, width, mode),)


NODE_CLASS_MAPPINGS = {"SoraConcatClips": SoraConcatClips, "SoraTrimClip": SoraTrimClip,
                       "SoraPickFrames": SoraPickFrames, "SoraResizeClip": SoraResizeClip}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraConcatClips": "Sora Concatenate Clips", "SoraTrimClip": "Sora Trim Clip",
                              "SoraPickFrames": "Sora Pick Frames", "SoraResizeClip": "Sora Resize Clip"}
