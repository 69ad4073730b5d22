"""Frame conditions: resolution, both application modes, and the features built on them."""

from types import SimpleNamespace

import pytest
import torch
from einops import reduce, repeat

from sora_core.diffusion.conditions import ConditionError, ConditionPlan, FrameCondition, Start, as_plan, condition_denoiser, connect, encode_end, extend_backward, extend_forward, image_at_end, image_to_video, loop, prepare_latent, resolve, sdedit
from sora_core.configs import vae_preset
from sora_core.diffusion.flow import add_noise, expand_sigma, sdedit_start_sigma, sigma_schedule
from sora_core.diffusion.samplers import SAMPLERS
from sora_core.models.vae import VideoVAE

SHAPE = (1, 2, 5, 4, 4)      # (B, C, T_lat, H, W)


def gaussian_denoiser(x, sigma):
    """Exact denoiser of x0 ~ N(0.5, 0.3^2) per element; accepts per-frame sigma."""
    t = expand_sigma(sigma, x)
    a, mu, var0 = 1 - t, 0.5, 0.09
    return mu + a * var0 / (a ** 2 * var0 + t ** 2) * (x - a * mu)


class Recorder:
    """Wraps a denoiser and keeps what the model was shown."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __call__(self, x, sigma):
        self.calls.append((x.clone(), torch.as_tensor(sigma).clone()))
        return self.inner(x, sigma)


def _run(conds, mode="timestep", sampler="euler", steps=8, denoiser=gaussian_denoiser, seed=0):
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    cond, mask = resolve(conds, SHAPE)
    sig = sigma_schedule(steps, 3.0)
    x = prepare_latent(noise, sig[0], cond, mask)
    return SAMPLERS[sampler](condition_denoiser(denoiser, cond, mask, noise, mode), x, sig), cond, mask


def _clip(t, value=None, seed=1):
    if value is not None:
        return torch.full((1, 2, t, 4, 4), float(value))
    return torch.randn((1, 2, t, 4, 4), generator=torch.Generator().manual_seed(seed)) * 2 - 3


# ---------------------------------------------------------------------------------------------
# resolve
# ---------------------------------------------------------------------------------------------

def test_resolve_positions_and_override():
    a, b = _clip(2, 1.0), _clip(1, 7.0)
    cond, mask = resolve([FrameCondition(a, 0, 1.0), FrameCondition(b, -4, 0.5), FrameCondition(b, -1, 0.3)],
                         (3, 2, 5, 4, 4))
    assert cond.shape == (3, 2, 5, 4, 4) and mask.shape == (3, 5)
    assert mask[0].tolist() == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.3])      # later overrides frame 1
    assert cond[:, :, 0].eq(1).all() and cond[:, :, 1].eq(7).all() and cond[:, :, 4].eq(7).all()
    assert cond[:, :, 2:4].eq(0).all()


@pytest.mark.parametrize("cond,match", [
    (FrameCondition(torch.zeros(1, 3, 1, 4, 4)), "3 channels"),
    (FrameCondition(torch.zeros(1, 2, 1, 4, 8)), "4x8"),
    (FrameCondition(torch.zeros(2, 2, 1, 4, 4)), "batch 2"),
    (FrameCondition(torch.zeros(1, 2, 2, 4, 4), 4), "allowed positions are -5 .. 3"),
    (FrameCondition(torch.zeros(1, 2, 1, 4, 4), -6), "position -6"),
])
def test_resolve_errors(cond, match):
    with pytest.raises(ConditionError, match=match):
        resolve([cond], SHAPE)


def test_condition_validation():
    with pytest.raises(ConditionError, match=r"strength must be in \[0, 1\]"):
        FrameCondition(torch.zeros(1, 2, 1, 4, 4), 0, 1.5)
    with pytest.raises(ConditionError, match=r"\(B, C, Tc, H, W\)"):
        FrameCondition(torch.zeros(2, 1, 4, 4))
    with pytest.raises(ConditionError, match="allowed: timestep, replace"):
        condition_denoiser(gaussian_denoiser, *resolve([], SHAPE), torch.zeros(SHAPE), "inpaint")


# ---------------------------------------------------------------------------------------------
# Application
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["timestep", "replace"])
@pytest.mark.parametrize("sampler", ["euler", "heun", "dpmpp_2m", "euler_ancestral"])
def test_given_frames_unchanged_at_strength_one(mode, sampler):
    given = _clip(2)
    out, _, _ = _run([FrameCondition(given, 0), FrameCondition(given[:, :, :1], -1)], mode, sampler)
    assert torch.allclose(out[:, :, :2], given, atol=1e-5)
    assert torch.allclose(out[:, :, -1:], given[:, :, :1], atol=1e-5)
    free = out[:, :, 2:4]
    assert (free - 0.5).abs().mean() < 0.6 and not torch.allclose(free, given[:, :, :2], atol=0.5)


@pytest.mark.parametrize("mode", ["timestep", "replace"])
def test_strength_zero_leaves_frames_free(mode):
    free, _, _ = _run([])
    out, _, _ = _run([FrameCondition(_clip(5), 0, 0.0)], mode)
    assert torch.equal(out, free)


@pytest.mark.parametrize("mode", ["timestep", "replace"])
def test_partial_strength_between_free_and_pinned(mode):
    given = _clip(5)
    dist = [(_run([FrameCondition(given, 0, s)], mode, steps=20)[0] - given).abs().mean().item()
            for s in (0.0, 0.4, 0.8, 1.0)]
    assert dist[0] > dist[1] > dist[2] > dist[3] and dist[3] < 1e-5, dist


def test_timestep_mode_shows_clean_frames_at_t0():
    rec = Recorder(gaussian_denoiser)
    given = _clip(1)
    _run([FrameCondition(given, 1)], "timestep", steps=3, denoiser=rec)
    for x, sigma in rec.calls:
        assert sigma.shape == (1, 5) and sigma[0, 1] == 0 and bool((sigma[0, [0, 2, 3, 4]] > 0).all())
        assert torch.equal(x[:, :, 1:2], given)


def test_replace_mode_renoises_to_current_level():
    rec = Recorder(gaussian_denoiser)
    given = _clip(1)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    _run([FrameCondition(given, 1)], "replace", steps=3, denoiser=rec)
    for x, sigma in rec.calls:
        assert sigma.ndim == 0
        assert torch.allclose(x[:, :, 1:2], add_noise(given, noise[:, :, 1:2], sigma), atol=1e-6)


def test_all_frames_held_skips_the_model():
    rec = Recorder(gaussian_denoiser)
    start = sdedit_start_sigma(0.5, 3.0)
    _run([FrameCondition(_clip(5), 0, 1.0 - start)], steps=8, denoiser=rec)
    assert len(rec.calls) == 4 and all(float(s) <= start + 1e-5 for _, s in rec.calls)


def _run_plan(plan, sampler="euler", steps=4, seed=0):
    """Sample a plan the way the pipeline does: its start and conditions along ``plan.schedule``."""
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))
    cond, mask = resolve(plan.conditions, SHAPE)
    sig = plan.schedule(steps, 3.0)
    init = None if plan.start is None else plan.start.latents
    x = prepare_latent(noise, sig[0], cond, mask, init)
    return SAMPLERS[sampler](condition_denoiser(gaussian_denoiser, cond, mask, noise), x, sig)


def test_sdedit_plan_matches_held_condition_for_euler():
    """The SDEdit plan (start + truncated schedule) == holding every frame at strength 1 - start level
    over the full schedule with twice the steps (Euler keeps held frames on their noising path)."""
    src = _clip(5)
    via_cond, _, _ = _run([FrameCondition(src, 0, 1.0 - sdedit_start_sigma(0.5, 3.0))], steps=8)
    assert torch.allclose(_run_plan(sdedit(None, src, 0.5)), via_cond, atol=1e-5)


def test_sdedit_plan_start_schedule_and_span():
    src = _clip(5)
    plan = sdedit(None, src, 0.4)
    assert plan.conditions == () and plan.start.latents is src and plan.denoise == 0.4
    assert torch.equal(plan.schedule(6, 3.0), sigma_schedule(6, 3.0, denoise=0.4))
    assert torch.equal(as_plan([]).schedule(6, 3.0), sigma_schedule(6, 3.0))      # no start: full schedule
    span = sdedit(None, src, 0.4, span=(2, -1))
    assert [(c.position, c.frames, c.strength) for c in span.conditions] == [(0, 2, 1.0), (4, 1, 1.0)]
    out, free = _run_plan(span), _run_plan(plan)
    assert torch.allclose(out[:, :, [0, 1, 4]], src[:, :, [0, 1, 4]], atol=1e-5)
    assert (free[:, :, [0, 1, 4]] - src[:, :, [0, 1, 4]]).abs().mean() > 0.1     # unpinned they move
    assert as_plan(list(span.conditions)).conditions == span.conditions and as_plan(plan) is plan
    extra = FrameCondition(src[:, :, :1], 3)
    assert plan.with_conditions([extra]).conditions == (extra,) and plan.with_conditions([extra]).start is plan.start


def test_sdedit_encodes_pixels_at_the_start():
    vae = PoolVAE()
    video = torch.rand(3, 9, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plan = sdedit(vae, video, 0.5)
    assert torch.equal(plan.start.latents, vae.encode(video[None]))


@pytest.mark.parametrize("call,match", [
    (lambda: sdedit(_clip(5), 0.5, 3.0), "pass vae=None"),                   # the old (latents, denoise, shift)
    (lambda: sdedit(None, _clip(5), 0.0), r"denoise must be a number in \(0, 1\]"),
    (lambda: sdedit(None, _clip(5), 1.5), r"in \(0, 1\]"),
    (lambda: sdedit(None, _clip(5), float("nan")), r"in \(0, 1\]"),
    (lambda: sdedit(None, _clip(5), "0.5"), r"in \(0, 1\]"),
    (lambda: sdedit(None, torch.zeros(2, 5, 4, 4), 0.5), r"\(B, C, T, H, W\)"),
    (lambda: sdedit(None, _clip(5), 0.5, span=(2, 2)), "need 0 <= first < stop <= 5"),
    (lambda: sdedit(None, _clip(5), 0.5, span=(0, 6)), "outside the source's 5 latent frames"),
    (lambda: sdedit(None, _clip(5), 0.5, span=("a", 1)), r"\(first, stop\) latent frames"),
    (lambda: Start(_clip(5), True), r"in \(0, 1\]"),
])
def test_sdedit_errors(call, match):
    with pytest.raises(ConditionError, match=match):
        call()


# ---------------------------------------------------------------------------------------------
# Features (a stand-in causal VAE: latent 0 = frame 0, latent k = mean of its ft frames)
# ---------------------------------------------------------------------------------------------

class PoolVAE:
    cfg = SimpleNamespace(temporal_factor=4, spatial_factor=2)

    def encode(self, video):
        first = reduce(video[:, :, :1], "b c t (h p) (w q) -> b c t h w", "mean", p=2, q=2)
        rest = reduce(video[:, :, 1:], "b c (t f) (h p) (w q) -> b c t h w", "mean", f=4, p=2, q=2)
        return torch.cat([first, rest], dim=2)


def _video(t):
    """Pixel video whose frame i is the constant i, so latents name the frames they encode."""
    return repeat(torch.arange(t, dtype=torch.float32), "t -> 1 3 t 8 8")


def test_image_to_video_and_image_at_end():
    vae, img = PoolVAE(), torch.full((1, 3, 8, 8), 0.25)
    (start,) = image_to_video(vae, img).conditions
    (end,) = image_at_end(vae, img).conditions
    assert start.position == 0 and start.latents.shape == (1, 3, 1, 4, 4) and start.latents.eq(0.25).all()
    assert end.position == -1 and end.latents.shape == (1, 3, 1, 4, 4) and end.latents.eq(0.25).all()


def test_image_at_end_is_the_steady_state_of_the_still():
    """A causal VAE remembers groups back: the still at the end must be encoded as the image held
    still for a while (its latent inside a long still video), not as the 4 frames after a video's
    first frame (the old 1-frame warm-up, which left loop seams jumping)."""
    torch.manual_seed(0)
    vae = VideoVAE(vae_preset("tiny4")).eval()
    img = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    long_still = repeat(img, "b c h w -> b c t h w", t=1 + 4 * 16)
    with torch.no_grad():
        steady = vae.encode(long_still)[:, :, -1:]
        one_frame = encode_end(vae, long_still[:, :, :4], warmup=0)
    (end,) = image_at_end(vae, img).conditions
    err_new, err_old = (end.latents - steady).abs().mean(), (one_frame - steady).abs().mean()
    assert err_new < 0.5 * err_old, (err_new, err_old)
    with pytest.raises(ConditionError, match="warmup"):
        encode_end(vae, long_still[:, :, :4], warmup=-1)


def test_extend_forward_picks_aligned_frames():
    plan = extend_forward(PoolVAE(), _video(9), latent_frames=2)
    (c,) = plan.conditions
    # the last 1 + 4 pixel frames (4..8): frame 4 alone, then the group 5..8
    assert c.position == 0 and c.latents[0, 0, :, 0, 0].tolist() == [4.0, 6.5]
    generated = _video(13) + 100
    out = plan.assemble(generated, fade=False)
    assert out.shape[2] == 9 + 13 - 5
    assert out[0, 0, :, 0, 0].tolist() == list(range(9)) + [100.0 + i for i in range(5, 13)]
    # by default the 5 shared frames cross-fade from the given pixels to their generated version
    faded = plan.assemble(generated)[0, 0, :, 0, 0]
    w = [(i + 1) / 6 for i in range(5)]
    expect = list(range(4)) + [(1 - w[i]) * (4 + i) + w[i] * (100 + i) for i in range(5)] + \
        [100.0 + i for i in range(5, 13)]
    assert faded.shape[0] == 17 and torch.allclose(faded, torch.tensor(expect))


def test_extend_backward_picks_aligned_frames():
    plan = extend_backward(PoolVAE(), _video(9), latent_frames=2)
    (c,) = plan.conditions
    # the first 2*4 pixel frames as two group latents (warm-up frame dropped)
    assert c.position == -2 and c.latents[0, 0, :, 0, 0].tolist() == [1.5, 5.5]
    out = plan.assemble(_video(13)[0] + 100, fade=False)
    assert out.shape[1] == 13 - 8 + 9
    assert out[0, :, 0, 0].tolist() == [100.0 + i for i in range(5)] + list(range(9))
    faded = plan.assemble(_video(13)[0] + 100)[0, :, 0, 0]          # generated -> given over 8 frames
    w = [(i + 1) / 9 for i in range(8)]
    expect = [100.0 + i for i in range(5)] + [(1 - w[i]) * (105 + i) + w[i] * i for i in range(8)] + [8.0]
    assert torch.allclose(faded, torch.tensor(expect))


def test_connect_and_loop_plans():
    vae = PoolVAE()
    plan = connect(vae, _video(5), _video(5) + 50, latent_frames=1)
    assert [c.position for c in plan.conditions] == [0, -1]
    assert plan.conditions[0].latents.eq(4).all() and plan.conditions[1].latents.eq(50 + 1.5).all()
    assert plan.assemble(_video(9) + 100, fade=False).shape[2] == 5 + (9 - 1 - 4) + 5
    joined = plan.assemble(_video(9) + 100)[0, 0, :, 0, 0]
    assert joined.shape[0] == 5 + (9 - 1 - 4) + 5
    assert joined[:4].tolist() == [0.0, 1.0, 2.0, 3.0] and joined[4] == 0.5 * 4 + 0.5 * 100   # a's last frame
    assert joined[-1] == 54 and joined[-5] == 0.8 * 105 + 0.2 * 50                            # b's first 4 frames
    lp = loop(vae, torch.full((1, 3, 8, 8), 0.5))
    assert [c.position for c in lp.conditions] == [0, -1] and (lp.drop_start, lp.drop_end) == (1, 3)
    looped = lp.assemble(_video(9))[0, 0, :, 0, 0]      # frames 1 .. T - ft: ends on the still's first frame
    assert looped.tolist() == [1.0, 2.0, 3.0, 4.0, 5.0]


def test_feature_errors():
    with pytest.raises(ConditionError, match="need 5 pixel frames"):
        extend_forward(PoolVAE(), _video(3), latent_frames=2)
    with pytest.raises(ConditionError, match="latent_frames must be >= 1"):
        extend_backward(PoolVAE(), _video(9), latent_frames=0)
    with pytest.raises(ConditionError, match="image"):
        image_to_video(PoolVAE(), torch.zeros(8, 8))
