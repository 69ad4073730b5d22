"""Where the objects of a scene are in every frame: the analytic motion of a ``SceneSpec``.

Units as in ``world.scene``: positions are fractions of the frame in a spec and pixels here (the
frame spans [0, width] x [0, height], y down); sizes and speeds are in short sides, speeds per second;
frame k is at time ``k / fps``.

Motion (chosen and documented here):
- left / right / up / down: constant speed; the frame *wraps around*: an object that leaves one side
  comes back from the opposite side, so the direction holds for a clip of any length (the period is
  the frame size plus the object's size, so only one copy is ever visible).
- bouncing: dropped from rest at its start height, falls under ``vocab.GRAVITY`` and bounces off the
  floor (the frame bottom, or the top of the textured ground) with ``vocab.RESTITUTION``; it comes
  to rest once the impact speed falls below ``vocab.REST_SPEED``. Purely vertical.
- static: stays put (in world coordinates: during a camera pan it moves across the frame).

Events that move things: ``occluder`` (a bar at ``event.x``, see ``occluder_span``) and ``pan`` (the
camera moves horizontally, ``camera_offsets``; objects live in world coordinates).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import vocab as V

if TYPE_CHECKING:                      # annotations only: scene.py imports this module
    from .scene import ObjectSpec, SceneSpec


def radius_px(spec: SceneSpec, obj: ObjectSpec) -> float:
    """Half the object's bounding-box side, in pixels."""
    return V.SIZE_DIAMETER[obj.size] * spec.short_side / 2


def floor_y(spec: SceneSpec) -> float:
    """y in pixels of the floor bouncing objects land on (top of the ground band, or the bottom)."""
    return spec.height * (1.0 - V.GROUND_FRACTION) if spec.background.ground else float(spec.height)


def occluder_span(spec: SceneSpec) -> tuple[int, int] | None:
    """Pixel columns [x0, x1) covered by the occluder bar, or None."""
    if spec.event.kind != "occluder":
        return None
    half = V.OCCLUDER_WIDTH * spec.short_side / 2
    c = spec.event.x * spec.width
    return int(round(c - half)), int(round(c + half))


def camera_offsets(spec: SceneSpec) -> np.ndarray:
    """(T,) horizontal camera position in pixels (0 at the first frame)."""
    if spec.event.kind != "pan":
        return np.zeros(spec.frames)
    return spec.event.pan_speed * spec.short_side * spec.times()


def bounce_heights(t: np.ndarray, h0: float) -> np.ndarray:
    """Height above the floor (short sides) at times ``t`` (s) of a ball dropped from rest at ``h0``."""
    g, out = V.GRAVITY, np.zeros_like(t)
    t_s, h_s, v_s = 0.0, max(h0, 0.0), 0.0     # segment start time, height, upward velocity
    for _ in range(200):
        t_hit = (v_s + np.sqrt(v_s * v_s + 2 * g * h_s)) / g
        seg = (t >= t_s) & (t < t_s + t_hit)
        tau = t[seg] - t_s
        out[seg] = h_s + v_s * tau - 0.5 * g * tau * tau
        v_next = V.RESTITUTION * (g * t_hit - v_s)
        t_s, h_s, v_s = t_s + t_hit, 0.0, v_next
        if v_next < V.REST_SPEED or t_s > t.max(initial=0.0):
            break
    out[t >= t_s] = 0.0 if v_s < V.REST_SPEED else out[t >= t_s]
    return np.maximum(out, 0.0)


def _wrap(v: np.ndarray, r: float, size: int) -> np.ndarray:
    """Wrap centre coordinates into [-r, size + r): one copy visible at a time."""
    return np.mod(v + r, size + 2 * r) - r


def trajectory(spec: SceneSpec, index: int) -> np.ndarray:
    """(T, 2) screen centre (x, y) of object ``index`` in pixels (continuous coordinates: the
    frame spans [0, width] x [0, height])."""
    obj, t, S = spec.objects[index], spec.times(), spec.short_side
    r = radius_px(spec, obj)
    x = np.full_like(t, obj.x * spec.width)
    y = np.full_like(t, obj.y * spec.height)
    step = obj.speed * S * t
    if obj.motion == "left":
        x = x - step
    elif obj.motion == "right":
        x = x + step
    elif obj.motion == "up":
        y = _wrap(y - step, r, spec.height)
    elif obj.motion == "down":
        y = _wrap(y + step, r, spec.height)
    elif obj.motion == "bouncing":
        contact = floor_y(spec) - r
        y = contact - S * bounce_heights(t, (contact - obj.y * spec.height) / S)
    x = _wrap(x - camera_offsets(spec), r, spec.width)
    return np.stack([x, y], axis=-1)


def trajectories(spec: SceneSpec) -> np.ndarray:
    """(N, T, 2) screen centres of every object, pixels."""
    return np.stack([trajectory(spec, i) for i in range(len(spec.objects))])
