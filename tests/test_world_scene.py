"""Scene specs: seeded sampling, constraints, any grid, analytic trajectories, validation."""

import numpy as np
import pytest

from sora_core.world import vocab as V
from sora_core.world.scene import (BackgroundSpec, EventSpec, ObjectRequest, ObjectSpec, SceneSpec,
                                   bounce_heights, floor_y, occluder_span, radius_px, sample_scene,
                                   trajectories, trajectory)

GRIDS = [(64, 64, 17, 8.0), (96, 48, 9, 8.0), (40, 120, 33, 24.0), (256, 144, 1, 8.0), (16, 16, 5, 4.0)]


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def test_same_seed_same_scene_and_generator_equivalent():
    a = sample_scene(123, 64, 48, 17, 8)
    assert a == sample_scene(123, 64, 48, 17, 8)
    assert a == sample_scene(np.random.default_rng(123), 64, 48, 17, 8)
    others = {sample_scene(s, 64, 48, 17, 8) for s in range(20)}
    assert len(others) == 20


@pytest.mark.parametrize("width,height,frames,fps", GRIDS)
def test_constraints_hold_on_every_grid(width, height, frames, fps):
    for seed in range(60):
        spec = sample_scene(seed, width, height, frames, fps)
        keys = [(o.colour, o.shape) for o in spec.objects]
        assert 1 <= len(keys) <= 3 and len(set(keys)) == len(keys)
        for i, a in enumerate(spec.objects):                       # no overlap at the start
            for b in spec.objects[i + 1:]:
                d = np.hypot((a.x - b.x) * width, (a.y - b.y) * height)
                assert d >= radius_px(spec, a) + radius_px(spec, b)
        bar = occluder_span(spec)
        if bar is not None:                                         # nobody starts behind the bar
            for i, o in enumerate(spec.objects):
                x = o.x * width
                assert x + radius_px(spec, o) <= bar[0] + 1 or x - radius_px(spec, o) >= bar[1] - 1
        assert trajectories(spec).shape == (len(spec.objects), frames, 2)
        if spec.event.kind == "pan":
            assert spec.background.kind == "landscape" and spec.event.pan_speed != 0


def test_sampler_covers_the_vocabulary():
    specs = [sample_scene(s, 64, 64, 17, 8) for s in range(400)]
    objs = [o for s in specs for o in s.objects]
    assert {o.colour for o in objs} == set(V.COLOURS)
    assert {o.shape for o in objs} == set(V.SHAPES)
    assert {o.motion for o in objs} == set(V.MOTIONS)
    assert {o.size for o in objs} == set(V.SIZES)
    assert {s.event.kind for s in specs} == set(V.EVENTS)
    assert {s.background.kind for s in specs} == set(V.BACKGROUND_KINDS)
    assert {len(s.objects) for s in specs} == {1, 2, 3}
    assert any(s.background.ground for s in specs) and not all(s.background.ground for s in specs)


def test_requests_are_kept_and_events_get_a_fitting_target():
    req = (ObjectRequest(colour="red", shape="circle", motion="bouncing"), ObjectRequest(size="large"))
    for seed in range(20):
        s = sample_scene(seed, 64, 64, 17, 8, objects=req, event="occluder", ground=True)
        o = s.objects[0]
        assert (o.colour, o.shape, o.motion) == ("red", "circle", "bouncing")
        assert s.objects[1].size == "large" and s.background.ground
        assert s.event.kind == "occluder" and s.event.target == 1
        assert s.objects[1].motion in ("left", "right")
        b = sample_scene(seed, 64, 64, 17, 8, event="brush", n_objects=2)
        assert b.objects[b.event.target].motion in ("left", "right", "up", "down")
        p = sample_scene(seed, 64, 64, 17, 8, pan_direction="left")
        assert p.event.kind == "pan" and p.event.pan_speed < 0


def test_occluder_target_crosses_the_bar_at_mid_clip():
    for seed in range(30):
        s = sample_scene(seed, 96, 64, 17, 8, event="occluder", n_objects=1)
        track = trajectory(s, 0)
        bar = occluder_span(s)
        r = radius_px(s, s.objects[0])
        assert abs(track[8, 0] - s.event.x * 96) < 1e-6                 # centre of the bar at mid-clip
        for k in (0, 16):                                               # fully visible at both ends
            assert track[k, 0] + r <= bar[0] + 1 or track[k, 0] - r >= bar[1] - 1


# ---------------------------------------------------------------------------------------------
# Trajectories
# ---------------------------------------------------------------------------------------------

def _one(motion, width=64, height=64, frames=17, fps=8.0, ground=False, speed=0.4, y=0.4):
    obj = ObjectSpec("circle", "red", "small", motion, 0.5, y, speed)
    return SceneSpec((obj,), BackgroundSpec("solid", ("black",), ground), EventSpec(), width, height, frames, fps)


def test_motion_is_resolution_and_fps_independent():
    for motion in ("left", "right", "up", "down", "bouncing", "static"):
        a = trajectory(_one(motion, 64, 64, 9, 8.0), 0) / 64
        b = trajectory(_one(motion, 256, 256, 9, 8.0), 0) / 256
        c = trajectory(_one(motion, 64, 64, 17, 16.0), 0)[::2] / 64
        np.testing.assert_allclose(a, b, atol=1e-9)
        np.testing.assert_allclose(a, c, atol=1e-9)


def test_straight_motion_wraps_around_and_keeps_direction():
    s = _one("right", frames=81, speed=0.6)                             # 10 s: crosses many times
    x = trajectory(s, 0)[:, 0]
    r = radius_px(s, s.objects[0])
    assert x.min() >= -r - 1e-9 and x.max() < 64 + r
    step = np.diff(x)
    forward = step[step > -32]                                          # drop the wrap-around jumps
    np.testing.assert_allclose(forward, 0.6 * 64 / 8, atol=1e-9)
    assert (step < -32).sum() >= 3
    y = trajectory(_one("up", speed=0.5), 0)[:, 1]
    assert (np.diff(y)[np.diff(y) < 32] < 0).all()


def test_bouncing_obeys_floor_gravity_and_restitution():
    t = np.linspace(0, 10, 2001)
    h = bounce_heights(t, 0.5)
    assert h.min() >= 0 and abs(h[0] - 0.5) < 1e-12
    t_hit = np.sqrt(2 * 0.5 / V.GRAVITY)
    assert h[np.searchsorted(t, t_hit)] < 1e-2                         # lands when free fall says
    apex1 = h[(t > t_hit) & (t < 3 * t_hit)].max()
    assert abs(apex1 - 0.5 * V.RESTITUTION ** 2) < 5e-3                # bounce height ~ e^2
    assert h[-1] == 0.0                                                 # comes to rest
    for ground in (False, True):
        s = _one("bouncing", frames=81, ground=ground)
        y = trajectory(s, 0)[:, 1]
        contact = floor_y(s) - radius_px(s, s.objects[0])
        assert y.max() <= contact + 1e-9 and y.max() > contact - 0.5
        dy = np.diff(y)
        assert ((dy[:-1] > 0) & (dy[1:] < 0)).any()                     # down then up: a bounce


def test_pan_moves_the_world_not_the_camera_frame():
    obj = ObjectSpec("square", "blue", "small", "static", 0.5, 0.5)
    s = SceneSpec((obj,), BackgroundSpec("landscape", ()), EventSpec("pan", pan_speed=0.25), 64, 64, 9, 8.0)
    x = trajectory(s, 0)[:, 0]
    np.testing.assert_allclose(np.diff(x), -0.25 * 64 / 8)              # static object drifts left


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,word", [
    (dict(width=8), "width"), (dict(height=5000), "height"), (dict(frames=0), "frames"),
    (dict(fps=0), "fps"), (dict(n_objects=4), "n_objects"), (dict(event="explosion"), "event"),
    (dict(frames=1, event="occluder"), "too short"), (dict(pan_direction="up"), "pan_direction"),
])
def test_bad_sampling_arguments_name_the_input(kwargs, word):
    args = dict(width=64, height=64, frames=17, fps=8.0) | kwargs
    with pytest.raises(ValueError, match=word):
        sample_scene(0, **args)


def test_bad_specs_are_refused():
    with pytest.raises(ValueError, match="colour"):
        ObjectSpec("circle", "pink", "small", "left")
    with pytest.raises(ValueError, match="shape"):
        ObjectSpec("hexagon", "red", "small", "left")
    with pytest.raises(ValueError, match="gradient"):
        BackgroundSpec("gradient", ("navy", "navy"))
    obj = ObjectSpec("circle", "red", "small", "left")
    with pytest.raises(ValueError, match="share colour and shape"):
        SceneSpec((obj, obj), BackgroundSpec(), EventSpec(), 64, 64, 9, 8.0)
    with pytest.raises(ValueError, match="landscape"):
        SceneSpec((obj,), BackgroundSpec(), EventSpec("pan", pan_speed=0.2), 64, 64, 9, 8.0)
    with pytest.raises(ValueError, match="seed"):
        sample_scene("seven", 64, 64, 9, 8.0)
