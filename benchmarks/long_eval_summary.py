"""Pool the long-task clips of one or more ``sora eval --tasks long`` reports against issue 24's targets.

    python benchmarks/long_eval_summary.py eval_a/report.json eval_b/report.json ...

Every video has the same number of windows, so the mean over videos of a per-video fraction is the
fraction over all their windows.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def pooled(paths: list[str]) -> dict:
    """Figures over every long clip of the reports."""
    clips = [c for p in paths for c in json.load(open(p))["clips"] if c["task"] == "long"]

    def vals(key):
        return [c["metrics"][key] for c in clips if c["metrics"].get(key) is not None]
    out = {"videos": len(clips)}
    for key in ("colour_kept", "shape_kept", "size_kept", "count_kept", "object_colour_shift",
                "background_colour_shift", "joins_smooth", "temporal_flicker", "identity_drift"):
        v = vals(key)
        out[key] = {"mean": float(np.mean(v)) if v else None, "min": min(v) if v else None,
                    "max": max(v) if v else None, "n": len(v)}
    joins = vals("boundary_continuity")
    out["worst_join"] = {"max": max(joins), "median_of_worst": float(np.median(joins)),
                         "videos_all_joins_ok": sum(j <= 1.5 for j in joins), "n": len(joins)}
    return out


def main(argv=None) -> int:
    paths = (argv if argv is not None else sys.argv[1:])
    r = pooled(paths)
    f = {k: v for k, v in r.items() if isinstance(v, dict) and "mean" in v}
    print(f"{r['videos']} videos")
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
