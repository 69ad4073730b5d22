"""World-simulation metrics: numbers, not impressions, because the world's truth is known.

Every metric is a plain function of uint8 frames (T, H, W, 3) RGB (and, for the object-level ones,
of the analytic captioner's analysis), returns a float, and says in its docstring exactly what it
measures and which value is ideal. Differences are in grey levels (0..255) averaged over pixels and
channels. ``METRICS`` (``world.metric_info``) lists every reported name with its ideal value and direction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

from .metric_info import METRICS, PSNR_CAP, MetricInfo, metric_info  # noqa: F401  (re-exported)
from .perception import OBJECT_LEVEL   # the captioner's object threshold, shared with object_masks

# small constant (grey levels) added to both sides of the difference ratios, so a still video
# (every difference 0) gives the ideal ratio 1 instead of 0 / 0
RATIO_EPS = 0.5


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

def _frames(frames, name: str = "frames", min_frames: int = 1) -> np.ndarray:
    """uint8 (T, H, W, 3) as a numpy array, or a clear error."""
    if isinstance(frames, torch.Tensor):
        frames = frames.detach().cpu().numpy()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 RGB frames of shape (T, H, W, 3), "
                         f"got {frames.dtype} {tuple(frames.shape)}")
    if frames.shape[0] < min_frames:
        raise ValueError(f"{name} needs at least {min_frames} frames, got {frames.shape[0]}")
    return frames


def _same_shape(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


# ---------------------------------------------------------------------------------------------
# Frame differences: flicker, loops, joins, transitions
# ---------------------------------------------------------------------------------------------

def frame_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference between two uint8 frames (H, W, 3), in grey levels 0..255."""
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def consecutive_differences(frames) -> np.ndarray:
    """Mean absolute difference between each frame and the next: float (T - 1,), grey levels."""
    f = _frames(frames).astype(np.int16)
    return np.abs(np.diff(f, axis=0)).reshape(f.shape[0] - 1, -1).mean(axis=1)


def temporal_flicker(frames) -> float:
    """VBench's temporal flickering score: ``(255 - mean_t |f[t+1] - f[t]|) / 255``.

    The mean absolute difference between consecutive frames (over pixels, channels and time)
    turned into a score in [0, 1]. Ideal 1.0 (no frame-to-frame change at all); object motion
    lowers it slightly, flicker and noise lower it a lot. A 1-frame video scores 1.0.
    """
    f = _frames(frames)
    if f.shape[0] < 2:
        return 1.0
    return float((255.0 - consecutive_differences(f).mean()) / 255.0)


def _ratio(step: float, reference: float) -> float:
    return float((step + RATIO_EPS) / (reference + RATIO_EPS))


def loop_seam_ratio(frames) -> float:
    """Loop seam ratio: the difference from the last frame back to the first, over the mean
    difference between consecutive frames. Ideal 1.0: played in a loop, the wrap-around step looks
    like any other step; a cut seam (the loop jumps) gives much more than 1. Target <= 1.5.
    """
    f = _frames(frames, min_frames=2)
    return _ratio(frame_difference(f[-1], f[0]), float(consecutive_differences(f).mean()))


def boundary_continuity(frames, join: int, window: int = 4) -> float:
    """Boundary continuity at a join (extension or connection): the difference across the join,
    frames ``join - 1`` -> ``join`` (the first new frame), over the mean consecutive difference of
    up to ``window`` steps on each side of it. Ideal 1.0: the join is as smooth as the video
    around it; a jump at the join gives much more than 1. Target <= 1.5.
    """
    f = _frames(frames, min_frames=3)
    if not 1 <= join <= f.shape[0] - 1:
        raise ValueError(f"join must be a frame index in 1..{f.shape[0] - 1}, got {join}")
    d = consecutive_differences(f)
    step = join - 1
    around = np.concatenate([d[max(0, step - window):step], d[step + 1:step + 1 + window]])
    if around.size == 0:
        raise ValueError("boundary_continuity needs at least one step besides the join")
    return _ratio(float(d[step]), float(around.mean()))


def transition_smoothness(frames, start: int = 0, end: int | None = None) -> float:
    """Transition smoothness of a connected video: over the frames ``start..end`` (the transition,
    by default the whole video), the largest consecutive difference over the mean one. Ideal 1.0:
    the change is spread evenly over the transition; a hard cut concentrates it in one step and
    gives up to the number of steps. Lower is better.
    """
    f = _frames(frames, min_frames=2)
    end = f.shape[0] if end is None else end
    if not 0 <= start < end - 1 or end > f.shape[0]:
        raise ValueError(f"transition [start={start}, end={end}) must hold >= 2 of the {f.shape[0]} frames")
    d = consecutive_differences(f[start:end])
    return _ratio(float(d.max()), float(d.mean()))


# ---------------------------------------------------------------------------------------------
# Reconstruction (VAEs)
# ---------------------------------------------------------------------------------------------

def _as_images(x, name: str) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) or a float video (3, T, H, W) / (B, 3, T, H, W) in [-1, 1]
    -> float images (N, 3, H, W) in [0, 1]."""
    if isinstance(x, np.ndarray) or (isinstance(x, torch.Tensor) and x.dtype == torch.uint8):
        f = torch.as_tensor(_frames(x, name))
        return rearrange(f.float() / 255.0, "t h w c -> t c h w")
    if not isinstance(x, torch.Tensor) or x.ndim not in (4, 5) or x.shape[-4] != 3:
        raise ValueError(f"{name} must be uint8 frames (T, H, W, 3) or a float video (3, T, H, W) "
                         f"or (B, 3, T, H, W) in [-1, 1], got {getattr(x, 'shape', type(x))}")
    x = x.detach().float().cpu()
    x = x if x.ndim == 5 else x[None]
    return rearrange((x.clamp(-1, 1) + 1) / 2, "b c t h w -> (b t) c h w")


def reconstruction_psnr(original, reconstruction) -> float:
    """Peak signal-to-noise ratio of a reconstruction (kornia.metrics.psnr, peak = full range),
    averaged over frames, in dB. Higher is better; identical videos give ``PSNR_CAP`` (100 dB).
    Target for the default VAE on world clips: >= 30 dB."""
    import kornia.metrics as km
    a, b = _as_images(original, "original"), _as_images(reconstruction, "reconstruction")
    _same_shape(a, b, "original and reconstruction")
    per_frame = [PSNR_CAP if torch.equal(x, y) else min(PSNR_CAP, float(km.psnr(x, y, 1.0)))
                 for x, y in zip(a, b)]
    return float(np.mean(per_frame))


def reconstruction_ssim(original, reconstruction, window: int = 7) -> float:
    """Structural similarity of a reconstruction (kornia.metrics.ssim, Gaussian window of
    ``window`` pixels, per channel), averaged over pixels, channels and frames. Ideal 1.0."""
    import kornia.metrics as km
    a, b = _as_images(original, "original"), _as_images(reconstruction, "reconstruction")
    _same_shape(a, b, "original and reconstruction")
    window = max(3, min(window, min(a.shape[-2:]) // 2 * 2 - 1))
    return float(km.ssim(a, b, window, max_val=1.0).mean())


# ---------------------------------------------------------------------------------------------
# Structure (SDEdit)
# ---------------------------------------------------------------------------------------------

def object_masks(frames) -> np.ndarray:
    """Where the world's objects are: bool (T, H, W), True where the brightest channel reaches
    ``OBJECT_LEVEL``. Every object colour of the world is bright and every background, ground,
    occluder and trail is dark (see vocab), so this separates them without a model."""
    return _frames(frames).max(axis=-1) >= OBJECT_LEVEL


def structure_preservation(source, edited) -> float:
    """SDEdit structure preservation: intersection over union of the object masks (see
    ``object_masks``) of the source video and the edited one, pooled over all frames. Ideal 1.0
    (every object stays exactly where it was); 0 when nothing overlaps. Expected to fall as the
    SDEdit strength rises; target >= 0.5 at strength 0.5. Two videos without objects give 1.0."""
    a, b = object_masks(source), object_masks(edited)
    _same_shape(a, b, "source and edited")
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def first_frame_psnr(image, frames) -> float:
    """Image-to-video fidelity: PSNR (dB) of the video's first frame against the given image
    (H, W, 3). Higher is better; target >= 25 dB."""
    f = _frames(frames)
    img = _frames(np.asarray(image)[None], "image")
    return reconstruction_psnr(img, f[:1])


# ---------------------------------------------------------------------------------------------
# Object level (from the analytic captioner's Analysis)
# ---------------------------------------------------------------------------------------------

_ATTRS = ("colour", "shape", "size", "motion")
_MOVING = ("left", "right", "up", "down", "bouncing")


@dataclass(frozen=True)
class Expected:
    """What a clip should show: per object (colour, shape, size, motion), None = not asked for
    (``motion`` may be "moving": any motion but static); ``event`` None = not asked for;
    ``background`` the kind (solid / gradient / landscape) and ``colours`` (solid: one, gradient: top
    and bottom), None / () = not asked for."""
    objects: tuple[tuple[str | None, str | None, str | None, str | None], ...]
    event: str | None = None
    background: str | None = None
    colours: tuple[str, ...] = ()

    @classmethod
    def of(cls, truth) -> "Expected":
        """From a SceneSpec, a SceneDescription, a PromptParse or a prompt string."""
        from .captions import SceneDescription, describe
        from .prompt_parse import PromptParse, parse_prompt
        from .scene import SceneSpec
        if isinstance(truth, str):
            truth = parse_prompt(truth)
        if isinstance(truth, SceneSpec):
            truth = describe(truth)
        if isinstance(truth, SceneDescription):
            return cls(tuple((o.colour, o.shape, o.size, o.motion) for o in truth.objects), truth.event,
                       truth.background, tuple(truth.colours))
        if isinstance(truth, PromptParse):
            event = truth.event or ("pan" if truth.pan else None)
            return cls(tuple((o.colour, o.shape, o.size, o.motion) for o in truth.objects), event,
                       truth.background, tuple(truth.colours))
        raise TypeError(f"expected a prompt, SceneSpec, SceneDescription or PromptParse, got {type(truth).__name__}")


def _attr_match(want, got) -> bool:
    return want == got or (want == "moving" and got in _MOVING)


def match_objects(expected: Expected, analysis) -> list:
    """For each expected object, the analysed ObjectTrack it is (or None): the one-to-one pairing
    that agrees on the most asked-for attributes (colour and shape first)."""
    from itertools import permutations
    tracks = list(analysis.objects)
    want = expected.objects
    slots = tracks + [None] * len(want)
    weights = (4, 4, 1, 2)  # colour, shape, size, motion

    def score(pairing):
        return sum(w for obj, trk in zip(want, pairing) if trk is not None
                   for a, w, v in zip(_ATTRS, weights, obj) if v is not None and _attr_match(v, getattr(trk, a)))
    best = max(permutations(range(len(slots)), len(want)), key=lambda idx: score([slots[i] for i in idx]))
    return [slots[i] for i in best]


def prompt_adherence(analysis, expected) -> dict[str, float | None]:
    """Prompt adherence: how much of what was asked the clip shows, from the analytic captioner.

    ``expected``: a prompt string, PromptParse, SceneSpec or SceneDescription. Expected objects are
    paired one-to-one with the objects found (``match_objects``). Returns, each in [0, 1] (ideal
    1.0) or None when the prompt does not ask for it:
    ``colour`` / ``shape`` / ``size`` / ``motion``: the fraction of expected objects with that
    attribute asked for whose paired object has it ("moving" accepts any motion but static);
    ``count``: 1.0 when exactly as many objects are seen at once as asked for (``most_at_once``), else 0.0;
    ``tracks``: 1.0 when exactly as many object identities are tracked as asked for (the count before
    identity changes were told apart from extra objects: a shape misread after a wrap-around is a
    second identity);
    ``event``: 1.0 when the world event seen (occluder, brush, pan, none) is the one asked for;
    ``background``: 1.0 when the background seen has the asked kind and colours (those asked for).
    """
    exp = expected if isinstance(expected, Expected) else Expected.of(expected)
    pairs = match_objects(exp, analysis)
    out: dict[str, float | None] = {}
    for i, attr in enumerate(_ATTRS):
        asked = [(obj[i], trk) for obj, trk in zip(exp.objects, pairs) if obj[i] is not None]
        out[attr] = (sum(trk is not None and _attr_match(v, getattr(trk, attr)) for v, trk in asked)
                     / len(asked)) if asked else None
    out["count"] = float(analysis.most_at_once() == len(exp.objects)) if exp.objects else None
    out["tracks"] = float(len(analysis.objects) == len(exp.objects)) if exp.objects else None
    out["event"] = None if exp.event is None else float(analysis.event == exp.event)
    out["background"] = (None if exp.background is None and not exp.colours else
                         float(exp.background in (None, analysis.background)
                               and (not exp.colours or tuple(exp.colours) == tuple(analysis.colours))))
    return out


def object_permanence(analysis) -> float | None:
    """Object permanence: the fraction of occlusions (an object went behind the occluder and the
    clip lasted long enough for it to come out) after which the object came back with the same
    colour, shape and size (captioner ``Occlusion.same``). Ideal 1.0; an object that vanishes
    behind the bar, or comes out changed, lowers it. None when nothing went behind an occluder."""
    done = [o for o in analysis.occlusions if o.resolved]
    return None if not done else float(np.mean([o.same for o in done]))


def _size_class(d) -> str:
    from . import vocab as V
    return "small" if d.size < V.SIZE_THRESHOLD else "large"


def _chains(detections, link: float) -> list[list]:
    """Link whole (not partial) detections frame to frame by position alone, blind to what they
    look like. A detection continues a chain when the chain's predicted position (constant
    velocity) is within ``link`` pixels, the pairing is mutual (each is the other's nearest) and
    unambiguous (the runner-up is at least twice as far); otherwise it starts a new chain."""
    chains, active = [], []
    for dets in detections:
        cur = [d for d in dets if not d.partial]
        pred = [(c[-1].cx + (c[-1].cx - c[-2].cx if len(c) > 1 else 0.0),
                 c[-1].cy + (c[-1].cy - c[-2].cy if len(c) > 1 else 0.0)) for c in active]
        dist = np.array([[math.hypot(d.cx - px, d.cy - py) for d in cur] for px, py in pred]).reshape(len(pred), len(cur))
        nxt = []
        for j, d in enumerate(cur):
            i = int(dist[:, j].argmin()) if len(pred) else -1
            ok = i >= 0 and dist[i, j] <= link and int(dist[i].argmin()) == j
            if ok:
                others = np.delete(dist[:, j], i).tolist() + np.delete(dist[i], j).tolist()
                ok = all(o >= 2 * dist[i, j] for o in others)
            if ok:
                active[i].append(d)
                nxt.append(active[i])
            else:
                chains.append([d])
                nxt.append(chains[-1])
        active = nxt
    return chains


def identity_kept(analysis, min_length: int = 4, min_run: int = 2) -> dict[str, float | None]:
    """Identity through the clip, per attribute: ``colour_constant`` (``shape_constant``) is 1.0 when
    no tracked object changes its colour (shape) along the clip, else 0.0. An object changes when its
    per-frame reading (the captioner's, whole detections only, chained by position as for
    ``identity_drift``) settles on another value for at least ``min_run`` consecutive frames, so a
    single misread frame does not count; chains shorter than ``min_length`` frames are not judged.
    None when no object is tracked long enough."""
    S = min(analysis.width, analysis.height)
    chains = [c for c in _chains(analysis.detections, 0.35 * S) if len(c) >= min_length]
    if not chains:
        return {"colour_constant": None, "shape_constant": None}

    def settled(values: list[str]) -> list[str]:
        """The values held for at least ``min_run`` frames in a row, in order of appearance."""
        runs, out = [], []
        for v in values:
            if runs and runs[-1][0] == v:
                runs[-1][1] += 1
            else:
                runs.append([v, 1])
        for v, n in runs:
            if n >= min_run and (not out or out[-1] != v):
                out.append(v)
        return out
    return {f"{k}_constant": float(all(len(settled([getattr(d, k) for d in c])) <= 1 for c in chains))
            for k in ("colour", "shape")}


def identity_drift(analysis, min_length: int = 4) -> float | None:
    """Identity drift: the fraction of tracked objects whose look changes along the video.

    Whole detections are chained frame to frame by position only (``_chains``, blind to colour
    and shape); for every chain of at least ``min_length`` frames, the majority (colour, shape,
    size class) of its first quarter is compared with that of its last quarter. Ideal 0.0 (every
    object keeps its identity); objects that turn into another colour or shape raise it.
    None when no object is tracked long enough to tell."""
    from collections import Counter
    S = min(analysis.width, analysis.height)
    chains = [c for c in _chains(analysis.detections, 0.35 * S) if len(c) >= min_length]
    if not chains:
        return None

    def look(dets):
        return Counter((d.colour, d.shape, _size_class(d)) for d in dets).most_common(1)[0][0]
    changed = [look(c[: max(1, len(c) // 4)]) != look(c[-max(1, len(c) // 4):]) for c in chains]
    return float(np.mean(changed))
