"""Frame conditions: one mechanism for every "prompting with images and video" feature.

A ``FrameCondition`` is (clean latent frames, start position in the output's latent frames,
strength). ``resolve`` turns a list of them into a conditioning latent (B, C, T, H, W) and a mask
(B, T) holding each latent frame's strength (0 = free). ``condition_denoiser`` applies them while
sampling, in one of two modes:

- ``"timestep"`` (models trained with condition masks): a conditioned frame is shown to the model
  clean, with its own flow time 0 (the DiT takes one t per latent frame).
- ``"replace"`` (models trained without masks): a conditioned frame is replaced, before every model
  call, by the clean frame re-noised to the current level (with the run's fixed initial noise), and
  the model gets one t for the whole clip.

Strength s sets the frame's noise *floor* l = 1 - s. While the global level sigma is above l the frame
is held: the denoiser returns the clean latent for it (so every sampler keeps it on the noising path
of the clean latent), and the model sees it at level l (timestep mode) or sigma (replace mode). Once
sigma drops below l the frame is free and is denoised like the rest, starting from the clean latent
noised to that level: per-frame SDEdit. So s = 1 pins the frame exactly, s = 0 leaves it free, and
s in between lets it change, less the closer s is to 1.

SDEdit (video-to-video) is a plan with a ``Start`` (source latents + strength ``denoise``): sampling
starts from the source noised to the first level of ``plan.schedule(steps, shift)`` (the truncated
schedule) instead of pure noise; frame conditions apply on top (``sdedit(span=...)`` pins the rest).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
from einops import rearrange

from ..media.clips import crossfade
from .flow import Denoiser, add_noise, expand_sigma, sigma_schedule


class ConditionError(ValueError):
    """Conditions that do not fit the output latent (channels, sizes, positions) or bad strengths."""


MODES = ("timestep", "replace")
_EPS = 1e-5        # a level equal to a frame's floor (up to float rounding) already frees the frame


# ---------------------------------------------------------------------------------------------
# Representation and resolution
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class FrameCondition:
    """Clean latent frames (B|1, C, Tc, H, W) placed at latent frame ``position`` (negative counts
    from the end, as in Python indexing: -Tc puts them at the very end), with ``strength`` in [0, 1]."""
    latents: torch.Tensor
    position: int = 0
    strength: float = 1.0

    def __post_init__(self):
        if not isinstance(self.latents, torch.Tensor) or self.latents.ndim != 5:
            shape = tuple(self.latents.shape) if isinstance(self.latents, torch.Tensor) else type(self.latents)
            raise ConditionError(f"FrameCondition.latents must have shape (B, C, Tc, H, W), got {shape}")
        if not isinstance(self.position, int) or isinstance(self.position, bool):
            raise ConditionError(f"FrameCondition.position must be an integer, got {self.position!r}")
        if not 0.0 <= float(self.strength) <= 1.0:
            raise ConditionError(f"FrameCondition.strength must be in [0, 1], got {self.strength}")

    @property
    def frames(self) -> int:
        return self.latents.shape[2]

    def start(self, t_lat: int) -> int:
        """First output latent frame this condition covers (checked against ``t_lat``)."""
        start = self.position + t_lat if self.position < 0 else self.position
        if start < 0 or start + self.frames > t_lat:
            raise ConditionError(
                f"a condition of {self.frames} latent frame(s) at position {self.position} does not fit an "
                f"output of {t_lat} latent frames: allowed positions are {-t_lat} .. {t_lat - self.frames}")
        return start


def resolve(conditions: Sequence[FrameCondition], shape: tuple[int, ...],
            device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Conditions -> (cond_latent (B, C, T, H, W) float32, zeros where free; mask (B, T) float32).

    ``shape`` is the output latent shape (B, C, T, H, W). Later conditions override earlier ones on
    the frames they share. Raises ConditionError naming any mismatch.
    """
    if len(shape) != 5:
        raise ConditionError(f"the output latent shape must be (B, C, T, H, W), got {tuple(shape)}")
    B, C, T, H, W = shape
    cond = torch.zeros(shape, dtype=torch.float32, device=device)
    mask = torch.zeros((B, T), dtype=torch.float32, device=device)
    for n, c in enumerate(conditions):
        if not isinstance(c, FrameCondition):
            raise ConditionError(f"condition {n} is a {type(c).__name__}, not a FrameCondition")
        cb, cc, _, ch, cw = c.latents.shape
        if cc != C or (ch, cw) != (H, W):
            raise ConditionError(
                f"condition {n} has latents with {cc} channels of {ch}x{cw}; the output latent has {C} "
                f"channels of {H}x{W} (encode the frames at the output size with the model's VAE)")
        if cb not in (1, B):
            raise ConditionError(f"condition {n} has batch {cb}; the output has batch {B} (or use batch 1)")
        s = c.start(T)
        cond[:, :, s:s + c.frames] = c.latents.to(cond)
        mask[:, s:s + c.frames] = float(c.strength)
    return cond, mask


# ---------------------------------------------------------------------------------------------
# Application while sampling
# ---------------------------------------------------------------------------------------------

def prepare_latent(noise: torch.Tensor, sigma0: float | torch.Tensor, cond_latent: torch.Tensor | None = None,
                   mask: torch.Tensor | None = None, init_latent: torch.Tensor | None = None) -> torch.Tensor:
    """The sampler's starting point at level ``sigma0``: (init latent | conditions | 0) noised.

    noise, init_latent, cond_latent (B, C, T, H, W); mask (B, T). Conditioned frames start on the
    noising path of their clean latent; at sigma0 = 1 this is just the noise.
    """
    base = torch.zeros_like(noise) if init_latent is None else init_latent.to(noise)
    if cond_latent is not None and mask is not None:
        held = rearrange(mask > 0, "b t -> b 1 t 1 1")
        base = torch.where(held, cond_latent.to(noise), base)
    return add_noise(base, noise, sigma0)


def _frame_levels(sigma: torch.Tensor | float, x: torch.Tensor) -> torch.Tensor:
    """A 0-dim, (B,) or (B, T) sigma as (B, T) levels for x (B, C, T, H, W)."""
    B, T = x.shape[0], x.shape[2]
    return rearrange(expand_sigma(sigma, x), "b 1 t 1 1 -> b t").expand(B, T)


def condition_denoiser(denoiser: Denoiser, cond_latent: torch.Tensor, mask: torch.Tensor,
                       noise: torch.Tensor, mode: str = "timestep") -> Denoiser:
    """Wrap ``denoiser(x, sigma)`` so conditioned frames are held as described in the module doc.

    cond_latent, noise (B, C, T, H, W); mask (B, T) strengths. The inner denoiser must accept
    per-frame sigma (B, T) in timestep mode (``FlowDenoiser`` / ``cfg_denoiser`` do). When every frame
    is held, the model is not called at all.
    """
    if mode not in MODES:
        raise ConditionError(f"condition mode {mode!r} is unknown; allowed: {', '.join(MODES)}")
    floor = 1.0 - mask                                               # (B, T)

    def conditioned(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        s = _frame_levels(sigma, x)                                   # (B, T)
        held = (mask > 0) & (s > floor + _EPS)
        if not bool(held.any()):
            return denoiser(x, sigma)
        held5 = rearrange(held, "b t -> b 1 t 1 1")
        clean = cond_latent.to(x)
        if bool(held.all()):
            return clean.expand_as(x).clone()
        if mode == "timestep":
            frame_sigma = torch.where(held, floor, s)
            x_in = torch.where(held5, add_noise(clean, noise, frame_sigma), x)
            x0 = denoiser(x_in, frame_sigma)
        else:
            x_in = torch.where(held5, add_noise(clean, noise, sigma), x)
            x0 = denoiser(x_in, sigma)
        return torch.where(held5, clean, x0)
    return conditioned


# ---------------------------------------------------------------------------------------------
# Features expressed as conditions (pixel video in, conditions + assembly plan out)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class Start:
    """Where sampling starts instead of pure noise (SDEdit): clean latents (B|1, C, T, H, W) of the
    whole output noised to the first level of ``flow.sigma_schedule(steps, shift, denoise)``;
    ``denoise`` in (0, 1]: 1 = from pure noise, lower keeps more of the latents."""
    latents: torch.Tensor
    denoise: float = 1.0

    def __post_init__(self):
        if not isinstance(self.latents, torch.Tensor) or self.latents.ndim != 5:
            shape = tuple(self.latents.shape) if isinstance(self.latents, torch.Tensor) else type(self.latents)
            raise ConditionError(f"the SDEdit source latents must have shape (B, C, T, H, W), got {shape}")
        d = self.denoise
        if isinstance(d, bool) or not isinstance(d, (int, float)) or not 0.0 < d <= 1.0:
            raise ConditionError(f"SDEdit denoise must be a number in (0, 1] (1 = from pure noise, lower keeps "
                                 f"more of the source), got {d!r}")


@dataclass(frozen=True, eq=False)
class ConditionPlan:
    """Conditions for one feature, an optional SDEdit ``start``, and how to splice the generated
    pixels with the given ones.

    ``assemble(generated)`` returns before + generated[drop_start : T - drop_end] + after, where
    ``before``/``after`` are given pixel videos (B, 3, T, H, W) or None; the generated frames at
    ``drop_start`` / ``drop_end`` are the decoded versions of given frames (the context).
    """
    conditions: tuple[FrameCondition, ...]
    before: torch.Tensor | None = None
    after: torch.Tensor | None = None
    drop_start: int = 0
    drop_end: int = 0
    start: Start | None = None

    @property
    def denoise(self) -> float:
        """The SDEdit strength of the plan's start; 1 (from pure noise) without one."""
        return 1.0 if self.start is None else float(self.start.denoise)

    def schedule(self, steps: int, shift: float = 1.0) -> torch.Tensor:
        """The flow times (steps + 1,) to sample this plan along (``flow.sigma_schedule``)."""
        return sigma_schedule(steps, shift, self.denoise)

    def with_conditions(self, extra: Sequence[FrameCondition]) -> "ConditionPlan":
        """This plan with ``extra`` conditions after its own (they win on the frames they share)."""
        return replace(self, conditions=tuple(self.conditions) + tuple(extra))

    def assemble(self, video: torch.Tensor, fade: bool = True) -> torch.Tensor:
        """Splice a generated video (B, 3, T, H, W) or (3, T, H, W) with the given pixel frames.

        ``fade`` (default): the context frames are kept once as a cross-fade from the given pixels to
        their generated (decoded) version, or back (``clips.crossfade``), so the join does not jump
        from the given frames' sharpness to the VAE's; else the generated versions are dropped."""
        squeeze = video.ndim == 4
        v = video[None] if squeeze else video
        if self.before is not None and fade and self.drop_start:
            v = crossfade(self.before.to(v), v, self.drop_start, time_dim=2)
        else:
            v = v[:, :, self.drop_start:]
            if self.before is not None:
                v = torch.cat([self.before.to(v), v], dim=2)
        if self.after is not None and fade and self.drop_end:
            v = crossfade(v, self.after.to(v), self.drop_end, time_dim=2)
        else:
            v = v[:, :, : v.shape[2] - self.drop_end]
            if self.after is not None:
                v = torch.cat([v, self.after.to(v)], dim=2)
        return v[0] if squeeze else v
