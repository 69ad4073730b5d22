"""Perception of the procedural world from frames: the low-level half of the analytic captioner.

Objects are bright and the world is dark (see vocab), so pixels whose brightest channel reaches
``OBJECT_LEVEL`` are object pixels, each labelled with the nearest palette colour in CIELAB.
Connected components (split by colour where objects touch) are detections; each detection's mask is
then re-cut at half its contrast over the local background, which keeps shapes and sizes right on
blurry, noisy or dimmer-than-palette (generated) frames. The shape comes from the taper (the world's
triangles point up) and the extent (area over bounding box: square ~1, circle ~0.79); the size
from the bounding box. Also here: the occluder bar, the background (solid / gradient / landscape,
textured ground), the camera pan (phase correlation with the objects cut out) and brush trails.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import vocab as V

OBJECT_LEVEL = 170            # brightest channel of an object pixel (objects >= 200, world <= 140)
MAX_COLOUR_DISTANCE = 60.0    # CIELAB distance beyond which a bright pixel matches no palette colour
SHADE_DISTANCE = 55.0         # CIELAB distance of palette neighbours a shaded object straddles
TEXTURE_RESIDUAL = 4.5        # 75th percentile of |colour - row fit| above which the background is a landscape


@dataclass(frozen=True)
class Detection:
    """One object seen in one frame. ``cx, cy``: mask centroid in pixels (continuous coordinates,
    pixel i covers [i, i+1)); ``bbox`` (x, y, w, h); ``size`` the bounding-box side in short sides;
    ``clipped``: which edges touch the frame border, the occluder or another object."""
    frame: int
    colour: str
    shape: str
    size: float
    cx: float
    cy: float
    area: int
    bbox: tuple[int, int, int, int]
    clipped: tuple[bool, bool, bool, bool]   # left, top, right, bottom edge cut (border, bar, object)
    blob: int = -1                           # connected object region of its frame (touching detections share it)

    @property
    def partial(self) -> bool:
        """Cut somewhere: shape and size unreliable, the centroid too."""
        return any(self.clipped)


# ---------------------------------------------------------------------------------------------
# Colours
# ---------------------------------------------------------------------------------------------

def _lab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8/float RGB -> (..., 3) float32 CIELAB (L in 0..100)."""
    x = np.asarray(rgb, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(x, cv2.COLOR_RGB2LAB).reshape(np.shape(rgb))


_PALETTE = list(V.COLOURS)
_PALETTE_LAB = _lab(np.array([V.COLOURS[c] for c in _PALETTE]))            # (8, 3)
_TRAIL_LAB = _lab(np.array([V.COLOURS[c] for c in _PALETTE]) * V.TRAIL_GAIN)


def _nearest(lab: np.ndarray, table: np.ndarray, limit: float) -> np.ndarray:
    """(N,) index of the nearest row of ``table`` to each of (N, 3) colours, -1 beyond ``limit``."""
    d2 = (lab * lab).sum(1)[:, None] - 2.0 * lab @ table.T + (table * table).sum(1)[None]   # (N, K)
    idx = d2.argmin(1)
    return np.where(d2[np.arange(len(idx)), idx] <= limit * limit, idx, -1)


def _shade_pairs(limit: float) -> frozenset[tuple[str, str]]:
    """Palette colour pairs within ``limit`` in CIELAB (red / orange, orange / yellow, blue / purple,
    cyan / white), both orders."""
    d = np.linalg.norm(_PALETTE_LAB[:, None] - _PALETTE_LAB[None], axis=-1)
    return frozenset((_PALETTE[i], _PALETTE[j]) for i, j in zip(*np.nonzero(d <= limit)) if i != j)


SHADES = _shade_pairs(SHADE_DISTANCE)


def objects_in_frame(dets) -> int:
    """How many objects one frame's detections are. Detections of one connected region whose colours
    are palette neighbours (``SHADES``) are one object drawn in two shades: a VAE or a generator smears
    a moving object's colour toward its neighbour (a yellow box read as yellow over orange) or shifts
    part of it (white with a cyan edge). Two world objects touching keep their own colours, and
    neighbours among them are told apart in the frames where they do not touch."""
    parent = list(range(len(dets)))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i
    for i, a in enumerate(dets):
        for j in range(i):
            b = dets[j]
            if a.blob >= 0 and a.blob == b.blob and (a.colour, b.colour) in SHADES:
                parent[root(i)] = root(j)
    return len({root(i) for i in range(len(dets))})


def brightness(frames: np.ndarray) -> np.ndarray:
    """(..., H, W) uint8 brightest channel of (..., H, W, 3) RGB frames."""
    return np.maximum(np.maximum(frames[..., 0], frames[..., 1]), frames[..., 2])


def colour_labels(frames: np.ndarray) -> np.ndarray:
    """(T, H, W) int8: palette index of every object pixel, -1 elsewhere."""
    fg = brightness(frames) >= OBJECT_LEVEL
    labels = np.full(fg.shape, -1, np.int8)
    if fg.any():
        labels[fg] = _nearest(_lab(frames[fg]), _PALETTE_LAB, MAX_COLOUR_DISTANCE)
    return labels


def _nearest_background(rgb) -> str:
    names = list(V.BACKGROUND_COLOURS)
    table = np.array([V.BACKGROUND_COLOURS[n] for n in names], np.float32)
    return names[int(np.linalg.norm(table - np.asarray(rgb, np.float32), axis=1).argmin())]


# ---------------------------------------------------------------------------------------------
# Shapes and detections
# ---------------------------------------------------------------------------------------------

def classify_shape(mask: np.ndarray) -> str:
    """circle / square / triangle of a binary mask cropped to its bounding box. The world's
    triangles point up, so the bottom third is much wider than the top third (taper ~0.6, ~0 for
    circles and squares); squares fill their box (extent ~1), circles ~0.79."""
    h, w = mask.shape
    extent = mask.sum() / float(h * w)
    rows = mask.sum(axis=1).astype(np.float32)
    third = max(1, h // 3)
    taper = (rows[-third:].mean() - rows[:third].mean()) / max(w, 1)
    if taper > 0.3 or extent < 0.6:
        return "triangle"
    return "square" if extent >= 0.89 else "circle"


_K3, _K5 = np.ones((3, 3), np.uint8), np.ones((5, 5), np.uint8)


def _quantile(a: np.ndarray, q: float) -> float:
    """The ``q`` quantile of a 1-D array (nearest rank; much cheaper than np.percentile)."""
    k = int(round(q * (len(a) - 1)))
    return float(np.partition(a, k)[k])


def _half_max(bright: np.ndarray, core: np.ndarray, x: int, y: int) -> tuple[np.ndarray, int, int]:
    """The object's mask at half its contrast over the local background (robust to blur, and to
    objects dimmer or brighter than the palette): (mask, x, y) of a crop grown by 2 pixels."""
    H, W = bright.shape
    h, w = core.shape
    X0, Y0, X1, Y1 = max(x - 2, 0), max(y - 2, 0), min(x + w + 2, W), min(y + h + 2, H)
    b = bright[Y0:Y1, X0:X1].astype(np.float32)
    inside = np.zeros(b.shape, np.uint8)
    inside[y - Y0:y - Y0 + h, x - X0:x - X0 + w] = core
    ring = (cv2.dilate(inside, _K5) > 0) & (cv2.dilate(inside, _K3) == 0)
    if not ring.any():
        return core, x, y
    peak = _quantile(b[inside > 0], 0.75)
    thr = max(0.5 * (peak + _quantile(b[ring], 0.25)), 0.65 * peak)   # a brush trail is <= 0.55
    return (b >= thr) & (cv2.dilate(inside, _K3) > 0), X0, Y0


def _touching_sides(m, ox, oy, labels, c, box) -> tuple[bool, bool, bool, bool]:
    """Which bounding-box sides (left, top, right, bottom) of mask ``m`` (placed at ox, oy) touch
    pixels of another object colour: those edges may be cut by the other object."""
    H, W = labels.shape
    X0, Y0 = max(ox - 1, 0), max(oy - 1, 0)
    X1, Y1 = min(ox + m.shape[1] + 1, W), min(oy + m.shape[0] + 1, H)
    grown = np.zeros((Y1 - Y0, X1 - X0), np.uint8)
    grown[oy - Y0:oy - Y0 + m.shape[0], ox - X0:ox - X0 + m.shape[1]] = m
    lab = labels[Y0:Y1, X0:X1]
    ys, xs = np.nonzero((cv2.dilate(grown, _K3) > 0) & (lab >= 0) & (lab != c))
    if len(xs) == 0:
        return (False,) * 4
    gx, gy, gw, gh = box
    xs, ys = xs + X0, ys + Y0
    return (bool(xs.min() <= gx), bool(ys.min() <= gy), bool(xs.max() >= gx + gw - 1),
            bool(ys.max() >= gy + gh - 1))


def blend_rims(labels: np.ndarray, comp: np.ndarray, counts: np.ndarray) -> list[int]:
    """Palette colours of a connected component that are only the blended edge of its dominant
    colour: a band too thin to have an inside (a 3x3 erosion keeps under 15 % of it) lying within
    2 pixels of the dominant colour. A blurred yellow object over maroon has an orange rim that
    is no object of its own; a second object touching the first has an inside and is kept.
    ``labels``, ``comp``: the component's crop of the colour labels and its mask."""
    present = np.flatnonzero(counts)
    if len(present) < 2:
        return []
    dom = int(counts.argmax())
    near = cv2.dilate(((labels == dom) & comp).astype(np.uint8), _K5) > 0
    rims = []
    for c in present:
        if c == dom:
            continue
        m = (labels == c) & comp
        inside = cv2.erode(m.astype(np.uint8), _K3, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        if inside.sum() <= 0.15 * counts[c] and (m & near).sum() >= 0.9 * counts[c]:
            rims.append(int(c))
    return rims


def _component_detections(k, labels, bright, comp, stats, i, S, bar, min_area) -> list[Detection]:
    """Detections of connected component ``i`` of frame k (split by colour when objects touch)."""
    x, y, w, h, area = stats[i]
    crop = comp[y:y + h, x:x + w] == i
    lab = labels[y:y + h, x:x + w][crop]
    counts = np.bincount(lab[lab >= 0], minlength=len(_PALETTE))
    if counts.sum() == 0:
        return []
    rims = blend_rims(labels[y:y + h, x:x + w], crop, counts)
    counts[rims] = 0                     # a rim is the dominant object's edge: in its mask, no object
    main = [c for c in np.flatnonzero(counts) if counts[c] >= max(0.12 * counts.sum(), min_area)]
    main = main or [int(counts.argmax())]
    H, W = labels.shape
    # touching another object (even a sliver of it): every edge is suspect
    merged = (counts >= max(4, 0.025 * counts.sum())).sum() > 1
    out = []
    for c in main:
        if len(main) > 1:
            m, ox, oy = crop & (labels[y:y + h, x:x + w] == c), x, y
        else:
            m, ox, oy = _half_max(bright, crop.astype(np.uint8), x, y)
            if merged:                                   # keep the other object's pixels out
                own = np.zeros_like(m)
                own[y - oy:y - oy + h, x - ox:x - ox + w] = labels[y:y + h, x:x + w] != c
                m = m & ~(own & (labels[oy:oy + m.shape[0], ox:ox + m.shape[1]] >= 0))
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        gx, gy, gw, gh = ox + x0, oy + y0, x1 - x0, y1 - y0
        near_bar = bar is not None and gx <= bar[1] + 1 and gx + gw >= bar[0] - 1
        touch = _touching_sides(m, ox, oy, labels, c, (gx, gy, gw, gh)) if merged else (False,) * 4
        clipped = (touch[0] or gx <= 0 or (near_bar and gx >= bar[0] - 1), touch[1] or gy <= 0,
                   touch[2] or gx + gw >= W or (near_bar and gx + gw <= bar[1] + 1), touch[3] or gy + gh >= H)
        out.append(Detection(k, _PALETTE[c], classify_shape(m[y0:y1, x0:x1]), max(gw, gh) / S,
                             float(ox + xs.mean() + 0.5), float(oy + ys.mean() + 0.5), int(m.sum()),
                             (int(gx), int(gy), int(gw), int(gh)), tuple(bool(v) for v in clipped), int(i)))
    return out


def detect(frames: np.ndarray, bar: tuple[int, int] | None = None,
           labels: np.ndarray | None = None) -> list[list[Detection]]:
    """Per frame, the objects seen (see Detection). ``bar``: occluder columns, for the clipped
    flags; ``labels``: ``colour_labels(frames)`` if already computed."""
    T, H, W = frames.shape[:3]
    S = min(H, W)
    min_area = max(3, int(0.004 * S * S))
    labels = colour_labels(frames) if labels is None else labels
    bright = brightness(frames)
    out = []
    for k in range(T):
        n, comp, stats, _ = cv2.connectedComponentsWithStats((labels[k] >= 0).astype(np.uint8), connectivity=8)
        dets = []
        for i in range(1, n):
            if stats[i, cv2.CC_STAT_AREA] >= min_area:
                dets += [d for d in _component_detections(k, labels[k], bright[k], comp, stats[:, :5], i, S, bar, min_area)
                         if d.area >= min_area]
        out.append(dets)
    return out


# ---------------------------------------------------------------------------------------------
# The world: occluder, background, camera, trails
# ---------------------------------------------------------------------------------------------

def find_occluder(median: np.ndarray) -> tuple[int, int] | None:
    """Columns [x0, x1) of a full-height bar of the occluder colour in the temporal median frame."""
    H, W = median.shape[:2]
    near = np.linalg.norm(median.astype(np.float32) - np.float32(V.OCCLUDER_RGB), axis=-1) < 40
    cols = np.concatenate([[False], near.mean(axis=0) >= 0.8, [False]])
    edges = np.flatnonzero(np.diff(cols.astype(np.int8)))
    runs = [(a, b) for a, b in zip(edges[::2], edges[1::2])]
    if not runs:
        return None
    a, b = max(runs, key=lambda r: r[1] - r[0])
    return (int(a), int(b)) if b - a >= 0.4 * V.OCCLUDER_WIDTH * min(H, W) else None


def _background_pixels(median: np.ndarray, bar) -> np.ndarray:
    """(H, W) bool: pixels of the median frame that show the background (not objects, not the bar)."""
    fg = (brightness(median) >= OBJECT_LEVEL - 60).astype(np.uint8)
    keep = cv2.dilate(fg, np.ones((9, 9), np.uint8)) == 0
    if bar is not None:
        keep[:, max(bar[0] - 1, 0):bar[1] + 1] = False
    return keep


def _fit_rows(img: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, float]:
    """Least-squares colour = a + b * y / H over the kept pixels: ((2, 3) coefficients, 75th
    percentile of the absolute residual). A solid or gradient background leaves ~0, a landscape much more."""
    ys, xs = np.nonzero(keep)
    if len(ys) < 8:
        return np.zeros((2, 3), np.float32), 0.0
    pix = img[ys, xs].astype(np.float32)                                     # (N, 3)
    A = np.stack([np.ones(len(ys)), ys / img.shape[0]], axis=1)
    coef, *_ = np.linalg.lstsq(A, pix, rcond=None)
    return coef, _quantile(np.abs(pix - A @ coef).mean(axis=1), 0.75)


def analyse_background(median: np.ndarray, first: np.ndarray, bar) -> tuple[str, tuple[str, ...], bool]:
    """(kind, colours, ground): texture and ground from the first frame (sharp even when the
    camera pans), colours from the temporal median (objects and noise averaged away)."""
    H, W = median.shape[:2]
    top = int(round(H * (1 - V.GROUND_FRACTION)))
    keep = _background_pixels(first, bar)
    band_keep = keep.copy()
    band_keep[: top + max(1, (H - top) // 5)] = False
    band = first[band_keep].astype(np.float32)
    ground = bool(band.size > 0 and np.linalg.norm(band.mean(0) - np.float32(V.GROUND_RGB)) < 25
                  and band.std(0).mean() > 3.0)
    rows_end = top if ground else H
    keep[rows_end:] = False
    _, residual = _fit_rows(cv2.GaussianBlur(first, (0, 0), 1.5), keep)       # blur: noise is no texture
    if residual > TEXTURE_RESIDUAL:
        return "landscape", (), ground
    keep = _background_pixels(median, bar)
    keep[rows_end:] = False
    coef, _ = _fit_rows(median, keep)
    c_top, c_bottom = coef[0], coef[0] + coef[1]
    a, b = _nearest_background(c_top), _nearest_background(c_bottom)
    if a != b and np.linalg.norm(c_top - c_bottom) > 20:
        return "gradient", (a, b), ground
    return "solid", (_nearest_background(coef[0] + coef[1] * rows_end / H / 2),), ground


def _shift(img: np.ndarray, dx: float, interp=cv2.INTER_LINEAR) -> np.ndarray:
    m = np.float32([[1, 0, -dx], [0, 1, 0]])
    return cv2.warpAffine(img, m, img.shape[1::-1], flags=interp, borderMode=cv2.BORDER_REFLECT)


def estimate_camera(frames: np.ndarray, labels: np.ndarray, iterations: int = 3) -> np.ndarray:
    """(T,) horizontal camera position in pixels (+ = moved right): phase correlation of
    consecutive frames with the objects (dilated) cut out of a Hanning window, refined by
    re-aligning and correlating again (``iterations`` times; sub-pixel estimates are biased
    towards 0 otherwise)."""
    T, H, W = frames.shape[:3]
    gray = frames.astype(np.float32).mean(axis=-1)
    kernel = np.ones((5, 5), np.uint8)
    free = [(cv2.dilate((labels[k] >= 0).astype(np.uint8), kernel) == 0).astype(np.uint8) for k in range(T)]
    win = cv2.createHanningWindow((W, H), cv2.CV_32F)
    cam = np.zeros(T)
    for k in range(1, T):
        a, dx = gray[k - 1], 0.0
        for _ in range(iterations):
            b = _shift(gray[k], dx)
            m = (free[k - 1] > 0) & (_shift(free[k], dx, cv2.INTER_NEAREST) > 0)
            if m.sum() < 16:
                break
            w = win * m
            (d, _), _ = cv2.phaseCorrelate((a - a[m].mean()) * w, (b - b[m].mean()) * w)
            dx += d
        cam[k] = cam[k - 1] - dx
    return cam


def find_trails(frames: np.ndarray, labels: np.ndarray, bar) -> tuple[str, ...]:
    """Colours whose dark brush-trail version covers pixels at the end that it did not at the start."""
    if len(frames) < 2:
        return ()
    S = min(frames.shape[1:3])
    out = []
    masks = []
    for k in (0, len(frames) - 1):
        free = cv2.dilate((labels[k] >= 0).astype(np.uint8), np.ones((5, 5), np.uint8)) == 0
        if bar is not None:
            free[:, max(bar[0] - 1, 0):bar[1] + 1] = False
        lab = _lab(frames[k].astype(np.float32))
        near = np.full(free.shape, -1, np.int64)
        near[free] = _nearest(lab[free], _TRAIL_LAB, 14.0)
        masks.append(near)
    first, last = masks
    for c, name in enumerate(_PALETTE):
        grown = int((last == c).sum()) - int((first == c).sum())
        if grown >= max(6, 0.01 * S * S):
            out.append((grown, name))
    return tuple(name for _, name in sorted(out, reverse=True))
