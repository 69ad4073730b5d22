"""Loading real checkpoints (the Wan 2.1 / 2.2 family) from the file layouts people have.

    ck = inspect(path, kind="dit")         # header only: files, shapes, dtypes, the detected family
    model, ck = load(path, kind="dit")     # the module, weights in their storage dtype

``path`` may be
    one .safetensors file          ComfyUI's repackaged files (bf16 / fp16 / fp8 / scaled fp8)
    sharded files                  ``*-0000N-of-0000M.safetensors`` + ``*.safetensors.index.json``
                                   (the index, any shard, or their folder may be given)
    a folder with config.json      diffusers (``diffusion_pytorch_model*.safetensors``) or the original
                                   release; a diffusers pipeline folder (model_index.json) resolves
                                   ``transformer/``, ``vae/`` or ``text_encoder/`` by ``kind``
Pickle checkpoints (.pth, .pt, .bin, .ckpt) are refused by name and by content: nothing is unpickled.
Every file is checked with ``weights.read_header`` (truncation, corrupt headers) and the family is
detected from the headers (``models.wan.detect``) before any tensor is read; the module is built on
the meta device and checked key by key against the file shapes, so a wrong file fails before any
large allocation.

Storage dtypes are kept: bf16 / fp16 / fp8 (float8_e4m3fn, float8_e5m2) tensors stay as stored, and
every parameter not stored in float32 computes through ``Upcast``, a parametrization that returns the
stored tensor (times its ``scale_weight`` for ComfyUI's scaled fp8 files) in the compute dtype: the
autocast dtype when autocast is on, float32 otherwise. Modules and the DiT's fused kernels read
``.weight`` as usual, so both kernel paths work unchanged; one layer is upcast at a time. (The
parametrized state dict names the stored tensors ``<param>.parametrizations.weight.original``.)
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.nn.utils import parametrize

from .models.wan.detect import Detected, UnsupportedCheckpoint, detect
from .weights import DTYPE_SIZES, WeightsError, read_header

PICKLE_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt", ".pkl", ".pickle")
INDEX_SUFFIX = ".safetensors.index.json"
SHARD_RE = re.compile(r"(?P<stem>.+)-(?P<i>\d{5})-of-(?P<n>\d{5})\.safetensors")
PIPELINE_PARTS = {"dit": "transformer", "vae": "vae", "text_encoder": "text_encoder"}
STORAGE = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
           "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
# detected kind -> (module, builder of the component's module from the detected config)
BUILDERS = {"dit": ("sora_core.models.dit", "DiT"), "vae": ("sora_core.models.wan.vae_keys", "build_vae"),
            "text_encoder": ("sora_core.models.wan.umt5", "build_umt5")}
SCALE_SUFFIX = ".scale_weight"        # a key map's name for a layer's fp8 scale: <layer>.scale_weight
MAX_JSON = 50_000_000                 # bytes of an index / config JSON


class UnsupportedModelFile(WeightsError, UnsupportedCheckpoint):
    """A checkpoint whose family is recognised but not supported, or not recognised at all."""


@dataclass(frozen=True)
class Checkpoint:
    """What ``inspect`` found: the files, their headers (no tensor read) and the detected family."""
    source: Path
    files: tuple[Path, ...]
    arrangement: str                          # "single" | "sharded" | "folder"
    shapes: dict
    dtypes: dict
    where: dict                               # key -> file
    config_json: dict | None
    detected: Detected

    def storage_bytes(self) -> int:
        """Bytes of the tensors the module will hold (as stored: bf16 = 2, fp8 = 1 per value)."""
        total, key_map = 0, self.detected.key_map
        for k, shape in self.shapes.items():
            if key_map(k) is not None:
                n = 1
                for d in shape:
                    n *= d
                total += n * DTYPE_SIZES[self.dtypes[k]]
        return total


# ---------------------------------------------------------------------------------------------
# Finding the files
# ---------------------------------------------------------------------------------------------

def _refuse_pickle(path: Path) -> None:
    raise WeightsError(f"{str(path)!r} is a pickle checkpoint ({path.suffix}): pickles are never loaded (they can "
                       f"run code). Use the .safetensors release of the model (e.g. ComfyUI's repackaged files "
                       f"in models/diffusion_models, models/vae, models/text_encoders)")


def _read_json(path: Path) -> dict:
    if path.stat().st_size > MAX_JSON:
        raise WeightsError(f"{str(path)!r} is {path.stat().st_size:,} bytes: too large for an index / config JSON")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise WeightsError(f"{str(path)!r} is not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise WeightsError(f"{str(path)!r} must hold a JSON object, got {type(data).__name__}")
    return data


def _index_files(index: Path) -> tuple[Path, ...]:
    """The shards an index JSON lists (names inside its folder only), each present."""
    weight_map = _read_json(index).get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise WeightsError(f"{str(index)!r} has no 'weight_map' object: not a safetensors shard index")
    names = sorted(set(weight_map.values()), key=str)
    bad = [n for n in names if not isinstance(n, str) or "/" in n or "\\" in n or n in ("", ".", "..")]
    if bad:
        raise WeightsError(f"{str(index)!r} names shard(s) outside its folder: {bad[:3]}; only file names are allowed")
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        raise WeightsError(f"{str(index)!r} lists {len(names)} shard(s); missing: {', '.join(missing[:5])} "
                           f"(an incomplete download?)")
    return tuple(index.parent / n for n in names)


def _shards_of(shard: Path) -> tuple[Path, ...]:
    """All shards of ``shard``'s set, by the index beside it or by the -0000N-of-0000M names."""
    m = SHARD_RE.fullmatch(shard.name)
    index = shard.parent / (m["stem"] + INDEX_SUFFIX)
    if index.is_file():
        return _index_files(index)
    n = int(m["n"])
    want = [shard.parent / f"{m['stem']}-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    missing = [p.name for p in want if not p.is_file()]
    if missing:
        raise WeightsError(f"{str(shard)!r} is shard {int(m['i'])} of {n}; missing: {', '.join(missing[:5])}")
    return tuple(want)


def _folder_files(folder: Path, kind: str | None) -> tuple[tuple[Path, ...], str, Path]:
    """(files, arrangement, the folder used) of a model folder."""
    if (folder / "model_index.json").is_file() and kind in PIPELINE_PARTS:
        sub = folder / PIPELINE_PARTS[kind]
        if not sub.is_dir():
            raise WeightsError(f"{str(folder)!r} is a diffusers pipeline without a {PIPELINE_PARTS[kind]}/ folder")
        folder = sub
    indexes = sorted(folder.glob("*" + INDEX_SUFFIX))
    if len(indexes) > 1:
        raise WeightsError(f"{str(folder)!r} holds {len(indexes)} shard indexes ({', '.join(p.name for p in indexes)}): "
                           f"give one of them")
    if indexes:
        return _index_files(indexes[0]), "folder", folder
    files = sorted(folder.glob("*.safetensors"))
    shards = [p for p in files if SHARD_RE.fullmatch(p.name)]
    if shards and len(shards) == len(files):
        return _shards_of(shards[0]), "folder", folder
    if len(files) == 1:
        return (files[0],), "folder", folder
    if len(files) > 1:
        raise WeightsError(f"{str(folder)!r} holds {len(files)} .safetensors files ({', '.join(p.name for p in files[:5])}) "
                           f"and no shard index: give the file to load")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    subs = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.safetensors*")))
    hint = (f"; it holds pickle checkpoints ({', '.join(pickles[:3])}), which are never loaded" if pickles else "")
    hint += f"; model folders inside: {', '.join(subs[:5])} (give one)" if subs else ""
    raise WeightsError(f"{str(folder)!r} holds no .safetensors weights{hint}")


def resolve(path, kind: str | None = None) -> tuple[tuple[Path, ...], str, dict | None]:
    """(safetensors files, arrangement "single" | "sharded" | "folder", config.json or None) of ``path``."""
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"model path {str(path)!r} does not exist (expected a .safetensors file, a shard index "
                           f"or a model folder)")
    if path.is_dir():
        files, arrangement, folder = _folder_files(path, kind)
    elif path.suffix.lower() in PICKLE_SUFFIXES:
        _refuse_pickle(path)
    elif path.name.endswith(INDEX_SUFFIX):
        files, arrangement, folder = _index_files(path), "sharded", path.parent
    elif SHARD_RE.fullmatch(path.name):
        files, arrangement, folder = _shards_of(path), "sharded", path.parent
    else:
        files, arrangement, folder = (path,), "single", None
    cfg_path = folder / "config.json" if folder is not None else None
    config = _read_json(cfg_path) if cfg_path is not None and cfg_path.is_file() else None
    return files, arrangement, config


# ---------------------------------------------------------------------------------------------
# Inspecting (headers only)
# ---------------------------------------------------------------------------------------------

def _headers(files) -> tuple[dict, dict, dict]:
    shapes, dtypes, where = {}, {}, {}
    for f in files:
        for k, v in read_header(f).items():           # checks the file (truncated, corrupt, pickle ...)
            if k == "__metadata__":
                continue
            if k in where:
                raise WeightsError(f"tensor {k!r} is in two shards: {where[k].name} and {f.name}")
            shapes[k], dtypes[k], where[k] = tuple(v["shape"]), v["dtype"], f
    return shapes, dtypes, where


def _layout(det: Detected, arrangement: str) -> Detected:
    """Original key names in one file are ComfyUI's repackaging; in shards or a folder, the release."""
    if det.layout == "diffusers":
        return det
    return dataclasses.replace(det, layout="comfyui" if arrangement == "single" else "original")


def inspect(path, kind: str | None = None) -> Checkpoint:
    """Find and check the files of ``path`` and detect what they hold, from the headers only.
    Raises WeightsError (UnsupportedModelFile for a family that is not supported)."""
    files, arrangement, config = resolve(path, kind)
    shapes, dtypes, where = _headers(files)
    source = str(path) if len(files) == 1 else f"{str(path)} ({len(files)} files)"
    try:
        det = detect(shapes, dtypes, kind=kind, source=repr(source))
        if config is not None and det.kind == "dit":
            from .models.wan.dit_keys import refine_with_config
            det = refine_with_config(det, config)
    except UnsupportedCheckpoint as e:
        if isinstance(e, WeightsError):
            raise
        msg = str(e) if str(e).startswith(repr(source)) else f"{source!r}: {e}"
        raise UnsupportedModelFile(msg) from e
    return Checkpoint(Path(path), files, arrangement, shapes, dtypes, where, config, _layout(det, arrangement))


# ---------------------------------------------------------------------------------------------
# Matching the module
# ---------------------------------------------------------------------------------------------

def _listing(title: str, items: list[str], n: int = 5) -> str:
    more = f" ... and {len(items) - n} more" if len(items) > n else ""
    return f"{len(items)} {title}: {', '.join(items[:n])}{more}"


def plan(ck: Checkpoint, expected: dict, own_scales: bool = False) -> tuple[dict, dict]:
    """(our key -> file key, our param key -> file key of its fp8 scale), checked against the
    module's ``expected`` state dict (meta tensors): one WeightsError naming every missing key,
    unexpected key, shape mismatch and unusable dtype (with the file's key names). With
    ``own_scales`` (a module that keeps its storage dtype itself) scales stay in the first dict."""
    names, scales = {}, {}
    for k in ck.shapes:
        ours = ck.detected.key_map(k)
        if ours is None:
            continue
        if ours.endswith(SCALE_SUFFIX) and not own_scales:
            scales[ours[: -len(SCALE_SUFFIX)] + ".weight"] = k
        else:
            names[ours] = k
    if own_scales:                               # a scale is expected when its layer's weight is
        expected = dict(expected)
        expected.update({k: _Shape(ck.shapes[f]) for k, f in names.items() if k.endswith(SCALE_SUFFIX)
                         and k[: -len(SCALE_SUFFIX)] + ".weight" in expected})
    det = ck.detected
    problems = []
    missing = sorted(set(expected) - set(names))
    unexpected = sorted(names[k] for k in set(names) - set(expected))
    unexpected += sorted(scales[k] for k in set(scales) - set(names))
    shapes = sorted(f"{names[k]} {ck.shapes[names[k]]} (the {det.family} config needs {tuple(expected[k].shape)})"
                    for k in set(names) & set(expected) if ck.shapes[names[k]] != tuple(expected[k].shape))
    dtypes = sorted(f"{f} ({ck.dtypes[f]})" for f in list(names.values()) + list(scales.values())
                    if ck.dtypes[f] not in STORAGE)
    bad_scales = sorted(f"{f} {ck.shapes[f]}" for f in scales.values() if _numel(ck.shapes[f]) != 1)
    for title, items in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                         ("shape mismatch(es)", shapes),
                         ("tensor(s) in a storage format that is not supported (allowed: F32, F16, BF16, "
                          "F8_E4M3, F8_E5M2)", dtypes),
                         ("fp8 scale(s) that are not one number per layer", bad_scales)):
        if items:
            problems.append(_listing(title, items))
    if problems:
        raise WeightsError(f"{str(ck.source)!r} ({det.family}, {det.layout} layout) does not match the model its "
                           f"shapes describe: " + "; ".join(problems))
    return names, scales


class _Shape:
    """Stands in for a meta tensor where only ``.shape`` is read."""

    def __init__(self, shape):
        self.shape = tuple(shape)


def _numel(shape) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


# ---------------------------------------------------------------------------------------------
# Storage-dtype compute
# ---------------------------------------------------------------------------------------------

def compute_dtype(device: torch.device, matmul: bool = True) -> torch.dtype:
    """The dtype stored weights are upcast to: for the weight of a linear or convolution layer the
    autocast dtype when autocast is on (autocast would cast it there anyway), else float32 (norms,
    biases, modulation tables: what a float32 model gives those under autocast too)."""
    kind = device.type
    return torch.get_autocast_dtype(kind) if matmul and torch.is_autocast_enabled(kind) else torch.float32


MATMUL_MODULES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


class Upcast(nn.Module):
    """Parametrization: the stored tensor (bf16 / fp16 / fp8, times ``scale`` when given) in the
    compute dtype, recomputed at each use, so only the layer in use exists in the compute dtype."""

    def __init__(self, scale: torch.Tensor | None = None, matmul: bool = True):
        super().__init__()
        self.matmul = matmul
        self.register_buffer("scale", None if scale is None else scale.detach().float().reshape(()))

    def forward(self, stored: torch.Tensor) -> torch.Tensor:
        dt = compute_dtype(stored.device, self.matmul)
        if self.scale is None:
            return stored.to(dt)
        return (stored.float() * self.scale).to(dt)


def keep_storage_dtype(module: nn.Module, scales: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """Give every parameter of ``module`` not stored in float32 (or with an fp8 scale) an ``Upcast``."""
    scales = scales or {}
    for name, p in list(module.named_parameters()):
        if p.dtype == torch.float32 and name not in scales:
            continue
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name)
        matmul = leaf == "weight" and isinstance(owner, MATMUL_MODULES)
        parametrize.register_parametrization(owner, leaf, Upcast(scales.get(name), matmul), unsafe=True)
    return module


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def _read(ck: Checkpoint, wanted: dict, device) -> dict[str, torch.Tensor]:
    """{our key: tensor as stored, on ``device``} for ``wanted`` {our key: file key}."""
    by_file: dict[Path, list[tuple[str, str]]] = {}
    for ours, key in wanted.items():
        by_file.setdefault(ck.where[key], []).append((ours, key))
    out = {}
    for f, items in by_file.items():
        try:
            with safe_open(str(f), framework="pt") as sf:
                for ours, key in items:
                    out[ours] = sf.get_tensor(key).to(device)
        except SafetensorError as e:
            raise WeightsError(f"{str(f)!r} cannot be read as safetensors: {e}") from e
    return out


def build(det: Detected, device: torch.device | str = "meta") -> nn.Module:
    """The module of a detected component (``BUILDERS``), built on ``device``."""
    mod, name = BUILDERS[det.kind]
    with torch.device(device):
        return getattr(importlib.import_module(mod), name)(det.cfg)


def _fill_meta_buffers(module: nn.Module, det: Detected, device) -> None:
    """Buffers outside the state dict (computed from the config) are still on the meta device after
    loading: ``module.materialize_buffers(device)`` when the module has it, else they are taken from
    an instance built on the CPU."""
    left = [n for n, b in module.named_buffers() if b is not None and b.is_meta]
    if not left:
        return
    if hasattr(module, "materialize_buffers"):
        module.materialize_buffers(device)
        return
    fresh = dict(build(det, "cpu").named_buffers())
    for name in left:
        owner_name, _, leaf = name.rpartition(".")
        module.get_submodule(owner_name).register_buffer(leaf, fresh[name].to(device), persistent=False)


def load(path, kind: str | None = None, device: torch.device | str = "cpu") -> tuple[nn.Module, Checkpoint]:
    """Load ``path`` (see the module docstring) -> (module in eval mode on ``device``, Checkpoint).

    The module keeps the storage dtypes (``keep_storage_dtype``, unless its class says it does that
    itself with ``keeps_storage_dtype = True``) and has requires_grad off."""
    ck = inspect(path, kind)
    module = build(ck.detected)
    own = bool(getattr(module, "keeps_storage_dtype", False))
    names, scale_keys = plan(ck, module.state_dict(), own_scales=own)
    tensors = _read(ck, names, device)
    scales = {k: v.float() for k, v in _read(ck, scale_keys, device).items()}
    module.load_state_dict(tensors, strict=True, assign=True)
    _fill_meta_buffers(module, ck.detected, device)
    module.requires_grad_(False)
    if not own:
        keep_storage_dtype(module, scales)
    return module.eval(), ck


__all__ = ["inspect", "load", "build", "resolve", "plan", "BUILDERS", "Checkpoint", "UnsupportedModelFile", "Upcast",
           "keep_storage_dtype", "compute_dtype", "PICKLE_SUFFIXES", "STORAGE"]
