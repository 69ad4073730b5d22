"""The renderer: shapes and dtype on any grid, determinism, anti-aliasing, what each event draws."""

import numpy as np
import pytest

from sora_core.world import vocab as V
from sora_core.world.render import background, render, trail_colour
from sora_core.world.scene import (BackgroundSpec, EventSpec, ObjectSpec, SceneSpec, camera_offsets,
                                   occluder_span, radius_px, sample_scene, trajectory)


def _scene(objs, bg=BackgroundSpec("solid", ("black",)), event=EventSpec(), w=64, h=64, t=9, fps=8.0):
    return SceneSpec(tuple(objs), bg, event, w, h, t, fps)


@pytest.mark.parametrize("width,height,frames", [(64, 64, 17), (128, 48, 9), (36, 100, 5), (200, 120, 1)])
def test_shape_dtype_and_determinism_on_any_grid(width, height, frames):
    for seed in range(8):
        spec = sample_scene(seed, width, height, frames, 8)
        a = render(spec)
        assert a.shape == (frames, height, width, 3) and a.dtype == np.uint8
        assert np.array_equal(a, render(spec))


def test_objects_are_drawn_where_and_how_the_spec_says():
    objs = [ObjectSpec("circle", "red", "large", "right", 0.3, 0.3, 0.4),
            ObjectSpec("square", "cyan", "small", "down", 0.75, 0.3, 0.4),
            ObjectSpec("triangle", "yellow", "large", "static", 0.5, 0.75)]
    spec = _scene(objs)
    video = render(spec)
    for i, o in enumerate(objs):
        track = trajectory(spec, i)
        for k in (0, 4, 8):
            x, y = (int(v) for v in track[k])
            assert tuple(video[k, y, x]) == V.COLOURS[o.colour]
    # shapes differ in how much of their bounding box they fill (circle ~0.79, triangle ~0.45)
    fill = {}
    for o in objs:
        near = np.abs(video[0].astype(int) - V.COLOURS[o.colour]).sum(-1) < 60
        fill[o.shape] = near.sum() / (2 * radius_px(spec, o)) ** 2
    assert 0.9 < fill["square"] < 1.1 and 0.7 < fill["circle"] < 0.85 and 0.38 < fill["triangle"] < 0.6


def test_edges_are_anti_aliased():
    spec = _scene([ObjectSpec("circle", "white", "large", "static", 0.5, 0.5)], t=1)
    grey = render(spec)[0, ..., 0].astype(int)
    lo, hi = V.BACKGROUND_COLOURS["black"][0], V.COLOURS["white"][0]
    between = ((grey > lo + 20) & (grey < hi - 20)).sum()
    assert between >= 8                                                 # a ring of blended pixels


def test_backgrounds_are_dark_and_distinct_from_objects():
    for bg in (BackgroundSpec("solid", ("navy",)), BackgroundSpec("gradient", ("maroon", "black"), True),
               BackgroundSpec("landscape", (), True, 7)):
        img = background(_scene([ObjectSpec("circle", "red", "small", "static")], bg=bg))
        assert img.max() <= 140                                         # objects are >= 200
    grad = background(_scene([ObjectSpec("circle", "red", "small", "static")],
                             bg=BackgroundSpec("gradient", ("maroon", "navy"))))
    assert tuple(grad[0, 0]) == V.BACKGROUND_COLOURS["maroon"]
    assert tuple(grad[-1, 0]) == V.BACKGROUND_COLOURS["navy"]
    ground = background(_scene([ObjectSpec("circle", "red", "small", "static")],
                               bg=BackgroundSpec("solid", ("black",), True)))
    band = ground[int(64 * (1 - V.GROUND_FRACTION)) + 2:]
    assert np.abs(band.reshape(-1, 3).mean(0) - V.GROUND_RGB).max() < 20 and band.std() > 3


def test_occluder_hides_what_passes_behind_it():
    spec = sample_scene(3, 96, 64, 17, 8, event="occluder", n_objects=1)
    video = render(spec)
    x0, x1 = occluder_span(spec)
    assert (video[:, :, x0:x1] == V.OCCLUDER_RGB).all()                 # always in front
    track = trajectory(spec, 0)
    r = radius_px(spec, spec.objects[0])
    colour = V.COLOURS[spec.objects[0].colour]
    hidden = [k for k in range(17) if x0 <= track[k, 0] - r and track[k, 0] + r <= x1]
    assert hidden and all(not (video[k] == colour).all(-1).any() for k in hidden)
    assert (video[0] == colour).all(-1).any() and (video[-1] == colour).all(-1).any()


def test_brush_trail_lasts():
    obj = ObjectSpec("square", "orange", "small", "right", 0.2, 0.5, 0.5)
    spec = _scene([obj], event=EventSpec("brush", target=0), t=17)
    video = render(spec)
    x0, y0 = (int(v) for v in trajectory(spec, 0)[0])
    assert tuple(video[0, y0, x0]) == V.COLOURS["orange"]
    assert tuple(video[-1, y0, x0]) == trail_colour("orange")            # the start is marked for good
    trail = (video == trail_colour("orange")).all(-1).sum(axis=(1, 2))
    assert (np.diff(trail) >= 0).all() and trail[-1] > 40


def test_camera_pan_shifts_the_landscape():
    obj = ObjectSpec("circle", "white", "small", "static", 0.5, 0.2)
    spec = _scene([obj], bg=BackgroundSpec("landscape", (), False, 11),
                  event=EventSpec("pan", pan_speed=0.5), t=9, fps=8.0)   # 4 pixels per frame, whole
    video = render(spec).astype(int)
    shift = int(round(camera_offsets(spec)[1]))
    assert shift == 4
    rows = slice(int(0.6 * 64), 64)                                      # below the object
    np.testing.assert_array_equal(video[1, rows], np.roll(video[0, rows], -shift, axis=1))
    assert not np.array_equal(video[0, rows], video[1, rows])
