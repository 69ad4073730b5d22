"""Test-only ComfyUI nodes, linked into the temporary server's custom_nodes by tests/comfyui_server.py
(never shipped with the pack).

``SoraTestConditioning`` gives a CONDITIONING of Wan's text width (4096, fixed in ComfyUI's WanModel)
from a seed, so graphs with a tiny random Wan DiT run without ComfyUI's umT5, whose config is fixed
at XXL size.
"""

import torch


class SoraTestConditioning:
    CATEGORY = "testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31}),
                             "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                             "width": ("INT", {"default": 4096, "min": 1, "max": 8192})}}

    def make(self, seed, tokens, width):
        g = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, tokens, width, generator=g), {}]],)


NODE_CLASS_MAPPINGS = {"SoraTestConditioning": SoraTestConditioning}
