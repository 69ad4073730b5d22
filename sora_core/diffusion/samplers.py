"""Samplers for flow matching, in the k-diffusion style: flat pure functions of one signature.

    sample_x(denoiser, x, sigmas, callback=None, generator=None) -> x0

- ``denoiser(x, sigma) -> x0`` (see ``flow.py``); x (B, C, T, H, W); sigma a 0-dim tensor.
- ``sigmas``: descending flow times (N + 1,) in [0, 1] ending at 0 (``flow.sigma_schedule``); x starts
  at level ``sigmas[0]`` (pure noise when it is 1).
- ``callback(dict(i, x, sigma, sigma_next, denoised))`` after each model evaluation of step i, for
  progress bars and previews; it cannot change the state.
- ``generator``: a CPU ``torch.Generator`` for samplers that inject noise (ancestral); deterministic
  samplers ignore it.

With x_t = (1 - s) x0 + s noise, the probability-flow ODE is dx/ds = (x - x0) / s = v, so Euler and
Heun are the k-diffusion formulas unchanged. DPM-Solver++(2M) is written for the flow's own
alpha_s = 1 - s and half-log-SNR lambda = log((1 - s) / s); it is exact when x0 does not change.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .flow import Denoiser, FlowError, make_noise

Callback = Callable[[dict], None]


class SamplerError(ValueError):
    """An unknown sampler name, a malformed sigma schedule, or a latent that became NaN / infinite."""


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------

def check_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    """Validate a schedule: 1-D, at least 2 entries, in [0, 1], strictly descending."""
    sigmas = torch.as_tensor(sigmas, dtype=torch.float32)
    if sigmas.ndim != 1 or sigmas.numel() < 2:
        raise SamplerError(f"sigmas must be a 1-D schedule with >= 2 entries, got shape {tuple(sigmas.shape)}")
    if not bool(torch.isfinite(sigmas).all()):
        raise SamplerError(f"sigmas must be finite numbers, got {[round(float(v), 4) for v in sigmas[:8]]}"
                           f"{' ...' if len(sigmas) > 8 else ''} (check the schedule's shift)")
    if sigmas.min() < 0 or sigmas.max() > 1:
        raise SamplerError(f"sigmas must lie in [0, 1] for flow matching, got [{sigmas.min():.4g}, {sigmas.max():.4g}]")
    if not bool((sigmas[1:] < sigmas[:-1]).all()):
        raise SamplerError("sigmas must be strictly descending")
    return sigmas


def check_finite(x: torch.Tensor, what: str, i: int, steps: int, sigma) -> None:
    """Raise a SamplerError naming the step and sigma when ``x`` holds NaN or infinity (one reduction:
    cheap next to a model evaluation). Catches NaN weights or an extreme guidance scale before they
    turn into a black video."""
    if not bool(torch.isfinite(x).all()):
        raise SamplerError(f"the {what} became NaN or infinite at step {i + 1} of {steps} "
                           f"(sigma {float(sigma):.4g}): the model's weights hold NaN / inf, or the guidance "
                           f"scale (cfg) or the inputs are too extreme")


def _report(callback: Callback | None, i: int, x, sigma, sigma_next, denoised, steps: int) -> None:
    """Check the step's denoised latent, then pass the step to ``callback``."""
    check_finite(denoised, "denoised latent", i, steps, sigma)
    if callback is not None:
        callback({"i": i, "x": x, "sigma": sigma, "sigma_next": sigma_next, "denoised": denoised})


def _lam(s: float) -> float:
    """Half-log-SNR of flow time s: log((1 - s) / s); -inf at s = 1."""
    return -math.inf if s >= 1.0 else math.log1p(-s) - math.log(s)


# ---------------------------------------------------------------------------------------------
# Samplers
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def sample_euler(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                 callback: Callback | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler on the probability-flow ODE: one model evaluation per step."""
    sigmas = check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, s)
        _report(callback, i, x, s, s_next, denoised, len(sigmas) - 1)
        ratio = (s_next / s).item()
        x = ratio * x + (1.0 - ratio) * denoised          # = x + (x - denoised) / s * (s_next - s)
    check_finite(x, "latent", len(sigmas) - 2, len(sigmas) - 1, sigmas[-2])
    return x


@torch.no_grad()
def sample_heun(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                callback: Callback | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Heun's second-order method (two evaluations per step, Euler on the last step to s = 0)."""
    sigmas = check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i], sigmas[i + 1]
        denoised = denoiser(x, s)
        _report(callback, i, x, s, s_next, denoised, len(sigmas) - 1)
        d = (x - denoised) / s
        dt = s_next - s
        x_2 = x + d * dt
        if s_next == 0:
            x = x_2
            continue
        d_2 = (x_2 - denoiser(x_2, s_next)) / s_next
        x = x + (d + d_2) / 2 * dt
    check_finite(x, "latent", len(sigmas) - 2, len(sigmas) - 1, sigmas[-2])
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                    callback: Callback | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """DPM-Solver++(2M): multistep second order in lambda = log((1 - s) / s), one evaluation per step."""
    sigmas = check_sigmas(sigmas)
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i].item(), sigmas[i + 1].item()
        denoised = denoiser(x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i + 1], denoised, len(sigmas) - 1)
        if s_next == 0:
            x = denoised
            break
        h = _lam(s_next) - _lam(s)
        d = denoised
        if old_denoised is not None and math.isfinite(h) and math.isfinite(h_last):
            r = h_last / h
            d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = (s_next / s) * x + (1 - s_next) * (-math.expm1(-h)) * d
        old_denoised, h_last = denoised, h
    check_finite(x, "latent", len(sigmas) - 2, len(sigmas) - 1, sigmas[-2])
    return x


@torch.no_grad()
def sample_euler_ancestral(denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor,
                           callback: Callback | None = None, generator: torch.Generator | None = None,
                           eta: float = 1.0) -> torch.Tensor:
    """Euler ancestral for flow matching: step down past s_next, then re-noise back to it.

    Fresh noise is drawn on the CPU from ``generator`` each step (seeded runs are reproducible).
    """
    sigmas = check_sigmas(sigmas)
    for i in range(len(sigmas) - 1):
        s, s_next = sigmas[i].item(), sigmas[i + 1].item()
        denoised = denoiser(x, sigmas[i])
        _report(callback, i, x, sigmas[i], sigmas[i + 1], denoised, len(sigmas) - 1)
        s_down = s_next * (1 + (s_next / s - 1) * eta)
        x = (s_down / s) * x + (1 - s_down / s) * denoised
        if s_next > 0 and eta > 0:
            a_next, a_down = 1 - s_next, 1 - s_down
            renoise = math.sqrt(max(s_next ** 2 - (s_down * a_next / a_down) ** 2, 0.0))
            noise = make_noise(tuple(x.shape), generator, x.device, x.dtype)
            x = (a_next / a_down) * x + renoise * noise
    check_finite(x, "latent", len(sigmas) - 2, len(sigmas) - 1, sigmas[-2])
    return x


# ---------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------

SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
    "euler_ancestral": sample_euler_ancestral,
}

STOCHASTIC = {"euler_ancestral"}


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler function registered as ``name``; a clear error lists the allowed names."""
    if name not in SAMPLERS:
        raise SamplerError(f"unknown sampler {name!r}; allowed: {', '.join(SAMPLERS)}")
    return SAMPLERS[name]


__all__ = ["SAMPLERS", "STOCHASTIC", "SamplerError", "FlowError", "check_sigmas", "check_finite", "get_sampler",
           "sample_euler", "sample_heun", "sample_dpmpp_2m", "sample_euler_ancestral"]
