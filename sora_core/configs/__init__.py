"""Frozen dataclass configs for every component, with named presets.

Each weight file stores its config as JSON in the safetensors metadata (see ``weights.py``), so a
file describes itself. Field names follow the structure of the Wan 2.1 family (diffusers'
``WanTransformer3DModel`` / ``AutoencoderKLWan``) so public checkpoints map onto the same classes.

Presets are small named factories: ``vae_preset("default")``, ``dit_preset("tiny")`` ...
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from .checks import MAX_DIM, MAX_LAYERS, ConfigError, _require, check_fields
from .wan import WAN_PRESETS, UMT5Config, WanVAE22Config


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


COMPONENTS[UMT5Config.kind] = UMT5Config
COMPONENTS[WanVAE22Config.kind] = WanVAE22Config
_PRESETS.update(WAN_PRESETS)


__all__ = ["VAEConfig", "DiTConfig", "TextEncoderConfig", "ScheduleConfig", "ConfigError", "preset",
           "preset_names", "vae_preset", "dit_preset", "text_encoder_preset", "to_json", "from_json",
           "from_dict", "replace", "field", "check_fields", "MAX_DIM", "MAX_LAYERS", "UMT5Config", "WanVAE22Config"]
