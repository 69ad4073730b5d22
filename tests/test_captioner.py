"""The analytic captioner: accuracy on rendered scenes (>= 99% colour / shape / motion over 500
single-object clips), several objects, events, permanence, any grid, robustness, bad input."""

import cv2
import numpy as np
import pytest

from sora_core.world import vocab as V
from sora_core.world.captioner import analyze, caption
from sora_core.world.prompt_parse import parse_prompt
from sora_core.world.render import render
from sora_core.world.scene import (BackgroundSpec, EventSpec, ObjectRequest, ObjectSpec, SceneSpec,
                                   occluder_span, sample_scene, trajectory)


def _accuracy(specs, degrade=None):
    """Fraction of single-object clips where exactly one object is found with each attribute right."""
    hits = {a: 0 for a in ("colour", "shape", "motion", "size", "event", "background")}
    for spec in specs:
        frames = render(spec)
        a = analyze(degrade(frames) if degrade else frames, fps=spec.fps)
        got = a.objects[0] if len(a.objects) == 1 else None
        for attr in ("colour", "shape", "motion", "size"):
            hits[attr] += got is not None and getattr(got, attr) == getattr(spec.objects[0], attr)
        hits["event"] += a.event == spec.event.kind
        hits["background"] += (a.background, a.colours, a.ground) == (
            spec.background.kind, spec.background.colours, spec.background.ground)
    return {k: v / len(specs) for k, v in hits.items()}


def test_single_object_accuracy_over_500_random_scenes():
    rng = np.random.default_rng(0)
    specs = [sample_scene(rng, 64, 64, 9, 8.0, n_objects=1) for _ in range(500)]
    assert {s.event.kind for s in specs} == set(V.EVENTS)               # every event is in the mix
    acc = _accuracy(specs)
    print("captioner accuracy over 500 single-object scenes:", acc)
    assert acc["colour"] >= 0.99 and acc["shape"] >= 0.99 and acc["motion"] >= 0.99
    assert acc["size"] >= 0.98 and acc["event"] >= 0.98 and acc["background"] >= 0.98


def test_robust_to_blur_and_noise():
    rng, noise = np.random.default_rng(1), np.random.default_rng(2)

    def degrade(frames):
        blurred = np.stack([cv2.GaussianBlur(f.astype(np.float32), (0, 0), 0.8) for f in frames])
        return np.clip(blurred + noise.normal(0, 5, frames.shape), 0, 255).astype(np.uint8)
    acc = _accuracy([sample_scene(rng, 64, 64, 9, 8.0, n_objects=1) for _ in range(60)], degrade)
    assert acc["colour"] >= 0.95 and acc["shape"] >= 0.93 and acc["motion"] >= 0.95


def test_blended_rim_is_part_of_the_object():
    """A blurred yellow object over maroon gets an orange rim (the blend of the two); the rim is
    the object's edge, not an orange object of its own (generated clips are this blurry)."""
    rng = np.random.default_rng(5)

    def blur(frames):
        return np.stack([cv2.GaussianBlur(f, (0, 0), 1.2) for f in frames])
    specs = [sample_scene(rng, 64, 64, 9, 8.0, n_objects=1, event="none",
                          objects=[ObjectRequest(colour="yellow")],
                          background=BackgroundSpec("solid", ("maroon",))) for _ in range(40)]
    acc = _accuracy(specs, blur)
    assert acc["colour"] >= 0.95 and acc["shape"] >= 0.95 and acc["motion"] >= 0.95


def test_touching_objects_of_neighbouring_colours_stay_two():
    """Two objects that touch, of colours a rim could also have, are both kept (each has an inside)."""
    for x2, blur in ((0.54, 0), (0.58, 0), (0.54, 1.2), (0.58, 1.2)):     # one component each
        objs = (ObjectSpec("circle", "yellow", "large", "static", 0.36, 0.5),
                ObjectSpec("square", "orange", "small", "static", x2, 0.5))
        spec = SceneSpec(objs, BackgroundSpec("solid", ("maroon",)), EventSpec(), 64, 64, 5, 8.0)
        frames = render(spec)
        if blur:
            frames = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in frames])
        seen = sorted(o.colour for o in analyze(frames, fps=8.0).objects)
        assert seen == ["orange", "yellow"], (x2, blur, seen)


def test_several_objects():
    rng = np.random.default_rng(3)
    n = right = scenes = counted = 0
    for _ in range(40):
        spec = sample_scene(rng, 96, 64, 17, 8.0, n_objects=int(rng.integers(2, 4)))
        a = analyze(render(spec), fps=8.0)
        scenes += 1
        counted += len(a.objects) == len(spec.objects)
        seen = {(o.colour, o.shape): o for o in a.objects}
        for o in spec.objects:
            n += 1
            got = seen.get((o.colour, o.shape))
            right += got is not None and (got.size, got.motion) == (o.size, o.motion)
    assert counted / scenes >= 0.9 and right / n >= 0.9


def test_tracks_follow_the_trajectory_and_bounces_are_counted():
    obj = ObjectSpec("circle", "yellow", "large", "bouncing", 0.5, 0.25)
    spec = SceneSpec((obj,), BackgroundSpec("gradient", ("navy", "black")), EventSpec(), 64, 64, 49, 16.0)
    a = analyze(render(spec), fps=16.0)
    (o,) = a.objects
    truth = trajectory(spec, 0)
    assert o.motion == "bouncing" and o.visible().all()
    assert np.abs(o.positions - truth).max() < 1.0
    y = truth[:, 1]
    true_bounces = int(((np.diff(y)[:-1] > 0) & (np.diff(y)[1:] <= 0)).sum())
    assert true_bounces >= 2 and o.bounces == true_bounces


def test_velocity_is_in_short_sides_per_second():
    obj = ObjectSpec("square", "green", "small", "left", 0.8, 0.5, 0.5)
    for w, h, fps in ((64, 64, 8.0), (128, 96, 16.0)):
        spec = SceneSpec((obj,), BackgroundSpec(), EventSpec(), w, h, 9, fps)
        (o,) = analyze(render(spec), fps=fps).objects
        assert o.motion == "left" and abs(o.velocity[0] + 0.5) < 0.05 and abs(o.velocity[1]) < 0.05


def test_events_background_and_camera():
    pan = sample_scene(5, 96, 64, 17, 8.0, pan_direction="left")
    a = analyze(render(pan), fps=8.0)
    assert a.event == "pan" and a.pan == "left" and a.background == "landscape"
    truth = -np.abs(pan.event.pan_speed) * 64 * np.arange(17) / 8.0
    assert np.abs(a.camera - truth).max() < 0.12 * np.abs(truth).max()
    brush = sample_scene(6, 96, 64, 17, 8.0, event="brush", n_objects=1)
    assert analyze(render(brush)).trails == (brush.objects[0].colour,)
    occ = sample_scene(7, 96, 64, 17, 8.0, event="occluder", n_objects=1)
    a = analyze(render(occ))
    x0, x1 = occluder_span(occ)
    assert a.occluder is not None and abs(a.occluder[0] - x0) <= 1 and abs(a.occluder[1] - x1) <= 1


def _occluder_clip():
    obj = ObjectSpec("circle", "red", "large", "right", 0.1, 0.5, 0.6)
    spec = SceneSpec((obj,), BackgroundSpec("solid", ("navy",)), EventSpec("occluder", 0, 0.5),
                     96, 64, 25, 8.0)
    return spec, render(spec)


def test_permanence_same_object_comes_back():
    spec, frames = _occluder_clip()
    a = analyze(frames, fps=8.0)
    assert len(a.occlusions) == 1
    occ = a.occlusions[0]
    assert occ.before == ("red", "circle", "large") and occ.after == occ.before and occ.same and occ.resolved
    assert occ.hidden_frame < occ.reappeared_frame


def test_permanence_changed_or_vanished_object_is_caught():
    spec, frames = _occluder_clip()
    x1 = occluder_span(spec)[1]
    changed = frames.copy()
    after = changed[:, :, x1:]
    obj = after.max(-1) > 100                                           # the object and its soft edge
    after[obj] = after[obj][:, ::-1]                                    # RGB -> BGR: it comes out blue
    occ = analyze(changed).occlusions[0]
    assert occ.before[0] == "red" and occ.after is not None and occ.after[0] == "blue" and not occ.same
    vanished = frames.copy()
    right = vanished[:, :, x1:]
    right[right.max(-1) > 140] = V.BACKGROUND_COLOURS["navy"]           # it never comes out
    occ = analyze(vanished).occlusions[0]
    assert occ.after is None and not occ.same and occ.resolved


@pytest.mark.parametrize("width,height,frames", [(160, 64, 9), (48, 128, 9), (96, 96, 1)])
def test_any_aspect_ratio_and_single_images(width, height, frames):
    ok = 0
    for seed in range(10):
        spec = sample_scene(seed, width, height, frames, 8.0, n_objects=1)
        a = analyze(render(spec))
        o, got = spec.objects[0], a.objects[0] if len(a.objects) == 1 else None
        motion_ok = frames == 1 or (got is not None and got.motion == o.motion)
        ok += got is not None and (got.colour, got.shape, got.size) == (o.colour, o.shape, o.size) and motion_ok
        if frames == 1 and got is not None:
            assert got.motion == "static"                                  # nothing moves in an image
    assert ok >= 9


def test_caption_speaks_the_world_grammar():
    for seed in range(6):
        frames = render(sample_scene(seed, 96, 64, 17, 8.0))
        text, a = caption(frames, fps=8.0), analyze(frames, fps=8.0)
        p = parse_prompt(text)                                           # the parser reads it back
        assert p.unknown == [] and text[0].isupper() and text.endswith(".")
        assert [(o.colour, o.shape, o.size, o.motion) for o in p.objects] == \
            [(o.colour, o.shape, o.size, o.motion) for o in a.objects]
        assert (p.event or "none") == a.description().event and (p.background or "solid") == a.background
    assert caption(np.zeros((2, 32, 32, 3), np.uint8)) == "No object, on a plain black background."


def test_bad_frames_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        analyze(np.zeros((2, 32, 32, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        analyze(np.zeros((2, 32, 32), np.uint8))
    with pytest.raises(ValueError, match="at least 8x8"):
        analyze(np.zeros((1, 4, 4, 3), np.uint8))
