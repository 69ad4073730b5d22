"""Configs of the Wan family's own components: the umT5 text encoder and the Wan 2.2 VAE (the Wan
DiT and the Wan 2.1 VAE are the pack's DiTConfig and VAEConfig); registered with their presets in
``sora_core.configs``."""

from __future__ import annotations

from dataclasses import dataclass

from .checks import MAX_DIM, MAX_LAYERS, _require, check_fields


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


# kind -> preset name -> factory (merged into sora_core.configs' presets)
WAN_PRESETS = {
    "umt5": {
        "umt5-xxl": lambda: UMT5Config(),
        # the tests' size: real key names and bucket layout (ComfyUI's T5 fixes 32 buckets, distance 128)
        "tiny": lambda: UMT5Config(vocab_size=320, d_model=64, num_layers=2, num_heads=4, d_kv=16, d_ff=128),
    },
    "vae22": {
        "wan2.2": lambda: WanVAE22Config(),
        # the tests' size: the real structure, widths 16 / 32 instead of 160 / 256
        "tiny": lambda: WanVAE22Config(base_dim=16, decoder_base_dim=32),
    },
}
