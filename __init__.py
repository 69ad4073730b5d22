"""comfyui-sora: Sora-style video generation nodes for ComfyUI.

ComfyUI imports this folder as a package. The node layer (``nodes/``, reached relatively: ComfyUI
has its own top-level ``nodes``) imports the core as ``sora_core``; when it is not installed, it is
loaded from this folder by an import spec, without putting the folder on ``sys.path`` (which would
expose ``nodes`` as a top-level module).
"""

import importlib.util
import sys
from pathlib import Path


def _ensure_sora_core() -> None:
    """Make ``import sora_core`` work: the copy beside this file, else an installed one."""
    if "sora_core" in sys.modules:
        return
    init = Path(__file__).resolve().parent / "sora_core" / "__init__.py"
    if not init.is_file():
        return                                           # installed as a package of its own
    spec = importlib.util.spec_from_file_location("sora_core", init,
                                                  submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["sora_core"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop("sora_core", None)
        raise


_ensure_sora_core()


def __getattr__(name: str):
    """The node mappings, imported on first use: ComfyUI reads them right after importing the pack
    (an import failure is reported there as usual), while ``sora --help`` and the headless tools,
    which import the pack as ``comfyui_sora``, do not pay for torch and every node module."""
    if name in ("NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"):
        from . import nodes
        return getattr(nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


WEB_DIRECTORY = "./web" if (Path(__file__).resolve().parent / "web").is_dir() else None

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
