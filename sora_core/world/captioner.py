"""The analytic captioner: what happens in a clip, recovered from its frames alone (opencv).

``analyze(frames, fps)`` finds the background (solid / gradient / landscape, its colours, a textured
ground), the occluder bar, the camera pan, brush trails, and the objects: colour, shape, size, a
track of positions per frame, the motion (left / right / up / down / bouncing / static, in world
coordinates: the camera pan is subtracted), the number of bounces, and for each object that went
behind the occluder whether what came out again had the same colour, shape and size.
``caption(frames)`` writes the long caption of the world's grammar from it, so it doubles as the
re-captioner of arbitrary clips, and it is the basis of the metrics.

How (low-level perception in ``perception``): palette segmentation gives per-frame detections with
colour, shape, size and which edges are cut (by the frame border, the occluder or another object).
Detections are linked frame to frame by colour and distance into tracklets (never across the bar or a
wrap-around jump), tracklets of the same colour and shape into objects. Shape and size are voted over
whole detections; motion uses centroid steps, or the uncut edge of cut detections. Nothing depends
on exact pixel values, so generated (blurry, noisy) clips work too.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace

import numpy as np

from . import vocab as V
from .captions import ObjectDescription, SceneDescription, background_phrase, long_caption
from .perception import (OBJECT_LEVEL, Detection, analyse_background, colour_labels, detect,
                         estimate_camera, find_occluder, find_trails, objects_in_frame)

STATIC_SPEED = 0.1            # short sides / s: slower than this (net) is standing still
DEFAULT_FPS = 8.0             # assumed when analyze() is not told the frame rate


def at_once(per_frame, min_run: int = 2) -> int:
    """The most of anything counted per frame (``per_frame``) that holds for ``min_run`` consecutive
    frames (a clip shorter than ``min_run`` frames: the most in any frame)."""
    n = np.asarray(per_frame, dtype=np.int64)
    if len(n) < min_run:
        return int(n.max(initial=0))
    return int(np.lib.stride_tricks.sliding_window_view(n, min_run).min(axis=1).max(initial=0))


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------

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

    def most_at_once(self, min_run: int = 2) -> int:
        """The most objects seen together in ``min_run`` consecutive frames (a blob of one frame does
        not count; clips shorter than ``min_run`` frames: the most in any frame). This, not the number
        of tracked identities (``objects``), is how many objects a clip holds: an object whose colour or
        shape reading changes (often across a wrap-around, where its tracklets meet) is one object that
        changed, judged by ``metrics.identity_kept``. (The world's wrap-around never shows two pieces of
        one object at once.) Touching detections in neighbouring palette colours are one object in two
        shades (``perception.objects_in_frame``)."""
        return at_once([objects_in_frame(dets) for dets in self.detections], min_run)

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
    at half a short side after a constant-velocity prediction, a fifth of one horizontally). Never links across the occluder
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
                ex, ey = d.cx - last.cx - vx, d.cy - last.cy - vy
                dist = np.hypot(ex, ey)
                if dist <= 0.5 * S and abs(ex) <= 0.2 * S:       # horizontal speed never changes much
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


def _flag_crowded(tr: _Tracklet) -> _Tracklet:
    """Whole detections much larger than the tracklet's usual size are two objects of one colour
    seen as one blob: mark them cut on every edge so they count for tracking only."""
    whole = [d for d in tr.dets if not d.partial]
    if len(whole) >= 3:
        area = 1.35 * float(np.median([d.area for d in whole]))
        side = 1.25 * float(np.median([max(d.bbox[2:]) for d in whole]))
        tr.dets = [replace(d, clipped=(True,) * 4) if not d.partial and (d.area > area or max(d.bbox[2:]) > side)
                   else d for d in tr.dets]
    return tr


def _split_reversals(tr: _Tracklet, S: int) -> list[_Tracklet]:
    """Cut a tracklet where it turns back horizontally. Nothing in the world does that (left and
    right are constant, bouncing is vertical, a pan shifts everything alike), so it is two objects
    of one colour swapped by the linker (e.g. one wrapping in where the other wraps out)."""
    d = tr.dets
    dx = [b.cx - a.cx for a, b in zip(d[:-1], d[1:])]
    thr = 0.01 * S
    for i in range(1, len(dx)):
        if abs(dx[i - 1]) >= thr and abs(dx[i]) >= thr and dx[i - 1] * dx[i] < 0:
            return [_Tracklet(tr.colour, d[:i + 1])] + _split_reversals(_Tracklet(tr.colour, d[i + 1:]), S)
    return [tr]


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
    tracklets = [_flag_crowded(p) for t in link(detections, S, bar) for p in _split_reversals(t, S)]
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
