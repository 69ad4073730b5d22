"""Speed of the procedural world: scene sampling + rendering (frames per second) at several sizes,
and the analytic captioner (clips per second). Prints figures; asserts nothing.

    python benchmarks/bench_render.py [--clips 200] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sora_core.world.captioner import analyze  # noqa: E402
from sora_core.world.render import render  # noqa: E402
from sora_core.world.scene import sample_scene  # noqa: E402

SIZES = [  # (width, height, frames): square, wide, tall, images, a long clip
    (64, 64, 17), (32, 32, 17), (96, 64, 17), (64, 96, 17), (128, 128, 17), (256, 144, 33),
    (64, 64, 1), (256, 256, 1), (64, 64, 81),
]


def bench_render(clips: int, fps: float = 8.0) -> None:
    print(f"{'size':>12} {'frames':>6} {'clips':>6} {'sample ms':>10} {'render frames/s':>16} {'MB/s':>8}")
    for w, h, t in SIZES:
        n = max(10, clips * 17 // max(t, 17)) if t > 1 else clips * 4
        t0 = time.perf_counter()
        specs = [sample_scene(i, w, h, t, fps) for i in range(n)]
        t1 = time.perf_counter()
        frames = 0
        for s in specs:
            frames += render(s).shape[0]
        t2 = time.perf_counter()
        fps_r = frames / (t2 - t1)
        print(f"{w:>5}x{h:<6} {t:>6} {n:>6} {1e3 * (t1 - t0) / n:>10.2f} {fps_r:>16.0f} "
              f"{fps_r * w * h * 3 / 2**20:>8.1f}")


def bench_captioner(clips: int) -> None:
    print(f"\n{'captioner':>12} {'frames':>6} {'clips':>6} {'clips/s':>10} {'frames/s':>10}")
    for w, h, t in ((64, 64, 9), (64, 64, 17), (128, 96, 17)):
        videos = [render(sample_scene(i, w, h, t, 8.0)) for i in range(clips // 2)]
        t0 = time.perf_counter()
        for v in videos:
            analyze(v, fps=8.0)
        dt = time.perf_counter() - t0
        print(f"{w:>5}x{h:<6} {t:>6} {len(videos):>6} {len(videos) / dt:>10.1f} {len(videos) * t / dt:>10.0f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=200, help="clips per size (fewer for long clips)")
    ap.add_argument("--threads", type=int, default=1, help="opencv threads (the renderer is single-threaded)")
    args = ap.parse_args()
    cv2.setNumThreads(args.threads)
    np.random.seed(0)
    print(f"opencv {cv2.__version__}, numpy {np.__version__}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    bench_render(args.clips)
    bench_captioner(args.clips)


if __name__ == "__main__":
    main()
