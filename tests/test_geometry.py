"""Latent geometry: valid frame counts, sizes, latent and token grids, and the errors for bad input."""

import pytest

import argparse
import dataclasses
from types import SimpleNamespace

import numpy as np

from sora_core import configs
from sora_core.geometry import (
    GeometryError, LatentGeometry, ceil_valid_frames, check_frames, check_size, floor_valid_frames,
    frames_for_seconds, frames_for_temporal_patch, group_frames, is_valid_frames, latent_frames,
    latent_geometry_of, nearest_valid_frames, nearest_valid_size, pixel_frames, size_for_aspect,
    size_multiple, token_grid_of)
from sora_core.pipeline import DEFAULT_MODEL_DIR, ModelSpec


@pytest.mark.parametrize("ft", [1, 2, 4])
def test_valid_frames_match_the_causal_rule(ft):
    for t in range(1, 40):
        assert is_valid_frames(t, ft) == (t == 1 or (t - 1) % ft == 0)


@pytest.mark.parametrize("ft", [2, 4])
def test_latent_and_pixel_frames_are_inverse(ft):
    for t_lat in range(1, 12):
        t = pixel_frames(t_lat, ft)
        assert is_valid_frames(t, ft)
        assert latent_frames(t, ft) == t_lat


def test_nearest_valid_frames_is_valid_and_close():
    for t in range(1, 70):
        n = nearest_valid_frames(t, 4)
        assert is_valid_frames(n, 4)
        assert abs(n - t) <= 2


@pytest.mark.parametrize("bad", [0, 2, 3, 4, 16, 18])
def test_invalid_frames_error_names_input_and_allowed(bad):
    with pytest.raises(GeometryError) as e:
        check_frames(bad, 4)
    msg = str(e.value)
    assert f"frames={bad}" in msg and "1 + 4*k" in msg


def test_frames_must_be_int():
    with pytest.raises(GeometryError, match="integer"):
        check_frames(17.0, 4)


@pytest.mark.parametrize("frames,h,w,grid", [
    (1, 64, 64, (1, 8, 8)),        # an image
    (17, 64, 64, (5, 8, 8)),
    (17, 48, 80, (5, 6, 10)),      # wide
    (33, 80, 48, (9, 10, 6)),      # tall
    (9, 256, 448, (3, 32, 56)),
])
def test_latent_and_token_grids(frames, h, w, grid):
    g = LatentGeometry.create(frames, h, w, ft=4, fs=4, patch=(1, 2, 2))
    assert g.token_grid == grid
    assert g.tokens == grid[0] * grid[1] * grid[2]
    assert g.latent_shape(8, batch=2) == (2, 8, grid[0], h // 4, w // 4)
    back = latent_geometry_of(g.latent_shape(8), ft=4, fs=4, patch=(1, 2, 2))
    assert (back.frames, back.height, back.width) == (frames, h, w)
    assert "tokens" in g.describe()


@pytest.mark.parametrize("h,w", [(60, 64), (64, 66), (0, 64), (4, 64)])
def test_bad_sizes_are_rejected_with_nearest(h, w):
    with pytest.raises(GeometryError, match="multiple of 8"):
        LatentGeometry.create(17, h, w, ft=4, fs=4, patch=(1, 2, 2))


def test_temporal_patch_must_divide_latent_frames():
    with pytest.raises(GeometryError, match="temporal patch"):
        LatentGeometry.create(9, 64, 64, ft=4, fs=4, patch=(2, 2, 2))   # 3 latent frames
    assert LatentGeometry.create(5, 64, 64, ft=4, fs=4, patch=(2, 2, 2)).token_grid == (1, 8, 8)


def test_nearest_valid_size_and_aspects():
    assert nearest_valid_size(61, 100, 8) == (64, 104)
    assert nearest_valid_size(1, 1, 8) == (8, 8)
    h, w = size_for_aspect("wide", 64 * 64, 8)
    assert w > h and h % 8 == 0 and w % 8 == 0
    h, w = size_for_aspect("tall", 64 * 64, 8)
    assert h > w
    with pytest.raises(GeometryError, match="allowed"):
        size_for_aspect("round", 4096, 8)


def test_seconds_to_frames():
    assert frames_for_seconds(2.0, 8, 4) == 17
    assert frames_for_seconds(0.01, 8, 4) == 1
    with pytest.raises(GeometryError):
        frames_for_seconds(0, 8, 4)


def test_check_size_passes_valid():
    assert check_size(48, 80, 8) == (48, 80)


# ---------------------------------------------------------------------------------------------
# Frame counts owned here (callers: clips.fit_frames, the VAE's chunks, conditions, Empty Latent)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ft", [1, 2, 4])
def test_floor_and_ceil_valid_frames_bracket_every_count(ft):
    valid = [t for t in range(1, 60) if is_valid_frames(t, ft)]
    for t in range(1, 50):
        assert floor_valid_frames(t, ft) == max(v for v in valid if v <= t)
        assert ceil_valid_frames(t, ft) == min(v for v in valid if v >= t)
    with pytest.raises(GeometryError, match="frames must be >= 1"):
        floor_valid_frames(0, ft)
    with pytest.raises(GeometryError, match="frames must be >= 1"):
        ceil_valid_frames(0, ft)


def test_group_frames_are_the_pixels_after_the_first_frame():
    assert [group_frames(k, 4) for k in range(4)] == [0, 4, 8, 12]
    assert all(pixel_frames(1 + k, 4) == 1 + group_frames(k, 4) for k in range(6))
    with pytest.raises(GeometryError, match=">= 0"):
        group_frames(-1, 4)


@pytest.mark.parametrize("ft,pt", [(4, 1), (4, 2), (4, 3), (2, 2), (1, 4)])
def test_frames_for_temporal_patch_is_the_next_whole_patch(ft, pt):
    for t_lat in range(1, 14):
        t = pixel_frames(t_lat, ft)
        want = t
        while latent_frames(want, ft) % pt:                        # the rule Empty Latent used inline
            want += ft
        assert frames_for_temporal_patch(t, ft, pt) == want
        LatentGeometry.create(want, 16, 16, ft=ft, fs=4, patch=(pt, 1, 1))


# ---------------------------------------------------------------------------------------------
# The one size multiple, and the token grid
# ---------------------------------------------------------------------------------------------

def test_size_multiple_is_the_lcm_of_the_patch_sides():
    assert size_multiple(4) == 4 and size_multiple(4, 2) == 8 and size_multiple(4, 2, 2) == 8
    assert size_multiple(4, 2, 4) == 16 == 4 * max(2, 4)           # one side divides the other: lcm = max
    assert size_multiple(4, 2, 3) == 24                            # fs * max would say 12
    with pytest.raises(GeometryError, match="pw=0"):
        size_multiple(4, 2, 0)


@pytest.mark.parametrize("patch", [(1, 2, 2), (1, 2, 3), (1, 3, 2), (2, 4, 6)])
def test_sizes_snapped_to_the_multiple_are_accepted(patch):
    m = size_multiple(4, patch[1], patch[2])
    for h, w in [(1, 1), (36, 36), (61, 100), (250, 130)]:
        LatentGeometry.create(1 if patch[0] == 1 else 5, *nearest_valid_size(h, w, m), ft=4, fs=4, patch=patch)
        LatentGeometry.create(1 if patch[0] == 1 else 5, *size_for_aspect("wide", h * w, m), ft=4, fs=4,
                              patch=patch)


def _shipped_specs():
    specs = [(f"vae {v} + dit {d}", configs.vae_preset(v), configs.dit_preset(d))
             for v in configs.preset_names("vae") for d in configs.preset_names("dit")]
    default = ModelSpec.read(DEFAULT_MODEL_DIR)
    return specs + [("default model", default.vae, default.dit)]


def test_shipped_configs_keep_their_size_multiple():
    """``fs * max(ph, pw)`` (what the nodes and the CLI snapped to) and the lcm agree for every preset
    and the shipped default model (fs 4, patch 1x2x2 -> 8): no size that was valid becomes invalid."""
    for name, vae, dit in _shipped_specs():
        fs, (_, ph, pw) = vae.spatial_factor, dit.patch_size
        assert size_multiple(fs, ph, pw) == fs * max(ph, pw), name
    default = ModelSpec.read(DEFAULT_MODEL_DIR)
    assert size_multiple(default.vae.spatial_factor, *default.dit.patch_size[1:]) == 8


def test_token_grid_of_names_the_axis():
    assert token_grid_of((5, 8, 12), (1, 2, 3)) == (5, 4, 4)
    with pytest.raises(GeometryError, match="latent W=10 is not divisible by the patch size 3"):
        token_grid_of((5, 8, 10), (1, 2, 3))
    with pytest.raises(GeometryError, match="three positive integers"):
        token_grid_of((5, 8, 8), (1, 2))
    with pytest.raises(GeometryError, match="latent H=7"):
        latent_geometry_of((1, 4, 5, 7, 8), ft=4, fs=4, patch=(1, 2, 2)).token_grid
    with pytest.raises(GeometryError, match="three positive integers"):
        LatentGeometry.create(5, 16, 16, ft=4, fs=4, patch=(1, 0, 2))


# ---------------------------------------------------------------------------------------------
# Callers that snap a request use the same multiple as the check (patch 1x2x3: lcm 24, max 12)
# ---------------------------------------------------------------------------------------------

def _spec_with_patch(patch):
    dit = dataclasses.replace(configs.dit_preset("tiny"), patch_size=patch)
    return ModelSpec(configs.vae_preset("tiny4"), configs.text_encoder_preset("tiny"), dit)


def test_empty_latent_snaps_to_sizes_the_model_accepts():
    from comfyui_sora.nodes import graph_ops
    spec = _spec_with_patch((1, 2, 3))
    handle = SimpleNamespace(model=SimpleNamespace(spec=spec, geometry=spec.geometry, device="cpu"),
                             dtype=None)
    geo, notes = graph_ops.request_geometry(handle, 36, 36, 5)     # 36: a multiple of 12, not of 24
    assert (geo.height, geo.width) == (48, 48) and "multiples of 24" in notes[0]
    geo, _ = graph_ops.request_geometry(handle, 64, 64, 5, aspect="wide")
    assert geo.height % 24 == 0 and geo.width % 24 == 0


def test_cli_size_from_an_image_snaps_to_sizes_the_model_accepts():
    from sora_core.cli import generate as cli
    spec = _spec_with_patch((1, 2, 3))
    args = argparse.Namespace(width=None, height=48)
    h, w = cli._size(args, spec, np.zeros((48, 84, 3), np.uint8))  # 84: a multiple of 12, not of 24
    assert (h, w) == (48, 96)
    spec.geometry(5, h, w)
