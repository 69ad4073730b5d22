"""The patch-grid noise: an empty video latent whose size chooses the output's duration, resolution
and aspect ratio (the sampler fills it with seeded noise)."""

from __future__ import annotations

from sora_core import geometry
from . import graph_ops

CATEGORY = "Sora/latent"
ASPECTS = ["custom"] + list(geometry.ASPECTS)


class SoraEmptyLatent:
    CATEGORY = CATEGORY
    DESCRIPTION = ("An empty video latent (the spacetime patch grid the sampler fills with noise). Size "
                   "by width, height and frames, or by an aspect preset and seconds x fps; values are "
                   "snapped to what the model's VAE and patch size allow, and the grid is described.")
    RETURN_TYPES = ("LATENT", "STRING", "FLOAT", "INT", "INT", "INT")
    RETURN_NAMES = ("latent", "grid", "fps", "width", "height", "frames")
    OUTPUT_TOOLTIPS = ("{'samples': (B, C, T_lat, H_lat, W_lat)} of zeros.",
                       "Pixel, latent and token grid of the request (and any snapping).",
                       "The frame rate, for the save node.", "Width in pixels.", "Height in pixels.",
                       "Number of pixel frames.")
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("SORA_MODEL", {"tooltip": "The model whose VAE and patch size define the grid."}),
            "width": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 8, "tooltip": "Width in pixels."}),
            "height": ("INT", {"default": 64, "min": 8, "max": 4096, "step": 8, "tooltip": "Height in pixels."}),
            "frames": ("INT", {"default": 17, "min": 1, "max": 100000,
                               "tooltip": "Pixel frames: 1 for an image, else 1 + k x (temporal factor)."}),
            "aspect": (ASPECTS, {"default": "custom",
                                 "tooltip": "custom = width x height; a preset keeps about that many pixels "
                                            "at its aspect ratio (wide 16:9, tall 9:16 ...)."}),
            "seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 600.0, "step": 0.25,
                                  "tooltip": "Duration; 0 = use frames instead."}),
            "fps": ("FLOAT", {"default": 8.0, "min": 1.0, "max": 120.0, "step": 1.0,
                              "tooltip": "Frames per second (with seconds, and passed on to the save node)."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "Videos generated at once."}),
        }}

    def make(self, model, width, height, frames, aspect, seconds, fps, batch_size):
        geo, notes = graph_ops.request_geometry(model, width, height, frames, aspect, seconds, fps)
        text = geo.describe() + (f" (batch {batch_size})" if batch_size > 1 else "")
        if notes:
            text += "; " + "; ".join(notes)
        latent = graph_ops.empty_latent(model, geo, batch_size)
        return (latent, text, float(fps), geo.width, geo.height, geo.frames)


NODE_CLASS_MAPPINGS = {"SoraEmptyLatent": SoraEmptyLatent}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraEmptyLatent": "Sora Empty Latent (patch grid)"}
