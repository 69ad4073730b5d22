"""The pack's nodes, one module per theme; each module has its own NODE_CLASS_MAPPINGS.

This package is only ever imported relatively, as ``<pack>.nodes`` (ComfyUI has its own top-level
``nodes`` module). ``host`` is the one module that talks to ComfyUI services.
"""

from . import clips, conditions, latent, long_video, model, native, sampler, text, vae, video, web_routes

_THEMES = (model, text, latent, sampler, vae, conditions, video, clips, native, long_video)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _theme in _THEMES:
    NODE_CLASS_MAPPINGS.update(_theme.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_theme.NODE_DISPLAY_NAME_MAPPINGS)

web_routes.register()                  # the web extension's routes (no-op outside ComfyUI)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
