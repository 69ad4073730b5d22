"""The open Wan 2.1 / 2.2 family on the pack's own modules: key-name maps from the checkpoint layouts
people have (ComfyUI's repackaged files, the original release, diffusers), family detection from keys
and shapes, the Wan 2.2 VAE, and the umT5-XXL text encoder with its tokenizer."""
