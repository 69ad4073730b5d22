"""The ``long`` task of ``sora eval --generate``: a minute of video in windows, scored per window.

Per prompt and seed, ``task_long`` generates ``seconds`` (default 60) with ``sora_core.long_video`` at
the model's default window, overlap and anchoring, then scores:

    colour_kept / shape_kept / size_kept   fraction of windows whose every asked-for object is seen
                                           with the asked colour / shape / size (captioner per window)
    count_kept                             fraction of windows with exactly the asked number of
                                           objects, when the first window had it (else None)
    colour_same / shape_same / size_same   fraction of the later windows whose objects keep what the
                                           first window showed (identity, right or wrong for the prompt)
    object_colour_shift                    mean |mean RGB| change of the object pixels between the
    background_colour_shift                first and the last 5 s (grey levels); the same for the rest
    boundary_continuity / joins_smooth     the worst join's continuity ratio / the fraction of joins <= 1.5
    temporal_flicker, identity_drift ...   the whole video, as every task (``score_clip``)

A window is the span of output frames it was sampled for (its context included). ``measure_memory``
runs ``python -m sora_core.evaluation.long`` in fresh subprocesses (peak RSS is per process): peak RSS
of a short and a long video streamed to a file, and the time of one long video against independent
short clips adding up to the same length.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from ..world import metrics as M
from .evaluate import ClipResult, PromptEntry, prompt_for_model, score_clip

LONG_SECONDS = 60.0
EDGE_SECONDS = 5.0                  # the first / last stretch compared by the colour shifts
RSS_SECONDS = (10.0, 60.0)
JOIN_TARGET = M.METRICS["boundary_continuity"].target


# ---------------------------------------------------------------------------------------------
# Scores of a long video
# ---------------------------------------------------------------------------------------------

def _mean_colours(frames: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(mean RGB of the object pixels, mean RGB of the background pixels) of uint8 (T, H, W, 3);
    object pixels are those whose brightest channel reaches ``metrics.OBJECT_LEVEL``, the background
    is what lies beyond 2 pixels of them (no blurred rims). None where there are no such pixels."""
    bright = frames.max(axis=-1)
    obj = bright >= M.OBJECT_LEVEL
    near = np.stack([cv2.dilate(m.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for m in obj])
    f = frames.astype(np.float64)
    return (f[obj].mean(0) if obj.any() else None), (f[~near].mean(0) if (~near).any() else None)


def colour_shifts(frames: np.ndarray, fps: float, edge: float = EDGE_SECONDS) -> tuple[float | None, float | None]:
    """(object, background) colour shift between the first and the last ``edge`` seconds of
    ``frames`` (at most half the video each): the mean over R, G, B of the absolute difference of
    their mean colours, in grey levels (0..255). Ideal 0; None when a part has no such pixels."""
    f = M._frames(frames, min_frames=2)
    n = max(1, min(int(round(edge * fps)), f.shape[0] // 2))
    (oa, ba), (ob, bb) = _mean_colours(f[:n]), _mean_colours(f[-n:])
    obj = None if oa is None or ob is None else float(np.abs(oa - ob).mean())
    back = None if ba is None or bb is None else float(np.abs(ba - bb).mean())
    return obj, back


def window_analysis(frames: np.ndarray, fps: float, spans, expected) -> list[tuple[dict, list]]:
    """Per (start, stop) span: the captioner's prompt adherence (``metrics.prompt_adherence``) and the
    object track paired with each asked-for object (``metrics.match_objects``; None = not seen)."""
    from ..world.captioner import analyze
    exp = expected if isinstance(expected, M.Expected) else M.Expected.of(expected)
    out = []
    for a, b in spans:
        analysis = analyze(frames[a:b], fps)
        out.append((M.prompt_adherence(analysis, exp), M.match_objects(exp, analysis)))
    return out


def _kept(rows: list[dict], key: str) -> float | None:
    """Fraction of windows where ``key`` is fully met (1.0); None when the prompt does not ask for it."""
    vals = [r[key] for r in rows if r[key] is not None]
    return float(np.mean([v == 1.0 for v in vals])) if vals else None


def _same_as_first(pairs: list[list], attr: str) -> float | None:
    """Fraction of the later windows in which every object keeps the ``attr`` it was seen with in the
    first window (a missing object does not); None when the first window lacks an asked-for object."""
    first = pairs[0]
    if len(pairs) < 2 or not first or any(t is None for t in first):
        return None
    return float(np.mean([all(t is not None and getattr(t, attr) == getattr(f, attr) for t, f in zip(p, first))
                          for p in pairs[1:]]))


def long_scores(frames: np.ndarray, fps: float, spans, joins, expected) -> dict[str, float | None]:
    """The long task's metrics (module doc) of uint8 ``frames`` (T, H, W, 3): ``spans`` the
    (start, stop) output frames of each window, ``joins`` the first new frame of each later window."""
    found = window_analysis(frames, fps, spans, expected)
    rows, pairs = [r for r, _ in found], [p for _, p in found]
    obj, back = colour_shifts(frames, fps)
    count = _kept(rows, "count") if rows and rows[0]["count"] == 1.0 else None
    ratios = [M.boundary_continuity(frames, j) for j in joins]
    return {"colour_kept": _kept(rows, "colour"), "shape_kept": _kept(rows, "shape"),
            "size_kept": _kept(rows, "size"), "count_kept": count,
            "colour_same": _same_as_first(pairs, "colour"), "shape_same": _same_as_first(pairs, "shape"),
            "size_same": _same_as_first(pairs, "size"),
            "object_colour_shift": obj, "background_colour_shift": back,
            "boundary_continuity": max(ratios) if ratios else None,
            "joins_smooth": float(np.mean([r <= JOIN_TARGET for r in ratios])) if ratios else None}


# ---------------------------------------------------------------------------------------------
# The task
# ---------------------------------------------------------------------------------------------

def long_frames(model, seconds: float) -> int:
    """The valid frame count of ``seconds`` at the model's frame rate."""
    from ..geometry import frames_for_seconds
    return frames_for_seconds(seconds, model.defaults.fps, int(model.vae.cfg.temporal_factor))


def task_long(model, entry: PromptEntry, seed: int, s) -> "_Run":
    """Generate ``s.seconds`` (RunSettings; default 60) in windows and score it (module doc).
    Returns an object with ``clips``: [(ClipResult, frames)]."""
    from ..long_video import long_video
    d, ft = model.defaults, int(model.vae.cfg.temporal_factor)
    seconds = getattr(s, "seconds", None) or LONG_SECONDS
    height, width = s.height or d.height, s.width or d.width
    prompt = prompt_for_model(entry.prompt, seed, getattr(s, "expand", False), width, height, d.frames, d.fps,
                              entry.line)
    chunks = list(long_video(model, prompt, frames=long_frames(model, seconds), height=height, width=width,
                             steps=s.steps, cfg=s.cfg, sampler=s.sampler, shift=s.shift, seed=seed))
    frames = np.concatenate([c.frames for c in chunks])
    spans = [(c.window.start, c.window.start + c.window.frames(ft)) for c in chunks]
    joins = [c.start for c in chunks[1:]]
    extra = long_scores(frames, d.fps, spans, joins, entry.prompt)
    name = f"long_{entry.line:03d}_seed{seed}.mp4"
    clip = score_clip(frames, d.fps, replace(entry, task="long"), name, extra=extra, seed=seed)
    clip.notes.append(f"{len(chunks)} windows of {chunks[0].window.frames(ft)} frames")
    return _Run([(clip, frames)])


@dataclass
class _Run:
    clips: list[tuple[ClipResult, np.ndarray]]


# ---------------------------------------------------------------------------------------------
# Peak memory and time, in fresh processes
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryRun:
    """One subprocess: ``count`` videos of ``seconds`` generated and streamed to a file."""
    seconds: float
    count: int
    wall: float               # seconds spent generating (the model load excluded)
    peak_rss_mib: float


def _child(seconds: float, count: int, model: str | None, steps: int | None, seed: int, prompt: str) -> MemoryRun:
    """Generate and stream ``count`` videos in this process (the subprocess's side)."""
    import resource
    import tempfile
    import time

    import torch

    from ..long_video import long_video, write_long_video
    from ..pipeline import SoraModel
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    sora = SoraModel.load(model) if model else SoraModel.default()
    frames = long_frames(sora, seconds)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(count):
            write_long_video(Path(tmp) / f"v{i}.mp4", long_video(sora, prompt, frames=frames, steps=steps,
                                                                 seed=seed + i), sora.defaults.fps)
    wall = time.perf_counter() - t0
    return MemoryRun(seconds, count, wall, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)


def run_child(seconds: float, count: int = 1, model: str | None = None, steps: int | None = None, seed: int = 0,
              prompt: str = "a red ball moving right") -> MemoryRun:
    """``_child`` in a fresh ``python -m sora_core.evaluation.long`` process; raises RuntimeError with
    its stderr when it fails."""
    cmd = [sys.executable, "-m", "sora_core.evaluation.long", "--seconds", repr(float(seconds)), "--count",
           str(count), "--seed", str(seed), "--prompt", prompt] + (["--model", str(model)] if model else []) + \
        (["--steps", str(steps)] if steps else [])
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"the memory measurement ({' '.join(cmd[2:])}) failed:\n{done.stderr[-2000:]}")
    return MemoryRun(**json.loads(done.stdout.strip().splitlines()[-1]))


def measure_memory(model: str | None = None, steps: int | None = None, short: float = RSS_SECONDS[0],
                   long: float = RSS_SECONDS[1], seed: int = 0) -> dict:
    """Peak RSS of one ``short`` and one ``long`` video, each in a fresh process, and the time of the
    long one against ``long / short`` independent short clips (generated in the short one's process).
    Returns the figures and their ratios (targets: RSS <= 1.1x, time <= 1.5x)."""
    clips = max(1, int(round(long / short)))
    a = run_child(short, clips, model, steps, seed)
    b = run_child(long, 1, model, steps, seed)
    return {"short_seconds": short, "long_seconds": long, "short_peak_rss_mib": round(a.peak_rss_mib, 1),
            "long_peak_rss_mib": round(b.peak_rss_mib, 1), "rss_ratio": round(b.peak_rss_mib / a.peak_rss_mib, 3),
            "short_clips": clips, "short_clips_seconds": round(a.wall, 1), "long_seconds_taken": round(b.wall, 1),
            "time_ratio": round(b.wall / a.wall, 3) if a.wall > 0 else math.nan}


def describe_memory(m: dict) -> str:
    """One line for the report."""
    return (f"peak RSS {m['short_seconds']:g} s: {m['short_peak_rss_mib']:.0f} MiB, {m['long_seconds']:g} s: "
            f"{m['long_peak_rss_mib']:.0f} MiB ({m['rss_ratio']:.2f}x, target <= 1.1x); time of {m['long_seconds']:g} s "
            f"{m['long_seconds_taken']:.1f} s vs {m['short_clips']} x {m['short_seconds']:g} s independent clips "
            f"{m['short_clips_seconds']:.1f} s ({m['time_ratio']:.2f}x, target <= 1.5x)")


def main(argv=None) -> int:
    """The subprocess of ``run_child``: prints one JSON line (a MemoryRun)."""
    import argparse
    from dataclasses import asdict
    p = argparse.ArgumentParser(prog="python -m sora_core.evaluation.long")
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--model", default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prompt", default="a red ball moving right")
    a = p.parse_args(argv)
    print(json.dumps(asdict(_child(a.seconds, a.count, a.model, a.steps, a.seed, a.prompt))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
