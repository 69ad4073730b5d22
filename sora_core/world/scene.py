"""Scene specs of the procedural world and their sampling.

A ``SceneSpec`` says everything about a clip: 1 to 3 objects (shape, colour, size, start position,
motion), the background, one world event and the frame grid (width, height, frames, fps). Specs are
sampled from a seeded ``numpy.random.Generator`` (``sample_scene``) or built from explicit attributes
(the dataclasses validate themselves), and the renderer draws them deterministically.

Units: positions are fractions of the frame (x of the width, y of the height, y down); sizes and
speeds are in short sides (``min(width, height)``), speeds per second, so a scene looks the same at
any resolution and fps. Frame k is at time ``k / fps``.

Motion: see ``world.motion``, which turns a spec into per-frame positions (the trajectory functions
are importable from here too).
Events: ``occluder`` is a full-height bar in front of the objects that the target object crosses
(it reaches the bar's centre at mid-clip); ``brush``: the target object (moving left, right, up or
down) leaves a lasting trail;
``pan``: the camera moves horizontally over a textured landscape (objects live in world coordinates).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from . import vocab as V
from .motion import bounce_heights, camera_offsets, floor_y, occluder_span, radius_px, trajectories, trajectory


# ---------------------------------------------------------------------------------------------
# Specs
# ---------------------------------------------------------------------------------------------

def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {', '.join(map(str, allowed))}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object. ``x, y``: start centre (fractions of width / height); ``speed``: short sides per
    second for left/right/up/down (ignored for bouncing and static)."""
    shape: str
    colour: str
    size: str
    motion: str
    x: float = 0.5
    y: float = 0.5
    speed: float = 0.4

    def __post_init__(self):
        _check_choice("shape", self.shape, V.SHAPES)
        _check_choice("colour", self.colour, tuple(V.COLOURS))
        _check_choice("size", self.size, V.SIZES)
        _check_choice("motion", self.motion, V.MOTIONS)
        if not (-0.5 <= self.x <= 1.5 and 0.0 <= self.y <= 1.0):
            raise ValueError(f"object position must be x in [-0.5, 1.5], y in [0, 1], got x={self.x}, y={self.y}")
        if not (0.0 <= self.speed <= 10.0):
            raise ValueError(f"object speed must be in [0, 10] short sides per second, got {self.speed}")


@dataclass(frozen=True)
class BackgroundSpec:
    """``kind`` solid (colours = (name,)), gradient (colours = (top, bottom)) or landscape
    (a procedural texture from ``texture_seed``); ``ground`` adds a textured ground band."""
    kind: str = "solid"
    colours: tuple[str, ...] = ("black",)
    ground: bool = False
    texture_seed: int = 0

    def __post_init__(self):
        _check_choice("background kind", self.kind, V.BACKGROUND_KINDS)
        need = {"solid": 1, "gradient": 2, "landscape": 0}[self.kind]
        if len(self.colours) != need:
            raise ValueError(f"a {self.kind} background takes {need} colour(s), got {self.colours}")
        for c in self.colours:
            _check_choice("background colour", c, tuple(V.BACKGROUND_COLOURS))
        if self.kind == "gradient" and self.colours[0] == self.colours[1]:
            raise ValueError(f"a gradient needs two different colours, got {self.colours}")


@dataclass(frozen=True)
class EventSpec:
    """``kind`` none / occluder / brush / pan. ``target``: index of the object the event is about;
    ``x``: occluder bar centre (fraction of width); ``pan_speed``: camera velocity in short sides
    per second (positive = the camera moves right, so the scene drifts left)."""
    kind: str = "none"
    target: int = 0
    x: float = 0.5
    pan_speed: float = 0.0

    def __post_init__(self):
        _check_choice("event", self.kind, V.EVENTS)
        if self.kind == "pan" and self.pan_speed == 0.0:
            raise ValueError("a pan event needs a non-zero pan_speed")


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    background: BackgroundSpec
    event: EventSpec
    width: int
    height: int
    frames: int
    fps: float

    def __post_init__(self):
        check_grid(self.width, self.height, self.frames, self.fps)
        if not 1 <= len(self.objects) <= 3:
            raise ValueError(f"a scene has 1 to 3 objects, got {len(self.objects)}")
        keys = [(o.colour, o.shape) for o in self.objects]
        if len(set(keys)) != len(keys):
            raise ValueError(f"two objects share colour and shape: {keys}")
        if self.event.kind != "none" and not 0 <= self.event.target < len(self.objects):
            raise ValueError(f"event target {self.event.target} is not an object index")
        if self.event.kind == "pan" and self.background.kind != "landscape":
            raise ValueError("a camera pan needs a landscape background")
        for i, o in enumerate(self.objects):
            if o.motion == "bouncing" and o.y * self.height > floor_y(self) - radius_px(self, o) + 1e-6:
                raise ValueError(f"object {i} bounces but starts below the floor")

    @property
    def short_side(self) -> int:
        return min(self.width, self.height)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last frame."""
        return (self.frames - 1) / self.fps

    def times(self) -> np.ndarray:
        """(T,) time of each frame in seconds."""
        return np.arange(self.frames, dtype=np.float64) / self.fps


def check_grid(width: int, height: int, frames: int, fps: float) -> None:
    """Raise a ValueError naming the bad grid value."""
    for name, v, lo, hi in (("width", width, 16, 4096), ("height", height, 16, 4096),
                            ("frames", frames, 1, 100_000)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or not lo <= v <= hi:
            raise ValueError(f"{name} must be an integer in [{lo}, {hi}], got {v!r}")
    if not (isinstance(fps, (int, float)) and 0 < fps <= 240):
        raise ValueError(f"fps must be a number in (0, 240], got {fps!r}")


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectRequest:
    """Partial object attributes (None = sample it); prompt expansion builds these."""
    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    motion: str | None = None


def as_rng(seed_or_rng) -> np.random.Generator:
    if isinstance(seed_or_rng, np.random.Generator):
        return seed_or_rng
    if isinstance(seed_or_rng, (int, np.integer)) and not isinstance(seed_or_rng, bool):
        return np.random.default_rng(int(seed_or_rng))
    raise ValueError(f"seed must be an int or a numpy Generator, got {type(seed_or_rng).__name__}")


def _fill_attributes(rng, requests: list[ObjectRequest]) -> list[ObjectRequest]:
    """Fill unspecified shape/colour/size/motion, keeping colour+shape pairs unique."""
    taken = {(q.colour, q.shape) for q in requests if q.colour and q.shape}
    out = []
    for q in requests:
        free = [(c, s) for c in V.COLOURS for s in V.SHAPES if (c, s) not in taken
                and q.colour in (None, c) and q.shape in (None, s)]
        if q.colour is None or q.shape is None:
            if not free:
                raise ValueError(f"cannot make object {q} distinct from the others")
            c, s = free[rng.integers(len(free))]
            taken.add((c, s))
            q = replace(q, colour=c, shape=s)
        q = replace(q, size=q.size or V.SIZES[rng.integers(2)],
                    motion=q.motion or V.MOTIONS[rng.integers(len(V.MOTIONS))])
        out.append(q)
    return out


def _sample_background(rng, request: BackgroundSpec | None, ground: bool | None, event: str):
    if request is not None:
        bg = request
    else:
        kind = "landscape" if event == "pan" else V.BACKGROUND_KINDS[rng.choice(3, p=[0.45, 0.4, 0.15])]
        names = list(V.BACKGROUND_COLOURS)
        cols = tuple(names[i] for i in rng.permutation(len(names))[: {"solid": 1, "gradient": 2}.get(kind, 0)])
        bg = BackgroundSpec(kind, cols, bool(rng.random() < 0.3), int(rng.integers(2**31)))
    if ground is not None:
        bg = replace(bg, ground=ground)
    return bg


def _pick_target(requests: list[ObjectRequest], good: tuple[str, ...]) -> int | None:
    """Index of the first object whose requested motion is in ``good``, else the first free one."""
    for i, q in enumerate(requests):
        if q.motion in good:
            return i
    for i, q in enumerate(requests):
        if q.motion is None:
            return i
    return None


def _resolve_event(rng, event: str | None, requests: list[ObjectRequest], duration: float,
                   target: int | None = None):
    """Choose the event and its target (``target`` if given); give the target a motion the event
    needs. A sampled event that cannot happen becomes "none"; a requested one raises a ValueError."""
    requested = event is not None
    if requested:
        _check_choice("event", event, V.EVENTS)
    kind = event if requested else V.EVENTS[rng.choice(len(V.EVENTS), p=V.EVENT_PROBS)]
    if kind not in ("occluder", "brush"):
        return kind, 0, requests
    good = ("left", "right") if kind == "occluder" else ("left", "right", "up", "down")
    if target is not None and not 0 <= target < len(requests):
        raise ValueError(f"event_target={target} is not an object index (0..{len(requests) - 1})")
    if target is not None and requests[target].motion not in (None,) + good:
        raise ValueError(f"the {kind} event needs its object to move {', '.join(good)}, "
                         f"not {requests[target].motion}")
    target = _pick_target(requests, good) if target is None else target
    big = V.SIZE_DIAMETER["large"]
    too_short = kind == "occluder" and (
        duration <= 0 or (V.OCCLUDER_WIDTH + big + 2 * V.MARGIN) / duration > V.MAX_SPEED)
    if target is None or too_short:
        if not requested:
            return "none", 0, requests
        why = (f"the clip ({duration:.2f} s) is too short for an object to cross the bar" if too_short
               else f"no object can move ({', '.join(good)})")
        raise ValueError(f"the {kind} event cannot happen: {why}")
    if requests[target].motion not in good:
        choices = good if kind == "brush" else ("left", "right")
        requests = list(requests)
        requests[target] = replace(requests[target], motion=choices[rng.integers(len(choices))])
    return kind, target, requests


def _sample_position(rng, q: ObjectRequest, W: int, H: int, floor: float) -> tuple[float, float]:
    """A start centre (pixels) inside the frame and above the floor."""
    S = min(W, H)
    r, m = V.SIZE_DIAMETER[q.size] * S / 2, V.MARGIN * S
    x = rng.uniform(r + m, W - r - m)
    if q.motion == "bouncing":
        contact = floor - r
        h_max = min(V.DROP_RANGE[1] * S, contact - r - m)
        h0 = rng.uniform(min(V.DROP_RANGE[0] * S, h_max), h_max)
        return x, contact - h0
    return x, rng.uniform(r + m, max(r + m, floor - r - m))


def _place_objects(rng, attrs, W, H, floor, event: EventSpec, duration: float) -> list | None:
    """Start positions and speeds: no overlaps at the start, the occluder target crossing the bar
    at mid-clip, nobody else starting behind the bar. None when this attempt got stuck."""
    S, placed = min(W, H), {}
    bar_c, bar_half = event.x * W, V.OCCLUDER_WIDTH * S / 2
    order = sorted(range(len(attrs)), key=lambda i: (i != event.target or event.kind != "occluder",
                                                     attrs[i].motion != "bouncing", i))
    for i in order:
        q = attrs[i]
        r, m = V.SIZE_DIAMETER[q.size] * S / 2, V.MARGIN * S
        speed = float(rng.uniform(*V.SPEED_RANGE))
        is_target = event.kind == "occluder" and i == event.target
        if is_target:
            speed = max(speed, (V.OCCLUDER_WIDTH + 2 * V.SIZE_DIAMETER[q.size] + 2 * V.MARGIN) / duration)
        for _ in range(200):
            x, y = _sample_position(rng, q, W, H, floor)
            if is_target:
                sign = 1.0 if q.motion == "right" else -1.0
                x = float(np.mod(bar_c - sign * speed * S * duration / 2 + r, W + 2 * r) - r)
            elif event.kind == "occluder" and abs(x - bar_c) < bar_half + r + m:
                continue
            if all(np.hypot(x - o.x * W, y - o.y * H) >= r + V.SIZE_DIAMETER[o.size] * S / 2 + m
                   for o in placed.values()):
                break
        else:
            return None
        placed[i] = ObjectSpec(q.shape, q.colour, q.size, q.motion, x / W, y / H, speed)
    return [placed[i] for i in range(len(attrs))]


def sample_scene(seed_or_rng, width: int, height: int, frames: int, fps: float,
                 n_objects: int | None = None, event: str | None = None,
                 objects: tuple[ObjectRequest, ...] | list | None = None,
                 background: BackgroundSpec | None = None, ground: bool | None = None,
                 pan_direction: str | None = None, event_target: int | None = None) -> SceneSpec:
    """A random scene from a seed or ``numpy.random.Generator``; anything given is kept.

    ``objects``: partial attributes of the first objects (the rest are sampled); ``n_objects``
    1..3 (default: len(objects) or random); ``event`` one of vocab.EVENTS (default: sampled with
    vocab.EVENT_PROBS); ``background`` a full BackgroundSpec; ``ground`` forces the ground band on
    or off; ``pan_direction`` "left"/"right" for the camera; ``event_target`` the index of the object
    the occluder / brush event is about. Same seed and arguments, same scene.
    """
    check_grid(width, height, frames, fps)
    rng = as_rng(seed_or_rng)
    requests = list(objects or ())
    n = n_objects if n_objects is not None else (len(requests) or int(rng.integers(1, 4)))
    if not (1 <= n <= 3) or n < len(requests):
        raise ValueError(f"n_objects must be in [1, 3] and >= the {len(requests)} objects given, got {n}")
    requests += [ObjectRequest()] * (n - len(requests))
    if pan_direction is not None:
        _check_choice("pan_direction", pan_direction, ("left", "right"))
        event = event or "pan"
    duration = (frames - 1) / fps
    kind, target, requests = _resolve_event(rng, event, requests, duration, event_target)
    attrs = _fill_attributes(rng, requests)
    bg = _sample_background(rng, background, ground, kind)
    if kind == "pan" and bg.kind != "landscape":
        bg = BackgroundSpec("landscape", (), bg.ground, int(rng.integers(2**31)))
    sign = {"left": -1.0, "right": 1.0}.get(pan_direction, float(rng.choice([-1.0, 1.0])))
    ev = EventSpec(kind, target, float(rng.uniform(0.4, 0.6)),
                   sign * float(rng.uniform(*V.PAN_SPEED_RANGE)) if kind == "pan" else 0.0)
    floor = height * (1.0 - V.GROUND_FRACTION) if bg.ground else float(height)
    for attempt in range(60):
        if attempt and attempt % 10 == 0:          # crowded: move the bar, then shrink sampled sizes
            ev = replace(ev, x=float(rng.uniform(0.35, 0.65)))
            if attempt >= 30:
                attrs = [replace(a, size="small") if q.size is None else a for a, q in zip(attrs, requests)]
        placed = _place_objects(rng, attrs, width, height, floor, ev, max(duration, 1e-9))
        if placed is not None:
            break
    else:
        raise ValueError(f"cannot place {n} objects without overlap in a {width}x{height} frame")
    return SceneSpec(tuple(placed), bg, ev, int(width), int(height), int(frames), float(fps))


def sample_scene_sized(seed_or_rng, width: int, height: int, frames: int, fps: float, *,
                       objects: list[ObjectRequest], sizes, **kwargs) -> SceneSpec:
    """``sample_scene`` with each open size of ``objects`` set to the size at its place in ``sizes``
    (None keeps it open) where the scene can be placed at those sizes (drawn from a child of the
    generator); too crowded, the sizes are drawn and shrunk as the world does. Same seed, same scene."""
    rng = as_rng(seed_or_rng)
    sized = [o if o.size is not None or s is None else replace(o, size=s) for o, s in zip(objects, sizes)]
    if sized != list(objects):
        try:
            return sample_scene(np.random.default_rng(rng.integers(2**63)), width, height, frames, fps,
                                objects=sized, **kwargs)
        except ValueError:
            pass
    return sample_scene(rng, width, height, frames, fps, objects=objects, **kwargs)


__all__ = ["ObjectSpec", "BackgroundSpec", "EventSpec", "SceneSpec", "check_grid", "ObjectRequest", "as_rng",
           "sample_scene", "sample_scene_sized",
           # the motion of a spec (world.motion), kept importable from here
           "radius_px", "floor_y", "occluder_span", "camera_offsets", "bounce_heights", "trajectory", "trajectories"]
