"""Which component and family a checkpoint holds, from its header only (key names, shapes, dtypes).

Every component module of this package provides a detector

    detect_<kind>(shapes: {key: shape}, dtypes: {key: safetensors dtype}) -> Detected | None

which returns ``None`` when the keys are not its component, a ``Detected`` when they are a family it
loads, and raises ``UnsupportedCheckpoint`` when they are a relative it recognises but does not load
(a Wan I2V DiT, a VACE model ...). ``detect`` tries them all (``DETECTORS``, resolved lazily, so a
component module that is not there yet is skipped) and raises one clear error when none matches.
No tensor is read: the shapes come from the safetensors header.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

Shapes = Mapping[str, tuple]
Dtypes = Mapping[str, str]

KINDS = ("dit", "vae", "text_encoder")
LAYOUTS = ("comfyui", "original", "diffusers")

# (module, function) of every component detector, tried in this order
DETECTORS: tuple[tuple[str, str], ...] = (
    ("sora_core.models.wan.dit_keys", "detect_dit"),
    ("sora_core.models.wan.vae_keys", "detect_vae"),
    ("sora_core.models.wan.umt5", "detect_umt5"),
)

SUPPORTED = ("Wan 2.1 T2V 1.3B / 14B and Wan 2.2 T2V A14B / TI2V 5B diffusion models, the Wan 2.1 and "
             "Wan 2.2 VAEs, the umT5-XXL text encoder")


class UnsupportedCheckpoint(ValueError):
    """A checkpoint whose keys are not a supported component, or are a family that is not loaded
    (the message names the evidence found and what is supported)."""


@dataclass(frozen=True)
class Detected:
    """What a checkpoint holds.

    kind     "dit" | "vae" | "text_encoder"
    family   e.g. "wan2.1-t2v-1.3b", "wan2.2-ti2v-5b", "wan2.1-vae", "wan2.2-vae", "umt5-xxl"
    cfg      the component config (a frozen dataclass of sora_core.configs)
    layout   "comfyui" | "original" | "diffusers" (as far as the keys tell; the loader refines it
             from the file arrangement: one file, shards + index, a folder with config.json)
    key_map  file key -> our module's key (None = the key is ignored, e.g. a format marker)
    notes    facts worth telling the user (storage dtype, fp8 scales, ignored keys ...)
    """
    kind: str
    family: str
    cfg: Any
    layout: str
    key_map: Callable[[str], "str | None"] = field(compare=False)
    notes: tuple[str, ...] = ()

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Detected.kind={self.kind!r}; allowed: {', '.join(KINDS)}")
        if self.layout not in LAYOUTS:
            raise ValueError(f"Detected.layout={self.layout!r}; allowed: {', '.join(LAYOUTS)}")


def _detectors() -> list[Callable]:
    """The detector functions whose modules exist (a module not written yet is skipped)."""
    found = []
    for module, name in DETECTORS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        fn = getattr(mod, name, None)
        if fn is not None:
            found.append(fn)
    return found


def _sample(keys, n: int = 4) -> str:
    keys = sorted(keys)
    more = f" ... ({len(keys)} keys)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def detect(shapes: Shapes, dtypes: Dtypes | None = None, kind: str | None = None,
           source: str = "the checkpoint") -> Detected:
    """The component and family of a checkpoint's header -> ``Detected``.

    ``kind`` (if given) is the component the caller expects: a VAE or a text encoder given where a
    DiT is expected is named as what it is. ``source`` names the file(s) in messages. Raises
    UnsupportedCheckpoint naming the evidence found and what is supported."""
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind={kind!r}; allowed: {', '.join(KINDS)}")
    dtypes = dtypes or {}
    if not shapes:
        raise UnsupportedCheckpoint(f"{source} holds no tensors; supported: {SUPPORTED}")
    for fn in _detectors():
        found = fn(shapes, dtypes)
        if found is None:
            continue
        if kind is not None and found.kind != kind:
            raise UnsupportedCheckpoint(
                f"{source} is a {found.family} {_KIND_NAMES[found.kind]}, not a {_KIND_NAMES[kind]}: "
                f"give it as the {_KIND_NAMES[found.kind]} (and a {_KIND_NAMES[kind]} file here)")
        return found
    raise UnsupportedCheckpoint(f"{source} is not a known model: its keys ({_sample(shapes)}) match none of "
                                f"the supported families; supported: {SUPPORTED}")


_KIND_NAMES = {"dit": "diffusion model (DiT)", "vae": "VAE", "text_encoder": "text encoder"}

__all__ = ["Detected", "UnsupportedCheckpoint", "detect", "DETECTORS", "KINDS", "LAYOUTS", "SUPPORTED"]
