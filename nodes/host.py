"""The one place that talks to the ComfyUI host: folders, progress bar with previews, interrupts, and
the web extension's HTTP routes (``register_routes``).

Inside ComfyUI these use ``folder_paths``, ``comfy.utils.ProgressBar``, ``comfy.model_management``
and ``comfy.model_patcher`` (the loaded model's components are registered as ModelPatchers, so
ComfyUI can unload or offload them between runs); outside it (tests, ``sora run``) they fall back to plain folders set by
``configure`` and a tqdm bar. Nothing else in the pack imports ComfyUI.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

try:                                                    # inside ComfyUI
    import folder_paths as _folders
except ImportError:                                     # headless: plain folders
    _folders = None

try:
    import comfy.model_management as _mm
    import comfy.model_patcher as _patcher
    import comfy.utils as _comfy_utils
except ImportError:
    _mm = _patcher = _comfy_utils = None

MODEL_KINDS = ("diffusion_models", "vae", "text_encoders")
PACK_DIR = Path(__file__).resolve().parent.parent
SAMPLES_PREFIX = "sora-samples/"                        # pack media listed among the inputs
SAMPLES_DIR = PACK_DIR / "workflows" / "media"


def in_comfyui() -> bool:
    return _folders is not None


# ---------------------------------------------------------------------------------------------
# Folders
# ---------------------------------------------------------------------------------------------

class _Folders:
    """Headless stand-in for ``folder_paths``: output / temp / input / models folders."""

    def __init__(self):
        self.output = Path.cwd() / "outputs"
        self.temp = Path(tempfile.gettempdir()) / "comfyui-sora"
        self.input = Path.cwd() / "input"
        self.models = Path.cwd() / "models"
        self.progress = True


_headless = _Folders()


def configure(output: str | Path | None = None, temp: str | Path | None = None,
              input: str | Path | None = None, models: str | Path | None = None,
              progress: bool | None = None) -> None:
    """Set the headless folders (the equivalent of ComfyUI's --output-directory etc.) and whether
    step progress bars are shown."""
    for name, value in (("output", output), ("temp", temp), ("input", input), ("models", models)):
        if value is not None:
            setattr(_headless, name, Path(value))
    if progress is not None:
        _headless.progress = bool(progress)


def output_dir() -> Path:
    return Path(_folders.get_output_directory()) if _folders else _headless.output


def temp_dir() -> Path:
    return Path(_folders.get_temp_directory()) if _folders else _headless.temp


def input_dir() -> Path:
    return Path(_folders.get_input_directory()) if _folders else _headless.input


def model_files(kind: str) -> list[str]:
    """Safetensors files in ComfyUI's model folder ``kind`` (diffusion_models, vae, text_encoders)."""
    if _folders is not None:
        try:
            names = _folders.get_filename_list(kind)
        except KeyError:
            names = []
        return sorted(n for n in names if n.endswith(".safetensors"))
    folder = _headless.models / kind
    if not folder.is_dir():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.safetensors"))


def model_path(kind: str, name: str) -> Path:
    """Full path of a file listed by ``model_files(kind)``; raises naming the folder when missing."""
    path = _folders.get_full_path(kind, name) if _folders is not None else _headless.models / kind / name
    if not path or not Path(path).is_file():
        raise FileNotFoundError(f"{kind} file {name!r} was not found in the {kind} model folder")
    return Path(path)


MODEL_FOLDER_KIND = "diffusion_models"                  # whole-model folders live among the DiTs


def _model_roots(kind: str) -> list[Path]:
    """The folders ComfyUI (or ``configure(models=...)`` headless) uses for model kind ``kind``."""
    if _folders is not None:
        try:
            return [Path(p) for p in _folders.get_folder_paths(kind)]
        except KeyError:
            return []
    return [_headless.models / kind]


def model_folders(files: tuple[str, ...]) -> list[str]:
    """Sub-folders of the diffusion_models folders that hold every one of ``files`` (e.g. vae /
    text_encoder / dit .safetensors): names relative to their model folder, as the loader lists them."""
    first, names = files[0], set()
    for rel in model_files(MODEL_FOLDER_KIND):
        folder, _, base = rel.replace("\\", "/").rpartition("/")
        if base == first and folder:
            try:
                model_folder(folder, files)
            except (ValueError, FileNotFoundError):
                continue
            names.add(folder)
    return sorted(names)


def model_folder(name: str, files: tuple[str, ...]) -> Path:
    """Full path of a folder from ``model_folders``: never outside a diffusion_models folder (no
    absolute paths, no ``..``, no symlink leading out), holding every one of ``files``. Raises
    ValueError / FileNotFoundError naming the input."""
    what = f"model_dir {name!r}"
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or any(p in ("..", ".") for p in parts):
        raise ValueError(f"{what} must be the name of a folder in the {MODEL_FOLDER_KIND} model folder "
                         f"(no absolute paths, no '..')")
    for root in _model_roots(MODEL_FOLDER_KIND):
        base = root.resolve()
        folder = (root / name).resolve()
        if not (root / name).is_dir():
            continue
        inside = folder.is_relative_to(base) and all((folder / f).resolve().is_relative_to(base) for f in files)
        if not inside:
            raise ValueError(f"{what} leads outside the {MODEL_FOLDER_KIND} model folder {root} (a symlink?): "
                             f"copy the model in, or add its real location to ComfyUI's extra_model_paths.yaml")
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise FileNotFoundError(f"{what} lacks {', '.join(missing)} (a model folder needs {', '.join(files)})")
        return folder
    raise FileNotFoundError(f"{what} is not a model folder in the {MODEL_FOLDER_KIND} model folder; put the "
                            f"folder with {', '.join(files)} there")


def input_files(exts: tuple[str, ...]) -> list[str]:
    """Files in the input folder with one of ``exts``, then the pack's sample media."""
    folder = input_dir()
    names = []
    if folder.is_dir():
        names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                       if p.is_file() and p.suffix.lower() in exts and not p.name.startswith("."))
    samples = sorted(SAMPLES_PREFIX + p.name for p in SAMPLES_DIR.glob("*") if p.suffix.lower() in exts)
    return names + samples


def input_path(name: str) -> Path:
    """Full path of a name from ``input_files``; never outside the input or samples folder."""
    base, rel = (SAMPLES_DIR, name[len(SAMPLES_PREFIX):]) if name.startswith(SAMPLES_PREFIX) else (input_dir(), name)
    path = (base / rel).resolve()
    if not path.is_relative_to(base.resolve()):
        raise ValueError(f"video {name!r} points outside the input folder")
    if not path.exists():
        raise FileNotFoundError(f"video {name!r} was not found in the input folder {base}")
    return path


def register_routes(routes: dict) -> bool:
    """Add HTTP routes to ComfyUI's server: ``routes`` maps (method, path) to a plain function of the
    query (a dict) returning (status, body), body a dict (sent as JSON) or a Path (sent as the file).
    Returns False, doing nothing, outside ComfyUI (tests and headless runs call the functions directly)."""
    try:
        from aiohttp import web
        from server import PromptServer
    except ImportError:
        return False
    server = getattr(PromptServer, "instance", None)
    if server is None:
        return False
    for (method, path), handler in routes.items():
        async def respond(request, handler=handler):
            status, body = handler(dict(request.query))
            if isinstance(body, Path):
                return web.FileResponse(body)
            return web.json_response(body, status=status)
        server.routes.route(method, path)(respond)
    return True


def metadata_enabled() -> bool:
    """False when ComfyUI runs with --disable-metadata (workflows are then not embedded in outputs)."""
    try:
        from comfy.cli_args import args
        return not getattr(args, "disable_metadata", False)
    except ImportError:
        return True


def device():
    """The torch device ComfyUI chose (cpu with --cpu), or the CPU headless."""
    import torch
    return _mm.get_torch_device() if _mm is not None else torch.device("cpu")


# ---------------------------------------------------------------------------------------------
# Model management
# ---------------------------------------------------------------------------------------------

MANAGED_KINDS = ("dit", "vae", "text_encoder")


def component_devices(kind: str) -> tuple:
    """(compute device, offload device) ComfyUI chooses for a model component ("dit", "vae",
    "text_encoder"), as for its own diffusion models, VAEs and text encoders; headless both are
    ``device()`` (the CPU)."""
    if kind not in MANAGED_KINDS:
        raise ValueError(f"component {kind!r} is unknown; allowed: {', '.join(MANAGED_KINDS)}")
    if _mm is None:
        return device(), device()
    pairs = {"dit": (_mm.get_torch_device, _mm.unet_offload_device),
             "vae": (_mm.vae_device, _mm.vae_offload_device),
             "text_encoder": (_mm.text_encoder_device, _mm.text_encoder_offload_device)}
    load, offload = pairs[kind]
    return load(), offload()



def _weights_class():
    """``SoraWeights``: the nn.Module a ModelPatcher manages. A container (not the component itself)
    because ModelPatcher writes ``.device`` and its counters onto the module it manages."""
    from torch import nn

    class SoraWeights(nn.Module):
        def __init__(self, kind: str, module: nn.Module):
            super().__init__()
            self.kind, self.component = kind, module

    return SoraWeights


class ManagedModel:
    """A loaded model's components registered with ComfyUI's model management: one ModelPatcher per
    component (``patchers``), loaded to its compute device by ``place(kind)`` right before use
    (``comfy.model_management.load_models_gpu``: ComfyUI frees other models to make room, and may
    move this one back to its offload device, or unload it, between runs). Headless, and for
    components ComfyUI is not told about, ``place`` does nothing: the module stays where it was loaded.
    Holding this object keeps the patchers alive (ComfyUI only keeps weak references)."""

    def __init__(self, modules: dict, name: str = "model"):
        self.name = name
        self.patchers = {}
        if _patcher is None or _mm is None:
            return
        weights = _weights_class()
        for kind, module in modules.items():
            load, offload = component_devices(kind)
            self.patchers[kind] = _patcher.ModelPatcher(weights(kind, module), load_device=load,
                                                        offload_device=offload)

    def place(self, kind: str) -> None:
        """Load component ``kind`` onto its compute device (whole: the modules have no per-layer
        casting ComfyUI could stream from the offload device)."""
        patcher = self.patchers.get(kind)
        if patcher is not None:
            _mm.load_models_gpu([patcher], force_full_load=True)


# ---------------------------------------------------------------------------------------------
# Progress, previews, interrupts
# ---------------------------------------------------------------------------------------------

def check_interrupted() -> None:
    """Raise ComfyUI's interrupt exception when the user pressed Cancel (no-op headless)."""
    if _mm is not None:
        _mm.throw_exception_if_processing_interrupted()


def _preview_settings() -> tuple[bool, int]:
    try:
        from comfy.cli_args import LatentPreviewMethod, args
        return args.preview_method != LatentPreviewMethod.NoPreviews, int(getattr(args, "preview_size", 512))
    except ImportError:
        return False, 512


class Progress:
    """A step counter shown as ComfyUI's node progress bar (with preview images) or a tqdm bar."""

    def __init__(self, total: int, desc: str = "sampling", unit: str = "step"):
        self.total = int(total)
        self.previews, self.preview_size = _preview_settings()
        if _comfy_utils is not None:
            self._bar, self._tqdm = _comfy_utils.ProgressBar(self.total), None
        else:
            from tqdm.auto import tqdm
            self._bar = None
            self._tqdm = tqdm(total=self.total, desc=desc, unit=unit, leave=False, disable=not _headless.progress)

    def wants_preview(self) -> bool:
        return self._bar is not None and self.previews

    def update(self, step: int, preview: np.ndarray | None = None) -> None:
        """Set the bar to ``step`` of ``total``; ``preview`` is an optional uint8 (H, W, 3) image."""
        check_interrupted()
        if self._tqdm is not None:
            self._tqdm.update(step - self._tqdm.n)
            return
        image = None
        if preview is not None and self.previews:
            from PIL import Image
            image = ("JPEG", Image.fromarray(preview), self.preview_size)
        self._bar.update_absolute(step, self.total, image)

    def close(self) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
