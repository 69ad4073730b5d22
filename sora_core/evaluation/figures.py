"""Figures drawn with opencv: line plots (metric curves, loss curves), bar charts and contact sheets.

Every function returns a uint8 RGB image (H, W, 3); ``save_figure`` writes it as PNG without
overwriting anything. No plotting library needed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from ..media.video_io import write_image

FONT = cv2.FONT_HERSHEY_SIMPLEX
WHITE, BLACK, GREY, LIGHT = (255, 255, 255), (20, 20, 20), (120, 120, 120), (225, 225, 225)
# a colour-blind friendly cycle (Okabe-Ito), RGB
PALETTE = [(0, 114, 178), (230, 159, 0), (0, 158, 115), (204, 121, 167), (86, 180, 233),
           (213, 94, 0), (240, 228, 66), (0, 0, 0)]


# ---------------------------------------------------------------------------------------------
# Drawing helpers
# ---------------------------------------------------------------------------------------------

def _text(img, text, org, scale=0.45, colour=BLACK, thickness=1, anchor="left"):
    """Draw ``text`` with its baseline at ``org``; ``anchor`` left / centre / right."""
    (w, _), _ = cv2.getTextSize(text, FONT, scale, thickness)
    x = org[0] - {"left": 0, "centre": w // 2, "right": w}[anchor]
    cv2.putText(img, text, (int(x), int(org[1])), FONT, scale, colour, thickness, cv2.LINE_AA)


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.3g}"


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of 10)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(count - 1, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Tick positions (log10 values) for a log axis spanning 10**lo .. 10**hi: 1, 2, 5 times each
    power of ten when few decades are shown, powers of ten only otherwise."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    decades = range(math.floor(lo), math.ceil(hi) + 1)
    mults = (1, 2, 5) if hi - lo <= 2.5 else (1,)
    ticks = [d + math.log10(m) for d in decades for m in mults]
    inside = [t for t in ticks if lo <= t <= hi]
    return inside if len(inside) >= 2 else nice_ticks(lo, hi)


def _canvas(size, title):
    w, h = size
    img = np.full((h, w, 3), 255, np.uint8)
    if title:
        _text(img, title, (w // 2, 24), 0.6, BLACK, 1, "centre")
    return img


# ---------------------------------------------------------------------------------------------
# Line plots
# ---------------------------------------------------------------------------------------------

def line_plot(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, title: str = "",
              xlabel: str = "", ylabel: str = "", log_y: bool = False,
              hlines: Mapping[str, float] | None = None, size=(720, 420)) -> np.ndarray:
    """Plot named ``(xs, ys)`` series as lines (e.g. ``{"loss": (steps, losses)}``).

    ``log_y`` uses a log10 axis (non-positive values are dropped); ``hlines`` draws dashed labelled
    horizontal lines (targets). Returns uint8 RGB (H, W, 3) with H, W = ``size[1], size[0]``.
    """
    img = _canvas(size, title)
    w, h = size
    box = (70, 56, w - 20, h - 50)  # x0, y0, x1, y1 of the plot area
    data = _finite_series(series, log_y)
    lines = {k: (math.log10(v) if log_y else v) for k, v in (hlines or {}).items() if not log_y or v > 0}
    if not data:
        _text(img, "no data", (w // 2, h // 2), 0.6, GREY, 1, "centre")
        return img
    xall = np.concatenate([x for x, _ in data.values()])
    yall = np.concatenate([y for _, y in data.values()] + [np.array(list(lines.values()))])
    xlo, xhi = float(xall.min()), float(xall.max())
    ylo, yhi = float(yall.min()), float(yall.max())
    xhi, yhi = (xhi if xhi > xlo else xlo + 1), (yhi if yhi > ylo else ylo + 1)
    pad = 0.05 * (yhi - ylo)
    ylo, yhi = ylo - pad, yhi + pad

    def to_px(x, y):
        px = box[0] + (np.asarray(x) - xlo) / (xhi - xlo) * (box[2] - box[0])
        py = box[3] - (np.asarray(y) - ylo) / (yhi - ylo) * (box[3] - box[1])
        return px, py

    _axes(img, box, (xlo, xhi), (ylo, yhi), log_y, to_px, xlabel, ylabel)
    for name, value in lines.items():
        _, py = to_px(xlo, value)
        for x0 in range(box[0], box[2], 12):
            cv2.line(img, (x0, int(py)), (min(x0 + 6, box[2]), int(py)), (200, 40, 40), 1, cv2.LINE_AA)
        _text(img, name, (box[2] - 4, int(py) - 4), 0.4, (200, 40, 40), 1, "right")
    _draw_series(img, box, data, to_px)
    return img


def _finite_series(series, log_y: bool) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The plottable points of each series (finite; positive and in log10 for a log axis)."""
    data = {}
    for name, (xs, ys) in series.items():
        xs, ys = np.asarray(xs, float), np.asarray(ys, float)
        keep = np.isfinite(xs) & np.isfinite(ys) & ((ys > 0) if log_y else True)
        if keep.any():
            data[name] = (xs[keep], np.log10(ys[keep]) if log_y else ys[keep])
    return data


def _draw_series(img, box, data, to_px) -> None:
    """Lines in palette order, with a legend (swatch + name) left to right above the plot."""
    legend_x = box[0]
    for i, (name, (xs, ys)) in enumerate(data.items()):
        px, py = to_px(xs, ys)
        pts = np.stack([px, py], -1).round().astype(np.int32)
        colour = PALETTE[i % len(PALETTE)]
        if len(pts) == 1:
            cv2.circle(img, tuple(int(v) for v in pts[0]), 3, colour, -1, cv2.LINE_AA)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        if name:
            cv2.line(img, (legend_x, box[1] - 10), (legend_x + 18, box[1] - 10), colour, 2, cv2.LINE_AA)
            _text(img, name, (legend_x + 22, box[1] - 6), 0.42, BLACK, 1)
            legend_x += 40 + cv2.getTextSize(name, FONT, 0.42, 1)[0][0]


def _axes(img, box, xr, yr, log_y, to_px, xlabel, ylabel, xticks=True):
    """Frame, grid lines and tick labels of a plot area."""
    x0, y0, x1, y1 = box
    for v in (log_ticks(*yr) if log_y else nice_ticks(*yr)):
        if yr[0] <= v <= yr[1]:
            _, py = to_px(xr[0], v)
            cv2.line(img, (x0, int(py)), (x1, int(py)), LIGHT, 1)
            _text(img, _fmt(10 ** v if log_y else v), (x0 - 6, int(py) + 4), 0.4, GREY, 1, "right")
    for v in (nice_ticks(*xr, count=6) if xticks else []):
        if xr[0] <= v <= xr[1]:
            px, _ = to_px(v, yr[0])
            cv2.line(img, (int(px), y0), (int(px), y1), LIGHT, 1)
            _text(img, _fmt(v), (int(px), y1 + 16), 0.4, GREY, 1, "centre")
    cv2.rectangle(img, (x0, y0), (x1, y1), GREY, 1)
    _text(img, xlabel, ((x0 + x1) // 2, y1 + 38), 0.45, BLACK, 1, "centre")
    if ylabel:
        label = np.full((24, 12 * len(ylabel) + 20, 3), 255, np.uint8)
        _text(label, ylabel + (" (log)" if log_y else ""), (label.shape[1] // 2, 17), 0.45, BLACK, 1, "centre")
        label = np.rot90(label).copy()
        top = max(0, (y0 + y1) // 2 - label.shape[0] // 2)
        hh = min(label.shape[0], img.shape[0] - top)
        img[top:top + hh, 2:2 + label.shape[1]] = np.minimum(img[top:top + hh, 2:2 + label.shape[1]], label[:hh])


# ---------------------------------------------------------------------------------------------
# Bar charts
# ---------------------------------------------------------------------------------------------

def bar_chart(values: Mapping[str, float], *, title: str = "", ylabel: str = "",
              ylim: tuple[float, float] | None = None, targets: Mapping[str, float] | None = None,
              notes: Mapping[str, str] | None = None, highlight: Sequence[str] = (),
              size=(720, 420)) -> np.ndarray:
    """One bar per named value, its number written on top; ``targets`` (same names) are drawn as a
    dashed red mark over the bar (with a legend); ``notes`` are grey text under a bar's name (e.g.
    "n=3"); bars named in ``highlight`` are drawn in a second colour (e.g. lower-is-better ones).
    ``ylim`` defaults to [min(0, values), max(values, targets)]. Returns uint8 RGB (H, W, 3).
    Non-finite values are shown as "n/a"."""
    img = _canvas(size, title)
    w, h = size
    box = (70, 52, w - 20, h - 62)
    names = list(values)
    if not names:
        _text(img, "no data", (w // 2, h // 2), 0.6, GREY, 1, "centre")
        return img
    vals = np.array([float(values[n]) for n in names])
    finite = vals[np.isfinite(vals)]
    tgt = [float(v) for v in (targets or {}).values() if math.isfinite(v)]
    lo, hi = ylim or (min([0.0, *finite]), max([1e-9, *finite, *tgt]) * 1.1)

    def to_py(v):
        return int(box[3] - (np.clip(v, lo, hi) - lo) / (hi - lo) * (box[3] - box[1]))

    _axes(img, box, (0, 1), (lo, hi), False, lambda x, y: (box[0] + x * (box[2] - box[0]), to_py(y)), "", ylabel,
          xticks=False)
    slot = (box[2] - box[0]) / len(names)
    for i, (name, v) in enumerate(zip(names, vals)):
        cx = int(box[0] + slot * (i + 0.5))
        half = int(slot * 0.3)
        if math.isfinite(v):
            colour = PALETTE[1] if name in highlight else PALETTE[0]
            cv2.rectangle(img, (cx - half, to_py(v)), (cx + half, to_py(max(lo, 0))), colour, -1)
        _text(img, _fmt(v) if math.isfinite(v) else "n/a", (cx, to_py(v if math.isfinite(v) else lo) - 5),
              0.4, BLACK, 1, "centre")
        if targets and name in targets and math.isfinite(targets[name]):
            ty = to_py(targets[name])
            for x0 in range(cx - half - 4, cx + half + 4, 6):
                cv2.line(img, (x0, ty), (x0 + 3, ty), (200, 40, 40), 2)
        lines = _label_below(img, name, cx, box[3] + 14, int(slot))
        if notes and name in notes:
            _text(img, notes[name], (cx, box[3] + 14 + 14 * lines), 0.35, GREY, 1, "centre")
    if tgt:
        for x0 in range(w - 90, w - 66, 6):
            cv2.line(img, (x0, 36), (x0 + 3, 36), (200, 40, 40), 2)
        _text(img, "target", (w - 62, 40), 0.4, (200, 40, 40), 1)
    return img


def _label_below(img, name, cx, y, width) -> int:
    """A bar label, shrunk and split over two lines to fit ``width`` pixels; returns the line count."""
    scale = 0.4
    words = name.replace("_", " ").split()
    lines = [" ".join(words)]
    if cv2.getTextSize(lines[0], FONT, scale, 1)[0][0] > width and len(words) > 1:
        cut = (len(words) + 1) // 2
        lines = [" ".join(words[:cut]), " ".join(words[cut:])]
    while scale > 0.25 and max(cv2.getTextSize(s, FONT, scale, 1)[0][0] for s in lines) > width:
        scale -= 0.05
    for j, s in enumerate(lines):
        _text(img, s, (cx, y + 14 * j), scale, BLACK, 1, "centre")
    return len(lines)


# ---------------------------------------------------------------------------------------------
# Contact sheets
# ---------------------------------------------------------------------------------------------

def frame_indices(total: int, count: int) -> list[int]:
    """``count`` frame indices spread evenly over ``total`` frames, first and last included."""
    if total <= count:
        return list(range(total))
    return [round(i * (total - 1) / (count - 1)) for i in range(count)] if count > 1 else [0]


def contact_sheet(frames: np.ndarray, *, detections: Sequence[Sequence[Mapping]] | None = None,
                  title: str = "", subtitle: str = "", count: int = 8, min_height: int = 128) -> np.ndarray:
    """A row of ``count`` frames sampled evenly from ``frames`` (T, H, W, 3), each labelled with its
    index, with optional detections drawn on them.

    ``detections[t]`` lists dicts with ``box`` (x0, y0, x1, y1 in pixels of the frame) and optional
    ``label`` (str) and ``colour`` (RGB). Small frames are enlarged (nearest) to ``min_height`` so
    they can be seen. A ``title`` line (and a grey ``subtitle`` line) goes above the row.
    Returns uint8 RGB (H, W, 3).
    """
    frames = np.asarray(frames)
    t, h, w, _ = frames.shape
    scale = max(1, math.ceil(min_height / h))
    tiles = []
    for i in frame_indices(t, count):
        tile = cv2.resize(frames[i], (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
        for det in (detections[i] if detections is not None and i < len(detections) else []):
            _draw_detection(tile, det, scale)
        tile = cv2.copyMakeBorder(tile, 18, 4, 2, 2, cv2.BORDER_CONSTANT, value=WHITE)
        _text(tile, f"t={i}", (4, 13), 0.4, GREY, 1)
        tiles.append(tile)
    row = np.concatenate(tiles, axis=1)
    heads = []
    for text, colour in ((title, BLACK), (subtitle, GREY)):
        for line in (wrap_text(text, row.shape[1] - 8, 0.45, max_lines=3) if text else []):
            head = np.full((20, row.shape[1], 3), 255, np.uint8)
            _text(head, line, (4, 15), 0.45, colour, 1)
            heads.append(head)
    return np.concatenate(heads + [row], axis=0)


def wrap_text(text: str, width: int, scale: float, max_lines: int = 3) -> list[str]:
    """``text`` split at spaces into lines that fit ``width`` pixels; the last kept line gets an
    ellipsis when more would be needed."""
    lines: list[str] = []
    for word in text.split():
        if lines and cv2.getTextSize(lines[-1] + " " + word, FONT, scale, 1)[0][0] <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = _fit(lines[-1] + " ...", width, scale)
    return [_fit(line, width, scale) for line in lines]


def _fit(text: str, width: int, scale: float) -> str:
    """``text`` cut with an ellipsis to fit ``width`` pixels."""
    if cv2.getTextSize(text, FONT, scale, 1)[0][0] <= width:
        return text
    while text and cv2.getTextSize(text + "...", FONT, scale, 1)[0][0] > width:
        text = text[:-1]
    return text + "..."


def _draw_detection(tile, det, scale):
    x0, y0, x1, y1 = (int(round(v * scale)) for v in det["box"])
    colour = tuple(int(c) for c in det.get("colour", (255, 0, 255)))
    edge = BLACK if sum(colour) > 500 else WHITE
    cv2.rectangle(tile, (x0 - 1, y0 - 1), (x1 + 1, y1 + 1), edge, 1)
    cv2.rectangle(tile, (x0, y0), (x1, y1), colour, 1)
    label = det.get("label")
    if label:
        (tw, th), _ = cv2.getTextSize(label, FONT, 0.32, 1)
        ty = y0 - 3 if y0 - th - 4 >= 0 else min(y1 + th + 3, tile.shape[0] - 2)
        tx = min(max(x0, 0), max(tile.shape[1] - tw - 2, 0))
        cv2.rectangle(tile, (tx, ty - th - 2), (tx + tw + 2, ty + 2), BLACK, -1)
        _text(tile, label, (tx + 1, ty), 0.32, WHITE, 1)


def stack(images: Sequence[np.ndarray], gap: int = 6) -> np.ndarray:
    """Images stacked vertically on white, left-aligned, with ``gap`` pixels between them."""
    width = max(im.shape[1] for im in images)
    rows = []
    for im in images:
        rows.append(cv2.copyMakeBorder(im, 0, gap, 0, width - im.shape[1], cv2.BORDER_CONSTANT, value=WHITE))
    return np.concatenate(rows, axis=0)


def save_figure(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write a figure as PNG (a new name if ``path`` exists); returns the path written."""
    return write_image(path, image)
