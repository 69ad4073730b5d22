"""World-simulation metrics: numbers, not impressions, because the world's truth is known.

Every metric is a plain function of uint8 frames (T, H, W, 3) RGB (and, for the object-level ones,
of the analytic captioner's analysis), returns a float, and says in its docstring exactly what it
measures and which value is ideal. Differences are in grey levels (0..255) averaged over pixels and
channels. ``METRICS`` lists every reported name with its ideal value and direction, for reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange

# small constant (grey levels) added to both sides of the difference ratios, so a still video
# (every difference 0) gives the ideal ratio 1 instead of 0 / 0
RATIO_EPS = 0.5
PSNR_CAP = 100.0  # dB, reported for identical videos instead of infinity
OBJECT_LEVEL = 170  # a pixel belongs to an object when its brightest channel reaches this (see vocab)


@dataclass(frozen=True)
class MetricInfo:
    """How to read a metric: its ideal value, whether higher is better, and its unit."""
    ideal: float
    higher_is_better: bool
    unit: str = ""
    description: str = ""


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


def _finite(x: float) -> bool:
    return x is not None and math.isfinite(x)
