"""The DiT sampler: text + patch-grid noise (+ frame conditions, + SDEdit of the input latent when
denoise < 1: the ``conditions.sdedit`` plan, as in ``generate`` and ``sora eval``) -> latents, with a
progress bar and latent previews in ComfyUI, interruptible between steps."""

from __future__ import annotations

from sora_core.diffusion import conditions, samplers
from sora_core import configs
from . import graph_ops

from . import host

CATEGORY = "Sora/sampling"
_SCHEDULE = configs.ScheduleConfig()
AUTO = "auto"                                   # the model's own shift / condition mode
CONDITION_MODES = (AUTO,) + tuple(conditions.MODES)


class SoraSampler:
    CATEGORY = CATEGORY
    DESCRIPTION = ("Generate video latents with the diffusion transformer (flow matching). Starts from "
                   "seeded noise the size of the latent; with denoise < 1 it edits the latent instead "
                   "(SDEdit); frame conditions pin frames for image-to-video, extension, loops and "
                   "connections.")
    RETURN_TYPES = ("LATENT",)
    RETURN_NAMES = ("latent",)
    OUTPUT_TOOLTIPS = ("The denoised latents, for Sora VAE Decode.",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("SORA_MODEL", {"tooltip": "The Sora model."}),
                "conditioning": ("SORA_CONDITIONING", {"tooltip": "Prompts from Sora Text Encode."}),
                "latent": ("LATENT", {"tooltip": "The grid to fill (Sora Empty Latent), or the video to "
                                                 "edit (Sora VAE Encode) when denoise < 1."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff, "control_after_generate": True,
                                 "tooltip": "Seed of the noise (drawn on the CPU: same video on any device)."}),
                "steps": ("INT", {"default": _SCHEDULE.steps, "min": 1, "max": 500,
                                  "tooltip": "Sampling steps."}),
                "cfg": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance scale; 1 = off (half the compute). 0 = "
                                             "the model's own (the default model's 3, Wan 2.1 / 2.2: 5)."}),
                "sampler_name": (list(samplers.SAMPLERS), {"default": _SCHEDULE.sampler,
                                                           "tooltip": "The ODE / SDE solver."}),
                "shift": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 20.0, "step": 0.1,
                                    "tooltip": "Schedule shift: higher spends more steps at high noise "
                                               "(larger or longer videos). 0 = the model's own (the "
                                               "default model's 3.0, Wan 2.1 / 2.2: 5.0)."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "1 = generate from noise; lower keeps more of the input "
                                                 "latent (SDEdit strength)."}),
            },
            "optional": {
                "frame_conditions": ("SORA_FRAME_CONDITIONS", {"tooltip": "Frames to pin (Sora frame-condition nodes)."}),
                "condition_mode": (list(CONDITION_MODES), {
                    "default": AUTO,
                    "tooltip": "How pinned frames are held. auto: the model's own way (timestep for the "
                               "default model and Wan 2.2 TI2V, replace for Wan 2.1); timestep: shown clean "
                               "at their own t (models trained with per-frame or per-token times); "
                               "replace: re-noised each step (any model)."}),
            },
        }

    def sample(self, model, conditioning, latent, seed, steps, cfg, sampler_name, shift, denoise,
               frame_conditions=(), condition_mode=AUTO):
        progress = host.Progress(steps, "sampling")

        def step(i, denoised):
            preview = graph_ops.preview_image(model, denoised).numpy() if progress.wants_preview() else None
            progress.update(i, preview)

        try:
            mode = None if condition_mode == AUTO else condition_mode
            out = graph_ops.sample(model, conditioning, latent, seed, steps, cfg or None, sampler_name, shift or None,
                                   denoise, frame_conditions or (), mode, callback=step)
        finally:
            progress.close()
        return (out,)


NODE_CLASS_MAPPINGS = {"SoraSampler": SoraSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraSampler": "Sora Sampler"}
