"""Evaluation reports: ``report.json`` (every number), ``report.md`` (tables a person reads) and PNG
figures (metric bar charts per task, SDEdit structure vs strength, contact sheets with detections).

    write_report(out_dir, results, settings) -> out_dir actually written (a new name if it exists)
"""

from __future__ import annotations

import json
import math
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from ..media.files import unique_path, write_text
from . import figures as F
from ..world.metric_info import METRICS, metric_info

SHEETS_PER_FIGURE = 6


# ---------------------------------------------------------------------------------------------
# Summaries
# ---------------------------------------------------------------------------------------------

_COMMON = ("colour", "shape", "size", "motion", "count", "tracks", "background", "event", "temporal_flicker",
           "object_permanence", "identity_drift")


def _groups(results) -> dict[str, list]:
    """Results by task (in order of appearance); text-to-video is followed by its single-object and
    multi-object prompts when it has both."""
    by_task: dict[str, list] = defaultdict(list)
    for r in results:
        by_task[r.task].append(r)
    groups: dict[str, list] = {}
    for task, rs in by_task.items():
        groups[task] = rs
        single = [r for r in rs if r.objects == 1]
        if task == "t2v" and single and len(single) < len(rs):
            groups["t2v, single object"] = single
            groups["t2v, 2-3 objects"] = [r for r in rs if r.objects != 1]
    return groups


def summarise(results) -> dict[str, dict[str, dict]]:
    """{group: {metric: {mean, min, max, n, ideal, target, higher_is_better, met}}} over the clips
    of each group where the metric applies (not None)."""
    out = {}
    for group, rs in _groups(results).items():
        names = list(dict.fromkeys(k for r in rs for k in r.metrics))
        names = [n for n in names if n not in _COMMON] + [n for n in names if n in _COMMON]  # task's own first
        table = {}
        for name in names:
            vals = [r.metrics[name] for r in rs if r.metrics.get(name) is not None
                    and math.isfinite(r.metrics[name])]
            if not vals:
                continue
            info = metric_info(name)
            mean = float(np.mean(vals))
            table[name] = {"mean": round(mean, 5), "min": round(float(min(vals)), 5),
                           "max": round(float(max(vals)), 5), "n": len(vals), "ideal": info.ideal,
                           "target": info.target, "higher_is_better": info.higher_is_better,
                           "met": info.meets(mean)}
        out[group] = {"clips": len(rs), "metrics": table}
    return out


# ---------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------

def _num(v) -> str:
    if v is None:
        return "–"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def _target(entry) -> str:
    if entry["target"] is None:
        return ""
    return f"{'≥' if entry['higher_is_better'] else '≤'} {entry['target']:g}"


def _better(info) -> str:
    if info.kind == "ratio":
        return "closer to 1"
    return "higher" if info.higher_is_better else "lower"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(summary: dict, results, settings: dict, figures: dict[str, list[str]],
             links: set[str] = frozenset()) -> str:
    """The text of report.md; clip names in ``links`` (files inside the report folder) are linked."""
    lines = ["# sora eval report", ""]
    lines += [f"- **{k}**: {_cell(str(v))}" for k, v in settings.items()] + [""]
    lines += ["## Summary", "", "Means over the clips where a metric applies; *ideal* is the best "
              "possible value, *target* the default model's goal.", ""]
    for group, block in summary.items():
        lines += [f"### {group} ({block['clips']} clips)", "",
                  "| metric | mean | min | max | n | ideal | target | met |", "|---|---|---|---|---|---|---|---|"]
        for name, e in block["metrics"].items():
            met = {True: "yes", False: "**no**", None: ""}[e["met"]]
            lines.append(f"| {name} | {_num(e['mean'])} | {_num(e['min'])} | {_num(e['max'])} | {e['n']} | "
                         f"{e['ideal']:g} | {_target(e)} | {met} |")
        lines += [""] + [f"![{group}]({p})" for p in figures.get(group, [])] + [""]
    names = list(dict.fromkeys(k for r in results for k in r.metrics))
    lines += ["## Clips", "", "*seen* is what the analytic captioner recovers from the frames.", "",
              "| video | task | prompt | seen | " + " | ".join(names) + " |",
              "|---" * (4 + len(names)) + "|"]
    for r in results:
        cells = [_num(r.metrics.get(n)) for n in names]
        seen = r.seen + (f" ({'; '.join(r.notes)})" if r.notes else "")
        name = f"[{_cell(r.name)}]({r.name})" if r.name in links else _cell(r.name)
        lines.append(f"| {name} | {r.task} | {_cell(r.prompt)} | {_cell(seen)} | " + " | ".join(cells) + " |")
    used = list(dict.fromkeys(n.split("@")[0] for n in names))
    lines += ["", "## Metrics", "", "| metric | what it measures | ideal | better |", "|---|---|---|---|"]
    lines += [f"| {n} | {_cell(METRICS[n].description)} | {METRICS[n].ideal:g} | {_better(METRICS[n])} |"
              for n in used]
    lines.append("\nEach is a function of `sora_core.world.metrics` whose docstring gives the exact definition.")
    if figures.get("sheets"):
        lines += ["", "## Contact sheets", "", "Evenly spaced frames of each clip with the captioner's "
                  "detections: a box in the colour seen, labelled with the colour and shape seen; "
                  "'?' marks an object cut by the border, the occluder or another object.", ""]
        lines += [f"![contact sheet]({p})" for p in figures["sheets"]]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------

_KIND_TITLES = {"fraction": "scores in [0, 1]", "ratio": "difference ratios (ideal 1)", "dB": "PSNR (dB)"}


def group_figure(group: str, block: dict) -> np.ndarray | None:
    """Bar charts of a group's mean metrics, one chart per kind (fractions, ratios, dB), stacked;
    targets drawn as dashed red marks."""
    charts = []
    for kind, title in _KIND_TITLES.items():
        items = {n: e for n, e in block["metrics"].items() if metric_info(n).kind == kind}
        if not items:
            continue
        def label(n, e):
            return f"{n} (ideal {e['ideal']:g})" if not e["higher_is_better"] else n
        values = {label(n, e): e["mean"] for n, e in items.items()}
        targets = {label(n, e): e["target"] for n, e in items.items() if e["target"] is not None}
        notes = {label(n, e): f"n={e['n']}" for n, e in items.items()}
        lower = [label(n, e) for n, e in items.items() if not e["higher_is_better"] and kind == "fraction"]
        ylim = (0.0, 1.0) if kind == "fraction" else None
        width = max(480, 110 * len(values) + 90)
        charts.append(F.bar_chart(values, title=f"{group}: {title}, means over {block['clips']} clips",
                                  ylim=ylim, targets=targets, notes=notes, highlight=lower, size=(width, 330)))
    return F.stack(charts) if charts else None


def sdedit_figure(results) -> np.ndarray | None:
    """Structure IoU against SDEdit strength (mean over the prompts), with the 0.5 target."""
    by_strength = defaultdict(list)
    for r in results:
        for name, v in r.metrics.items():
            if name.startswith("structure_iou@") and v is not None:
                by_strength[float(name.split("@")[1])].append(v)
    if len(by_strength) < 2:
        return None
    xs = sorted(by_strength)
    ys = [float(np.mean(by_strength[x])) for x in xs]
    return F.line_plot({"object-mask IoU with the source": (xs, ys)}, title="SDEdit: structure kept vs strength",
                       xlabel="strength (denoise)", ylabel="IoU", hlines={"target at 0.5": 0.5})


def _save(out: Path, rel: str, image: np.ndarray) -> str:
    return str(F.save_figure(out / rel, image).relative_to(out))


def write_figures(out: Path, summary: dict, results) -> dict[str, list[str]]:
    """Write every figure under ``out/figures``; returns {group or "sheets": [relative paths]}."""
    made: dict[str, list[str]] = defaultdict(list)
    for i, (group, block) in enumerate(summary.items()):
        img = group_figure(group, block)
        if img is not None:
            slug = "".join(c if c.isalnum() else "_" for c in group).strip("_")
            made[group].append(_save(out, f"figures/metrics_{i + 1:02d}_{slug}.png", img))
    sd = sdedit_figure(results)
    if sd is not None:
        made["sdedit"].append(_save(out, "figures/sdedit_structure_vs_strength.png", sd))
    sheets = [r.sheet for r in results if r.sheet is not None]
    for k in range(0, len(sheets), SHEETS_PER_FIGURE):
        img = F.stack(sheets[k:k + SHEETS_PER_FIGURE], gap=14)
        made["sheets"].append(_save(out, f"figures/sheets_{k // SHEETS_PER_FIGURE + 1:03d}.png", img))
    return dict(made)


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------



def prepare_out_dir(out: str | os.PathLike) -> Path:
    """A new, empty report folder: ``out``, or ``out_00001``... if ``out`` exists."""
    path = unique_path(out)
    try:
        path.mkdir(parents=True)
    except OSError as e:
        raise PermissionError(f"cannot create the report folder {path}: {e.strerror or e}") from None
    return path


def write_report(out: Path, results, settings: dict) -> dict[str, Path]:
    """Write report.json, report.md and figures into the folder ``out`` (made by prepare_out_dir).
    Returns {"json", "md", "folder"} paths."""
    if not results:
        raise ValueError("no clips were scored: nothing to report")
    summary = summarise(results)
    figures = write_figures(out, summary, results)
    data = {"settings": settings, "summary": summary, "figures": figures,
            "clips": [r.to_json() for r in results]}
    write_text(out / "report.json", json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    links = {r.name for r in results if (out / r.name).is_file()}
    write_text(out / "report.md", markdown(summary, results, settings, figures, links))
    return {"json": out / "report.json", "md": out / "report.md", "folder": out}
