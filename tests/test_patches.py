"""Spacetime patches and the 3D rotary embedding."""

import pytest
import torch

from sora_core.geometry import GeometryError
from sora_core.models.patches import apply_rope, patchify, rope_3d, rope_axis_dims, rope_tables, token_grid, unpatchify

GRIDS = [((1, 8, 8), (1, 2, 2)), ((5, 6, 10), (1, 2, 2)), ((4, 12, 4), (2, 2, 2)), ((3, 5, 7), (1, 1, 1)),
         ((6, 4, 18), (3, 2, 3))]


# ---------------------------------------------------------------------------------------------
# Patchify / unpatchify
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("shape,patch", GRIDS)
@pytest.mark.parametrize("layout", ["c_first", "c_last"])
def test_round_trip_is_exact(generator, shape, patch, layout):
    x = torch.randn(2, 3, *shape, generator=generator)
    tokens = patchify(x, patch, layout)
    grid = token_grid(tuple(x.shape), patch)
    assert tokens.shape == (2, grid[0] * grid[1] * grid[2], 3 * patch[0] * patch[1] * patch[2])
    assert torch.equal(unpatchify(tokens, grid, patch, 3, layout), x)


def test_tokens_match_a_strided_conv3d(generator):
    """Token order (t, h, w) and feature order (c, pt, ph, pw) are those of Wan's Conv3d embedding."""
    x = torch.randn(2, 4, 4, 6, 8, generator=generator)
    conv = torch.nn.Conv3d(4, 5, kernel_size=(2, 2, 2), stride=(2, 2, 2))
    want = conv(x).flatten(2).transpose(1, 2)                                      # (B, N, 5)
    got = patchify(x, (2, 2, 2)) @ conv.weight.flatten(1).T + conv.bias
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_channel_last_layout_is_wan_head_order(generator):
    """Wan's head reshapes (B, N, pt*ph*pw*C) as (..., pt, ph, pw, C): channel fastest."""
    t, h, w, p, c = 2, 3, 4, (1, 2, 2), 3
    tokens = torch.randn(1, t * h * w, 4 * c, generator=generator)
    want = tokens.reshape(1, t, h, w, 1, 2, 2, c).permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(1, c, t, h * 2, w * 2)
    assert torch.equal(unpatchify(tokens, (t, h, w), p, c, layout="c_last"), want)


def test_indivisible_sizes_name_the_axis():
    with pytest.raises(GeometryError, match="H=7"):
        patchify(torch.zeros(1, 2, 1, 7, 8), (1, 2, 2))
    with pytest.raises(GeometryError, match="T=3"):
        patchify(torch.zeros(1, 2, 3, 8, 8), (2, 2, 2))
    with pytest.raises(GeometryError, match="expected"):
        unpatchify(torch.zeros(1, 10, 8), (1, 2, 4), (1, 2, 2), 2)
    with pytest.raises(GeometryError, match="patch"):
        patchify(torch.zeros(1, 2, 1, 8, 8), (1, 0, 2))
    with pytest.raises(ValueError, match="layout"):
        patchify(torch.zeros(1, 2, 1, 8, 8), (1, 2, 2), layout="nope")


# ---------------------------------------------------------------------------------------------
# RoPE
# ---------------------------------------------------------------------------------------------

def test_axis_split_like_wan():
    assert rope_axis_dims(128) == (44, 42, 42)      # Wan 2.1: h = w = 2 * (128 // 6)
    assert rope_axis_dims(64) == (24, 20, 20)
    assert sum(rope_axis_dims(16)) == 16
    with pytest.raises(ValueError, match="head_dim"):
        rope_axis_dims(7)


@pytest.mark.parametrize("grid", [(1, 1, 1), (3, 37, 5), (41, 2, 90)])
def test_rope_defined_for_unseen_grids(grid):
    cos, sin = rope_3d(grid, 64, 10000.0)
    n = grid[0] * grid[1] * grid[2]
    assert cos.shape == sin.shape == (n, 64)
    assert torch.isfinite(cos).all() and torch.isfinite(sin).all()
    torch.testing.assert_close(cos ** 2 + sin ** 2, torch.ones(n, 64))


def test_rope_of_a_sub_grid_is_the_same_positions():
    """No table of maximum length: position (t, h, w) gets the same angles in any grid containing it."""
    small, big = rope_3d((2, 3, 4), 32), rope_3d((5, 7, 9), 32)
    idx = torch.tensor([t * 63 + h * 9 + w for t in range(2) for h in range(3) for w in range(4)])
    torch.testing.assert_close(small[0], big[0][idx])
    torch.testing.assert_close(small[1], big[1][idx])


def _wan_rope(x, cos, sin):
    """Diffusers' WanAttnProcessor rotation, written out: pairs (x[2i], x[2i+1])."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos[..., 0::2] - x2 * sin[..., 1::2]
    out[..., 1::2] = x1 * sin[..., 1::2] + x2 * cos[..., 0::2]
    return out


def test_apply_rope_equals_wan_rotation(generator):
    grid, d = (2, 3, 4), 24
    x = torch.randn(2, 24, 3, d, generator=generator)                             # (B, N, H, d)
    cos, sin = rope_3d(grid, d)
    want = _wan_rope(x, cos[:, None], sin[:, None])
    torch.testing.assert_close(apply_rope(x, *rope_tables(grid, d, 10000.0, "cpu")), want)


def test_rotated_dot_product_depends_only_on_the_offset(generator):
    grid, d = (6, 7, 8), 48
    cos, sin = rope_tables(grid, d, 10000.0, "cpu")
    q, k = torch.randn(d, generator=generator), torch.randn(d, generator=generator)
    n = grid[0] * grid[1] * grid[2]
    rq = apply_rope(q.expand(1, n, 1, d), cos, sin)[0, :, 0]                       # (N, d)
    rk = apply_rope(k.expand(1, n, 1, d), cos, sin)[0, :, 0]

    def at(t, h, w):
        return (t * grid[1] + h) * grid[2] + w

    for a, b, shift in [((0, 0, 0), (2, 3, 1), (1, 2, 4)), ((1, 5, 2), (4, 1, 7), (1, 1, -2))]:
        a2, b2 = (tuple(i + s for i, s in zip(p, shift)) for p in (a, b))
        before = rq[at(*a)] @ rk[at(*b)]
        after = rq[at(*a2)] @ rk[at(*b2)]
        torch.testing.assert_close(before, after, atol=1e-4, rtol=1e-4)
    # and it does depend on the offset
    assert abs(rq[at(0, 0, 0)] @ rk[at(0, 0, 1)] - rq[at(0, 0, 0)] @ rk[at(0, 0, 5)]) > 1e-3

