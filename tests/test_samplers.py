"""Samplers on Gaussian data, whose exact denoiser and exact flow map are known in closed form.

x0 ~ N(mu, sd^2) per channel, x_t = (1 - t) x0 + t n. Then x_t ~ N((1-t) mu, (1-t)^2 sd^2 + t^2), and
E[x0 | x_t] = mu + (1-t) sd^2 / var_t * (x_t - (1-t) mu). The probability-flow ODE maps the noise n at
t = 1 to exactly mu + sd * n at t = 0, so a deterministic sampler's error is measured per sample.
"""

import pytest
import torch

from sora_core.diffusion.flow import expand_sigma, sigma_schedule
from sora_core.diffusion.samplers import SAMPLERS, SamplerError, check_sigmas, get_sampler

MU = torch.tensor([0.5, -1.0]).view(1, 2, 1, 1, 1)
SD = torch.tensor([0.3, 2.0]).view(1, 2, 1, 1, 1)
DETERMINISTIC = ["euler", "heun", "dpmpp_2m"]


def gaussian_denoiser(x, sigma):
    """Exact E[x0 | x_t] for x0 ~ N(MU, SD^2); sigma 0-dim, (B,) or (B, T)."""
    t = expand_sigma(sigma, x)
    a = 1 - t
    var = a ** 2 * SD ** 2 + t ** 2
    return MU + a * SD ** 2 / var * (x - a * MU)


@pytest.fixture(scope="module")
def noise():
    return torch.randn((1, 2, 8, 32, 32), generator=torch.Generator().manual_seed(0))


def channel_stats(x):
    return x.mean(dim=(0, 2, 3, 4)), x.std(dim=(0, 2, 3, 4))


@pytest.mark.parametrize("name", DETERMINISTIC)
@pytest.mark.parametrize("shift", [1.0, 3.0])
def test_error_shrinks_with_steps(name, shift, noise):
    target = MU + SD * noise
    errs = [(SAMPLERS[name](gaussian_denoiser, noise.clone(), sigma_schedule(n, shift)) - target).abs().mean().item()
            for n in (2, 8, 32)]
    assert errs[0] > errs[1] > errs[2], errs
    assert errs[2] < 0.1 * errs[0], errs


@pytest.mark.parametrize("name,steps,tol", [("euler", 96, 0.06), ("heun", 24, 0.03), ("dpmpp_2m", 24, 0.03)])
def test_reaches_data_distribution(name, steps, tol, noise):
    out = SAMPLERS[name](gaussian_denoiser, noise.clone(), sigma_schedule(steps, 1.0))
    mean, std = channel_stats(out)
    t_mean, t_std = channel_stats(MU + SD * noise)        # same noise: no Monte Carlo error in the check
    assert torch.allclose(mean, t_mean, atol=0.02), (mean, t_mean)
    assert torch.allclose(std, t_std, rtol=tol), (std, t_std)


def test_second_order_samplers_beat_euler(noise):
    target = MU + SD * noise
    sig = sigma_schedule(16, 1.0)
    err = {n: (SAMPLERS[n](gaussian_denoiser, noise.clone(), sig) - target).abs().mean().item() for n in DETERMINISTIC}
    assert err["heun"] < err["euler"] and err["dpmpp_2m"] < err["euler"], err


def test_euler_ancestral_distribution_and_seed(noise):
    sig = sigma_schedule(100, 1.0)
    run = lambda seed: SAMPLERS["euler_ancestral"](gaussian_denoiser, noise.clone(), sig,
                                                   generator=torch.Generator().manual_seed(seed))
    a, b, c = run(1), run(1), run(2)
    assert torch.equal(a, b)                 # seeded noise injection is reproducible
    assert not torch.allclose(a, c)
    mean, std = channel_stats(a)
    assert torch.allclose(mean, MU.flatten(), atol=0.06), mean
    assert torch.allclose(std, SD.flatten(), rtol=0.06), std


def test_sdedit_start_follows_exact_map(noise):
    """From a partially noised sample at the schedule's start the ODE keeps its own x0 component."""
    sig = sigma_schedule(24, 3.0, denoise=0.5)
    s0 = sig[0]
    x0 = MU + SD * torch.randn(noise.shape, generator=torch.Generator().manual_seed(5))
    x = (1 - s0) * x0 + s0 * noise
    # exact flow map from level s0 to 0: standardise by the marginal at s0, rescale by the data's
    z = (x - (1 - s0) * MU) / torch.sqrt((1 - s0) ** 2 * SD ** 2 + s0 ** 2)
    out = SAMPLERS["dpmpp_2m"](gaussian_denoiser, x, sig)
    assert (out - (MU + SD * z)).abs().mean() < 0.01


def test_callback_reports_every_step(noise):
    seen = []
    SAMPLERS["heun"](gaussian_denoiser, noise.clone(), sigma_schedule(5, 3.0), callback=seen.append)
    assert [d["i"] for d in seen] == list(range(5))
    assert all(d["denoised"].shape == noise.shape and d["sigma"] > d["sigma_next"] for d in seen)


def test_unknown_sampler_and_bad_sigmas():
    with pytest.raises(SamplerError, match="allowed: euler"):
        get_sampler("ddim_magic")
    with pytest.raises(SamplerError, match="descending"):
        check_sigmas(torch.tensor([0.5, 0.7, 0.0]))
    with pytest.raises(SamplerError, match=r"\[0, 1\]"):
        check_sigmas(torch.tensor([2.0, 1.0, 0.0]))
