"""Frozen dataclass configs for every component, with named presets.

Each weight file stores its config as JSON in the safetensors metadata (see ``weights.py``), so a
file describes itself. Field names follow the structure of the Wan 2.1 family (diffusers'
``WanTransformer3DModel`` / ``AutoencoderKLWan``) so public checkpoints map onto the same classes.

Presets are small named factories: ``vae_preset("default")``, ``dit_preset("tiny")`` ...
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Callable


class ConfigError(ValueError):
    """A config that is malformed, of the wrong kind, or names an unknown preset."""


# ---------------------------------------------------------------------------------------------
# Validation: every field checked against its declared type and the class's ``limits``
# ---------------------------------------------------------------------------------------------

MAX_DIM = 65536             # any width (channels, model dim, text dim); Wan 14B uses 5120
MAX_LAYERS = 1000
MAX_ITEMS = 64              # entries of a tuple field with ``...`` length


@functools.lru_cache(maxsize=None)
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _check_scalar(label: str, value, kind: type, bounds: tuple | None) -> None:
    """Type (int / float / bool / str, no bool for numbers, finite floats) and inclusive bounds."""
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    ok = (type(value) is bool if kind is bool else isinstance(value, str) if kind is str
          else type(value) is int if kind is int
          else isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value))
    if not ok:
        raise ConfigError(f"{label}={value!r} must be {names[kind]}" + (" (finite)" if kind is float else ""))
    if kind is str:
        if not 0 < len(value) <= 256:
            raise ConfigError(f"{label}={value!r} must be a non-empty string of at most 256 characters")
    elif bounds is not None and not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{label}={value!r} is out of range: allowed {bounds[0]} .. {bounds[1]}")


def check_fields(cfg) -> None:
    """Check every field of a config dataclass against its type annotation and ``cfg.limits``
    (``{field: (low, high)}``, inclusive, applied to each entry of a tuple); raises ConfigError
    naming the class, the field, the value and what is allowed."""
    cls = type(cfg)
    limits = getattr(cls, "limits", {})
    for f in dataclasses.fields(cls):
        hint, value, label = _hints(cls)[f.name], getattr(cfg, f.name), f"{cls.__name__}.{f.name}"
        if typing.get_origin(hint) is not tuple:
            _check_scalar(label, value, hint, limits.get(f.name))
            continue
        args = typing.get_args(hint)
        length = MAX_ITEMS if args[-1] is Ellipsis else len(args)
        if not isinstance(value, tuple) or (len(value) > length if args[-1] is Ellipsis else len(value) != length):
            want = f"a list of at most {length}" if args[-1] is Ellipsis else f"a list of exactly {length}"
            raise ConfigError(f"{label}={value!r} must be {want} values")
        for i, v in enumerate(value):
            _check_scalar(f"{label}[{i}]", v, args[0], limits.get(f.name))


def _require(cfg, ok: bool, name: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"{type(cfg).__name__}.{name}: {message}")


# ---------------------------------------------------------------------------------------------
# Components
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class VAEConfig:
    """Causal 3D residual video VAE (Wan 2.1 structure).

    Spatial factor = 2 ** (len(dim_mult) - 1); temporal factor = 2 ** sum(temporal_downsample).
    Latents are normalised per channel: z = (mu - latents_mean) / latents_std.
    """
    in_channels: int = 3
    base_dim: int = 32
    z_dim: int = 8
    dim_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    attn_scales: tuple[float, ...] = ()
    temporal_downsample: tuple[bool, ...] = (True, True)
    dropout: float = 0.0
    latents_mean: tuple[float, ...] = ()      # empty = zeros
    latents_std: tuple[float, ...] = ()       # empty = ones
    chunk_frames: int = 4                     # pixel frames per causal chunk (= temporal factor)

    kind = "vae"
    limits = {"in_channels": (1, 64), "base_dim": (1, 4096), "z_dim": (1, 1024), "dim_mult": (1, 64),
              "num_res_blocks": (0, 64), "attn_scales": (1e-6, 1.0), "dropout": (0.0, 0.99),
              "latents_mean": (-1e4, 1e4), "latents_std": (1e-8, 1e4), "chunk_frames": (1, 1024)}

    def __post_init__(self):
        check_fields(self)
        _require(self, len(self.dim_mult) >= 1, "dim_mult", "needs at least one entry")
        _require(self, self.base_dim * max(self.dim_mult) <= MAX_DIM, "base_dim",
                 f"base_dim * max(dim_mult) = {self.base_dim * max(self.dim_mult)} exceeds {MAX_DIM}")
        if len(self.temporal_downsample) != len(self.dim_mult) - 1:
            raise ConfigError(
                f"VAEConfig.temporal_downsample has {len(self.temporal_downsample)} entries; it needs "
                f"len(dim_mult) - 1 = {len(self.dim_mult) - 1}")
        for name in ("latents_mean", "latents_std"):
            v = getattr(self, name)
            if v and len(v) != self.z_dim:
                raise ConfigError(f"VAEConfig.{name} has {len(v)} values; it needs z_dim = {self.z_dim} or none")

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(t) for t in self.temporal_downsample)


@dataclass(frozen=True)
class DiTConfig:
    """Diffusion transformer over spacetime patches (Wan 2.1 block structure)."""
    in_channels: int = 8
    out_channels: int = 8
    patch_size: tuple[int, int, int] = (1, 2, 2)
    num_heads: int = 4
    head_dim: int = 64
    num_layers: int = 8
    ffn_dim: int = 1024
    text_dim: int = 256
    freq_dim: int = 256
    eps: float = 1e-6
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    # not in Wan 2.1: add the RMS-normalised masked mean of the text embeddings, through an MLP
    # (``condition_embedder.text_pool``), to the time embedding, so every block's modulation sees
    # the prompt (SD3's pooled text vector). A jointly trained text encoder learns through it far
    # sooner than through cross-attention alone (docs/training.md).
    pooled_text: bool = False

    kind = "dit"
    limits = {"in_channels": (1, 1024), "out_channels": (1, 1024), "patch_size": (1, 64), "num_heads": (1, 1024),
              "head_dim": (6, 1024), "num_layers": (1, MAX_LAYERS), "ffn_dim": (1, 4 * MAX_DIM),
              "text_dim": (1, MAX_DIM), "freq_dim": (2, MAX_DIM), "eps": (1e-12, 0.1), "rope_theta": (1.0, 1e9)}

    def __post_init__(self):
        check_fields(self)
        _require(self, self.head_dim % 2 == 0, "head_dim",
                 f"{self.head_dim} must be even (RoPE rotates channel pairs, split over t / h / w)")
        _require(self, self.dim <= MAX_DIM, "num_heads",
                 f"num_heads * head_dim = {self.dim} exceeds {MAX_DIM}")

    @property
    def dim(self) -> int:
        return self.num_heads * self.head_dim


@dataclass(frozen=True)
class TextEncoderConfig:
    """Byte-level transformer text encoder (no vocabulary files; any UTF-8 input).

    Token ids: 0 = pad, 1 = bos (always present, never masked), 2 = eos, 3 + byte value.
    """
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    ffn_dim: int = 1024
    max_len: int = 384
    out_dim: int = 256
    vocab_size: int = 259

    kind = "text_encoder"
    limits = {"dim": (1, MAX_DIM), "num_layers": (1, MAX_LAYERS), "num_heads": (1, 1024),
              "ffn_dim": (1, 4 * MAX_DIM), "max_len": (1, MAX_DIM), "out_dim": (1, MAX_DIM),
              "vocab_size": (259, 1_000_000)}

    def __post_init__(self):
        check_fields(self)
        _require(self, self.dim % self.num_heads == 0, "dim",
                 f"{self.dim} must be divisible by num_heads={self.num_heads}")


@dataclass(frozen=True)
class ScheduleConfig:
    """Flow-matching sampling schedule: sigma' = shift*s / (1 + (shift - 1) s)."""
    shift: float = 3.0
    steps: int = 20
    cfg: float = 5.0
    sampler: str = "euler"

    kind = "schedule"
    limits = {"shift": (1e-3, 1e3), "steps": (1, 10000), "cfg": (0.0, 100.0)}

    def __post_init__(self):
        check_fields(self)


COMPONENTS: dict[str, type] = {c.kind: c for c in (VAEConfig, DiTConfig, TextEncoderConfig, ScheduleConfig)}


# ---------------------------------------------------------------------------------------------
# Presets (small named factories)
# ---------------------------------------------------------------------------------------------

_PRESETS: dict[str, dict[str, Callable[[], Any]]] = {
    "vae": {
        "tiny": lambda: VAEConfig(base_dim=8, z_dim=4, dim_mult=(1, 2), num_res_blocks=1,
                                  temporal_downsample=(True,), chunk_frames=2),
        "tiny4": lambda: VAEConfig(base_dim=8, z_dim=4, dim_mult=(1, 2, 2), num_res_blocks=1,
                                   temporal_downsample=(True, True)),
        # base 16 (not 32): 4x fewer FLOPs to train, encode and decode on a 2-core CPU (docs/training.md)
        "default": lambda: VAEConfig(base_dim=16),
        # the reference configuration of the benchmarks: base 32, z 8, mult 1,2,4,4
        "bench": lambda: VAEConfig(base_dim=32, z_dim=8, dim_mult=(1, 2, 4, 4),
                                   temporal_downsample=(False, True, True)),
        "wan2.1": lambda: VAEConfig(base_dim=96, z_dim=16, dim_mult=(1, 2, 4, 4),
                                    temporal_downsample=(False, True, True)),
    },
    "dit": {
        "tiny": lambda: DiTConfig(in_channels=4, out_channels=4, num_heads=2, head_dim=16, num_layers=2,
                                  ffn_dim=64, text_dim=32, freq_dim=32, pooled_text=True),
        "default": lambda: DiTConfig(pooled_text=True),
        "bench": lambda: DiTConfig(in_channels=16, out_channels=16, num_heads=4, head_dim=64, num_layers=8,
                                   ffn_dim=1024, text_dim=256, freq_dim=256),
        "wan2.1-1.3b": lambda: DiTConfig(in_channels=16, out_channels=16, num_heads=12, head_dim=128,
                                         num_layers=30, ffn_dim=8960, text_dim=4096, freq_dim=256),
    },
    "text_encoder": {
        "tiny": lambda: TextEncoderConfig(dim=32, num_layers=1, num_heads=2, ffn_dim=64, max_len=64, out_dim=32),
        "default": lambda: TextEncoderConfig(),
    },
    "schedule": {
        "tiny": lambda: ScheduleConfig(steps=2, cfg=1.0),
        "default": lambda: ScheduleConfig(),
    },
}


def preset(kind: str, name: str):
    """Config of component ``kind`` ('vae', 'dit', 'text_encoder', 'schedule') for preset ``name``."""
    if kind not in _PRESETS:
        raise ConfigError(f"unknown component kind {kind!r}; allowed: {', '.join(_PRESETS)}")
    if name not in _PRESETS[kind]:
        raise ConfigError(f"unknown {kind} preset {name!r}; allowed: {', '.join(_PRESETS[kind])}")
    return _PRESETS[kind][name]()


def preset_names(kind: str) -> list[str]:
    return list(_PRESETS[kind])


def vae_preset(name: str) -> VAEConfig:
    return preset("vae", name)


def dit_preset(name: str) -> DiTConfig:
    return preset("dit", name)


def text_encoder_preset(name: str) -> TextEncoderConfig:
    return preset("text_encoder", name)


# ---------------------------------------------------------------------------------------------
# JSON round trip (stored in safetensors metadata)
# ---------------------------------------------------------------------------------------------

def to_json(cfg) -> str:
    """JSON with the component kind: ``{"kind": "dit", "config": {...}}``."""
    return json.dumps({"kind": cfg.kind, "config": dataclasses.asdict(cfg)}, sort_keys=True)


def from_json(text: str, kind: str | None = None):
    """Rebuild a config from ``to_json`` output; ``kind`` (if given) must match."""
    try:
        data = json.loads(text)
        k, fields = data["kind"], data["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"malformed config JSON: {e}") from e
    if k not in COMPONENTS:
        raise ConfigError(f"config kind {k!r} is unknown; allowed: {', '.join(COMPONENTS)}")
    if kind is not None and k != kind:
        raise ConfigError(f"expected a {kind} config, found a {k} config")
    if not isinstance(fields, dict):
        raise ConfigError(f"malformed config JSON: 'config' must be an object, got {type(fields).__name__}")
    return from_dict(COMPONENTS[k], fields)


def from_dict(cls, fields: dict):
    """Build ``cls`` from a dict, turning lists back into tuples and naming unknown fields."""
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise ConfigError(f"{cls.__name__} has no field(s) {unknown}; allowed: {sorted(known)}")
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def replace(cfg, **changes):
    """``dataclasses.replace`` with an error naming unknown fields."""
    known = {f.name for f in dataclasses.fields(cfg)}
    bad = sorted(set(changes) - known)
    if bad:
        raise ConfigError(f"{type(cfg).__name__} has no field(s) {bad}; allowed: {sorted(known)}")
    return dataclasses.replace(cfg, **changes)



# ---------------------------------------------------------------------------------------------
# umT5 text encoder (Wan's; sora_core/models/wan/umt5.py)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class UMT5Config:
    """umT5 encoder (T5 v1.1 structure with a relative position bias in every layer), as Wan uses it.

    Field names follow transformers' ``UMT5Config``; ``max_len`` is the text context (Wan: 512 tokens,
    EOS included, padding zeroed), ``pad_id`` / ``eos_id`` the tokenizer's special ids.
    """
    vocab_size: int = 256384
    d_model: int = 4096
    num_layers: int = 24
    num_heads: int = 64
    d_kv: int = 64
    d_ff: int = 10240
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6
    max_len: int = 512
    pad_id: int = 0
    eos_id: int = 1

    kind = "umt5"
    limits = {"vocab_size": (2, 1_000_000), "d_model": (1, MAX_DIM), "num_layers": (1, MAX_LAYERS),
              "num_heads": (1, 1024), "d_kv": (1, 1024), "d_ff": (1, 4 * MAX_DIM), "num_buckets": (4, 1024),
              "max_distance": (2, 1_000_000), "eps": (1e-12, 0.1), "max_len": (2, MAX_DIM),
              "pad_id": (0, 999_999), "eos_id": (0, 999_999)}

    def __post_init__(self):
        check_fields(self)
        _require(self, self.inner_dim <= MAX_DIM, "num_heads",
                 f"num_heads * d_kv = {self.inner_dim} exceeds {MAX_DIM}")
        _require(self, self.num_buckets % 2 == 0, "num_buckets",
                 f"{self.num_buckets} must be even (half the buckets for each direction)")
        _require(self, self.max_distance > self.num_buckets // 4, "max_distance",
                 f"{self.max_distance} must exceed num_buckets // 4 = {self.num_buckets // 4} (the exact buckets)")
        for name in ("pad_id", "eos_id"):
            _require(self, getattr(self, name) < self.vocab_size, name,
                     f"{getattr(self, name)} must be below vocab_size = {self.vocab_size}")

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv


COMPONENTS[UMT5Config.kind] = UMT5Config
_PRESETS["umt5"] = {
    "umt5-xxl": lambda: UMT5Config(),
    # the tests' size: real key names and bucket layout (ComfyUI's T5 fixes 32 buckets, distance 128)
    "tiny": lambda: UMT5Config(vocab_size=320, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128),
}


# ---------------------------------------------------------------------------------------------
# Wan 2.2 VAE (sora_core/models/wan/vae22.py)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class WanVAE22Config:
    """Wan 2.2 VAE: a causal 3D VAE (encoder width ``base_dim``, decoder width ``decoder_base_dim``)
    with residual average-down / duplicate-up shortcuts around every resampling stage, wrapped in a
    ``patch_size`` x ``patch_size`` space-to-channel patchify.

    Spatial factor = patch_size * 2 ** (len(dim_mult) - 1) (16 for the release); temporal factor =
    2 ** sum(temporal_downsample). Latents are normalised per channel as in ``VAEConfig``.
    Field names follow diffusers' ``AutoencoderKLWan`` (``is_residual=True``).
    """
    in_channels: int = 3
    patch_size: int = 2
    base_dim: int = 160
    decoder_base_dim: int = 256
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    dropout: float = 0.0
    latents_mean: tuple[float, ...] = ()      # empty = zeros
    latents_std: tuple[float, ...] = ()       # empty = ones
    chunk_frames: int = 4                     # pixel frames per causal chunk (= temporal factor)

    kind = "vae22"
    limits = {"in_channels": (1, 64), "patch_size": (1, 8), "base_dim": (1, 4096), "decoder_base_dim": (1, 4096),
              "z_dim": (1, 1024), "dim_mult": (1, 64), "num_res_blocks": (1, 64), "dropout": (0.0, 0.99),
              "latents_mean": (-1e4, 1e4), "latents_std": (1e-8, 1e4), "chunk_frames": (1, 1024)}

    def __post_init__(self):
        check_fields(self)
        _require(self, len(self.dim_mult) >= 1, "dim_mult", "needs at least one entry")
        _require(self, max(self.base_dim, self.decoder_base_dim) * max(self.dim_mult) <= MAX_DIM, "base_dim",
                 f"width * max(dim_mult) exceeds {MAX_DIM}")
        _require(self, len(self.temporal_downsample) == len(self.dim_mult) - 1, "temporal_downsample",
                 f"has {len(self.temporal_downsample)} entries; it needs len(dim_mult) - 1 = {len(self.dim_mult) - 1}")
        for name in ("latents_mean", "latents_std"):
            v = getattr(self, name)
            _require(self, not v or len(v) == self.z_dim, name, f"has {len(v)} values; it needs z_dim = {self.z_dim} or none")
        dims = [self.base_dim * m for m in (1, *self.dim_mult)]
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):       # the average-down shortcut's channel groups
            factor = (2 if i < len(self.temporal_downsample) and self.temporal_downsample[i] else 1) * \
                (4 if i < len(self.dim_mult) - 1 else 1)
            _require(self, a * factor % b == 0, "dim_mult",
                     f"encoder stage {i}: {a} channels x {factor} (down-sampling) must be a multiple of {b}")
        dims = [self.decoder_base_dim * m for m in (self.dim_mult[-1], *self.dim_mult[::-1])]
        for i, (a, b) in enumerate(zip(dims[:-2], dims[1:-1])):     # the duplicate-up shortcut's repeats
            factor = (2 if self.temporal_downsample[::-1][i] else 1) * 4
            _require(self, b * factor % a == 0, "dim_mult",
                     f"decoder stage {i}: {b} channels x {factor} (up-sampling) must be a multiple of {a}")

    @property
    def spatial_factor(self) -> int:
        return self.patch_size * 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(bool(t) for t in self.temporal_downsample)


COMPONENTS[WanVAE22Config.kind] = WanVAE22Config
_PRESETS["vae22"] = {
    "wan2.2": lambda: WanVAE22Config(),
    # the tests' size: the real structure, widths 16 / 32 instead of 160 / 256
    "tiny": lambda: WanVAE22Config(base_dim=16, decoder_base_dim=32),
}


__all__ = ["VAEConfig", "DiTConfig", "TextEncoderConfig", "ScheduleConfig", "ConfigError", "preset",
           "preset_names", "vae_preset", "dit_preset", "text_encoder_preset", "to_json", "from_json",
           "from_dict", "replace", "field", "check_fields", "MAX_DIM", "MAX_LAYERS", "UMT5Config", "WanVAE22Config"]
