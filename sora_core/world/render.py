"""The renderer of the procedural world: ``render(spec) -> uint8 (T, H, W, 3) RGB``.

opencv drawing with anti-aliasing (``LINE_AA`` at 1/16-pixel precision), deterministic: the same spec
gives the same bytes. Backgrounds are built once per clip; the landscape and ground textures are
periodic in x (period = the frame width) so a camera pan is a sub-pixel wrap-around shift. Draw order:
background, brush trail, objects (in spec order), occluder bar in front.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import vocab as V
from .motion import camera_offsets, floor_y, occluder_span, radius_px, trajectories
from .scene import SceneSpec

_SHIFT = 4                # fractional bits of opencv drawing coordinates
_ONE = 1 << _SHIFT


# ---------------------------------------------------------------------------------------------
# Backgrounds
# ---------------------------------------------------------------------------------------------

def _vertical_gradient(top, bottom, H: int, W: int) -> np.ndarray:
    """(H, W, 3) float32 rows blending ``top`` into ``bottom``."""
    a = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None]
    rows = (1 - a) * np.float32(top) + a * np.float32(bottom)   # (H, 3)
    return np.repeat(rows[:, None, :], W, axis=1)


def _wrapped(draw, img: np.ndarray, x: float, *args) -> None:
    """Call ``draw(img, x, ...)`` at x and x +- width so shapes tile across the period."""
    W = img.shape[1]
    for dx in (-W, 0, W):
        draw(img, x + dx, *args)


def _rect(img, x, y0, w, y1, colour):
    cv2.rectangle(img, (int(round(x)), int(round(y0))), (int(round(x + w)), int(round(y1))), colour, -1)


def _ellipse(img, x, y, ax, ay, colour):
    cv2.ellipse(img, (int(x * _ONE), int(y * _ONE)), (int(ax * _ONE), int(ay * _ONE)), 0, 0, 360,
                colour, -1, cv2.LINE_AA, _SHIFT)


def landscape(H: int, W: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 dark textured landscape, periodic in x: sky, two hill layers, trees and
    blocks, grain. Textured enough everywhere for a camera pan to be seen (and measured)."""
    rng = np.random.default_rng(seed)
    img = _vertical_gradient(*V.LANDSCAPE_SKY, H, W)
    x = np.arange(W) / W
    for base, tone in ((0.32, (34, 44, 48)), (0.58, (50, 42, 60))):
        k = np.arange(1, 6)[:, None]
        ridge = base + (rng.uniform(0.03, 0.1, (5, 1)) / k
                        * np.sin(2 * np.pi * k * x + rng.uniform(0, 2 * np.pi, (5, 1)))).sum(0)
        below = np.arange(H)[:, None] >= ridge[None, :] * H            # (H, W)
        img[below] = np.float32(tone)
    for _ in range(int(rng.integers(14, 22))):                         # trees / posts / blocks
        w, h = rng.uniform(0.02, 0.12) * W, rng.uniform(0.15, 0.6) * H
        tone = tuple(float(v) for v in rng.uniform(10, 85) + rng.uniform(-5, 5, 3))
        _wrapped(_rect, img, rng.uniform(0, W), H * rng.uniform(0.7, 1.0) - h, w,
                 H * rng.uniform(0.7, 1.0), tone)
    for _ in range(int(rng.integers(20, 36))):                         # stars / windows
        ax = rng.uniform(0.005, 0.02) * W
        _wrapped(_ellipse, img, rng.uniform(0, W), rng.uniform(0, 0.5) * H, ax, ax,
                 tuple(float(v) for v in rng.uniform(60, V.LANDSCAPE_MAX, 3)))
    img += rng.normal(0, 4, (H, W, 1)).astype(np.float32)
    return np.clip(img, 0, V.LANDSCAPE_MAX).astype(np.uint8)


def _ground(img: np.ndarray, seed: int) -> None:
    """Paint the textured ground band (periodic in x) into the bottom of ``img`` in place."""
    H, W = img.shape[:2]
    top = int(round(H * (1.0 - V.GROUND_FRACTION)))
    band = np.full((H - top, W, 3), V.GROUND_RGB, np.float32)
    rng = np.random.default_rng(seed + 1)
    for _ in range(int(rng.integers(8, 16))):
        ax, ay = rng.uniform(0.02, 0.06) * W, rng.uniform(0.1, 0.25) * (H - top)
        _wrapped(_ellipse, band, rng.uniform(0, W), rng.uniform(0, H - top), ax, ay, V.GROUND_DARK_RGB)
    band[: max(1, (H - top) // 10)] = V.GROUND_EDGE_RGB
    img[top:] = np.clip(band, 0, 255).astype(np.uint8)


def background(spec: SceneSpec) -> np.ndarray:
    """(H, W, 3) uint8 background of the scene (the camera at its start position)."""
    bg, H, W = spec.background, spec.height, spec.width
    if bg.kind == "landscape":
        img = landscape(H, W, bg.texture_seed)
    else:
        cols = [V.BACKGROUND_COLOURS[c] for c in bg.colours]
        img = np.round(_vertical_gradient(cols[0], cols[-1], H, W)).astype(np.uint8)
    if bg.ground:
        _ground(img, bg.texture_seed)
    return np.ascontiguousarray(img)


# ---------------------------------------------------------------------------------------------
# Objects
# ---------------------------------------------------------------------------------------------

def shape_points(shape: str, cx: float, cy: float, r: float) -> np.ndarray:
    """(K, 2) polygon of a square or triangle centred on its bounding box, pixels."""
    if shape == "square":
        return np.array([[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]])
    h = 0.9 * r                                                  # triangle: width 2r, height 1.8r
    return np.array([[cx, cy - h], [cx + r, cy + h], [cx - r, cy + h]])


def draw_object(img: np.ndarray, shape: str, colour, cx: float, cy: float, r: float) -> None:
    """Draw one anti-aliased object in place; (cx, cy) in continuous pixel coordinates."""
    cx, cy = cx - 0.5, cy - 0.5                      # opencv puts integer coordinates at pixel centres
    if shape == "circle":
        cv2.circle(img, (int(round(cx * _ONE)), int(round(cy * _ONE))), int(round(r * _ONE)),
                   colour, -1, cv2.LINE_AA, _SHIFT)
    else:
        pts = np.round(shape_points(shape, cx, cy, r) * _ONE).astype(np.int32)
        cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, _SHIFT)


def trail_colour(colour: str) -> tuple[int, int, int]:
    """The dark brush-trail colour of an object colour."""
    return tuple(int(round(c * V.TRAIL_GAIN)) for c in V.COLOURS[colour])


# ---------------------------------------------------------------------------------------------
# Clips
# ---------------------------------------------------------------------------------------------

def _pan_frame(tile: np.ndarray, offset: float) -> np.ndarray:
    """The tile seen by a camera at ``offset`` pixels (sub-pixel, wrapping around)."""
    H, W = tile.shape[:2]
    m = np.float32([[1, 0, -offset], [0, 1, 0]])
    return cv2.warpAffine(tile, m, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)


def _brush_stroke(canvas: np.ndarray, spec: SceneSpec, track: np.ndarray, k: int) -> None:
    """Extend the brush trail of the target object from frame k-1 to frame k, in place."""
    obj = spec.objects[spec.event.target]
    r = radius_px(spec, obj)
    a, b = track[max(k - 1, 0)] - 0.5, track[k] - 0.5
    if np.abs(b - a).max() > 2 * r:                  # wrapped around the frame: start a new stroke
        a = b
    thick = max(1, int(round(2 * r * V.TRAIL_WIDTH)))
    cv2.line(canvas, tuple(int(round(v * _ONE)) for v in a), tuple(int(round(v * _ONE)) for v in b),
             trail_colour(obj.colour), thick, cv2.LINE_AA, _SHIFT)


def render(spec: SceneSpec) -> np.ndarray:
    """Render a scene: uint8 (T, H, W, 3) RGB, deterministic."""
    T, H, W = spec.frames, spec.height, spec.width
    out = np.empty((T, H, W, 3), np.uint8)
    canvas = background(spec)
    tracks = trajectories(spec)                                           # (N, T, 2)
    radii = [radius_px(spec, o) for o in spec.objects]
    colours = [V.COLOURS[o.colour] for o in spec.objects]
    cams = camera_offsets(spec)
    bar = occluder_span(spec)
    for k in range(T):
        if spec.event.kind == "pan":
            frame = out[k]
            frame[...] = _pan_frame(canvas, cams[k])
        else:
            if spec.event.kind == "brush":
                _brush_stroke(canvas, spec, tracks[spec.event.target], k)
            frame = out[k]
            np.copyto(frame, canvas)
        for obj, track, r, col in zip(spec.objects, tracks, radii, colours):
            draw_object(frame, obj.shape, col, track[k, 0], track[k, 1], r)
        if bar is not None:
            frame[:, max(bar[0], 0):max(bar[1], 0)] = V.OCCLUDER_RGB
    return out


__all__ = ["render", "background", "landscape", "draw_object", "shape_points", "trail_colour", "floor_y"]
