"""Long video on the default model: time of one 60 s video in windows against 6 independent 10 s clips,
peak RSS at 10 s and at 60 s, and drift / joins with and without the anchoring options.

    python benchmarks/bench_long_video.py                       # the model's own steps (20): slow on a CPU
    python benchmarks/bench_long_video.py --steps 4 --drift-seconds 20

Every figure comes from a fresh subprocess (``resource.getrusage`` peak RSS is per process), which
generates with ``sora_core.long_video`` exactly as ``sora generate --seconds N`` does and streams the
frames to a temporary mp4. The machine is shared: the load average is printed with the times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROMPT = "a red ball moving right"


def child(seconds: float, steps: int, seed: int, count: int, match: bool, anchor: bool | None) -> dict:
    """Generate ``count`` videos of ``seconds`` (seeds seed, seed + 1, ...) in this process: wall time,
    peak RSS, and from the last video: the mean RGB of its first and last 5 s and every join's continuity."""
    import numpy as np
    import torch

    from sora_core.geometry import frames_for_seconds
    from sora_core.long_video import long_video, write_long_video
    from sora_core.pipeline import SoraModel
    from sora_core.world.metrics import boundary_continuity
    torch.set_num_threads(2)
    model = SoraModel.default()
    fps, ft = model.defaults.fps, model.vae.cfg.temporal_factor
    frames = frames_for_seconds(seconds, fps, ft)
    t0 = time.perf_counter()
    stats = {"head": [], "tail": [], "joins": [], "tail5": None, "tail_from": max(0, frames - int(5 * fps))}
    for i in range(count):
        def keep(chunk, last=(i == count - 1)):
            if not last:
                return
            f = chunk.frames.astype(np.float64)
            for k in range(f.shape[0]):
                pos = chunk.start + k
                if pos < 5 * fps:
                    stats["head"].append(f[k].reshape(-1, 3).mean(0))
                if pos >= stats["tail_from"]:
                    stats["tail"].append(f[k].reshape(-1, 3).mean(0))
            if chunk.window.index:           # the join from the frames kept of the last chunk (not a re-read)
                stats["joins"].append(boundary_continuity(np.concatenate([stats["tail5"], chunk.frames[:5]]), 5))
            stats["tail5"] = chunk.frames[-5:]
        with tempfile.TemporaryDirectory() as tmp:
            chunks = long_video(model, PROMPT, frames=frames, steps=steps, seed=seed + i,
                                match_colors_at_joins=match, anchor=anchor)
            write_long_video(Path(tmp) / "v.mp4", chunks, fps, on_chunk=keep)
    elapsed = time.perf_counter() - t0
    shift = float(np.abs(np.mean(stats["head"], 0) - np.mean(stats["tail"], 0)).mean())
    return {"seconds": seconds, "count": count, "frames": frames, "time": elapsed,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "colour_shift": shift, "max_join": max(stats["joins"], default=float("nan")),
            "mean_join": float(np.mean(stats["joins"])) if stats["joins"] else float("nan")}


def run(seconds: float, steps: int, seed: int = 0, count: int = 1, match: bool = False,
        anchor: bool | None = None) -> dict:
    """``child`` in a fresh Python process (its own peak RSS); ``anchor`` None = the default (auto)."""
    args = json.dumps([seconds, steps, seed, count, match, anchor])
    out = subprocess.run([sys.executable, __file__, "--child", args], capture_output=True, text=True, check=True,
                         cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _pairs(pairs) -> str:
    """'60 s time / 6 x 10 s time' of each alternated run."""
    return ", ".join(f"{long['time']:.1f}/{clips['time']:.1f}" for long, clips in pairs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--drift-seconds", type=float, default=20.0, help="length of the anchoring comparison")
    p.add_argument("--repeats", type=int, default=2, help="alternated runs of the 60 s / 6 x 10 s timing")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child is not None:
        print(json.dumps(child(*json.loads(a.child))))
        return
    from sora_core.pipeline import ModelSpec, default_model_dir
    steps = a.steps or ModelSpec.read(default_model_dir()).schedule.steps
    print(f"default model, {steps} steps, load average {os.getloadavg()[0]:.1f} (2 shared cores)")
    ten = run(10, steps)
    print(f"10 s: {ten['frames']} frames in {ten['time']:.1f} s, peak RSS {ten['peak_rss_mib']:.0f} MiB")
    pairs = [(run(60, steps), run(10, steps, count=6)) for _ in range(a.repeats)]   # alternated: same load
    sixty = min((p[0] for p in pairs), key=lambda r: r["time"])
    six = min((p[1] for p in pairs), key=lambda r: r["time"])
    print(f"60 s: {sixty['frames']} frames in {sixty['time']:.1f} s, peak RSS {sixty['peak_rss_mib']:.0f} MiB "
          f"({sixty['peak_rss_mib'] / ten['peak_rss_mib']:.2f}x the 10 s), colour shift first vs last 5 s "
          f"{sixty['colour_shift']:.1f}/255, joins: mean {sixty['mean_join']:.2f}, max {sixty['max_join']:.2f}")
    print(f"6 x 10 s independent clips: {six['time']:.1f} s; 60 s takes {sixty['time'] / six['time']:.2f}x that "
          f"(best of {a.repeats} alternated runs each; all: {_pairs(pairs)})")
    for label, kw in (("first-frame anchor (default)", {}), ("no anchoring", dict(anchor=False)),
                      ("colour matching, no anchor", dict(match=True, anchor=False)),
                      ("colour matching + anchor", dict(match=True, anchor=True))):
        r = run(a.drift_seconds, steps, **kw)
        print(f"{a.drift_seconds:g} s, {label}: colour shift first vs last 5 s {r['colour_shift']:.1f}/255, "
              f"joins mean {r['mean_join']:.2f}, max {r['max_join']:.2f}")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
