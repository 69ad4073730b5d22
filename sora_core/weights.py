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
from safetensors import safe_open
from safetensors.torch import save_file

from .configs import ConfigError, from_json, to_json
from .files import atomic_write


class WeightsError(ValueError):
    """A weight file that is not safetensors, lacks a config, or does not match its module."""


CONFIG_KEY = "sora.config"
FORMAT_KEY = "sora.format"
FORMAT_VERSION = "1"

# component kind -> (module, class name), imported lazily so loading one kind never imports the others
# (a class may also be registered directly)
REGISTRY: dict[str, tuple[str, str] | Callable] = {
    "vae": ("sora_core.vae", "VideoVAE"),
    "dit": ("sora_core.dit", "DiT"),
    "text_encoder": ("sora_core.text", "ByteTextEncoder"),
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


def check_safetensors(path: str | os.PathLike) -> Path:
    """Return ``path`` if its content is a safetensors file; otherwise raise WeightsError.

    Checks the 8-byte little-endian header length and that the header is a JSON object.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weight file {str(path)!r} does not exist (expected a .safetensors file)")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        header = f.read(n) if 2 <= n <= min(size - 8, 100_000_000) else b""
    try:
        ok = header[:1] == b"{" and isinstance(json.loads(header), dict)
    except (ValueError, UnicodeDecodeError):
        ok = False
    if not ok:
        raise WeightsError(f"{str(path)!r} is {_sniff(head)}: only safetensors weight files are accepted "
                           f"(convert it to .safetensors; pickle files are never loaded)")
    return path


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file (empty dict when it has none)."""
    path = check_safetensors(path)
    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


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
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():
            new = rename(k)
            if new is not None:
                tensors[new] = f.get_tensor(k)
    check_state(path, module.state_dict(), {k: v.shape for k, v in tensors.items()}, allow_missing)
    module.load_state_dict(tensors, strict=not allow_missing)
    return module.to(device).eval(), cfg


__all__ = ["WeightsError", "REGISTRY", "CONFIG_KEY", "check_safetensors", "read_metadata", "read_config",
           "save_component", "build_module", "check_state", "load_component"]
