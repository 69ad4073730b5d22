"""Diffusion transformer: shapes over grids, per-frame timesteps, text mask, gradients, Wan parity,
and parity of the fused CPU kernels (sora_core/models/kernels.py) with the plain reference modules."""

import pytest
import torch

from sora_core.configs import dit_preset, replace
from sora_core.models import kernels
from sora_core.models.dit import DiT


def make_model(seed=0, fused=True, **changes):
    cfg = replace(dit_preset("tiny"), **changes)
    torch.manual_seed(seed)
    model = DiT(cfg, fused=fused)
    with torch.no_grad():   # Wan's init zeroes the output head; give it weights so outputs carry signal
        model.proj_out.weight.normal_(std=0.1)
        if model.condition_embedder.text_pool is not None:     # likewise the (closed) pooled-text path
            model.condition_embedder.text_pool.linear_2.weight.normal_(std=0.1)
    return model


def inputs(cfg, shape=(3, 4, 6), batch=2, text_len=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, *shape, generator=g)
    ctx = torch.randn(batch, text_len, cfg.text_dim, generator=g)
    mask = torch.ones(batch, text_len, dtype=torch.bool)
    mask[0, 3:] = False
    return x, torch.rand(batch, generator=g), ctx, mask


@pytest.fixture(scope="module")
def model():
    return make_model().eval()


@pytest.mark.parametrize("shape", [(1, 4, 4), (3, 4, 12), (2, 12, 4), (5, 6, 6)])
def test_output_shape_for_any_grid(model, shape):
    x, t, ctx, mask = inputs(model.cfg, shape)
    with torch.no_grad():
        v = model(x, t, ctx, mask)
    assert v.shape == (2, model.cfg.out_channels, *shape) and v.dtype == torch.float32
    assert torch.isfinite(v).all() and v.abs().sum() > 0


def test_equal_per_frame_times_equal_per_sample_time(model):
    x, t, ctx, mask = inputs(model.cfg, (3, 4, 6))
    with torch.no_grad():
        per_sample = model(x, t, ctx, mask)
        per_frame = model(x, t[:, None].expand(2, 3), ctx, mask)
        mixed = model(x, torch.stack([t, t, torch.zeros(2)], dim=1), ctx, mask)
        scalar = model(x, 0.25, ctx, mask)
        per_sample_025 = model(x, torch.full((2,), 0.25), ctx, mask)
    torch.testing.assert_close(per_frame, per_sample, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(scalar, per_sample_025, atol=0, rtol=0)
    assert (mixed - per_sample).abs().max() > 1e-3


def test_seeded_determinism():
    a, b = make_model(seed=3), make_model(seed=3)
    x, t, ctx, mask = inputs(a.cfg)
    with torch.no_grad():
        assert torch.equal(a(x, t, ctx, mask), b(x, t, ctx, mask))
        assert torch.equal(a(x, t, ctx, mask), a(x, t, ctx, mask))
    assert not torch.equal(make_model(seed=4).blocks[0].attn1.to_q.weight, a.blocks[0].attn1.to_q.weight)


@pytest.mark.parametrize("bf16_train", [False, True])
def test_padded_text_tokens_are_ignored(model, bf16_train):
    """Extra padded tokens (garbage values, mask False) leave the output unchanged, also on the
    bf16 training path (math attention with a mask)."""
    x, t, ctx, mask = inputs(model.cfg, (2, 4, 4), text_len=4)
    mask[:] = True
    garbage = torch.randn(2, 6, model.cfg.text_dim) * 100
    ctx_long = torch.cat([ctx, garbage], dim=1)
    mask_long = torch.cat([mask, torch.zeros(2, 6, dtype=torch.bool)], dim=1)
    with torch.set_grad_enabled(bf16_train), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16_train):
        short, long = model(x, t, ctx, mask), model(x, t, ctx_long, mask_long)
    tol = 1e-2 if bf16_train else 1e-6
    torch.testing.assert_close(long, short, atol=tol, rtol=tol)


def test_gradient_reaches_every_parameter():
    model = make_model().train()
    x, t, ctx, mask = inputs(model.cfg)
    v = model(x, torch.stack([t, t * 0.5, t * 0.1], dim=1), ctx, mask)
    (v - torch.randn_like(v)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert missing == []


@pytest.mark.parametrize("fused", [True, False])
def test_bf16_paths_track_float32(fused):
    """bf16 autocast (fused: erf GELU, math attention in training, split bias adds, fused inference
    linears; plain: torch's autocast of the reference modules) stays close to float32."""
    model = make_model(fused=fused).train()
    x, t, ctx, mask = inputs(model.cfg, (2, 4, 6))
    ref = model(x, t, ctx, mask)
    ref.square().mean().backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, ctx, mask)
    out.square().mean().backward()
    assert (out - ref).norm() / ref.norm() < 0.03
    for n, p in model.named_parameters():
        assert (p.grad - ref_grads[n]).norm() <= 0.1 * ref_grads[n].norm() + 1e-6, n
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):   # inference: fused oneDNN linears
        inf = model(x, t, ctx, mask)
    assert (inf - ref).norm() / ref.norm() < 0.03


def test_bad_inputs_are_named(model):
    x, t, ctx, mask = inputs(model.cfg)
    with pytest.raises(ValueError, match="x must have shape"):
        model(x[:, :2], t, ctx, mask)
    with pytest.raises(ValueError, match="t must have shape"):
        model(x, torch.rand(2, 5), ctx, mask)
    with pytest.raises(ValueError, match="context must have shape"):
        model(x, t, ctx[..., :3], mask)
    with pytest.raises(ValueError, match="context_mask"):
        model(x, t, ctx, mask.float())
    with pytest.raises(ValueError, match="W=5"):
        model(torch.randn(2, model.cfg.in_channels, 1, 4, 5), t, ctx, mask)
    pt2 = make_model(patch_size=(2, 2, 2))
    x2 = torch.randn(2, pt2.cfg.in_channels, 4, 4, 4)
    with pytest.raises(ValueError, match="temporal patch"):
        pt2(x2, torch.tensor([[0.1, 0.2, 0.3, 0.3], [0.5, 0.5, 0.5, 0.5]]), ctx, mask)
    assert pt2(x2, torch.tensor([[0.1, 0.1, 0.3, 0.3], [0.5, 0.5, 0.5, 0.5]]), ctx, mask).shape == x2.shape


def test_matches_diffusers_wan_transformer():
    """Same state dict, same numbers as diffusers' WanTransformer3DModel (every parameter random),
    per sample and per latent frame (diffusers' per-token timesteps of Wan 2.2)."""
    wan = pytest.importorskip("diffusers").WanTransformer3DModel
    cfg = replace(dit_preset("tiny"), pooled_text=False)      # the Wan layout
    torch.manual_seed(0)
    ref = wan(patch_size=cfg.patch_size, num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
              in_channels=cfg.in_channels, out_channels=cfg.out_channels, text_dim=cfg.text_dim,
              freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers,
              cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps).eval()
    with torch.no_grad():
        for p in ref.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    ours = DiT(cfg).eval()
    assert list(ours.state_dict()) == list(ref.state_dict())     # same names in the same order
    ours.load_state_dict(ref.state_dict(), strict=True)
    for kernels_name in ("fused", "plain"):
        ours.set_kernels(kernels_name)
        _assert_matches_wan(ours, ref, cfg)


def _assert_matches_wan(ours, ref, cfg):
    x, t, ctx, mask = inputs(cfg, (3, 4, 6))
    tf = torch.tensor([[0.0, 0.4, 0.9], [0.7, 0.7, 0.2]])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, ctx), ref(x, t * 1000, ctx, return_dict=False)[0],
                                   atol=1e-4, rtol=1e-4)
        per_token = tf.repeat_interleave(2 * 3, dim=1) * 1000                     # (B, T*H'*W')
        torch.testing.assert_close(ours(x, tf, ctx), ref(x, per_token, ctx, return_dict=False)[0],
                                   atol=1e-4, rtol=1e-4)


def test_inverse_rms_gradient():
    x = torch.randn(3, 5, 16, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: kernels.inv_rms(x, 1e-6), (x,))


@pytest.mark.parametrize("max_scores", [1 << 24, 0])
@pytest.mark.parametrize("masked", [False, True])
def test_training_attention_matches_sdpa(max_scores, masked):
    """bf16 training attention (math path keeping its probabilities, or torch's flash kernel for
    large score matrices) gives the gradients of exact attention to bf16 accuracy."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g).bfloat16().requires_grad_() for n in (11, 13, 13))
    mask = (torch.arange(13)[None] < torch.tensor([[13], [4]]))[:, None, None] if masked else None
    grad = torch.randn(2, 3, 11, 16, generator=g).bfloat16()
    out = kernels.attention(q, k, v, mask, max_scores=max_scores)
    grads = torch.autograd.grad(out, (q, k, v), grad)
    exact = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out_ref = torch.nn.functional.scaled_dot_product_attention(*exact, attn_mask=mask)
    grads_ref = torch.autograd.grad(out_ref, exact, grad.double())
    for a, b in zip((out, *grads), (out_ref, *grads_ref)):
        assert (a.double() - b).norm() / b.norm() < 0.01


def test_pooled_text_path_makes_the_prompt_reach_every_block():
    """With pooled_text the output depends on the prompt even with cross-attention removed; without
    it (the Wan layout) the module has no text_pool weights, so Wan checkpoints keep loading."""
    model = make_model().eval()
    x, t, ctx, mask = inputs(model.cfg)
    for block in model.blocks:            # cut the cross-attention path: only the pooled path is left
        block.attn2.to_v.weight.data.zero_()
        block.attn2.to_v.bias.data.zero_()
    other = ctx.flip(0)
    with torch.no_grad():
        a, b = model(x, t, ctx, mask), model(x, t, other, mask.flip(0))
    assert (a - b).abs().max() > 1e-3
    # padded tokens do not change the pooled vector
    from sora_core.models.dit import pooled_text
    padded = torch.cat([ctx, torch.randn(ctx.shape[0], 3, ctx.shape[2])], 1)
    pmask = torch.cat([mask, torch.zeros(mask.shape[0], 3, dtype=torch.bool)], 1)
    assert torch.allclose(pooled_text(padded, pmask), pooled_text(ctx, mask), atol=1e-6)
    plain = make_model(pooled_text=False)
    assert not any("text_pool" in k for k in plain.state_dict())


# ---------------------------------------------------------------------------------------------
# Fused kernels vs the plain reference modules
# ---------------------------------------------------------------------------------------------

def _rel(a, b):
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def _parity_case(model, per_frame, masked):
    x, t, ctx, mask = inputs(model.cfg, (3, 4, 6))
    tt = torch.stack([t, t * 0.5, torch.zeros_like(t)], dim=1) if per_frame else t
    return x, tt, ctx, (mask if masked else None)


def _both(model, args):
    """Output of the fused and of the plain kernels for the same model and inputs."""
    return [model.set_kernels(name)(*args) for name in ("fused", "plain")]


@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_kernels_match_plain_forward(per_frame, masked):
    """Same parameters, two code paths: float32 agrees to rounding (measured ~2e-7 relative; bound
    1e-5). Under bf16 autocast both round differently (fused: bf16 residual stream, erf GELU, oneDNN
    linears in inference, math attention in training; plain: torch's autocast of the reference
    modules, float32 residual stream): measured 4e-3 - 6e-3 relative to each other and to float32,
    bound 2e-2."""
    model = make_model().eval()
    args = _parity_case(model, per_frame, masked)
    with torch.no_grad():
        fused, plain = _both(model, args)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            fused_bf16, plain_bf16 = _both(model, args)
    assert model.fused is False and fused.abs().max() > 1e-2
    assert _rel(fused, plain) <= 1e-5
    assert _rel(fused_bf16, plain_bf16) <= 2e-2
    assert _rel(fused_bf16, plain) <= 2e-2 and _rel(plain_bf16, plain) <= 2e-2
    with torch.autocast("cpu", dtype=torch.bfloat16):        # bf16 training forward (math attention)
        fused_train, plain_train = _both(model, args)
    assert _rel(fused_train, plain_train) <= 2e-2


def _grads(model, kernels_name, args, target):
    model.set_kernels(kernels_name).zero_grad()
    (model(*args) - target).square().mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("per_frame", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_fused_kernels_match_plain_gradients(per_frame, masked):
    """The training path: every parameter's float32 gradient agrees (measured ~1e-6 relative,
    custom RMS backward and folded RoPE tables included)."""
    model = make_model().train()
    args = _parity_case(model, per_frame, masked)
    target = torch.randn(args[0].shape, generator=torch.Generator().manual_seed(1))
    fused, plain = _grads(model, "fused", args, target), _grads(model, "plain", args, target)
    assert fused.keys() == plain.keys()
    for name in fused:
        assert plain[name].abs().sum() > 0, name
        assert _rel(fused[name], plain[name]) <= 1e-5, name


def test_kernel_switch_keeps_the_state_dict_and_names_bad_choices():
    fused, plain = make_model(fused=True), make_model(fused=False)
    assert fused.fused and not plain.fused
    sd_f, sd_p = fused.state_dict(), plain.state_dict()
    assert list(sd_f) == list(sd_p) and all(torch.equal(sd_f[k], sd_p[k]) for k in sd_f)
    assert plain.set_kernels("fused") is plain and plain.fused
    # parameter order (what optimizer state in a training checkpoint is keyed by) is diffusers' order
    order = [n.split(".")[0] for n, _ in plain.blocks[0].named_parameters()]
    assert list(dict.fromkeys(order)) == ["scale_shift_table", "attn1", "attn2", "norm2", "ffn"]
    with pytest.raises(ValueError, match=r"DiT kernels must be one of \['fused', 'plain'\], got 'fast'"):
        plain.set_kernels("fast")
