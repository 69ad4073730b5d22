"""The analytic captioner: what happens in a clip, recovered from its frames alone (opencv).

``analyze(frames, fps)`` finds the background (solid / gradient / landscape, its colours, a textured
ground), the occluder bar, the camera pan, brush trails, and the objects: colour, shape, size, a
track of positions per frame, the motion (left / right / up / down / bouncing / static, in world
coordinates: the camera pan is subtracted), the number of bounces, and for each object that went
behind the occluder whether what came out again had the same colour, shape and size.
``caption(frames)`` writes the long caption of the world's grammar from it, so it doubles as the
re-captioner of arbitrary clips, and it is the basis of the metrics.

How: objects are bright and the world is dark (see vocab), so pixels whose brightest channel
reaches ``OBJECT_LEVEL`` are object pixels; each gets the nearest palette colour in CIELAB.
Connected components (split by colour when two objects touch) are the detections; the shape comes
from the extent (area / bounding box: square ~1, circle ~0.79, triangle ~0.5) and the size from the
bounding box. Detections are linked frame to frame by colour and distance into tracklets, and
tracklets of the same colour and shape into objects. Detections touching the frame border, the
occluder or another object are *partial*: kept for tracking, not used for shape, size or motion.
Nothing depends on exact pixel values, so generated (blurry, noisy) clips work too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import cv2
import numpy as np

from . import vocab as V
from .captions import ObjectDescription, SceneDescription, background_phrase, long_caption

OBJECT_LEVEL = 170            # brightest channel of an object pixel (objects >= 200, world <= 140)
MAX_COLOUR_DISTANCE = 60.0    # CIELAB distance beyond which a bright pixel matches no palette colour
TEXTURE_RESIDUAL = 4.5        # 75th percentile of |colour - row fit| above which the background is a landscape
STATIC_SPEED = 0.1            # short sides / s: slower than this (net) is standing still
DEFAULT_FPS = 8.0             # assumed when analyze() is not told the frame rate


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

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

    @property
    def partial(self) -> bool:
        """Cut somewhere: shape and size unreliable, the centroid too."""
        return any(self.clipped)


@dataclass(frozen=True, eq=False)
class ObjectTrack:
    """An object over the clip. ``positions`` (T, 2) screen centroids, NaN where unseen;
    ``velocity`` (vx, vy) in short sides per second, world coordinates (y down)."""
    colour: str
    shape: str
    size: str
    size_value: float
    motion: str
    bounces: int
    velocity: tuple[float, float]
    positions: np.ndarray
    detections: tuple[Detection, ...]

    @property
    def name(self) -> str:
        return f"{self.colour} {V.SHAPE_NOUN[self.shape]}"

    def visible(self) -> np.ndarray:
        """(T,) bool: frames where the object was detected."""
        return ~np.isnan(self.positions[:, 0])


@dataclass(frozen=True)
class Occlusion:
    """An object that went behind the occluder: what went in (``before``) and what came out
    (``after``: None if nothing did). ``same`` when colour, shape and size all match. ``resolved``
    is False when the clip ended too soon for the object to come out."""
    before: tuple[str, str, str]            # colour, shape, size
    after: tuple[str, str, str] | None
    hidden_frame: int                       # first frame it was no longer seen
    reappeared_frame: int | None
    same: bool
    resolved: bool


@dataclass(frozen=True, eq=False)
class Analysis:
    width: int
    height: int
    frames: int
    fps: float
    background: str                         # vocab.BACKGROUND_KINDS
    colours: tuple[str, ...]
    ground: bool
    occluder: tuple[int, int] | None        # pixel columns [x0, x1)
    pan: str | None                         # the camera moves "left" / "right"
    camera: np.ndarray                      # (T,) camera x in pixels (+ = moved right)
    trails: tuple[str, ...]                 # colours of the brush trails seen
    objects: tuple[ObjectTrack, ...]
    occlusions: tuple[Occlusion, ...]
    detections: tuple[tuple[Detection, ...], ...] = field(repr=False)

    @property
    def event(self) -> str:
        """The world event seen: pan, occluder, brush or none."""
        if self.pan:
            return "pan"
        if self.occluder is not None:
            return "occluder"
        return "brush" if self.trails else "none"

    def description(self) -> SceneDescription:
        """What a caption of this clip says (see captions)."""
        objs = tuple(ObjectDescription(o.shape, o.colour, o.size, o.motion) for o in self.objects)
        event, target = self.event, 0
        if event == "occluder" and self.occlusions:
            target = next((i for i, o in enumerate(self.objects)
                           if (o.colour, o.shape, o.size) == self.occlusions[0].before), 0)
        elif event == "brush":
            target = next((i for i, o in enumerate(self.objects) if o.colour == self.trails[0]), 0)
        if not objs or (event in ("occluder", "brush") and target >= len(objs)):
            event = "none"
        return SceneDescription(objs, self.background, self.colours, self.ground, event, target, self.pan)


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
    peak = np.percentile(b[inside > 0], 75)
    thr = max(0.5 * (peak + np.percentile(b[ring], 25)), 0.65 * peak)   # a brush trail is <= 0.55
    return (b >= thr) & (cv2.dilate(inside, _K3) > 0), X0, Y0


def _component_detections(k, labels, bright, comp, stats, i, S, bar) -> list[Detection]:
    """Detections of connected component ``i`` of frame k (split by colour when objects touch)."""
    x, y, w, h, area = stats[i]
    crop = comp[y:y + h, x:x + w] == i
    lab = labels[y:y + h, x:x + w][crop]
    counts = np.bincount(lab[lab >= 0], minlength=len(_PALETTE))
    if counts.sum() == 0:
        return []
    main = [c for c in np.flatnonzero(counts) if counts[c] >= 0.25 * counts.sum()]
    H, W = labels.shape
    merged = len(main) > 1
    out = []
    for c in main:
        if merged:
            m, ox, oy = crop & (labels[y:y + h, x:x + w] == c), x, y
        else:
            m, ox, oy = _half_max(bright, crop.astype(np.uint8), x, y)
        ys, xs = np.nonzero(m)
        if len(ys) == 0:
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        gx, gy, gw, gh = ox + x0, oy + y0, x1 - x0, y1 - y0
        near_bar = bar is not None and gx <= bar[1] + 1 and gx + gw >= bar[0] - 1
        clipped = (merged or gx <= 0 or (near_bar and gx >= bar[0] - 1), merged or gy <= 0,
                   merged or gx + gw >= W or (near_bar and gx + gw <= bar[1] + 1), merged or gy + gh >= H)
        out.append(Detection(k, _PALETTE[c], classify_shape(m[y0:y1, x0:x1]), max(gw, gh) / S,
                             float(ox + xs.mean() + 0.5), float(oy + ys.mean() + 0.5), int(m.sum()),
                             (int(gx), int(gy), int(gw), int(gh)), tuple(bool(v) for v in clipped)))
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
                dets += [d for d in _component_detections(k, labels[k], bright[k], comp, stats[:, :5], i, S, bar)
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
    return coef, float(np.percentile(np.abs(pix - A @ coef).mean(axis=1), 75))


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


# ---------------------------------------------------------------------------------------------
# Tracking
# ---------------------------------------------------------------------------------------------

@dataclass
class _Tracklet:
    colour: str
    dets: list[Detection]

    def vote(self, attr: str):
        """Majority of ``attr`` over the whole detections (all detections if none is whole)."""
        pool = [d for d in self.dets if not d.partial] or self.dets
        return Counter(getattr(d, attr) for d in pool).most_common(1)[0][0]


def link(detections: list[list[Detection]], S: int, bar) -> list[_Tracklet]:
    """Link detections of consecutive frames by colour and distance (greedy, nearest first, gated
    at half a short side after a constant-velocity prediction). Never links across the occluder
    or across a wrap-around jump, so each tracklet is one uninterrupted stretch of motion."""
    done, active = [], []
    for dets in detections:
        pairs = []
        for ti, tr in enumerate(active):
            last = tr.dets[-1]
            vx, vy = ((last.cx - tr.dets[-2].cx, last.cy - tr.dets[-2].cy) if len(tr.dets) > 1 else (0.0, 0.0))
            for di, d in enumerate(dets):
                if d.colour != tr.colour:
                    continue
                if bar is not None and (last.cx - sum(bar) / 2) * (d.cx - sum(bar) / 2) < 0:
                    continue
                dist = np.hypot(d.cx - last.cx - vx, d.cy - last.cy - vy)
                if dist <= 0.5 * S:
                    pairs.append((dist, ti, di))
        used_t, used_d, nxt = set(), set(), []
        for _, ti, di in sorted(pairs):
            if ti not in used_t and di not in used_d:
                used_t.add(ti), used_d.add(di)
                active[ti].dets.append(dets[di])
                nxt.append(active[ti])
        done += [tr for ti, tr in enumerate(active) if ti not in used_t]
        active = nxt + [_Tracklet(d.colour, [d]) for di, d in enumerate(dets) if di not in used_d]
    return done + active


def _group(tracklets: list[_Tracklet]) -> list[list[_Tracklet]]:
    """Tracklets of one object: same colour and shape and never seen at the same time. Tracklets
    with only partial detections join the object of their colour when there is exactly one."""
    groups: list[list[_Tracklet]] = []
    whole = [t for t in tracklets if any(not d.partial for d in t.dets)]
    parts = [t for t in tracklets if t not in whole]
    for tr in sorted(whole, key=lambda t: t.dets[0].frame):
        frames = {d.frame for d in tr.dets}
        for g in groups:
            if (g[0].colour, g[0].vote("shape")) == (tr.colour, tr.vote("shape")) and \
                    not frames & {d.frame for t in g for d in t.dets}:
                g.append(tr)
                break
        else:
            groups.append([tr])
    for tr in parts:
        same = [g for g in groups if g[0].colour == tr.colour and
                not {d.frame for d in tr.dets} & {d.frame for t in g for d in t.dets}]
        shaped = [g for g in same if g[0].vote("shape") == tr.vote("shape")]
        if len(shaped) == 1 or len(same) == 1:
            (shaped if len(shaped) == 1 else same)[0].append(tr)
        elif not same and len(tr.dets) >= 2:
            groups.append([tr])
    return groups


# ---------------------------------------------------------------------------------------------
# Motion
# ---------------------------------------------------------------------------------------------

def _axis_step(a: Detection, b: Detection, axis: int) -> float:
    """Displacement a -> b along x (0) or y (1) in pixels: centroids when neither is cut on that
    axis, else an edge that is whole in both (the leading or trailing one), else NaN."""
    lo, hi = a.clipped[axis] or b.clipped[axis], a.clipped[axis + 2] or b.clipped[axis + 2]
    if not (lo or hi):
        return (b.cx - a.cx) if axis == 0 else (b.cy - a.cy)
    if not lo:
        return float(b.bbox[axis] - a.bbox[axis])
    if not hi:
        return float(b.bbox[axis] + b.bbox[axis + 2] - a.bbox[axis] - a.bbox[axis + 2])
    return float("nan")


def _steps(group: list[_Tracklet], cam: np.ndarray) -> np.ndarray:
    """(K, 3) frame-to-frame world displacements (frame, dx, dy) in pixels between consecutive
    detections of the same tracklet (NaN where an axis is cut; the camera's motion added back)."""
    out = []
    for tr in group:
        for a, b in zip(tr.dets[:-1], tr.dets[1:]):
            out.append((a.frame, _axis_step(a, b, 0) + cam[b.frame] - cam[a.frame], _axis_step(a, b, 1)))
    return np.array(sorted(out), np.float64).reshape(-1, 3)


def _bounces(dy: np.ndarray, min_leg: float) -> int:
    """Down -> up reversals of a vertical displacement series whose legs both exceed ``min_leg``."""
    runs = []                                     # [sign, total] of consecutive same-sign steps
    for v in dy:
        s = 1 if v > 0 else -1
        if runs and runs[-1][0] == s:
            runs[-1][1] += abs(v)
        else:
            runs.append([s, abs(v)])
    runs = [r for r in runs if r[1] >= min_leg]
    return sum(1 for a, b in zip(runs[:-1], runs[1:]) if a[0] > 0 and b[0] < 0)


def classify_motion(steps: np.ndarray, S: int, fps: float) -> tuple[str, int, tuple[float, float]]:
    """(motion, bounces, (vx, vy) in short sides per second) from world displacements (K, 3)."""
    dx, dy = steps[:, 1][~np.isnan(steps[:, 1])], steps[:, 2][~np.isnan(steps[:, 2])]
    if len(dx) == 0 and len(dy) == 0:
        return "static", 0, (0.0, 0.0)
    v = tuple(float(np.median(d)) * fps / S if len(d) else 0.0 for d in (dx, dy))
    bounces = _bounces(dy, 0.03 * S)
    path_x, path_y = abs(dx.sum()), np.abs(dy).sum()
    speed = (dx.sum() / max(len(dx), 1), dy.sum() / max(len(dy), 1))       # mean step, pixels
    if bounces == 0 and np.hypot(*speed) * fps / S < STATIC_SPEED:
        return "static", 0, v
    if bounces and path_y > path_x:
        return "bouncing", bounces, v
    if abs(speed[0]) >= abs(speed[1]):
        return ("right" if speed[0] > 0 else "left"), 0, v
    return ("down" if speed[1] > 0 else "up"), 0, v


# ---------------------------------------------------------------------------------------------
# Occlusions
# ---------------------------------------------------------------------------------------------

def _touches(d: Detection, bar) -> bool:
    x, _, w, _ = d.bbox
    return x <= bar[1] + 1 and x + w >= bar[0] - 1


def find_occlusions(tracklets: list[_Tracklet], bar, T: int, S: int, fps: float) -> list[Occlusion]:
    """Tracklets that end against the bar before the clip ends, each paired with the first unused
    tracklet that starts against the bar afterwards (same colour and shape preferred)."""
    if bar is None:
        return []
    ins = sorted((t for t in tracklets if _touches(t.dets[-1], bar) and t.dets[-1].frame < T - 1),
                 key=lambda t: t.dets[-1].frame)
    outs = [t for t in tracklets if _touches(t.dets[0], bar) and t.dets[0].frame > 0]
    used, events = set(), []
    for a in ins:
        key_a = (a.colour, a.vote("shape"), _size_name(a.vote_size()))
        cands = [b for b in outs if id(b) not in used and b.dets[0].frame > a.dets[-1].frame]
        cands.sort(key=lambda b: ((b.colour, b.vote("shape")) != key_a[:2], b.colour != a.colour,
                                  b.dets[0].frame))
        end = a.dets[-1].frame
        if cands:
            b = cands[0]
            used.add(id(b))
            key_b = (b.colour, b.vote("shape"), _size_name(b.vote_size()))
            events.append(Occlusion(key_a, key_b, end + 1, b.dets[0].frame, key_a == key_b, True))
        else:
            speed = max(abs(a.dets[-1].cx - a.dets[0].cx) / max(len(a.dets) - 1, 1), 1e-3)
            need = (bar[1] - bar[0] + a.vote_size() * S) / speed     # frames to come out again
            events.append(Occlusion(key_a, None, end + 1, None, False, T - 1 - end > 1.5 * need))
    return events


def _size_name(value: float) -> str:
    return "large" if value >= V.SIZE_THRESHOLD else "small"


def _vote_size(self: _Tracklet) -> float:
    pool = [d.size for d in self.dets if not d.partial] or [d.size for d in self.dets]
    return float(np.median(pool))


_Tracklet.vote_size = _vote_size


# ---------------------------------------------------------------------------------------------
# Analysis and caption
# ---------------------------------------------------------------------------------------------

def check_frames(frames) -> np.ndarray:
    """uint8 (T, H, W, 3) RGB as a numpy array, or a ValueError saying what is allowed."""
    f = np.asarray(frames)
    if f.ndim == 3 and f.shape[-1] == 3:
        f = f[None]
    if f.ndim != 4 or f.shape[-1] != 3 or f.shape[0] < 1:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) RGB, got shape {f.shape}")
    if f.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (0..255), got {f.dtype}")
    if min(f.shape[1:3]) < 8:
        raise ValueError(f"frames must be at least 8x8 pixels, got {f.shape[2]}x{f.shape[1]}")
    return np.ascontiguousarray(f)


def _object(group: list[_Tracklet], T: int, S: int, fps: float, cam: np.ndarray) -> ObjectTrack:
    dets = sorted((d for t in group for d in t.dets), key=lambda d: d.frame)
    whole = [d for d in dets if not d.partial] or dets
    shape = Counter(d.shape for d in whole).most_common(1)[0][0]
    size = float(np.median([d.size for d in whole]))
    pos = np.full((T, 2), np.nan)
    for d in dets:
        pos[d.frame] = (d.cx, d.cy)
    motion, bounces, vel = classify_motion(_steps(group, cam), S, fps)
    return ObjectTrack(group[0].colour, shape, _size_name(size), size, motion, bounces, vel, pos,
                       tuple(dets))


def analyze(frames, fps: float | None = None) -> Analysis:
    """Everything the captioner recovers from uint8 frames (T, H, W, 3) RGB (see Analysis).
    ``fps`` only scales velocities (default 8); directions do not depend on it."""
    f = check_frames(frames)
    fps = float(fps) if fps else DEFAULT_FPS
    T, H, W = f.shape[:3]
    S = min(H, W)
    sub = f[np.unique(np.linspace(0, T - 1, min(T, 9)).round().astype(int))]   # <= 9 frames suffice
    median = np.median(sub, axis=0).astype(np.uint8) if T > 1 else f[0]
    bar = find_occluder(median)
    kind, colours, ground = analyse_background(median, f[0], bar)
    labels = colour_labels(f)
    cam, pan = np.zeros(T), None
    if kind == "landscape" and T > 1:
        cam = estimate_camera(f, labels)
        if abs(cam[-1]) / S / ((T - 1) / fps) >= 0.05:
            pan = "right" if cam[-1] > 0 else "left"
        else:
            cam = np.zeros(T)
    detections = detect(f, bar, labels)
    tracklets = link(detections, S, bar)
    objects = [_object(g, T, S, fps, cam) for g in _group(tracklets)]
    objects.sort(key=lambda o: (int(np.argmax(o.visible())), np.nan_to_num(o.positions[o.visible()][0, 0])))
    trails = find_trails(f, labels, bar) if pan is None and bar is None else ()
    return Analysis(W, H, T, fps, kind, colours, ground, bar, pan, cam, trails, tuple(objects),
                    tuple(find_occlusions(tracklets, bar, T, S, fps)),
                    tuple(tuple(d) for d in detections))


def caption(frames, fps: float | None = None) -> str:
    """The long caption (the world's grammar) of a clip, from its frames alone. A clip without
    any object gets "No object, <background phrase>."."""
    d = analyze(frames, fps).description()
    if not d.objects:
        return f"No object, {background_phrase(d)}."
    return long_caption(d)
