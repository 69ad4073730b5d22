"""VAE encode / decode between IMAGE frames and video LATENTs, chunked so long videos fit in memory."""

from __future__ import annotations

from sora_core.media import clips
from . import graph_ops

from . import host

CATEGORY = "Sora/latent"


class SoraVAEEncode:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Encode frames into a video latent with the model's causal VAE (chunk by chunk). The "
                   "frame count must be 1 or 1 + k x (temporal factor): extra frames are trimmed or "
                   "padded as chosen.")
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("{'samples': (1, C, T_lat, H_lat, W_lat)}.",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SORA_MODEL", {"tooltip": "The model whose VAE encodes."}),
            "images": ("IMAGE", {"tooltip": "Frames (T, H, W, 3); H and W multiples of the VAE's spatial factor."}),
            "fit_frames": (["trim", "pad", "error"], {
                "default": "trim",
                "tooltip": "An invalid frame count: drop the last frames, repeat the last frame, or stop."}),
        }}

    def encode(self, model, images, fit_frames):
        return (graph_ops.encode_images(model, images, fit_frames),)


class SoraVAEDecode:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Decode a video latent into frames with the model's causal VAE, chunk by chunk with "
                   "a progress bar; tiles split very large frames. Batches come out one video after "
                   "another.")
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("Frames (B*T, H, W, 3) in 0..1.",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SORA_MODEL", {"tooltip": "The model whose VAE decodes."}),
            "latent": ("LATENT", {"tooltip": "Video latents from the sampler or Sora VAE Encode."}),
            "tile_size": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 32,
                                  "tooltip": "Decode in spatial tiles of this many pixels (0 = whole frames)."}),
        }}

    def decode(self, model, latent, tile_size):
        bar = None

        def progress(done, total):
            nonlocal bar
            bar = bar or host.Progress(total, "decoding", "frame")
            bar.update(done)

        try:
            images = graph_ops.decode_latent(model, latent, tile_size, progress)
        finally:
            if bar is not None:
                bar.close()
        return (clips.check_clip(images),)


NODE_CLASS_MAPPINGS = {"SoraVAEEncode": SoraVAEEncode, "SoraVAEDecode": SoraVAEDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraVAEEncode": "Sora VAE Encode", "SoraVAEDecode": "Sora VAE Decode"}
