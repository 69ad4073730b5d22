"""Clip utilities (core functions and their nodes): stitching with overlap, trim, pick, resize,
frame-count fitting and transition curves."""

import pytest
import torch

from sora_core.media import clips
from comfyui_sora.headless import workflow
from sora_core.media.clips import ClipError
from sora_core.geometry import GeometryError


@pytest.fixture(scope="module")
def pack():
    return workflow.load_pack()


def numbered(frames, h=4, w=6, offset=0):
    """A clip whose frame t is filled with the value (offset + t) / 100, so frames can be identified."""
    v = (torch.arange(frames, dtype=torch.float32) + offset) / 100
    return v[:, None, None, None].expand(frames, h, w, 3).clone()


def ids(clip):
    return [round(float(f.mean()) * 100) for f in clip]


def test_concat_node_drops_overlap_from_second_start_or_first_end(pack):
    node = pack.NODE_CLASS_MAPPINGS["SoraConcatClips"]()
    a, b = numbered(5), numbered(4, offset=10)
    out, n = node.concat(a, b, 2, "second_start", fade=False)
    assert ids(out) == [0, 1, 2, 3, 4, 12, 13] and n == 7
    out, n = node.concat(a, b, 2, "first_end", fade=False)
    assert ids(out) == [0, 1, 2, 10, 11, 12, 13] and n == 7
    with pytest.raises(ClipError, match="would drop all 4 frames of clip 2"):
        node.concat(a, b, 4, "second_start", fade=False)
    with pytest.raises(ClipError, match=r"clip 2 has frames of \(4, 8\)"):
        node.concat(a, numbered(3, w=8), 0, "second_start")


def test_concat_node_cross_fades_the_overlap_by_default(pack):
    """The shared frames pass from the first clip's version (3, 4) to the second's (10, 11) with
    weights 1/3 and 2/3 of the second, whichever side drop_from names."""
    node = pack.NODE_CLASS_MAPPINGS["SoraConcatClips"]()
    a, b = numbered(5), numbered(4, offset=10)
    for drop_from in ("second_start", "first_end"):
        out, n = node.concat(a, b, 2, drop_from)
        assert n == 7 and ids(out) == [0, 1, 2, round(3 * 2 / 3 + 10 / 3), round(4 / 3 + 11 * 2 / 3), 12, 13]
    assert torch.equal(node.concat(a, b, 0, "second_start")[0], torch.cat([a, b]))
    with pytest.raises(ClipError, match=r"overlap=5 must be in 1..4"):
        node.concat(a, b, 5, "second_start")
    with pytest.raises(ClipError, match="differ in more than their length"):
        node.concat(a, numbered(3, w=8), 1, "second_start")


def test_trim_and_pick_nodes(pack):
    trim = pack.NODE_CLASS_MAPPINGS["SoraTrimClip"]()
    pick = pack.NODE_CLASS_MAPPINGS["SoraPickFrames"]()
    c = numbered(10)
    assert ids(trim.trim(c, 2, 3)[0]) == [2, 3, 4, 5, 6]
    assert ids(trim.trim(c, 0, 0)[0]) == list(range(10))
    with pytest.raises(ClipError, match="selects no frames of a 10-frame clip"):
        trim.trim(c, 6, 4)
    assert ids(pick.pick(c, "0, -1, 2:8:3")[0]) == [0, 9, 2, 5]
    assert pick.pick(c, "::2")[1] == 5
    with pytest.raises(ClipError, match="frame index 10 is outside a 10-frame clip"):
        pick.pick(c, "1, 10")
    with pytest.raises(ClipError, match="'x' is not an index"):
        pick.pick(c, "1, x")


@pytest.mark.parametrize("mode", clips.RESIZE_MODES)
def test_resize_modes_give_the_requested_size(pack, mode):
    node = pack.NODE_CLASS_MAPPINGS["SoraResizeClip"]()
    c = torch.rand(3, 20, 40, 3)
    (out,) = node.resize(c, 16, 16, mode)
    assert out.shape == (3, 16, 16, 3) and 0 <= out.min() and out.max() <= 1
    if mode == "pad":                                  # 40x20 fitted into 16x16 leaves black bars
        assert out[:, :3].abs().max() == 0 and out[:, 8].abs().max() > 0


def test_fit_frames_trims_pads_or_names_valid_counts():
    c = numbered(7)
    assert clips.fit_frames(c, 4, "trim").shape[0] == 5
    padded = clips.fit_frames(c, 4, "pad")
    assert padded.shape[0] == 9 and ids(padded)[-3:] == [6, 6, 6]
    assert clips.fit_frames(numbered(9), 4, "error").shape[0] == 9
    with pytest.raises(GeometryError, match="7 frames.*1 \\+ 4\\*k"):
        clips.fit_frames(c, 4, "error")


def test_transition_weights_follow_curve_and_range():
    w = clips.transition_weights(11, "linear", 0.2, 0.6)
    assert w[:3].tolist() == [0.0, 0.0, 0.0] and w[-4:].tolist() == [1.0] * 4
    assert bool((w[1:] >= w[:-1]).all())
    assert w[4].item() == pytest.approx(0.5)
    ease = clips.transition_weights(11, "ease_in_out", 0.0, 1.0)
    assert ease[1] < w.new_tensor(0.1) and ease[5].item() == pytest.approx(0.5)
    with pytest.raises(ClipError, match="curve 'wobble' is unknown"):
        clips.transition_weights(5, "wobble")
    with pytest.raises(ClipError, match="0 <= start < end <= 1"):
        clips.transition_weights(5, "linear", 0.5, 0.5)
    a, b = torch.zeros(1, 2, 11, 2, 2), torch.ones(1, 2, 11, 2, 2)
    mixed = clips.blend(a, b, w, time_dim=2)
    assert torch.allclose(mixed[0, 0, :, 0, 0], w)


def test_clip_video_round_trip():
    c = torch.rand(5, 8, 8, 3)
    v = clips.clip_to_video(c)
    assert v.shape == (1, 3, 5, 8, 8) and v.min() >= -1 and v.max() <= 1
    assert torch.allclose(clips.video_to_clip(v), c, atol=1e-6)
