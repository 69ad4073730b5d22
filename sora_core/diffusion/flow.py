"""Flow matching: noising, sigma schedules, and the denoiser wrappers the samplers call.

Convention (Wan / rectified flow): ``x_t = (1 - t) * x0 + t * noise`` with ``t`` (called sigma here)
in [0, 1]; the model predicts the velocity ``v = noise - x0``, so ``x0 = x_t - t * v``.

A *denoiser* is any callable ``D(x, sigma) -> x0`` with x (B, C, T, H, W) and sigma a 0-dim tensor, a
(B,) tensor (one level per sample) or a (B, T) tensor (one level per latent frame). Samplers
(``samplers.py``) only see such callables; the wrappers here build them:

- ``FlowDenoiser(model)``: the DiT's velocity turned into x0, given text conditioning (``TextCond``);
- ``cfg_denoiser(denoiser, cond, uncond, scale)``: classifier-free guidance with a separate negative
  prompt, cond and uncond batched into one forward;
- frame conditions wrap either of them (``conditions.condition_denoiser``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class FlowError(ValueError):
    """A bad schedule parameter or sigma shape."""


# ---------------------------------------------------------------------------------------------
# Noising and schedules
# ---------------------------------------------------------------------------------------------

def expand_sigma(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """Broadcast a 0-dim, (B,) or (B, T) sigma against x (B, C, T, H, W) -> (B|1, 1, T|1, 1, 1)."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
    if s.ndim == 0:
        return s.reshape(1, 1, 1, 1, 1)
    if s.ndim == 1 and s.shape[0] in (1, x.shape[0]):
        return rearrange(s, "b -> b 1 1 1 1")
    if s.ndim == 2 and s.shape[0] in (1, x.shape[0]) and s.shape[1] == x.shape[2]:
        return rearrange(s, "b t -> b 1 t 1 1")
    raise FlowError(f"sigma of shape {tuple(s.shape)} does not fit x of shape {tuple(x.shape)}: "
                    f"allowed are (), (B,) or (B, T_lat)")


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """x_t = (1 - sigma) x0 + sigma noise; sigma 0-dim, (B,) or (B, T_lat). Shapes (B, C, T, H, W)."""
    s = expand_sigma(sigma, x0)
    return (1 - s) * x0 + s * noise


def check_shift(shift: float, name: str = "shift") -> float:
    """``shift`` as a float, or a FlowError naming ``name`` unless it is a finite number > 0."""
    try:
        value = float(shift)
    except (TypeError, ValueError):
        raise FlowError(f"{name} must be a number, got {shift!r}") from None
    if not 0 < value < math.inf:
        raise FlowError(f"{name} must be a finite number > 0, got {shift}")
    return value


def shift_sigmas(s: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """Resolution shift of a flow time: shift*s / (1 + (shift - 1) s). shift=1 is the identity."""
    shift = check_shift(shift)
    return shift * s / (1 + (shift - 1) * s)


def sigma_schedule(steps: int, shift: float = 1.0, denoise: float = 1.0) -> torch.Tensor:
    """Descending flow times (steps + 1,) float32 from ``shift_sigmas(denoise)`` down to exactly 0.

    ``denoise`` in (0, 1] is the SDEdit strength: the schedule is the linear ramp ``denoise -> 0``
    pushed through the shift, so denoise=1 starts from pure noise and denoise=0.5 starts where the full
    schedule is halfway (the same start ComfyUI and diffusers use), always with ``steps`` steps.
    A condition plan's ``schedule`` (``conditions.ConditionPlan``) is this with its SDEdit start's denoise.
    """
    if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
        raise FlowError(f"steps must be an integer >= 1, got {steps!r}")
    if not 0.0 < float(denoise) <= 1.0:
        raise FlowError(f"denoise must be in (0, 1] (1 = from pure noise), got {denoise}")
    base = torch.linspace(float(denoise), 0.0, steps + 1, dtype=torch.float64)
    sigmas = shift_sigmas(base, float(shift))
    sigmas[-1] = 0.0
    return sigmas.float()


def sdedit_start_sigma(denoise: float, shift: float = 1.0) -> float:
    """The flow time an SDEdit of strength ``denoise`` starts from (first entry of the schedule)."""
    return float(sigma_schedule(1, shift, denoise)[0])


def make_noise(shape: tuple[int, ...], generator: torch.Generator | None = None,
               device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise drawn on the CPU (so a seed gives the same noise on every device)."""
    if generator is not None and generator.device.type != "cpu":
        raise FlowError(f"noise is drawn on the CPU; got a generator on {generator.device}")
    return torch.randn(shape, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Text conditioning
# ---------------------------------------------------------------------------------------------

@dataclass
class TextCond:
    """Text conditioning: context (B, L, D) embeddings and mask (B, L) bool (True = real token)."""
    context: torch.Tensor
    mask: torch.Tensor

    def __post_init__(self):
        if self.context.ndim != 3 or self.mask.shape != self.context.shape[:2]:
            raise FlowError(f"TextCond needs context (B, L, D) and mask (B, L); got "
                            f"{tuple(self.context.shape)} and {tuple(self.mask.shape)}")

    @property
    def batch(self) -> int:
        return self.context.shape[0]

    def expand(self, batch: int) -> "TextCond":
        """Repeat a batch-1 conditioning to ``batch`` samples (no-op when sizes match)."""
        if self.batch == batch:
            return self
        if self.batch != 1:
            raise FlowError(f"text conditioning has batch {self.batch}; the latents have batch {batch}")
        return TextCond(repeat(self.context, "1 l d -> b l d", b=batch), repeat(self.mask, "1 l -> b l", b=batch))

    def to(self, device) -> "TextCond":
        return TextCond(self.context.to(device), self.mask.to(device))


def concat_conds(a: TextCond, b: TextCond) -> TextCond:
    """Stack two conditionings on the batch axis, padding the shorter token axis (masked out)."""
    length = max(a.context.shape[1], b.context.shape[1])

    def pad(c: TextCond) -> TextCond:
        extra = length - c.context.shape[1]
        return TextCond(F.pad(c.context, (0, 0, 0, extra)), F.pad(c.mask, (0, extra), value=False))
    a, b = pad(a), pad(b)
    return TextCond(torch.cat([a.context, b.context]), torch.cat([a.mask, b.mask]))


# ---------------------------------------------------------------------------------------------
# Denoisers
# ---------------------------------------------------------------------------------------------

class FlowDenoiser:
    """Turns a velocity model ``model(x, t, context, context_mask) -> v`` into ``D(x, sigma, cond) -> x0``.

    x (B, C, T, H, W); sigma 0-dim, (B,) or (B, T_lat) (per-frame times are passed to the model as
    (B, T_lat)); cond a ``TextCond`` of batch B or 1. The model runs under autocast when
    ``autocast_dtype`` is set (and the device supports it); x0 is returned in float32.
    """

    def __init__(self, model, autocast_dtype: torch.dtype | None = None):
        self.model = model
        self.autocast_dtype = autocast_dtype

    def _autocast(self, device: torch.device):
        if self.autocast_dtype is None or self.autocast_dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)

    def model_time(self, sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
        """The model's t: (B,) for a shared level, (B, T_lat) for per-frame levels."""
        s = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        B, T = x.shape[0], x.shape[2]
        if s.ndim == 0:
            return s.expand(B).clone()
        if s.ndim == 1 and s.shape[0] in (1, B):
            return s.expand(B).clone()
        if s.ndim == 2 and s.shape[0] in (1, B) and s.shape[1] == T:
            return s.expand(B, T).clone()
        raise FlowError(f"sigma of shape {tuple(s.shape)} does not fit x of shape {tuple(x.shape)}")

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: TextCond) -> torch.Tensor:
        t = self.model_time(sigma, x)
        cond = cond.expand(x.shape[0]).to(x.device)
        with self._autocast(x.device):
            v = self.model(x, t, cond.context, cond.mask)
        return x - expand_sigma(t, x) * v.float()

    def bind(self, cond: TextCond) -> Denoiser:
        """A sampler-ready ``D(x, sigma)`` with the conditioning fixed."""
        return lambda x, sigma: self(x, sigma, cond)


def check_cfg(scale: float, name: str = "cfg") -> float:
    """``scale`` as a float, or a FlowError naming ``name`` when it is not a finite number (NaN or
    infinite guidance turns every latent into NaN: a black video)."""
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise FlowError(f"{name} (the guidance scale) must be a number, got {scale!r}") from None
    if not math.isfinite(value):
        raise FlowError(f"{name} (the guidance scale) must be a finite number, got {scale}")
    return value


def _batch_sigma(sigma: torch.Tensor | float, batch: int, device) -> torch.Tensor:
    """0-dim / (B,) / (B, T) sigma repeated for a doubled (cond + uncond) batch."""
    s = torch.as_tensor(sigma, dtype=torch.float32, device=device)
    if s.ndim == 0:
        return s
    s = s.expand(batch, *s.shape[1:])
    return torch.cat([s, s])


def cfg_denoiser(denoiser: FlowDenoiser, cond: TextCond, uncond: TextCond, scale: float,
                 batched: bool = True) -> Denoiser:
    """Classifier-free guidance ``x0 = x0_u + scale (x0_c - x0_u)`` as a sampler-ready ``D(x, sigma)``.

    ``uncond`` is the negative prompt (the empty prompt when none). With ``batched`` both halves run in
    one forward of batch 2B; scale == 1 skips the unconditional pass entirely.
    """
    check_cfg(scale)
    if scale == 1.0:
        return denoiser.bind(cond)

    def guided(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        B = x.shape[0]
        c, u = cond.expand(B), uncond.expand(B)
        if batched:
            both = denoiser(torch.cat([x, x]), _batch_sigma(sigma, B, x.device), concat_conds(c, u))
            x0_c, x0_u = both.chunk(2)
        else:
            x0_c, x0_u = denoiser(x, sigma, c), denoiser(x, sigma, u)
        return x0_u + scale * (x0_c - x0_u)
    return guided


__all__ = ["Denoiser", "FlowError", "expand_sigma", "add_noise", "check_shift", "shift_sigmas", "sigma_schedule",
           "sdedit_start_sigma", "make_noise", "TextCond", "concat_conds", "FlowDenoiser", "check_cfg",
           "cfg_denoiser"]
