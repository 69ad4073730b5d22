"""Latent geometry: valid frame counts, sizes, latent and token grids, and the errors for bad input."""

import pytest

from sora_core.geometry import (
    GeometryError, LatentGeometry, check_frames, check_size, frames_for_seconds, is_valid_frames,
    latent_frames, latent_geometry_of, nearest_valid_frames, nearest_valid_size, pixel_frames,
    size_for_aspect)


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
