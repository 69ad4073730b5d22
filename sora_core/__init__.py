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
    clips       clip utilities: stitch with overlap, trim, pick, resize, transition curves
    outputs     numbered output names that never overwrite or leave the output folder
    graph_ops   the operations behind the ComfyUI nodes (model handle, prompts, sampling, conditions)
    workflow    loading the node pack as ComfyUI does, /object_info, UI -> API workflow conversion
    executor    validating and running an API-format workflow headless
    cli         the ``sora`` command line

Never imports ComfyUI.
"""

__version__ = "0.1.0"
