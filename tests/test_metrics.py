"""World metrics: the ideal value on ground-truth renders, a clearly worse one on corrupted videos."""

import numpy as np
import pytest
import torch

from sora_core.media.video_io import frames_to_tensor
from sora_core.world import metrics as M
from sora_core.world import vocab as V
from sora_core.prompts.expand import prompt_to_scene
from sora_core.world.render import render
from sora_core.world.scene import BackgroundSpec, EventSpec, ObjectSpec, SceneSpec


def clip(prompt="a red ball moving right", seed=0, frames=17, width=64, height=64):
    return render(prompt_to_scene(prompt, seed, width=width, height=height, frames=frames))


def steady_clip(frames=17):
    """A red ball crossing the frame at constant speed, fully inside it all the time."""
    ball = ObjectSpec("circle", "red", "large", "right", x=0.2, y=0.5, speed=0.6 / (frames / 8))
    spec = SceneSpec((ball,), BackgroundSpec("solid", ("navy",)), EventSpec(), 64, 64, frames, 8.0)
    return render(spec)


def noisy(frames, sigma=25.0, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(frames + rng.normal(0, sigma, frames.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# Frame differences
# ---------------------------------------------------------------------------------------------

def test_temporal_flicker():
    truth = clip()
    assert M.temporal_flicker(truth[:1]) == 1.0
    assert M.temporal_flicker(np.repeat(truth[:1], 5, 0)) == 1.0
    good = M.temporal_flicker(truth)
    assert good > 0.98
    assert M.temporal_flicker(noisy(truth)) < good - 0.05
    shuffled = truth[np.random.default_rng(0).permutation(len(truth))]
    assert M.temporal_flicker(shuffled) < good


def test_loop_seam_ratio():
    truth = steady_clip()
    ping_pong = np.concatenate([truth, truth[-2:0:-1]])     # a perfect loop: 0..16, 15..1, (0...)
    assert M.loop_seam_ratio(ping_pong) == pytest.approx(1.0, abs=0.2)
    cut = M.loop_seam_ratio(truth[:12])                      # the ball jumps back at the seam
    assert cut > 2.5
    still = np.repeat(truth[:1], 4, 0)
    assert M.loop_seam_ratio(still) == 1.0


def test_boundary_continuity():
    truth = steady_clip(frames=25)
    assert M.boundary_continuity(truth, join=13) == pytest.approx(1.0, abs=0.25)
    other = clip("a green box moving up on a gray background", seed=3, frames=25)
    jump = np.concatenate([truth[:13], other[13:]])
    assert M.boundary_continuity(jump, join=13) > 3.0
    with pytest.raises(ValueError, match="join"):
        M.boundary_continuity(truth, join=0)


def test_transition_smoothness():
    truth = steady_clip(frames=25)
    smooth = M.transition_smoothness(truth)
    assert smooth < 1.3
    other = clip("a green box moving up on a gray background", seed=3, frames=25)
    cut = np.concatenate([truth[:12], other[12:]])
    assert M.transition_smoothness(cut) > 2 * smooth
    assert M.transition_smoothness(cut, start=0, end=12) == pytest.approx(smooth, abs=0.3)


# ---------------------------------------------------------------------------------------------
# Reconstruction and structure
# ---------------------------------------------------------------------------------------------

def test_psnr_ssim():
    truth = clip()
    assert M.reconstruction_psnr(truth, truth) == M.PSNR_CAP
    assert M.reconstruction_ssim(truth, truth) == pytest.approx(1.0, abs=1e-4)
    bad = noisy(truth, sigma=20)
    psnr, ssim = M.reconstruction_psnr(truth, bad), M.reconstruction_ssim(truth, bad)
    assert 15 < psnr < 25 and ssim < 0.7
    mild = noisy(truth, sigma=4)
    assert M.reconstruction_psnr(truth, mild) > psnr + 10
    # float videos in [-1, 1] ((3, T, H, W) or batched) give the same numbers as uint8 frames
    assert M.reconstruction_psnr(frames_to_tensor(truth)[None], frames_to_tensor(bad)[None]) == \
        pytest.approx(psnr, abs=1e-3)
    with pytest.raises(ValueError, match="same shape"):
        M.reconstruction_psnr(truth, truth[:5])


def test_first_frame_psnr():
    truth = clip()
    assert M.first_frame_psnr(truth[0], truth) == M.PSNR_CAP
    assert M.first_frame_psnr(truth[0], noisy(truth, 30)) < 22


def test_structure_preservation():
    truth = clip("a large yellow box moving right", seed=1)
    assert M.object_masks(truth).any()
    assert M.structure_preservation(truth, truth) == 1.0
    swapped = truth[..., ::-1].copy()               # other colours, same structure
    assert M.structure_preservation(truth, swapped) > 0.8
    shifted = np.roll(truth, 12, axis=2)            # objects moved sideways
    assert M.structure_preservation(truth, shifted) < 0.5
    background = np.repeat(np.median(truth, axis=0, keepdims=True).astype(np.uint8), len(truth), 0)
    vanished = np.where(M.object_masks(truth)[..., None], background, truth)
    assert M.structure_preservation(truth, vanished) < 0.1


def test_metric_inputs_are_checked():
    with pytest.raises(ValueError, match=r"uint8 RGB frames of shape \(T, H, W, 3\)"):
        M.temporal_flicker(np.zeros((4, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="at least 2 frames"):
        M.loop_seam_ratio(np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="float video"):
        M.reconstruction_psnr(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8))


# ---------------------------------------------------------------------------------------------
# Object level (through the analytic captioner)
# ---------------------------------------------------------------------------------------------

def _analyze(frames):
    from sora_core.world.captioner import analyze
    return analyze(frames, 8.0)


def recolour(frames, start=0, colour="blue"):
    """The objects' pixels from frame ``start`` on painted in another palette colour."""
    from sora_core.world import vocab as V
    out = frames.copy()
    mask = M.object_masks(frames)
    mask[:start] = False
    out[mask] = V.COLOURS[colour]
    return out


def remove_objects(frames, start=0):
    """The objects erased (painted with the temporal median background) from frame ``start`` on."""
    out = frames.copy()
    background = np.median(frames, axis=0).astype(np.uint8)
    mask = M.object_masks(frames)
    mask[:start] = False
    grown = np.stack([cv2_dilate(m) for m in mask])
    out[grown] = np.broadcast_to(background, out.shape)[grown]
    return out


def cv2_dilate(mask):
    import cv2
    return cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0


def test_prompt_adherence():
    prompt = "a red ball moving right"
    spec = prompt_to_scene(prompt, 0, width=64, height=64, frames=17)
    truth = render(spec)
    for expected in (prompt, spec):
        got = M.prompt_adherence(_analyze(truth), expected)
        assert got["colour"] == got["shape"] == got["motion"] == got["count"] == 1.0
    assert M.prompt_adherence(_analyze(truth), spec)["size"] == 1.0
    assert M.prompt_adherence(_analyze(truth), "a red ball moving")["motion"] == 1.0
    assert M.prompt_adherence(_analyze(truth), "a red ball")["motion"] is None, "not asked for: not scored"
    swapped = M.prompt_adherence(_analyze(truth[..., ::-1].copy()), prompt)   # red -> blue
    assert swapped["colour"] == 0.0 and swapped["shape"] == 1.0
    reversed_ = M.prompt_adherence(_analyze(truth[::-1].copy()), prompt)      # now moving left
    assert reversed_["motion"] == 0.0
    vanished = M.prompt_adherence(_analyze(remove_objects(truth)), prompt)
    assert vanished["count"] == 0.0 and vanished["colour"] == 0.0


def test_prompt_adherence_two_objects():
    prompt = "a green box moving up and a yellow triangle moving left"
    spec = prompt_to_scene(prompt, 2, width=96, height=64, frames=17)
    truth = render(spec)
    got = M.prompt_adherence(_analyze(truth), prompt)
    assert got["colour"] == got["shape"] == got["motion"] == got["count"] == 1.0
    other = M.prompt_adherence(_analyze(truth), "a green box moving up and a red triangle moving left")
    assert other["colour"] == 0.5


def _wrapping(shape, colour="red", x=0.8, y=0.5):
    o = ObjectSpec(shape, colour, "large", "right", x=x, y=y, speed=0.5)
    return render(SceneSpec((o,), BackgroundSpec("solid", ("navy",)), EventSpec(), 64, 64, 17, 8.0))


def test_count_is_objects_at_once_not_identities():
    """An object read as a box before it wraps around and as a ball after it is one object that
    changed shape: two identities (``tracks``), one object at once (``count``)."""
    box, ball = _wrapping("square"), _wrapping("circle")
    changed = np.concatenate([box[:6], ball[6:]])             # wraps out at frame 5, back in at 6
    a = _analyze(changed)
    assert len(a.objects) == 2 and a.most_at_once() == 1
    got = M.prompt_adherence(a, "a red box moving right")
    assert got["count"] == 1.0 and got["tracks"] == 0.0
    assert M.prompt_adherence(_analyze(box), "a red box moving right")["tracks"] == 1.0


def test_count_catches_a_second_object_seen_for_two_frames():
    one = _wrapping("square")
    other = _wrapping("circle", colour="yellow", x=0.2, y=0.2)
    two = np.where(M.object_masks(other)[..., None], other, one)
    flash = one.copy()
    flash[8] = two[8]                                         # one frame only: not an object
    lasting = one.copy()
    lasting[8:10] = two[8:10]
    assert _analyze(two).most_at_once() == 2 and _analyze(one).most_at_once() == 1
    assert _analyze(flash).most_at_once() == 1
    assert _analyze(lasting).most_at_once() == 2
    assert M.prompt_adherence(_analyze(lasting), "a red box moving right")["count"] == 0.0
    assert _analyze(two[:1]).most_at_once() == 2, "a single image: the most in any frame"


def _shaded(frames, colour, rows=slice(None)):
    """The objects' pixels in ``rows`` (the lower part of each object, say) painted in ``colour``."""
    out = frames.copy()
    mask = M.object_masks(frames)
    part = np.zeros_like(mask)
    part[:, rows] = mask[:, rows]
    out[part] = V.COLOURS[colour]
    return out


def test_an_object_in_two_neighbouring_shades_is_one_object():
    """A VAE or a generator smears a moving object's colour toward its palette neighbour: a yellow
    box whose lower rows read orange is one object; the same box half blue is two touching ones."""
    box = _wrapping("square", colour="yellow", x=0.5, y=0.5)
    rows = slice(34, 64)                                      # the box spans rows ~22..42
    half_orange, half_blue = _shaded(box, "orange", rows), _shaded(box, "blue", rows)
    for clip_ in (half_orange, half_blue):
        assert max(len(d) for d in _analyze(clip_).detections) == 2, "both shades are detected"
    assert _analyze(half_orange).most_at_once() == 1
    assert _analyze(half_blue).most_at_once() == 2
    assert M.prompt_adherence(_analyze(half_orange), "a yellow box moving right")["count"] == 1.0


def test_neighbouring_colours_apart_are_two_objects():
    """A red and an orange object count as two: they are apart in most frames, touching or not."""
    red = _wrapping("square", colour="red", x=0.2, y=0.5)
    orange = _wrapping("circle", colour="orange", x=0.6, y=0.5)
    both = np.where(M.object_masks(orange)[..., None], orange, red)
    assert _analyze(both).most_at_once() == 2


def occluder_clip():
    spec = prompt_to_scene("a small orange box moving right, passing behind a bar", 1,
                           width=96, height=64, frames=33)
    return render(spec)


def test_object_permanence():
    truth = occluder_clip()
    a = _analyze(truth)
    assert M.object_permanence(a) == 1.0
    assert M.object_permanence(_analyze(clip())) is None, "no occluder: not applicable"
    hidden = a.occlusions[0].hidden_frame
    vanished = remove_objects(truth, start=hidden)
    assert M.object_permanence(_analyze(vanished)) == 0.0
    changed = recolour(truth, start=hidden, colour="purple")
    assert M.object_permanence(_analyze(changed)) == 0.0


def test_identity_drift_over_a_long_video():
    ball = ObjectSpec("circle", "red", "large", "right", x=0.15, y=0.5, speed=0.1)   # stays in view
    box = ObjectSpec("square", "white", "small", "static", x=0.5, y=0.15)
    spec = SceneSpec((ball, box), BackgroundSpec("gradient", ("navy", "black")), EventSpec(), 96, 64, 81, 8.0)
    truth = render(spec)                                     # 10 seconds
    assert M.identity_drift(_analyze(truth)) == 0.0
    drifted = truth.copy()
    red = np.all(np.abs(truth.astype(int) - (232, 40, 40)) < 60, axis=-1)
    red[:40] = False
    drifted[red] = (40, 204, 64)                             # the ball turns green half-way
    assert M.identity_drift(_analyze(drifted)) == 0.5        # one of the two objects changed


def test_identity_kept_per_attribute_through_a_clip():
    """colour_constant / shape_constant: 1 on a render, 0 when the object turns another colour half-way
    (shape kept), and one misread frame is not a change."""
    truth = steady_clip()
    assert M.identity_kept(_analyze(truth)) == {"colour_constant": 1.0, "shape_constant": 1.0}
    red = np.all(np.abs(truth.astype(int) - (232, 40, 40)) < 60, axis=-1)
    turned = truth.copy()
    later = red.copy()
    later[:9] = False
    turned[later] = (40, 204, 64)                            # the red ball turns green half-way
    assert M.identity_kept(_analyze(turned)) == {"colour_constant": 0.0, "shape_constant": 1.0}
    blip = truth.copy()
    one = red.copy()
    one[:8], one[9:] = False, False
    blip[one] = (40, 204, 64)                                # green in frame 8 only
    assert M.identity_kept(_analyze(blip))["colour_constant"] == 1.0
    assert M.identity_kept(_analyze(truth[:2])) == {"colour_constant": None, "shape_constant": None}


def test_background_is_scored_when_the_prompt_asks_for_it():
    solid = render(prompt_to_scene("a red ball moving right on a plain navy background", 0, width=64, height=64,
                                   frames=9))
    a = _analyze(solid)
    assert M.prompt_adherence(a, "a red ball moving right on a plain navy background")["background"] == 1.0
    assert M.prompt_adherence(a, "a red ball on a plain green background")["background"] == 0.0
    assert M.prompt_adherence(a, "a red ball on a gradient from navy to black")["background"] == 0.0
    assert M.prompt_adherence(a, "a red ball moving right")["background"] is None, "not asked for: not scored"
    spec = prompt_to_scene("a red ball on a gradient from navy to black", 1, width=64, height=64, frames=9)
    g = _analyze(render(spec))
    assert M.prompt_adherence(g, "a red ball on a gradient from navy to black")["background"] == 1.0
    assert M.prompt_adherence(g, "a red ball on a gradient from black to navy")["background"] == 0.0, "top first"
    assert M.prompt_adherence(g, spec)["background"] == 1.0
