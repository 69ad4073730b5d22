"""Model loader: the shipped default model without configuration, a model folder, or components
from ComfyUI's diffusion_models / vae / text_encoders folders."""

from __future__ import annotations

from . import graph_ops
from sora_core import pipeline

from . import host

CATEGORY = "Sora/model"
DEFAULT = "default"
NONE = "none"
KINDS = {"dit": "diffusion_models", "vae": "vae", "text_encoder": "text_encoders"}
FOLDER_FILES = tuple(pipeline.MODEL_FILES[k] for k in ("dit", "vae", "text_encoder"))
MODEL_DIR_TIP = ("A model folder with dit / vae / text_encoder .safetensors (e.g. from sora train), in "
                 "models/diffusion_models; overrides the choices above. 'none' = use them.")


def model_dir_input() -> tuple:
    """In ComfyUI a choice among the model folders found under diffusion_models (a shared workflow
    cannot name any other path); headless (sora run --model) a free path or such a folder name."""
    if host.in_comfyui():
        return ([NONE] + host.model_folders(FOLDER_FILES), {"default": NONE, "tooltip": MODEL_DIR_TIP})
    return ("STRING", {"default": "", "tooltip": MODEL_DIR_TIP + " Headless: any folder path."})


def resolve_model_dir(model_dir) -> "str | None":
    """The folder for a ``model_dir`` value: None for '' / 'none'; in ComfyUI only a folder of
    ``host.model_folders`` (confined to the model folders); headless also a path."""
    if not isinstance(model_dir, str):
        raise ValueError(f"model_dir must be a string, got {type(model_dir).__name__}")
    name = model_dir.strip()
    if name in ("", NONE):
        return None
    if host.in_comfyui():
        return str(host.model_folder(name, FOLDER_FILES))
    if name in host.model_folders(FOLDER_FILES):
        return str(host.model_folder(name, FOLDER_FILES))
    return name


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
            "optional": {"model_dir": model_dir_input()},
        }

    @classmethod
    def VALIDATE_INPUTS(cls, model_dir=""):
        """model_dir: '' (workflows saved before it was a choice), 'none', or a listed model folder;
        ComfyUI leaves this input's check to this method so older workflows keep loading."""
        try:
            resolve_model_dir(model_dir)
        except (ValueError, FileNotFoundError) as e:
            return str(e)
        return True

    def load(self, dit, vae, text_encoder, dtype, model_dir=""):
        folder = resolve_model_dir(model_dir)
        chosen = {"dit": dit, "vae": vae, "text_encoder": text_encoder}
        files = {k: None if v == DEFAULT else host.model_path(KINDS[k], v) for k, v in chosen.items()}
        return (load_managed(folder, files, dtype),)


def load_managed(folder, files: dict, dtype: str) -> graph_ops.LoadedModel:
    """Load onto the offload device and register the components with ComfyUI's model management
    (``host.ManagedModel``): each is moved to its compute device right before it is used, and
    ComfyUI may unload or offload it between runs. Headless both devices are the CPU."""
    compute, offload = host.component_devices("dit")
    handle = graph_ops.load_model(folder, files, dtype, offload, compute_device=compute)
    managed = host.ManagedModel({k: getattr(handle.model, k) for k in host.MANAGED_KINDS}, handle.name)
    return graph_ops.with_placement(handle, managed.place, compute)


NODE_CLASS_MAPPINGS = {"SoraModelLoader": SoraModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraModelLoader": "Sora Model Loader"}
