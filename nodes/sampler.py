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
                "cfg": ("FLOAT", {"default": _SCHEDULE.cfg, "min": 1.0, "max": 30.0, "step": 0.1,
                                  "tooltip": "Classifier-free guidance scale; 1 = off (half the compute)."}),
                "sampler_name": (list(samplers.SAMPLERS), {"default": _SCHEDULE.sampler,
                                                           "tooltip": "The ODE / SDE solver."}),
                "shift": ("FLOAT", {"default": _SCHEDULE.shift, "min": 0.1, "max": 20.0, "step": 0.1,
                                    "tooltip": "Schedule shift: higher spends more steps at high noise "
                                               "(larger or longer videos)."}),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                      "tooltip": "1 = generate from noise; lower keeps more of the input "
                                                 "latent (SDEdit strength)."}),
            },
            "optional": {
                "frame_conditions": ("SORA_FRAME_CONDITIONS", {"tooltip": "Frames to pin (Sora frame-condition nodes)."}),
                "condition_mode": (list(conditions.MODES), {
                    "default": "timestep",
                    "tooltip": "timestep: pinned frames shown clean at t = 0 (models trained with condition "
                               "masks, like the default); replace: re-noised each step (any model)."}),
            },
        }

    def sample(self, model, conditioning, latent, seed, steps, cfg, sampler_name, shift, denoise,
               frame_conditions=(), condition_mode="timestep"):
        progress = host.Progress(steps, "sampling")

        def step(i, denoised):
            preview = graph_ops.preview_image(model, denoised).numpy() if progress.wants_preview() else None
            progress.update(i, preview)

        try:
            out = graph_ops.sample(model, conditioning, latent, seed, steps, cfg, sampler_name, shift, denoise,
                                   frame_conditions or (), condition_mode, callback=step)
        finally:
            progress.close()
        return (out,)


NODE_CLASS_MAPPINGS = {"SoraSampler": SoraSampler}
NODE_DISPLAY_NAME_MAPPINGS = {"SoraSampler": "Sora Sampler"}
