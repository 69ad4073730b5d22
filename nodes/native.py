"""Editing for ComfyUI's own video models (Wan, LTX-Video, HunyuanVideo ...): the pack's frame
conditions as LATENT operations for the native KSampler / SamplerCustomAdvanced.

Each node takes ComfyUI's VAE (its latent geometry, read from the VAE object: temporal factor, spatial
factor, channels), frames (IMAGE) and the LATENT to sample, encodes the known frames, writes them
into ``samples`` at their latent frames and sets a per-frame ``noise_mask`` (B, 1, T, h, w) with 1 =
generate and 0 = keep (``sora_core.diffusion.latent_edits``). The numbers the stitching nodes need
(overlap, frames to trim) come out beside the LATENT; decode with ComfyUI's VAE Decode and join with
Sora Concatenate Clips / Sora Trim Clip, after Sora Match Colours for extensions.
"""

from __future__ import annotations

import torch

from sora_core.diffusion import conditions, latent_edits
from sora_core.diffusion.conditions import ConditionError
from sora_core.media import clips

CATEGORY = "Sora/native latents"
VAE = ("VAE", {"tooltip": "The model's VAE (ComfyUI's VAE Loader): it encodes the frames and sets the "
                          "latent geometry."})
LATENT = ("LATENT", {"tooltip": "The latent to sample (e.g. an empty video latent for this VAE): its size and "
                                "length; a noise mask it already has is kept on the frames set here."})
STRENGTH = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                      "tooltip": "1 keeps the given frames exactly (noise mask 0); lower lets the sampler change "
                                 "them (noise mask 1 - strength)."})
CONTEXT = ("INT", {"default": conditions.EXTEND_CONTEXT, "min": 1, "max": 64,
                   "tooltip": "Latent frames of context (the first is one pixel frame at the start of a clip, "
                              "each other is temporal-factor frames)."})


def latent_spec(vae) -> latent_edits.LatentSpec:
    """The latent geometry of ComfyUI's VAE object (comfy.sd.VAE): ``downscale_index_formula``
    (temporal, height, width factors) where the VAE has one, else its temporal / spatial compression
    methods; ``latent_channels``. An image VAE is refused."""
    if getattr(vae, "latent_dim", None) != 3:
        raise ConditionError(f"vae: {type(vae).__name__} with latent_dim {getattr(vae, 'latent_dim', None)} is not a "
                             f"video VAE; these nodes need a video model's VAE (Wan, LTX-Video, HunyuanVideo ...)")
    formula = getattr(vae, "downscale_index_formula", None)
    if formula:
        ft, fs = int(formula[0]), int(formula[-1])
    else:
        ft, fs = vae.temporal_compression_decode(), vae.spacial_compression_encode()
    if ft is None:
        raise ConditionError("vae: the VAE does not say its temporal compression; it is not a causal video VAE")
    return latent_edits.LatentSpec(int(ft), int(fs), int(vae.latent_channels))


def _encoder(vae, spec: latent_edits.LatentSpec) -> latent_edits.SpecVAE:
    """``vae.encode`` (IMAGE (T, H, W, 3) in [0, 1] -> (1, C, t, h, w)) as the core's encoder."""
    def encode(video: torch.Tensor) -> torch.Tensor:
        return torch.cat([vae.encode(clips.video_to_clip(video[b:b + 1])) for b in range(video.shape[0])])
    return latent_edits.SpecVAE(spec, encode)


def _frames(images, name: str, latent: torch.Tensor, spec) -> torch.Tensor:
    video = clips.clip_to_video(clips.check_clip(images, name))
    latent_edits.check_frames_fit(video, latent, spec, name)
    return video


def _apply(node: str, latent: dict, vae, build) -> tuple[dict, latent_edits.LatentEdit]:
    """Run ``build(encoder, samples, spec) -> plan`` and write the plan into a copy of ``latent``;
    errors are named after the node."""
    try:
        spec = latent_spec(vae)
        samples = spec.check_latent(latent["samples"], "latent")
        plan = build(_encoder(vae, spec), samples, spec)
        edit = latent_edits.to_latent(plan, samples, spec, latent.get("noise_mask"))
    except (ConditionError, clips.ClipError, ValueError) as e:
        raise type(e)(f"{node}: {e}") from None
    out = dict(latent)
    out["samples"], out["noise_mask"] = edit.samples, edit.noise_mask
    return out, edit


class _Native:
    CATEGORY = CATEGORY
    FUNCTION = "build"


class SoraNativeExtendForward(_Native):
    DESCRIPTION = ("Continue a video with a native video model: its last frames are written at the start of the "
                   "latent and kept while the sampler generates the rest. Decode, match colours (start) and join "
                   "with Sora Concatenate Clips (overlap from here, drop from second_start).")
    RETURN_TYPES = ("LATENT", "INT")
    RETURN_NAMES = ("latent", "overlap")
    OUTPUT_TOOLTIPS = ("The latent for KSampler (samples + noise mask).", "Frames the new clip repeats from the video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": VAE, "video": ("IMAGE", {"tooltip": "The video to continue."}), "latent": LATENT,
                             "latent_frames": CONTEXT, "strength": STRENGTH}}

    def build(self, vae, video, latent, latent_frames, strength):
        out, edit = _apply("Sora Native Extend Forward", latent, vae, lambda enc, lat, spec: conditions.extend_forward(
            enc, _frames(video, "video", lat, spec), latent_frames, strength))
        return (out, edit.drop_start)


class SoraNativeExtendBackward(_Native):
    DESCRIPTION = ("Lead into a video with a native video model: its first frames are written at the end of the "
                   "latent. Decode, match colours (end) and join with Sora Concatenate Clips (new clip first, drop "
                   "from first_end).")
    RETURN_TYPES = ("LATENT", "INT")
    RETURN_NAMES = ("latent", "overlap")
    OUTPUT_TOOLTIPS = ("The latent for KSampler (samples + noise mask).", "Frames the new clip repeats from the video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": VAE, "video": ("IMAGE", {"tooltip": "The video to lead into."}), "latent": LATENT,
                             "latent_frames": CONTEXT, "strength": STRENGTH}}

    def build(self, vae, video, latent, latent_frames, strength):
        out, edit = _apply("Sora Native Extend Backward", latent, vae, lambda enc, lat, spec: conditions.extend_backward(
            enc, _frames(video, "video", lat, spec), latent_frames, strength))
        return (out, edit.drop_end)


class SoraNativeSeamlessLoop(_Native):
    DESCRIPTION = ("A seamless loop through an image with a native video model: the image is kept at the start "
                   "and (as a still) at the end; trim drop_start and drop_end frames of the decoded video (Sora "
                   "Trim Clip) so it ends on the image and wraps straight on.")
    RETURN_TYPES = ("LATENT", "INT", "INT")
    RETURN_NAMES = ("latent", "drop_start", "drop_end")
    OUTPUT_TOOLTIPS = ("The latent for KSampler (samples + noise mask).", "Frames to trim from the start.",
                       "Frames to trim from the end.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": VAE, "image": ("IMAGE", {"tooltip": "The loop's key frame (first frame used)."}),
                             "latent": LATENT, "strength": STRENGTH}}

    def build(self, vae, image, latent, strength):
        out, edit = _apply("Sora Native Seamless Loop", latent, vae, lambda enc, lat, spec: conditions.loop(
            enc, _frames(image[:1], "image", lat, spec), strength))
        return (out, edit.drop_start, edit.drop_end)


class SoraNativeConnect(_Native):
    DESCRIPTION = ("Connect two videos with a native video model: the end of the first is kept at the start of the "
                   "latent and the start of the second at its end; the sampler invents the passage.")
    RETURN_TYPES = ("LATENT", "INT", "INT")
    RETURN_NAMES = ("latent", "overlap_first", "overlap_second")
    OUTPUT_TOOLTIPS = ("The latent for KSampler (samples + noise mask).", "Frames the new clip repeats from the first "
                       "video.", "Frames the new clip repeats from the second video.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": VAE, "first": ("IMAGE", {"tooltip": "The video before the transition."}),
                             "second": ("IMAGE", {"tooltip": "The video after the transition."}), "latent": LATENT,
                             "latent_frames": ("INT", {**CONTEXT[1], "default": 1}), "strength": STRENGTH}}

    def build(self, vae, first, second, latent, latent_frames, strength):
        out, edit = _apply("Sora Native Connect", latent, vae, lambda enc, lat, spec: conditions.connect(
            enc, _frames(first, "first", lat, spec), _frames(second, "second", lat, spec), latent_frames, strength))
        return (out, edit.drop_start, edit.drop_end)


class SoraNativePinImages(_Native):
    DESCRIPTION = ("Pin images at any frames of a native video latent: frame 0 is encoded alone, any later frame as "
                   "a still filling the latent frame that holds it (temporal-factor frames).")
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The latent for KSampler (samples + noise mask).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": VAE, "images": ("IMAGE", {"tooltip": "One image per listed frame, or one for all."}),
                             "latent": LATENT,
                             "frames": ("STRING", {"default": "0, -1", "tooltip": "Output pixel frames to pin the "
                                                   "images at, comma separated; -1 is the last frame."}),
                             "strength": STRENGTH}}

    def build(self, vae, images, latent, frames, strength):
        def plan(enc, lat, spec):
            total = spec.pixel_frames(lat)
            idx = clips.parse_frame_list(frames, total)
            stills = _frames(images, "images", lat, spec).permute(2, 1, 0, 3, 4)   # (N, 3, 1, H, W)
            return latent_edits.pin_images(enc, stills, idx, total, strength)
        return (_apply("Sora Native Pin Images", latent, vae, plan)[0],)


class SoraNativeSDEditSpan(_Native):
    DESCRIPTION = ("Re-generate a span of a video with a native video model (SDEdit): the video is encoded into the "
                   "latent, the latent frames holding the span are generated and the rest kept. The KSampler's "
                   "denoise sets how far the span may move from the source.")
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The source latent with a noise mask over the span, for KSampler (denoise < 1).",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae": VAE, "video": ("IMAGE", {"tooltip": "The video to edit (1 + temporal factor * k "
                                                              "frames)."}),
                             "start_frame": ("INT", {"default": 0, "min": -100000, "max": 100000,
                                                     "tooltip": "First frame of the span (negative: from the end)."}),
                             "end_frame": ("INT", {"default": 0, "min": -100000, "max": 100000,
                                                   "tooltip": "Frame after the span; 0 = to the end."})}}

    def build(self, vae, video, start_frame, end_frame):
        try:
            spec = latent_spec(vae)
            enc = _encoder(vae, spec)
            source = clips.clip_to_video(clips.fit_frames(video, spec.ft, "error", "video"))
            plan = latent_edits.sdedit_span(enc, source, start_frame, end_frame)
            edit = latent_edits.to_latent(plan, plan.start.latents, spec)
        except (ConditionError, clips.ClipError, ValueError) as e:
            raise type(e)(f"Sora Native SDEdit Span: {e}") from None
        return ({"samples": edit.samples, "noise_mask": edit.noise_mask},)


class SoraMatchColors(_Native):
    DESCRIPTION = ("Match a generated clip's colour and brightness to the video it extends, over the frames they "
                   "share, so joins agree and chained extensions do not drift. Put it between VAE Decode and Sora "
                   "Concatenate Clips.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("The clip with matched colours (unchanged when off).",)
    FUNCTION = "match"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "The decoded new clip."}),
            "reference": ("IMAGE", {"tooltip": "The given video it extends."}),
            "overlap": ("INT", {"default": 1, "min": 1, "max": 10000,
                                "tooltip": "Frames the clip repeats from the video (the extend node's overlap)."}),
            "at": (list(clips.MATCH_AT), {"default": "start", "tooltip": "Where the clip's shared frames are: start "
                                          "(extend forward) or end (extend backward)."}),
            "space": (list(clips.COLOR_SPACES), {"default": "ycbcr", "tooltip": "ycbcr: brightness apart from colour "
                                                 "(undoes a cast exactly); lab: perceptual (CIE Lab); rgb."}),
            "enabled": ("BOOLEAN", {"default": True, "tooltip": "Off passes the clip through unchanged."}),
        }}

    def match(self, images, reference, overlap, at, space, enabled):
        if not enabled:
            return (images,)
        try:
            return (clips.match_colors(images, reference, overlap, at, space),)
        except clips.ClipError as e:
            raise clips.ClipError(f"Sora Match Colours: {e}") from None


NODE_CLASS_MAPPINGS = {"SoraNativeExtendForward": SoraNativeExtendForward,
                       "SoraNativeExtendBackward": SoraNativeExtendBackward,
                       "SoraNativeSeamlessLoop": SoraNativeSeamlessLoop, "SoraNativeConnect": SoraNativeConnect,
                       "SoraNativePinImages": SoraNativePinImages, "SoraNativeSDEditSpan": SoraNativeSDEditSpan,
                       "SoraMatchColors": SoraMatchColors}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraNativeExtendForward": "Sora Native Extend Forward (latent)",
                              "SoraNativeExtendBackward": "Sora Native Extend Backward (latent)",
                              "SoraNativeSeamlessLoop": "Sora Native Seamless Loop (latent)",
                              "SoraNativeConnect": "Sora Native Connect Clips (latent)",
                              "SoraNativePinImages": "Sora Native Pin Images (latent)",
                              "SoraNativeSDEditSpan": "Sora Native SDEdit Span (latent)",
                              "SoraMatchColors": "Sora Match Colours"}
