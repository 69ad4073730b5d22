"""Wan models: time per DiT step and VAE decode, measured at tiny and small configurations on this
machine, and computed (not measured) FLOPs and weight memory for the released sizes.

    python benchmarks/bench_wan.py                   # measured (tiny + small) and computed tables
    python benchmarks/bench_wan.py --computed-only   # the released sizes only (no timing)
    python benchmarks/bench_wan.py --threads 1 --repeats 5

Measured: random weights with the Wan structure (the DiT at one 128-wide head per 128 channels like
the release, the VAEs at the released structure) on the CPU, fp32 and bf16 autocast, best of
``--repeats`` after one warm-up. "One step" is one DiT forward; classifier-free guidance (cfg != 1)
makes two per step. Text context: Wan's 512 tokens.

Computed: the released configurations (Wan 2.1 T2V 1.3B / 14B, Wan 2.2 TI2V 5B) at their default
resolution and frame count: tokens, linear and attention FLOPs per forward (2 FLOPs per
multiply-add; norms, RoPE, modulation and the patch embedding left out: < 1 %), parameter counts
from the modules built on the meta device, and weight memory per storage dtype.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sora_core.configs import DiTConfig, VAEConfig, WanVAE22Config, preset  # noqa: E402
from sora_core.models.dit import DiT  # noqa: E402
from sora_core.models.wan.vae_keys import build_vae  # noqa: E402

TEXT_LEN = 512                                   # Wan's text context (padding included)
UMT5_DIM = 4096


@dataclass(frozen=True)
class Release:
    """A released DiT with its VAE's factors and its default output."""
    name: str
    dit: DiTConfig
    vae: object
    frames: int
    height: int
    width: int

    @property
    def grid(self) -> tuple[int, int, int]:
        ft, fs = self.vae.temporal_factor, self.vae.spatial_factor
        pt, ph, pw = self.dit.patch_size
        return (1 + (self.frames - 1) // ft) // pt, self.height // fs // ph, self.width // fs // pw


def _dit(heads: int, layers: int, ffn: int, channels: int = 16) -> DiTConfig:
    return DiTConfig(in_channels=channels, out_channels=channels, patch_size=(1, 2, 2), num_heads=heads,
                     head_dim=128, num_layers=layers, ffn_dim=ffn, text_dim=UMT5_DIM, freq_dim=256, eps=1e-6)


RELEASES = (
    Release("Wan 2.1 T2V 1.3B, 832x480, 81 frames", _dit(12, 30, 8960), preset("vae", "wan2.1"), 81, 480, 832),
    Release("Wan 2.1 T2V 14B, 1280x720, 81 frames", _dit(40, 40, 13824), preset("vae", "wan2.1"), 81, 720, 1280),
    Release("Wan 2.2 TI2V 5B, 1280x704, 121 frames", _dit(24, 30, 14336, 48), WanVAE22Config(), 121, 704, 1280),
)
STORAGE = {"fp32": 4, "bf16 / fp16": 2, "fp8": 1}


# ---------------------------------------------------------------------------------------------
# Computed
# ---------------------------------------------------------------------------------------------

def params(build) -> int:
    with torch.device("meta"):
        module = build()
    return sum(p.numel() for p in module.parameters())


def flops(cfg: DiTConfig, tokens: int, text: int = TEXT_LEN) -> tuple[float, float]:
    """(linear, attention) FLOPs of one DiT forward over ``tokens`` tokens and ``text`` text tokens."""
    n, d, f = tokens, cfg.dim, cfg.ffn_dim
    linear = 2 * (4 * n * d * d            # self-attention q, k, v, o
                  + 2 * n * d * d          # cross-attention q, o
                  + 2 * text * d * d       # cross-attention k, v over the text
                  + 2 * n * d * f)         # feed-forward
    attention = 2 * (2 * n * n * d + 2 * n * text * d)
    text_embed = 2 * text * (cfg.text_dim * d + d * d)
    return cfg.num_layers * linear + text_embed, cfg.num_layers * attention


def computed_table() -> None:
    print("\nComputed for the released sizes (not measured; FLOPs per DiT forward, x2 per step with cfg):")
    print(f"{'model':42s} {'latent grid':>12s} {'tokens':>7s} {'linear TF':>10s} {'attn TF':>8s} "
          f"{'params':>8s} " + " ".join(f"{k:>12s}" for k in STORAGE))
    for r in RELEASES:
        t, h, w = r.grid
        tokens = t * h * w
        lin, att = flops(r.dit, tokens)
        n = params(lambda: DiT(r.dit))
        mem = " ".join(f"{n * b / 2 ** 30:9.1f} GiB" for b in STORAGE.values())
        print(f"{r.name:42s} {f'{t}x{h * 2}x{w * 2}':>12s} {tokens:7d} {lin / 1e12:10.1f} {att / 1e12:8.1f} "
              f"{n / 1e9:7.2f}B {mem}")
    for name, build in (("umT5-XXL encoder", lambda: _umt5()), ("Wan 2.1 VAE", lambda: build_vae(preset("vae", "wan2.1"))),
                        ("Wan 2.2 VAE", lambda: build_vae(WanVAE22Config()))):
        n = params(build)
        mem = " ".join(f"{n * b / 2 ** 30:9.2f} GiB" for b in STORAGE.values())
        print(f"{name:42s} {'':>12s} {'':>7s} {'':>10s} {'':>8s} {n / 1e9:7.2f}B {mem}")


def _umt5():
    from sora_core.models.wan.umt5 import UMT5Encoder
    return UMT5Encoder(preset("umt5", "umt5-xxl"))


# ---------------------------------------------------------------------------------------------
# Measured
# ---------------------------------------------------------------------------------------------

def best_time(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _autocast(dtype):
    return torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)


@torch.no_grad()
def time_dit(cfg: DiTConfig, grid: tuple[int, int, int], dtype, repeats: int) -> float:
    torch.manual_seed(0)
    model = DiT(cfg).eval()
    t, h, w = grid
    x = torch.randn(1, cfg.in_channels, t, h, w)
    ctx, mask = torch.randn(1, TEXT_LEN, cfg.text_dim), torch.ones(1, TEXT_LEN, dtype=torch.bool)
    tt = torch.full((1,), 0.5)

    def step():
        with _autocast(dtype):
            model(x, tt, ctx, mask)
    return best_time(step, repeats)


@torch.no_grad()
def time_decode(vae_cfg, grid: tuple[int, int, int], dtype, repeats: int) -> float:
    torch.manual_seed(0)
    vae = build_vae(vae_cfg).eval()
    z = torch.randn(1, vae_cfg.z_dim, *grid)
    return best_time(lambda: vae.decode(z, dtype=dtype), repeats)


MEASURED_DITS = (
    # name, config, pixel request (frames, height, width) with the Wan 2.1 VAE's factors 4 / 8
    ("tiny (dim 128, 2 layers)", DiTConfig(in_channels=16, out_channels=16, num_heads=1, head_dim=128, num_layers=2,
                                           ffn_dim=256, text_dim=64, freq_dim=256), (17, 64, 64)),
    ("small (dim 512, 4 layers)", DiTConfig(in_channels=16, out_channels=16, num_heads=4, head_dim=128, num_layers=4,
                                            ffn_dim=2048, text_dim=UMT5_DIM, freq_dim=256), (33, 128, 128)),
    ("1.3B block width (dim 1536, 1 of 30 layers)", _dit(12, 1, 8960), (33, 128, 128)),
)
MEASURED_VAES = (
    ("Wan 2.1 VAE tiny (base 16)", VAEConfig(base_dim=16, z_dim=16, dim_mult=(1, 2, 4, 4),
                                             temporal_downsample=(False, True, True)), (17, 64, 64)),
    ("Wan 2.1 VAE released width (base 96)", preset("vae", "wan2.1"), (17, 64, 64)),
    ("Wan 2.2 VAE tiny (16 / 32)", preset("vae22", "tiny"), (17, 64, 64)),
    ("Wan 2.2 VAE released widths (160 / 256)", WanVAE22Config(), (17, 64, 64)),
)
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


def _latent_grid(cfg, frames: int, height: int, width: int) -> tuple[int, int, int]:
    return 1 + (frames - 1) // cfg.temporal_factor, height // cfg.spatial_factor, width // cfg.spatial_factor


def measured_tables(repeats: int) -> None:
    vae21 = preset("vae", "wan2.1")
    print(f"Measured here (CPU, {torch.get_num_threads()} threads, random weights, best of {repeats}):")
    print(f"{'DiT forward (one step without cfg)':46s} {'request':>12s} {'tokens':>7s} "
          + " ".join(f"{k:>9s}" for k in DTYPES))
    for name, cfg, (f, h, w) in MEASURED_DITS:
        t, lh, lw = _latent_grid(vae21, f, h, w)
        tokens = t * (lh // 2) * (lw // 2)
        times = " ".join(f"{time_dit(cfg, (t, lh, lw), d, repeats) * 1e3:7.0f}ms" for d in DTYPES.values())
        print(f"{name:46s} {f'{f}x{h}x{w}':>12s} {tokens:7d} {times}")
    print(f"{'VAE decode':46s} {'request':>12s} {'':>7s} " + " ".join(f"{k:>9s}" for k in DTYPES))
    for name, cfg, (f, h, w) in MEASURED_VAES:
        grid = _latent_grid(cfg, f, h, w)
        times = " ".join(f"{time_decode(cfg, grid, d, repeats) * 1e3:7.0f}ms" for d in DTYPES.values())
        print(f"{name:46s} {f'{f}x{h}x{w}':>12s} {'':>7s} {times}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--computed-only", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if not args.computed_only:
        measured_tables(args.repeats)
    computed_table()
    return 0


if __name__ == "__main__":
    sys.exit(main())
