"""Model loader: the shipped default model without configuration, a model folder, or components
from ComfyUI's diffusion_models / vae / text_encoders folders."""

from __future__ import annotations

from sora_core import graph_ops

from . import host

CATEGORY = "Sora/model"
DEFAULT = "default"
KINDS = {"dit": "diffusion_models", "vae": "vae", "text_encoder": "text_encoders"}


class SoraModelLoader:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Load the Sora model: VAE, text encoder and diffusion transformer. 'default' is the "
                   "small model shipped with the pack (runs on a CPU); any component can come from a "
                   "safetensors file in ComfyUI's model folders, or all three from a model folder.")
    RETURN_TYPES = ("SORA_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The model bundle for the other Sora nodes.",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):
        def choices(kind):
            return [DEFAULT] + host.model_files(KINDS[kind])
        return {
            "required": {
                "dit": (choices("dit"), {"default": DEFAULT,
                                         "tooltip": "Diffusion transformer, from models/diffusion_models."}),
                "vae": (choices("vae"), {"default": DEFAULT, "tooltip": "Video VAE, from models/vae."}),
                "text_encoder": (choices("text_encoder"), {
                    "default": DEFAULT, "tooltip": "Text encoder, from models/text_encoders."}),
                "dtype": (list(graph_ops.DTYPES), {
                    "default": "auto",
                    "tooltip": "Compute dtype of the transformer: auto = bfloat16 autocast (fast on CPUs "
                               "with AMX), float32 = exact; the VAE stays float32 unless chosen."}),
            },
            "optional": {
                "model_dir": ("STRING", {"default": "",
                                         "tooltip": "A folder with vae / text_encoder / dit .safetensors "
                                                    "(e.g. from sora train); overrides the choices above."}),
            },
        }

    def load(self, dit, vae, text_encoder, dtype, model_dir=""):
        chosen = {"dit": dit, "vae": vae, "text_encoder": text_encoder}
        files = {k: None if v == DEFAULT else host.model_path(KINDS[k], v) for k, v in chosen.items()}
        return (graph_ops.load_model(model_dir.strip() or None, files, dtype, host.device()),)


NODE_CLASS_MAPPINGS = {"SoraModelLoader": SoraModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraModelLoader": "Sora Model Loader"}
