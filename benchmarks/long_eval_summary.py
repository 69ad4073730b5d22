"""Pool the long-task clips of one or more ``sora eval --tasks long`` reports against issue 24's targets.

    python benchmarks/long_eval_summary.py eval_a/report.json eval_b/report.json ...
    python benchmarks/long_eval_summary.py --rescore eval_*/report.json     # score the saved videos again
    python benchmarks/long_eval_summary.py --folders eval_a prompts_a.txt eval_b prompts_b.txt
        # the videos a run has saved so far (its report is written at the end), scored from the mp4s

Every video has the same number of windows, so the mean over videos of a per-video fraction is the
fraction over all their windows. ``--rescore`` reads each clip's saved mp4 (H.264, crf 16) and scores it
with the current ``sora_core.evaluation.long.long_scores`` (windows of the default model: 17 frames,
overlap 5, temporal factor 4) for the metrics the run did not have (added after it); the run's own
scores, of the frames before compression, are kept.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def rescored(path: str, window: int = 17, overlap: int = 5, ft: int = 4) -> list[dict]:
    """The long clips of a report with their metrics computed again from the saved videos."""
    from pathlib import Path

    from sora_core.evaluation.long import long_scores
    from sora_core.long_video import plan_windows
    from sora_core.media.video_io import read_video
    clips = [c for c in json.load(open(path))["clips"] if c["task"] == "long"]
    for c in clips:
        frames, fps = read_video(Path(path).parent / c["video"])
        wins = plan_windows(len(frames), window, overlap, ft)
        spans = [(w.start, w.start + w.frames(ft)) for w in wins]
        again = long_scores(frames, fps, spans, [w.start + w.context_frames(ft) for w in wins[1:]], c["prompt"])
        c["rescored"] = sorted(set(again) - set(c["metrics"]))
        c["metrics"] = {**again, **c["metrics"]}              # the run's own scores (of the raw frames) first
    return clips


def score_video(path, prompt: str, window: int = 17, overlap: int = 5, ft: int = 4) -> dict:
    """The long task's metrics of a saved video (and its flicker)."""
    from sora_core.evaluation.long import long_scores
    from sora_core.long_video import plan_windows
    from sora_core.media.video_io import read_video
    from sora_core.world.metrics import temporal_flicker
    frames, fps = read_video(path)
    wins = plan_windows(len(frames), window, overlap, ft)
    spans = [(w.start, w.start + w.frames(ft)) for w in wins]
    m = long_scores(frames, fps, spans, [w.start + w.context_frames(ft) for w in wins[1:]], prompt)
    return {**m, "temporal_flicker": temporal_flicker(frames)}


def folder_clips(folder: str, prompts: str) -> list[dict]:
    """The clips of the videos saved so far in a report folder (``videos/long_NNN_seedS.mp4``, NNN the
    line of the prompts file, which has no comments or blank lines)."""
    from pathlib import Path
    lines = Path(prompts).read_text().splitlines()
    out = []
    for video in sorted(Path(folder, "videos").glob("long_*.mp4")):
        prompt = lines[int(video.name.split("_")[1]) - 1]
        out.append({"task": "long", "prompt": prompt, "video": str(video), "metrics": score_video(video, prompt),
                    "rescored": ["all"]})
    return out


def pooled(paths: list[str], rescore: bool = False, clips: list | None = None) -> dict:
    """Figures over every long clip of the reports (or of ``clips``)."""
    if clips is None:
        clips = [c for p in paths for c in (rescored(p) if rescore else json.load(open(p))["clips"])
                 if c["task"] == "long"]

    def vals(key):
        return [c["metrics"][key] for c in clips if c["metrics"].get(key) is not None]
    out = {"videos": len(clips), "rescored": {k: sum(k in c.get("rescored", ()) for c in clips)
                                              for c in clips for k in c.get("rescored", ())}}
    for key in ("colour_kept", "shape_kept", "size_kept", "count_kept", "colour_same", "shape_same", "size_same",
                "object_colour_shift",
                "background_colour_shift", "joins_smooth", "temporal_flicker", "identity_drift"):
        v = vals(key)
        out[key] = {"mean": float(np.mean(v)) if v else None, "min": min(v) if v else None,
                    "max": max(v) if v else None, "n": len(v)}
    joins = vals("boundary_continuity")
    out["worst_join"] = {"max": max(joins), "median_of_worst": float(np.median(joins)),
                         "videos_all_joins_ok": sum(j <= 1.5 for j in joins), "n": len(joins)}
    return out


def main(argv=None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    if args[:1] == ["--folders"]:
        pairs = args[1:]
        clips = [c for k in range(0, len(pairs), 2) for c in folder_clips(pairs[k], pairs[k + 1])]
        for c in clips:
            m = c["metrics"]
            print(f"  {c['prompt']}: colour {m['colour_kept']}, same {m['colour_same']}, shape {m['shape_kept']}, "
                  f"same {m['shape_same']}, count {m['count_kept']}, shift {m['object_colour_shift']}/"
                  f"{m['background_colour_shift']}, worst join {m['boundary_continuity']:.2f}")
        r = pooled([], clips=clips)
    else:
        rescore = "--rescore" in args
        r = pooled([a for a in args if a != "--rescore"], rescore)
    f = {k: v for k, v in r.items() if isinstance(v, dict) and "mean" in v}
    print(f"{r['videos']} videos" + (f"; rescored from the mp4s: {r['rescored']}" if r.get("rescored") else ""))
    targets = {"colour_kept": ">= 0.95", "shape_kept": ">= 0.90", "count_kept": ">= 0.90",
               "object_colour_shift": "<= 6", "background_colour_shift": "<= 6"}
    for k, v in f.items():
        if v["mean"] is None:
            print(f"{k}: none")
            continue
        print(f"{k}: mean {v['mean']:.3f} (min {v['min']:.3f}, max {v['max']:.3f}, n {v['n']})"
              + (f"  target {targets[k]}" if k in targets else ""))
    w = r["worst_join"]
    print(f"worst join per video: max {w['max']:.2f}, median {w['median_of_worst']:.2f}; videos with every join "
          f"<= 1.5: {w['videos_all_joins_ok']}/{w['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
