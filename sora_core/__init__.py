"""sora_core: the Sora-style video generation system as a plain torch library.

Modules, one concept each:
    geometry    pixel / latent / token grids, valid frame counts and sizes
    configs     frozen dataclass configs and named presets for every component
    weights     safetensors save/load with the config in the metadata
    vae         causal 3D video VAE (the video compression network)
    patches     spacetime patchify / unpatchify and 3D rotary embeddings
    dit         the diffusion transformer
    text        text encoder interface and the byte-level encoder
    flow        flow-matching schedule, denoiser and CFG wrappers
    samplers    euler / heun / dpmpp_2m samplers (k-diffusion style pure functions)
    conditions  frame conditions (image-to-video, extend, loop, connect, SDEdit)
    pipeline    ``generate(...)``: text -> noise grid -> sampling -> video
    world       the procedural world: scenes, renderer, captions, captioner, metrics
    train       native-size bucketed training of the default model
    cli         the ``sora`` command line

Never imports ComfyUI.
"""

__version__ = "0.1.0"
