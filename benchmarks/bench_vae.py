"""Video VAE speed and memory: ours (sora_core.models.vae.VideoVAE) against diffusers' AutoencoderKLWan.

Both are built from the same config (preset "bench": base 32, z 8, mult 1,2,4,4, time down on the last
two stages; random init) and run the same inputs in the same run, in float32 and under bf16 autocast.
Every (implementation, dtype, length, encode|decode) case runs in a fresh subprocess, so its peak
resident memory (``ru_maxrss``) minus the resident memory just before the call is that operation's
own peak; times are the best of ``--repeats`` warm runs after one cold run.

    python benchmarks/bench_vae.py                       # 1, 17, 33, 65 frames of 64 x 64, 2 threads
    python benchmarks/bench_vae.py --frames 17,65 --size 64 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------
# One measurement (in its own process)
# ---------------------------------------------------------------------------------------------

def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _build(impl: str, preset: str):
    import torch
    from sora_core.configs import vae_preset
    cfg = vae_preset(preset)
    torch.manual_seed(0)
    if impl == "ours":
        from sora_core.models.vae import VideoVAE
        return VideoVAE(cfg).eval(), cfg
    from diffusers import AutoencoderKLWan
    ref = AutoencoderKLWan(base_dim=cfg.base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult),
                           num_res_blocks=cfg.num_res_blocks, attn_scales=list(cfg.attn_scales),
                           temperal_downsample=list(cfg.temporal_downsample),
                           latents_mean=[0.0] * cfg.z_dim, latents_std=[1.0] * cfg.z_dim)
    return ref.eval(), cfg


def _operation(impl: str, model, op: str, dtype: str):
    """A no-argument callable running one encode or decode."""
    import torch
    bf16 = dtype == "bf16"
    if impl == "ours":
        compute = torch.bfloat16 if bf16 else None
        return (lambda x: model.encode(x, dtype=compute)) if op == "encode" else \
               (lambda z: model.decode(z, dtype=compute))

    def ref(inp):
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            return model.encode(inp).latent_dist.mode() if op == "encode" else model.decode(inp).sample
    return ref


def worker(args) -> dict:
    import torch
    torch.set_num_threads(args.threads)
    model, cfg = _build(args.impl, args.preset)
    g = torch.Generator().manual_seed(0)
    T, S = args.frames, args.size
    if args.op == "encode":
        inp = torch.rand(1, 3, T, S, S, generator=g) * 2 - 1
    else:
        from sora_core.geometry import LatentGeometry
        geo = LatentGeometry.create(T, S, S, cfg.temporal_factor, cfg.spatial_factor)
        inp = torch.randn(geo.latent_shape(cfg.z_dim), generator=g)
    run = _operation(args.impl, model, args.op, args.dtype)
    base = _rss_mb()
    times = []
    for _ in range(1 + args.repeats):
        t0 = time.perf_counter()
        out = run(inp)
        times.append(time.perf_counter() - t0)
        del out
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - base
    return {"time": min(times[1:]), "cold": times[0], "peak_mb": max(peak, 0.0)}


# ---------------------------------------------------------------------------------------------
# The table
# ---------------------------------------------------------------------------------------------

def measure(impl, op, dtype, frames, args) -> dict:
    cmd = [sys.executable, __file__, "--worker", "--impl", impl, "--op", op, "--dtype", dtype,
           "--frames", str(frames), "--size", str(args.size), "--threads", str(args.threads),
           "--repeats", str(args.repeats), "--preset", args.preset]
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise RuntimeError(f"{impl} {op} {dtype} {frames}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(args) -> None:
    frames = [int(f) for f in args.frames.split(",")]
    print(f"# VAE preset {args.preset!r}, {args.size}x{args.size}, {args.threads} threads, "
          f"best of {args.repeats} warm runs; peak = peak RSS growth during the call (MB); "
          f"load average at start {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print("| dtype | frames | op | ours s | ref s | ref/ours | ours peak MB | ref peak MB |")
    print("|---|---|---|---|---|---|---|---|")
    for dtype in args.dtypes.split(","):
        for T in frames:
            for op in ("encode", "decode"):
                ours = measure("ours", op, dtype, T, args)
                ref = measure("ref", op, dtype, T, args) if not args.no_ref else None
                r_t = f"{ref['time']:.3f}" if ref else "-"
                ratio = f"{ref['time'] / ours['time']:.2f}x" if ref else "-"
                r_m = f"{ref['peak_mb']:.0f}" if ref else "-"
                print(f"| {dtype} | {T} | {op} | {ours['time']:.3f} | {r_t} | {ratio} | "
                      f"{ours['peak_mb']:.0f} | {r_m} |", flush=True)
    print(f"# load average at end {os.getloadavg()[0]:.1f}")


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", default="1,17,33,65", help="comma-separated frame counts (1 + 4k)")
    p.add_argument("--size", type=int, default=64, help="square frame size in pixels")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2, help="warm runs per case (after one cold run)")
    p.add_argument("--dtypes", default="fp32,bf16", help="fp32 and/or bf16 (autocast)")
    p.add_argument("--preset", default="bench")
    p.add_argument("--no-ref", action="store_true", help="skip diffusers' AutoencoderKLWan")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=("ours", "ref"), help=argparse.SUPPRESS)
    p.add_argument("--op", choices=("encode", "decode"), help=argparse.SUPPRESS)
    p.add_argument("--dtype", choices=("fp32", "bf16"), help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    a = parse()
    if a.worker:
        a.frames = int(a.frames)
        print(json.dumps(worker(a)))
    else:
        main(a)
