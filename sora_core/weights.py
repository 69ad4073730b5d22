"""Weight files: safetensors only, each carrying its component config in the metadata.

A file written by ``save_component`` holds the module's state dict and the metadata
``{"sora.config": to_json(cfg), "sora.format": "1", ...}``, so ``load_component(path)`` rebuilds the
right class (vae -> VideoVAE, dit -> DiT, text_encoder -> ByteTextEncoder) with no other input.
Files from other layouts (e.g. Wan 2.1 checkpoints) load with an explicit ``cfg`` and a ``key_map``.

Pickle and zip checkpoints are refused by content, never unpickled.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
from pathlib import Path
from typing import Callable, Mapping

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .configs import ConfigError, from_json, to_json
from .media.files import atomic_write


class WeightsError(ValueError):
    """A weight file that is not safetensors, lacks a config, or does not match its module."""


CONFIG_KEY = "sora.config"
FORMAT_KEY = "sora.format"
FORMAT_VERSION = "1"

# component kind -> (module, class name), imported lazily so loading one kind never imports the others
# (a class may also be registered directly)
REGISTRY: dict[str, tuple[str, str] | Callable] = {
    "vae": ("sora_core.models.vae", "VideoVAE"),
    "dit": ("sora_core.models.dit", "DiT"),
    "text_encoder": ("sora_core.models.text", "ByteTextEncoder"),
}

KeyMap = Callable[[str], "str | None"] | Mapping[str, str]
_LIST = 5          # keys shown per problem in error messages


# ---------------------------------------------------------------------------------------------
# Checking files
# ---------------------------------------------------------------------------------------------

def _sniff(head: bytes) -> str:
    if head.startswith(b"PK"):
        return "a zip archive (a PyTorch torch.save checkpoint?)"
    if head[:1] == b"\x80":
        return "a Python pickle (a PyTorch .pt/.ckpt/.bin checkpoint?)"
    if head.startswith(b"GGUF"):
        return "a GGUF file"
    return "not a safetensors file"


# safetensors dtype -> bytes per element (the format's own list, float8 included)
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}
MAX_HEADER = 100_000_000       # safetensors' own limit on the JSON header


def _n(v: int) -> str:
    return f"{v:,}"


def _sniff_or_truncated(path: Path, head: bytes, n: int, size: int) -> WeightsError:
    """The error for a file whose header length or header does not parse."""
    with open(path, "rb") as f:
        f.seek(8)
        first = f.read(1)
    if first == b"{" and 2 <= n <= MAX_HEADER and n > size - 8:
        return WeightsError(f"{str(path)!r} is truncated: its header says {_n(n)} bytes of header, the file holds "
                            f"{_n(max(size - 8, 0))} after the length (a partial download?)")
    return WeightsError(f"{str(path)!r} is {_sniff(head)}: only safetensors weight files are accepted "
                        f"(convert it to .safetensors; pickle files are never loaded)")


def _check_entry(path: Path, name: str, entry) -> tuple[int, int]:
    """(begin, end) of one tensor entry of the header, or a WeightsError naming what is wrong."""
    where = f"{str(path)!r} is corrupt: tensor {name!r}"
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise WeightsError(f"{where} has entry {entry!r}; expected keys dtype, shape, data_offsets")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise WeightsError(f"{where} has dtype {dtype!r}; allowed: {', '.join(DTYPE_SIZES)}")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise WeightsError(f"{where} has shape {shape!r}; expected a list of non-negative integers")
    if (not isinstance(offsets, list) or len(offsets) != 2 or not all(type(o) is int for o in offsets)
            or not 0 <= offsets[0] <= offsets[1]):
        raise WeightsError(f"{where} has data_offsets {offsets!r}; expected [begin, end] with 0 <= begin <= end")
    begin, end = offsets
    numel = 1
    for d in shape:
        numel *= d
    if end - begin != numel * DTYPE_SIZES[dtype]:
        raise WeightsError(f"{where} spans {_n(end - begin)} bytes but its shape {shape} of {dtype} needs "
                           f"{_n(numel * DTYPE_SIZES[dtype])}")
    return begin, end


def read_header(path: str | os.PathLike) -> dict[str, dict]:
    """The checked JSON header of a safetensors file: ``{name: {"dtype", "shape", "data_offsets"}}``
    plus ``"__metadata__"`` when present. Raises WeightsError naming the file and the problem: not
    safetensors (pickle, zip, ...), truncated (header or tensor data cut short, e.g. a partial
    download), unknown dtypes, bad shapes, byte ranges that overlap, leave gaps or do not match the
    shape, or bytes after the last tensor."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {str(path)!r} does not exist (expected a .safetensors file)")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        raw = f.read(n) if 2 <= n <= min(size - 8, MAX_HEADER) else b""
    try:
        header = json.loads(raw) if raw[:1] == b"{" else None
    except (ValueError, UnicodeDecodeError):
        header = None
    if not isinstance(header, dict):
        raise _sniff_or_truncated(path, head, n, size)
    meta = header.get("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise WeightsError(f"{str(path)!r} is corrupt: its __metadata__ must map strings to strings")
    data_size = size - 8 - n
    spans = sorted((_check_entry(path, k, v), k) for k, v in header.items() if k != "__metadata__")
    pos = 0
    for (begin, end), name in spans:
        if begin != pos:
            what = "overlaps the tensor before it" if begin < pos else f"leaves a gap of {_n(begin - pos)} bytes"
            raise WeightsError(f"{str(path)!r} is corrupt: tensor {name!r} at bytes {begin}..{end} {what}")
        pos = end
    if pos > data_size:
        raise WeightsError(f"{str(path)!r} is truncated: the header says {_n(pos)} bytes of tensor data, the file "
                           f"holds {_n(data_size)} (a partial download?)")
    if pos < data_size:
        raise WeightsError(f"{str(path)!r} is corrupt: {_n(data_size - pos)} bytes follow the {_n(pos)} bytes of "
                           f"tensor data its header describes")
    return header


def check_safetensors(path: str | os.PathLike) -> Path:
    """Return ``path`` if it is a complete, consistent safetensors file; otherwise raise WeightsError
    naming the file and what is wrong (see ``read_header``)."""
    read_header(path)
    return Path(path)


def parameter_count(path: str | os.PathLike) -> int:
    """Number of tensor elements in a weight file (from its checked header; no tensor is read)."""
    header = read_header(path)
    total = 0
    for k, v in header.items():
        if k != "__metadata__":
            numel = 1
            for d in v["shape"]:
                numel *= d
            total += numel
    return total


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (empty dict when it has none)."""
    path = check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except SafetensorError as e:                 # a problem read_header does not know of
        raise WeightsError(f"{str(path)!r} cannot be read as safetensors: {e}") from e


def read_config(path: str | os.PathLike, kind: str | None = None):
    """The component config stored in a weight file (cheap: reads the header only)."""
    meta = read_metadata(path)
    if CONFIG_KEY not in meta:
        raise WeightsError(f"{str(path)!r} has no {CONFIG_KEY!r} metadata: pass its config explicitly (cfg=...)")
    try:
        return from_json(meta[CONFIG_KEY], kind)
    except ConfigError as e:
        raise WeightsError(f"{str(path)!r}: {e}") from e


# ---------------------------------------------------------------------------------------------
# Saving
# ---------------------------------------------------------------------------------------------

def _state_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """CPU contiguous tensors of the state dict; tensors sharing storage are copied apart."""
    out, seen = {}, set()
    for k, v in module.state_dict().items():
        t = v.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        out[k] = t.clone() if ptr in seen else t
        seen.add(ptr)
    return out


def save_component(path: str | os.PathLike, module: torch.nn.Module, cfg,
                   metadata: Mapping[str, str] | None = None, dtype: torch.dtype | None = None) -> Path:
    """Write module weights + config to ``path`` atomically (temp file in the same folder, then
    ``os.replace``): readers see the old file or the new one, never a partial file.

    ``dtype`` stores floating-point tensors in that dtype (e.g. torch.bfloat16 halves a file);
    ``load_component`` copies them back into the module's own (float32) parameters.
    """
    if dtype is not None and not dtype.is_floating_point:
        raise WeightsError(f"dtype={dtype} must be a floating-point dtype (e.g. torch.bfloat16)")
    path = Path(path)
    if path.suffix != ".safetensors":
        raise WeightsError(f"weight files must end in .safetensors, got {str(path)!r}")
    meta = {FORMAT_KEY: FORMAT_VERSION}
    for k, v in (metadata or {}).items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise WeightsError(f"metadata must map str to str; got {k!r}: {type(v).__name__}")
        meta[k] = v
    meta[CONFIG_KEY] = to_json(cfg)
    tensors = _state_tensors(module)
    if dtype is not None:
        tensors = {k: v.to(dtype) if v.is_floating_point() else v for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def _rename(key_map: KeyMap | None) -> Callable[[str], str | None]:
    if key_map is None:
        return lambda k: k
    if callable(key_map):
        return key_map
    prefixes = sorted(key_map.items(), key=lambda kv: -len(kv[0]))    # longest prefix first

    def by_prefix(k: str) -> str:
        for old, new in prefixes:
            if k.startswith(old):
                return new + k[len(old):]
        return k
    return by_prefix


def build_module(cfg) -> torch.nn.Module:
    """Instantiate the class registered for ``cfg.kind``."""
    if cfg.kind not in REGISTRY:
        raise WeightsError(f"no module class for component kind {cfg.kind!r}; allowed: {', '.join(REGISTRY)}")
    entry = REGISTRY[cfg.kind]
    if isinstance(entry, tuple):
        mod, name = entry
        entry = getattr(importlib.import_module(mod), name)
    return entry(cfg)


def _listing(title: str, items: list[str]) -> str:
    more = f" ... and {len(items) - _LIST} more" if len(items) > _LIST else ""
    return f"{len(items)} {title}: {', '.join(items[:_LIST])}{more}"


def check_state(path, expected: Mapping[str, torch.Tensor], got: Mapping[str, tuple],
                allow_missing: bool = False) -> None:
    """Raise one WeightsError listing missing keys (unless ``allow_missing``), unexpected keys and
    shape mismatches."""
    missing = [] if allow_missing else sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    shapes = sorted(f"{k} (file {tuple(got[k])}, model {tuple(expected[k].shape)})"
                    for k in set(expected) & set(got) if tuple(got[k]) != tuple(expected[k].shape))
    problems = [_listing(t, i) for t, i in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                                            ("shape mismatch(es)", shapes)) if i]
    if problems:
        raise WeightsError(f"{str(path)!r} does not match its module: " + "; ".join(problems))


def check_dtypes(path, expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor]) -> None:
    """Raise one WeightsError listing file tensors whose dtype cannot stand in for the module's:
    floating-point parameters need floating-point tensors (an int8 or bool tensor in place of a
    weight would be silently cast), integer / bool buffers need integer / bool tensors."""
    bad = sorted(f"{k} (file {got[k].dtype}, model {expected[k].dtype})" for k in set(expected) & set(got)
                 if got[k].is_floating_point() != expected[k].is_floating_point() or got[k].is_complex())
    if bad:
        raise WeightsError(f"{str(path)!r} holds tensors of the wrong kind of dtype: "
                           + _listing("tensor(s)", bad) + "; weights must be floating point (float32, bfloat16, "
                           "float16 ...)")


def load_component(path: str | os.PathLike, kind: str | None = None, device: torch.device | str = "cpu",
                   key_map: KeyMap | None = None, cfg=None,
                   allow_missing: bool = False) -> tuple[torch.nn.Module, object]:
    """Load a weight file into a new module -> (module in eval mode on ``device``, cfg).

    ``kind`` (if given) must match the stored config. ``cfg`` overrides the stored config (for files
    without one). ``key_map`` renames file keys: a callable (None drops the key) or a dict of prefix
    renames. ``allow_missing`` lets the module keep its initialisation for parameters the file lacks
    (a file from before a module grew a path); every file tensor must still fit. Raises WeightsError
    for non-safetensors files, missing config, or any key/shape mismatch.
    """
    path = check_safetensors(path)
    if cfg is None:
        cfg = read_config(path, kind)
    elif kind is not None and cfg.kind != kind:
        raise WeightsError(f"expected a {kind} config for {str(path)!r}, got a {cfg.kind} config")
    module = build_module(cfg)
    rename = _rename(key_map)
    tensors: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(path), framework="pt") as f:
            for k in f.keys():
                new = rename(k)
                if new is not None:
                    tensors[new] = f.get_tensor(k)
    except SafetensorError as e:                 # e.g. the file changed since it was checked
        raise WeightsError(f"{str(path)!r} cannot be read as safetensors: {e}") from e
    check_state(path, module.state_dict(), {k: v.shape for k, v in tensors.items()}, allow_missing)
    check_dtypes(path, module.state_dict(), tensors)
    module.load_state_dict(tensors, strict=not allow_missing)
    return module.to(device).eval(), cfg


__all__ = ["WeightsError", "REGISTRY", "CONFIG_KEY", "DTYPE_SIZES", "check_safetensors", "read_header",
           "parameter_count", "read_metadata", "read_config", "save_component", "build_module", "check_state",
           "check_dtypes", "load_component"]
