"""The networks: the causal video VAE (``vae``, ``vae_blocks``), spacetime patches and 3D RoPE
(``patches``), the diffusion transformer (``dit``, with its fused CPU kernels in ``kernels``) and the
text encoder (``text``). Each is built from its config in ``sora_core.configs``."""
