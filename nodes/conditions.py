"""Frame conditions: prompting with images and video. Every node here makes the same
SORA_FRAME_CONDITIONS value (clean latent frames + where they go + strength) for the sampler, and
can append to conditions made upstream. Frames must already have the output's width and height."""

from __future__ import annotations

from sora_core.media import clips
from sora_core.diffusion import conditions
from . import graph_ops

CATEGORY = "Sora/conditions"
CONDS = "SORA_FRAME_CONDITIONS"
MODEL = ("SORA_MODEL", {"tooltip": "The model whose VAE encodes the frames."})
STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                      "tooltip": "1 pins the frames exactly; lower lets the sampler change them (0 = free)."})
LATENT_FRAMES = ("INT", {"default": 1, "min": 1, "max": 64,
                         "tooltip": "Latent frames of context (each is one frame at the start, else "
                                    "temporal-factor frames)."})
# extensions default to 2: the motion so far, and 5 (forward) / 8 (backward) frames to cross-fade over
EXTEND_LATENT_FRAMES = ("INT", {**LATENT_FRAMES[1], "default": conditions.EXTEND_CONTEXT})
PREVIOUS = {"optional": {"previous": (CONDS, {"tooltip": "Conditions to add these to (later ones win on shared frames)."})}}


def _chain(previous, new) -> tuple:
    return tuple(previous or ()) + tuple(new)


class _ConditionNode:
    CATEGORY = CATEGORY
    FUNCTION = "build"


class SoraImageToVideo(_ConditionNode):
    DESCRIPTION = "Animate an image: its first frame is pinned as the first (or last) frame of the video."
    RETURN_TYPES = (CONDS,)
    RETURN_NAMES = ("frame_conditions",)
    OUTPUT_TOOLTIPS = ("Conditions for the Sora sampler.",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL,
            "image": ("IMAGE", {"tooltip": "The image (its first frame is used)."}),
            "position": (["start", "end"], {"default": "start",
                                            "tooltip": "Begin the video with the image, or end on it."}),
            "strength": STRENGTH,
        }, **PREVIOUS}

    def build(self, model, image, position, strength, previous=None):
        return (_chain(previous, graph_ops.image_conditions(model, image, position, strength)),)


class SoraExtendForward(_ConditionNode):
    DESCRIPTION = ("Continue a video forward in time: its last frames open the new clip. Stitch with Sora "
                   "Concatenate Clips (overlap from this node, drop from second_start).")
    RETURN_TYPES = (CONDS, "INT")
    RETURN_NAMES = ("frame_conditions", "overlap")
    OUTPUT_TOOLTIPS = ("Conditions for the Sora sampler.", "Frames the new clip repeats from the video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": MODEL, "video": ("IMAGE", {"tooltip": "The video to continue."}),
                             "latent_frames": EXTEND_LATENT_FRAMES, "strength": STRENGTH}, **PREVIOUS}

    def build(self, model, video, latent_frames, strength, previous=None):
        conds, overlap = graph_ops.extend_conditions(model, video, "forward", latent_frames, strength)
        return (_chain(previous, conds), overlap)


class SoraExtendBackward(_ConditionNode):
    DESCRIPTION = ("Extend a video backward in time: its first frames close the new clip, which leads into "
                   "it. Stitch with Sora Concatenate Clips (new clip first, drop from first_end).")
    RETURN_TYPES = (CONDS, "INT")
    RETURN_NAMES = ("frame_conditions", "overlap")
    OUTPUT_TOOLTIPS = ("Conditions for the Sora sampler.", "Frames the new clip repeats from the video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": MODEL, "video": ("IMAGE", {"tooltip": "The video to lead into."}),
                             "latent_frames": EXTEND_LATENT_FRAMES, "strength": STRENGTH}, **PREVIOUS}

    def build(self, model, video, latent_frames, strength, previous=None):
        conds, overlap = graph_ops.extend_conditions(model, video, "backward", latent_frames, strength)
        return (_chain(previous, conds), overlap)


class SoraSeamlessLoop(_ConditionNode):
    DESCRIPTION = ("A seamless infinite loop through an image: it is pinned at the start and at the end; "
                   "trim drop_start and drop_end frames (Sora Trim Clip) so the clip ends on the image and "
                   "wraps straight on to the next frame.")
    RETURN_TYPES = (CONDS, "INT", "INT")
    RETURN_NAMES = ("frame_conditions", "drop_end", "drop_start")
    OUTPUT_TOOLTIPS = ("Conditions for the Sora sampler.", "Frames to trim from the end of the decoded video.",
                       "Frames to trim from the start of the decoded video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": MODEL, "image": ("IMAGE", {"tooltip": "The loop's key frame (first frame used)."}),
                             "strength": STRENGTH}, **PREVIOUS}

    def build(self, model, image, strength, previous=None):
        conds, start, end = graph_ops.loop_conditions(model, image, strength)
        return (_chain(previous, conds), end, start)


class SoraConnectClips(_ConditionNode):
    DESCRIPTION = ("Connect two videos: the end of the first opens the new clip and the start of the second "
                   "closes it, so the sampler invents the passage between them.")
    RETURN_TYPES = (CONDS, "INT", "INT")
    RETURN_NAMES = ("frame_conditions", "overlap_first", "overlap_second")
    OUTPUT_TOOLTIPS = ("Conditions for the Sora sampler.", "Frames the new clip repeats from the first video.",
                       "Frames the new clip repeats from the second video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": MODEL,
                             "first": ("IMAGE", {"tooltip": "The video before the transition."}),
                             "second": ("IMAGE", {"tooltip": "The video after the transition."}),
                             "latent_frames": LATENT_FRAMES, "strength": STRENGTH}, **PREVIOUS}

    def build(self, model, first, second, latent_frames, strength, previous=None):
        conds, a, b = graph_ops.connect_conditions(model, first, second, latent_frames, strength)
        return (_chain(previous, conds), a, b)


class SoraClipBlend(_ConditionNode):
    DESCRIPTION = ("Gradual transition between two clips of the same size: their latents are interpolated "
                   "along a curve over a range of the duration; the sampler then makes the blend coherent "
                   "(frames inside the transition are held less firmly).")
    RETURN_TYPES = (CONDS,)
    RETURN_NAMES = ("frame_conditions",)
    OUTPUT_TOOLTIPS = ("Per-frame conditions for the Sora sampler (the latent must have as many frames).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL,
            "first": ("IMAGE", {"tooltip": "The clip at the start."}),
            "second": ("IMAGE", {"tooltip": "The clip at the end (same size; the shorter length is used)."}),
            "curve": (list(clips.CURVES), {"default": "ease_in_out", "tooltip": "Shape of the transition."}),
            "start": ("FLOAT", {"default": 0.25, "min": 0.0, "max": 1.0, "step": 0.05,
                                "tooltip": "Where the transition starts, as a fraction of the duration."}),
            "end": ("FLOAT", {"default": 0.75, "min": 0.0, "max": 1.0, "step": 0.05,
                              "tooltip": "Where it ends (after start)."}),
            "strength": ("FLOAT", {"default": 0.9, "min": 0.0, "max": 1.0, "step": 0.05,
                                   "tooltip": "How firmly frames outside the transition are held."}),
            "transition_strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                              "tooltip": "How firmly blended frames are held (lower = more invention)."}),
        }, **PREVIOUS}

    def build(self, model, first, second, curve, start, end, strength, transition_strength, previous=None):
        conds = graph_ops.blend_conditions(model, first, second, curve, start, end, strength, transition_strength)
        return (_chain(previous, conds),)


NODE_CLASS_MAPPINGS = {"SoraImageToVideo": SoraImageToVideo, "SoraExtendForward": SoraExtendForward,
                       "SoraExtendBackward": SoraExtendBackward, "SoraSeamlessLoop": SoraSeamlessLoop,
                       "SoraConnectClips": SoraConnectClips, "SoraClipBlend": SoraClipBlend}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraImageToVideo": "Sora Image to Video", "SoraExtendForward": "Sora Extend Forward",
                              "SoraExtendBackward": "Sora Extend Backward", "SoraSeamlessLoop": "Sora Seamless Loop",
                              "SoraConnectClips": "Sora Connect Clips", "SoraClipBlend": "Sora Clip Blend (transition)"}
