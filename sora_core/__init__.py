"""sora_core: the Sora-style video generation system as a plain torch library. Never imports ComfyUI.

Layers (each imports only those above it; docs/architecture.md has the whole picture):
    geometry configs weights budget   the shared vocabulary: latent / token grids and valid sizes,
                                      frozen configs with presets, safetensors with the config inside,
                                      the memory estimate of a request
    models/      vae, vae_blocks (causal 3D video VAE), patches (spacetime patches, 3D RoPE),
                 dit (diffusion transformer) + kernels (its fused CPU paths), text (text encoder)
    diffusion/   flow (noise, schedules, denoisers, CFG), samplers, conditions (image-to-video,
                 extension, loops, connections, blends and SDEdit as frame-condition plans)
    media/       video_io (files), clips (stitch, trim, pick, resize, blend), files (atomic writes,
                 new names), outputs (numbered names confined to their folder)
    pipeline     ``SoraModel`` and ``generate(...)``: text -> noise grid -> sampling -> video
    prompts/     prompt expansion into the training captions' style
    world/       the procedural world: scenes, renderer, vocabulary, captions, captioner, metrics
    evaluation/  ``sora eval``: prompt sets, tasks, reports, figures
    train/       native-size bucketed training of the default model
    cli/         the core's commands (generate, train, eval)

The modules that used to sit at the top level are still reachable by their old short names as
attributes (``from sora_core import conditions`` keeps working); import them from their folders in
new code (``from sora_core.diffusion import conditions``).
"""

import importlib

__version__ = "0.1.0"

# old top-level name -> where the module lives now (attribute access only: ``sora_core.conditions``)
_MOVED = {
    "vae": "sora_core.models.vae", "vae_blocks": "sora_core.models.vae_blocks", "dit": "sora_core.models.dit",
    "patches": "sora_core.models.patches", "text": "sora_core.models.text",
    "flow": "sora_core.diffusion.flow", "samplers": "sora_core.diffusion.samplers",
    "conditions": "sora_core.diffusion.conditions",
    "video_io": "sora_core.media.video_io", "clips": "sora_core.media.clips", "files": "sora_core.media.files",
    "outputs": "sora_core.media.outputs",
}


def __getattr__(name: str):
    if name in _MOVED:
        return importlib.import_module(_MOVED[name])
    raise AttributeError(f"module 'sora_core' has no attribute {name!r}")
