"""The native-latent nodes (nodes/native.py, sora_core/diffusion/latent_edits.py): for the latent
geometries of Wan 2.1 (4x8x8, 16 channels), Wan 2.2 TI2V 5B (4x16x16, 48) and LTX-Video (8x32x32, 128),
read from a fake of ComfyUI's VAE object, every node writes the right pixel frames into the right latent
frames and masks them, against indices worked out by hand; mismatches are named; and colour matching
at joins removes the drift of a chain of extensions (sora_core/media/clips.match_colors)."""

from __future__ import annotations

import math

import pytest
import torch

from comfyui_sora.nodes import native
from sora_core.diffusion import latent_edits
from sora_core.diffusion.conditions import ConditionError
from sora_core.media import clips


class FakeVAE:
    """ComfyUI's comfy.sd.VAE as the nodes see it (the attributes of a video VAE in comfy/sd.py).
    ``encode`` checks the frame count and size, and gives every latent frame the value of the last
    pixel frame it encodes (frame 0 alone, then groups of ft), in every channel and cell."""

    def __init__(self, ft: int, fs: int, channels: int, formula: bool = True):
        self.ft, self.fs = ft, fs
        self.latent_dim, self.latent_channels = 3, channels
        self.downscale_ratio = (lambda a: max(0, math.floor((a + ft - 1) / ft)), fs, fs)
        self.upscale_ratio = (lambda a: max(0, a * ft - ft + 1), fs, fs)
        if formula:
            self.downscale_index_formula = (ft, fs, fs)
        self.calls = []

    def spacial_compression_encode(self):
        return self.downscale_ratio[-1]

    def temporal_compression_decode(self):
        return round(self.upscale_ratio[0](8192) / 8192)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        T, H, W, _ = images.shape
        assert (T - 1) % self.ft == 0 and H % self.fs == 0 and W % self.fs == 0, (T, H, W)
        self.calls.append(T)
        last = [0] + [k * self.ft for k in range(1, (T - 1) // self.ft + 1)]
        values = images[last].mean(dim=(1, 2, 3))
        return values.view(1, 1, -1, 1, 1).expand(1, self.latent_channels, -1, H // self.fs, W // self.fs).clone()


GEOMETRIES = {"wan2.1": (4, 8, 16), "wan2.2-5b": (4, 16, 48), "ltx": (8, 32, 128)}


def video(frames: int, size: int = 64, offset: int = 0) -> torch.Tensor:
    """IMAGE (T, H, W, 3) whose frame i is flat at (offset + i + 1) / 100: latents name their frames."""
    v = (torch.arange(frames, dtype=torch.float32) + offset + 1) / 100
    return v.view(-1, 1, 1, 1).expand(frames, size, size, 3).clone()


def empty(name: str, frames: int = 17, size: int = 64, batch: int = 1) -> dict:
    ft, fs, ch = GEOMETRIES[name]
    return {"samples": torch.zeros(batch, ch, 1 + (frames - 1) // ft, size // fs, size // fs)}


def frames_of(latent: dict) -> list:
    """Which pixel frame (1-based value * 100, 0 = free) each latent frame holds."""
    s = latent["samples"]
    assert torch.all(s == s[:, :1, :, :1, :1]), "a latent frame is not uniform"
    return [round(float(v) * 100) for v in s[0, 0, :, 0, 0]]


def mask_of(latent: dict) -> list:
    m = latent["noise_mask"]
    B, C, T, h, w = latent["samples"].shape
    assert m.shape == (B, 1, T, h, w)
    assert torch.all(m == m[:, :, :, :1, :1])
    return [round(float(v), 3) for v in m[0, 0, :, 0, 0]]


# ---------------------------------------------------------------------------------------------
# Placements and masks, by hand, per geometry
# ---------------------------------------------------------------------------------------------
# 17-frame, 64x64 outputs: Wan (ft 4) latent frames hold pixel frames 0 | 1-4 | 5-8 | 9-12 | 13-16,
# LTX (ft 8): 0 | 1-8 | 9-16. A value n below is pixel frame n - 1 of the given video.

@pytest.mark.parametrize("name, k, frames, mask, overlap", [
    ("wan2.1", 2, [13, 17, 0, 0, 0], [0, 0, 1, 1, 1], 5),        # last 5 frames (12..16): 12 alone, 13..16
    ("wan2.2-5b", 1, [17, 0, 0, 0, 0], [0, 1, 1, 1, 1], 1),
    ("ltx", 2, [9, 17, 0], [0, 0, 1], 9),                        # last 9 frames (8..16): 8 alone, 9..16
])
def test_extend_forward(name, k, frames, mask, overlap):
    vae = FakeVAE(*GEOMETRIES[name])
    out, n = native.SoraNativeExtendForward().build(vae, video(17), empty(name), k, 1.0)
    assert (frames_of(out), mask_of(out), n) == (frames, mask, overlap)


@pytest.mark.parametrize("name, k, frames, mask, overlap", [
    ("wan2.1", 2, [0, 0, 0, 4, 8], [1, 1, 1, 0, 0], 8),          # first 8 frames as two groups at the end
    ("wan2.2-5b", 1, [0, 0, 0, 0, 4], [1, 1, 1, 1, 0], 4),
    ("ltx", 1, [0, 0, 8], [1, 1, 0], 8),
])
def test_extend_backward(name, k, frames, mask, overlap):
    vae = FakeVAE(*GEOMETRIES[name])
    out, n = native.SoraNativeExtendBackward().build(vae, video(17), empty(name), k, 1.0)
    assert (frames_of(out), mask_of(out), n) == (frames, mask, overlap)
    assert vae.calls == [1 + n]                  # one warm-up frame in front of the head (causal VAE)


@pytest.mark.parametrize("name, frames, mask, drop_end", [
    ("wan2.1", [1, 0, 0, 0, 1], [0, 1, 1, 1, 0], 3),
    ("wan2.2-5b", [1, 0, 0, 0, 1], [0, 1, 1, 1, 0], 3),
    ("ltx", [1, 0, 1], [0, 1, 0], 7),
])
def test_seamless_loop(name, frames, mask, drop_end):
    vae = FakeVAE(*GEOMETRIES[name])
    out, start, end = native.SoraNativeSeamlessLoop().build(vae, video(1), empty(name), 1.0)
    assert (frames_of(out), mask_of(out), start, end) == (frames, mask, 1, drop_end)


@pytest.mark.parametrize("name, k, frames, mask, overlaps", [
    ("wan2.1", 1, [17, 0, 0, 0, 54], [0, 1, 1, 1, 0], (1, 4)),   # a's frame 16; b's frames 0..3 (b = 51..)
    ("wan2.2-5b", 2, [13, 17, 0, 54, 58], [0, 0, 1, 0, 0], (5, 8)),
    ("ltx", 1, [17, 0, 58], [0, 1, 0], (1, 8)),
])
def test_connect(name, k, frames, mask, overlaps):
    vae = FakeVAE(*GEOMETRIES[name])
    out, a, b = native.SoraNativeConnect().build(vae, video(17), video(17, offset=50), empty(name), k, 1.0)
    assert (frames_of(out), mask_of(out), (a, b)) == (frames, mask, overlaps)


@pytest.mark.parametrize("name, spec, frames, mask", [
    ("wan2.1", "0, 6, -1", [1, 0, 2, 0, 3], [0, 1, 0, 1, 0]),     # frame 6 is in 5..8, -1 = 16 in 13..16
    ("wan2.2-5b", "4, 13", [0, 1, 0, 0, 2], [1, 0, 1, 1, 0]),     # 4 in 1..4, 13 in 13..16
    ("ltx", "0, -1", [1, 0, 2], [0, 1, 0]),
])
def test_pin_images(name, spec, frames, mask):
    vae = FakeVAE(*GEOMETRIES[name])
    images = video(3)                                           # values 1, 2, 3: one image per listed frame
    (out,) = native.SoraNativePinImages().build(vae, images[:len(spec.split(","))], empty(name), spec, 1.0)
    assert (frames_of(out), mask_of(out)) == (frames, mask)


@pytest.mark.parametrize("name, first, stop, mask", [
    ("wan2.1", 5, 9, [0, 0, 1, 0, 0]),                           # frames 5..8 = latent 2
    ("wan2.1", 4, 10, [0, 1, 1, 1, 0]),                          # 4 in 1..4, 9 in 9..12
    ("wan2.2-5b", 0, 1, [1, 0, 0, 0, 0]),
    ("wan2.2-5b", -4, 0, [0, 0, 0, 0, 1]),
    ("ltx", 9, 0, [0, 0, 1]),
    ("ltx", 0, 0, [1, 1, 1]),
])
def test_sdedit_span(name, first, stop, mask):
    vae = FakeVAE(*GEOMETRIES[name])
    (out,) = native.SoraNativeSDEditSpan().build(vae, video(17), first, stop)
    ft = GEOMETRIES[name][0]
    assert frames_of(out) == [1] + [1 + k * ft for k in range(1, 17 // ft + 1)]    # the whole source
    assert mask_of(out) == mask


def test_strength_sets_the_mask_and_batches_share_the_frames():
    vae = FakeVAE(*GEOMETRIES["wan2.1"])
    out, _ = native.SoraNativeExtendForward().build(vae, video(17), empty("wan2.1", batch=3), 1, 0.75)
    assert out["samples"].shape[0] == 3 and torch.equal(out["samples"][0], out["samples"][2])
    assert mask_of(out) == [0.25, 1, 1, 1, 1] and out["noise_mask"].shape[0] == 3


def test_a_later_node_keeps_the_mask_of_an_earlier_one():
    """Pin Images after Extend Forward: the extension's kept frames stay kept."""
    vae = FakeVAE(*GEOMETRIES["wan2.1"])
    ext, _ = native.SoraNativeExtendForward().build(vae, video(17), empty("wan2.1"), 1, 1.0)
    (out,) = native.SoraNativePinImages().build(vae, video(1, offset=40), ext, "-1", 1.0)
    assert (frames_of(out), mask_of(out)) == ([17, 0, 0, 0, 41], [0, 1, 1, 1, 0])


def test_the_geometry_is_read_from_the_vae():
    assert native.latent_spec(FakeVAE(4, 8, 16)) == latent_edits.LatentSpec(4, 8, 16)
    assert native.latent_spec(FakeVAE(8, 32, 128, formula=False)) == latent_edits.LatentSpec(8, 32, 128)
    image_vae = FakeVAE(4, 8, 16)
    image_vae.latent_dim = 2
    with pytest.raises(ConditionError, match="not a video VAE"):
        native.SoraNativeExtendForward().build(image_vae, video(17), empty("wan2.1"), 1, 1.0)


def test_a_latent_for_another_vae_is_named():
    with pytest.raises(ConditionError) as e:
        native.SoraNativeExtendForward().build(FakeVAE(*GEOMETRIES["wan2.2-5b"]), video(17), empty("wan2.1"), 1, 1.0)
    msg = str(e.value)
    assert "Sora Native Extend Forward" in msg and "latent has 16 channels but the VAE makes 48" in msg
    assert "4x16x16, 48 channels" in msg


def test_frames_of_another_size_and_short_videos_are_named():
    vae = FakeVAE(*GEOMETRIES["wan2.1"])
    with pytest.raises(ConditionError, match=r"video frames are 48x48 px .* is 64x64 px at the VAE's spatial factor 8"):
        native.SoraNativeExtendBackward().build(vae, video(17, size=48), empty("wan2.1"), 1, 1.0)
    with pytest.raises(ConditionError, match="need 8 pixel frames"):
        native.SoraNativeExtendBackward().build(vae, video(5), empty("wan2.1"), 2, 1.0)
    with pytest.raises(ConditionError, match="does not fit an output of 2 latent frames"):
        native.SoraNativeConnect().build(vae, video(17), video(17), empty("wan2.1", frames=5), 3, 1.0)
    with pytest.raises(ConditionError, match="fill all 2 latent frames .* nothing is left to generate"):
        native.SoraNativeConnect().build(vae, video(17), video(17), empty("wan2.1", frames=5), 1, 1.0)
    with pytest.raises(ValueError, match="Sora Native SDEdit Span: .*video has 16 frames"):
        native.SoraNativeSDEditSpan().build(vae, video(16), 0, 0)
    with pytest.raises(ConditionError, match="select nothing"):
        native.SoraNativeSDEditSpan().build(vae, video(17), 9, 5)
    with pytest.raises(ValueError, match="frame index 17 is outside a 17-frame clip"):
        native.SoraNativePinImages().build(vae, video(1), empty("wan2.1"), "17", 1.0)


def test_a_vae_that_encodes_to_another_layout_is_named():
    vae = FakeVAE(*GEOMETRIES["wan2.1"])
    vae.latent_channels = 16
    vae.encode = lambda images: torch.zeros(1, 16, 1, 8, 8)          # ignores the frames it was given
    with pytest.raises(ConditionError, match="the VAE encoded 5 frames of 64x64 px to"):
        native.SoraNativeExtendForward().build(vae, video(17), empty("wan2.1"), 2, 1.0)


def test_latent_index_and_span_by_hand():
    assert [latent_edits.latent_index(f, 17, 4) for f in (0, 1, 4, 5, 8, 9, 16, -1)] == [0, 1, 1, 2, 2, 3, 4, 4]
    assert [latent_edits.latent_index(f, 17, 8) for f in (0, 1, 8, 9, 16)] == [0, 1, 1, 2, 2]
    assert latent_edits.latent_span(1, 5, 17, 4) == (1, 2) and latent_edits.latent_span(0, 0, 17, 8) == (0, 3)


# ---------------------------------------------------------------------------------------------
# Colour matching at joins
# ---------------------------------------------------------------------------------------------

def _scene(frames: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 32, 32, 3, generator=g) * 0.5 + 0.25
    motion = torch.linspace(0, 0.05, frames).view(-1, 1, 1, 1)
    return (base + motion).clamp(0, 1)


def _model(context: torch.Tensor, frames: int, seed: int, drift: bool = True) -> torch.Tensor:
    """A stand-in generator: repeats its context, then continues it; with ``drift`` every frame it makes
    comes out a little warmer and darker (what real models do at joins)."""
    cont = context[-1:].expand(frames - context.shape[0], -1, -1, -1)
    clip = torch.cat([context, cont + 0.01 * torch.randn(cont.shape, generator=torch.Generator().manual_seed(seed))])
    return (clip * torch.tensor([1.04, 0.95, 0.9]) - 0.02 if drift else clip).clamp(0, 1)


def _chain(match: bool, drift: bool = True, space: str = "ycbcr", steps: int = 6, overlap: int = 5) -> torch.Tensor:
    """Six chained 17-frame extensions of a scene, stitched as the native workflows do."""
    out = _scene(17, 0)
    for i in range(steps):
        new = _model(out[-overlap:], 17, i, drift)
        if match:
            new = clips.match_colors(new, out, overlap, "start", space)
        out = clips.stitch(out, new, overlap, "second_start")
    return out


def test_colour_matching_removes_drift_over_a_chain_of_extensions():
    def drift(video):                                # colour of the last window against a drift-free chain
        return float((video[-17:].mean(dim=(0, 1, 2)) - truth).abs().max())
    truth = _chain(False, drift=False)[-17:].mean(dim=(0, 1, 2))
    assert drift(_chain(True, drift=False)) < 1e-4   # nothing to correct: nothing changes
    off, on = drift(_chain(False)), drift(_chain(True))
    assert off > 0.3, off                            # six joins: the colour has walked away
    assert on < 0.002, on                            # matched at every join (ycbcr): it stays
    assert drift(_chain(True, space="lab")) < 0.1 * off     # lab: non-linear, a cast comes back to a few %


def test_colour_matching_backward_sides_and_identity():
    ref = _scene(9, 1)
    assert torch.allclose(clips.match_colors(ref[6:], ref, 3, "start"), ref[6:], atol=2e-3)   # already agree
    shifted = (ref * 0.8 + 0.1)
    matched = clips.match_colors(shifted, ref, 4, "end", space="rgb")  # its last 4 = ref's first 4
    assert (matched[-4:].mean((0, 1, 2)) - ref[:4].mean((0, 1, 2))).abs().max() < 1e-4
    flat = torch.full((5, 8, 8, 3), 0.3)                               # no spread: a shift, no blow-up
    assert torch.isfinite(clips.match_colors(flat, ref, 2)).all()
    with pytest.raises(clips.ClipError, match="overlap=10 must be in 1..9"):
        clips.match_colors(ref, ref, 10)
    with pytest.raises(clips.ClipError, match="allowed: start, end"):
        clips.match_colors(ref, ref, 1, "middle")


def test_match_colours_node_can_be_off():
    node = native.SoraMatchColors()
    a = _scene(9, 2)
    (same,) = node.match(a * 0.5, a, 3, "start", "lab", False)
    assert torch.equal(same, a * 0.5)
    (matched,) = node.match(a * 0.5, a, 3, "start", "lab", True)
    assert (matched[:3].mean() - a[-3:].mean()).abs() < 0.01
