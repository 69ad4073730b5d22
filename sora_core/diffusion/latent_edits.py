"""Frame conditions as latent edits: a ``ConditionPlan`` written into a latent + a per-frame noise mask.

Samplers that know nothing of frame conditions (ComfyUI's KSampler, SamplerCustomAdvanced) can still
run every editing feature when the known frames are written into the latent they start from and a
mask says which frames to generate. This module turns the plans of ``conditions`` (extend forward /
backward, loop, connect, images pinned at any frames, SDEdit of a span) into that form, for any
causal video VAE described by a ``LatentSpec`` (temporal factor, spatial factor, channels), e.g. read
from the VAE a graph is wired to:

- ``samples`` (B, C, T, h, w): the given latents where a condition holds a frame, the starting latent's
  own values (or the SDEdit source) elsewhere;
- ``noise_mask`` (B, 1, T, h, w): ``1 - strength`` per latent frame, so 1 = generate, 0 = keep (the
  convention of ComfyUI's LATENT ``noise_mask``: its sampler re-noises the kept frames to each step's
  level, or, for models with per-token timesteps such as Wan 2.2 TI2V and LTX-Video, feeds them clean
  with timestep ``mask * t``).

Which pixel frames land in which latent frames is the plans' business (``conditions`` module doc, the
causal-VAE layout); pixel frame indices map to latent frames through ``geometry`` (``latent_index``).
The stitching numbers (frames to drop or cross-fade at each end) come with the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable, Sequence

import torch
from einops import rearrange

from ..geometry import ceil_valid_frames, latent_frames, latent_geometry_of
from . import conditions as cond
from .conditions import ConditionError, ConditionPlan, FrameCondition


@dataclass(frozen=True)
class LatentSpec:
    """A video VAE's latent layout: ``ft`` pixel frames per latent frame after the first, ``fs``
    pixels per latent cell along each side, ``channels`` latent channels."""
    ft: int
    fs: int
    channels: int

    def __post_init__(self):
        for name in ("ft", "fs", "channels"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConditionError(f"latent spec {name} must be a positive integer, got {v!r}")

    def describe(self) -> str:
        return f"{self.ft}x{self.fs}x{self.fs}, {self.channels} channels"

    def check_latent(self, latents: torch.Tensor, name: str = "latent") -> torch.Tensor:
        """``latents`` if it is (B, C, T, h, w) with this spec's channels, else a ConditionError naming both."""
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5:
            shape = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ConditionError(f"{name} must be a video latent (B, C, T, h, w), got {shape}")
        if latents.shape[1] != self.channels:
            raise ConditionError(
                f"{name} has {latents.shape[1]} channels but the VAE makes {self.channels} "
                f"(latent {tuple(latents.shape)}, VAE {self.describe()}): make the latent for this VAE's model")
        return latents

    def pixel_size(self, latents: torch.Tensor) -> tuple[int, int]:
        """(height, width) in pixels of a latent's frames."""
        g = latent_geometry_of(tuple(latents.shape), self.ft, self.fs)
        return g.height, g.width

    def pixel_frames(self, latents: torch.Tensor) -> int:
        """Pixel frames a latent decodes to."""
        return latent_geometry_of(tuple(latents.shape), self.ft, self.fs).frames


class SpecVAE:
    """An encoder for ``conditions``' plans: ``encode(video)`` of pixel videos (B, 3, T, H, W) in [-1, 1]
    through ``encode_fn``, checked against ``spec``; ``cfg.temporal_factor`` is the spec's."""

    def __init__(self, spec: LatentSpec, encode_fn: Callable[[torch.Tensor], torch.Tensor]):
        self.spec = spec
        self.cfg = SimpleNamespace(temporal_factor=spec.ft)
        self._encode = encode_fn

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        B, _, T, H, W = video.shape
        latents = self.spec.check_latent(self._encode(video), "the VAE's output")
        want = (B, self.spec.channels, latent_frames(T, self.spec.ft), *self.spec.pixel_size(latents))
        got = (latents.shape[0], latents.shape[1], latents.shape[2], H, W)
        if got != want:
            raise ConditionError(f"the VAE encoded {T} frames of {H}x{W} px to {tuple(latents.shape)}, not the "
                                 f"layout its spec ({self.spec.describe()}) gives")
        return latents.float()


@dataclass(frozen=True, eq=False)
class LatentEdit:
    """What a sampler needs (``samples``, ``noise_mask``) and what stitching needs: the decoded clip's
    first ``drop_start`` / last ``drop_end`` frames repeat given frames (overlaps, frames to trim)."""
    samples: torch.Tensor
    noise_mask: torch.Tensor
    drop_start: int = 0
    drop_end: int = 0


def check_frames_fit(video: torch.Tensor, latent: torch.Tensor, spec: LatentSpec, name: str) -> None:
    """Raise when pixel frames (B, 3, T, H, W) do not have the size the latent decodes to."""
    H, W = spec.pixel_size(latent)
    if tuple(video.shape[-2:]) != (H, W):
        raise ConditionError(
            f"{name} frames are {video.shape[-2]}x{video.shape[-1]} px (HxW) but the latent "
            f"{tuple(latent.shape)} is {H}x{W} px at the VAE's spatial factor {spec.fs}: resize the frames "
            f"or make the latent at their size")


def _prior_mask(mask: torch.Tensor | None, shape: tuple[int, ...]) -> torch.Tensor:
    """A LATENT's existing noise mask as (B, 1, T, h, w) (all ones without one)."""
    B, _, T, h, w = shape
    if mask is None:
        return torch.ones((B, 1, T, h, w))
    m = mask.float()
    if m.ndim == 5 and m.shape[2] == T and m.shape[-2:] == (h, w):
        return m[:, :1].expand(B, 1, T, h, w).clone() if m.shape[0] in (1, B) else _bad_mask(mask, shape)
    return _bad_mask(mask, shape)


def _bad_mask(mask: torch.Tensor, shape) -> torch.Tensor:
    raise ConditionError(f"the latent's noise_mask {tuple(mask.shape)} is not per latent frame for samples "
                         f"{tuple(shape)}: expected (B, 1, T, h, w)")


def to_latent(plan: ConditionPlan, latent: torch.Tensor, spec: LatentSpec,
              mask: torch.Tensor | None = None) -> LatentEdit:
    """Write ``plan`` into ``latent`` (B, C, T, h, w): conditioned frames get their latents and mask
    ``1 - strength``; the other frames keep ``latent``'s values (the SDEdit source for a plan with a
    start) and ``mask`` (a noise mask the latent already had; 1 without one)."""
    latent = spec.check_latent(latent)
    base = latent.float() if plan.start is None else spec.check_latent(plan.start.latents, "the SDEdit source").float()
    if plan.start is not None and base.shape[2:] != latent.shape[2:]:
        raise ConditionError(f"the SDEdit source latents {tuple(base.shape)} do not match the latent "
                             f"{tuple(latent.shape)}")
    shape = (latent.shape[0], *base.shape[1:])
    base = base.expand(shape)
    values, strengths = cond.resolve(plan.conditions, shape)
    if plan.start is None and plan.conditions and bool((strengths >= 1).all()):
        raise ConditionError(f"the given frames fill all {shape[2]} latent frames of the latent {tuple(latent.shape)}: "
                             f"nothing is left to generate; make the latent longer or give fewer frames")
    held = rearrange(strengths > 0, "b t -> b 1 t 1 1")
    samples = torch.where(held, values, base)
    keep = rearrange(1.0 - strengths, "b t -> b 1 t 1 1").expand(shape[0], 1, *shape[2:])
    noise_mask = torch.where(held, keep, _prior_mask(mask, shape))
    return LatentEdit(samples.contiguous(), noise_mask.contiguous(), plan.drop_start, plan.drop_end)


# ---------------------------------------------------------------------------------------------
# Placements of pixel frames
# ---------------------------------------------------------------------------------------------

def latent_index(frame: int, frames: int, ft: int) -> int:
    """The latent frame holding pixel frame ``frame`` (negative counts from the end) of a valid
    ``frames``-frame video: 0 for frame 0, else the group of ``ft`` frames it falls in."""
    if not -frames <= frame < frames:
        raise ConditionError(f"frame {frame} is outside a {frames}-frame output (allowed -{frames}..{frames - 1})")
    frame %= frames
    return latent_frames(ceil_valid_frames(frame + 1, ft), ft) - 1


def latent_span(first: int, stop: int, frames: int, ft: int) -> tuple[int, int]:
    """Latent frames (first, stop) covering pixel frames ``first .. stop - 1`` of a ``frames``-frame
    video (``stop`` 0 = to the end; negatives count from the end)."""
    a = first + frames if first < 0 else first
    b = frames if stop == 0 else (stop + frames if stop < 0 else stop)
    if not 0 <= a < b <= frames:
        raise ConditionError(f"frames {first}..{stop} select nothing of a {frames}-frame video "
                             f"(start before stop, both within -{frames}..{frames}; stop 0 = the end)")
    return latent_index(a, frames, ft), latent_index(b - 1, frames, ft) + 1


def pin_images(vae, images: torch.Tensor, frames: Sequence[int], output_frames: int,
               strength: float = 1.0) -> ConditionPlan:
    """Images (N, 3, 1, H, W) / (N, 3, H, W) pinned at pixel frames ``frames`` (one each, or one image
    for all) of an ``output_frames``-frame output: frame 0 is encoded alone (``image_to_video``), any
    later frame as a still filling the latent frame that holds it (``image_at_end``, a group of ft)."""
    images = images if images.ndim == 5 else rearrange(images, "n c h w -> n c 1 h w")
    if len(frames) == 0 or images.shape[0] not in (1, len(frames)):
        raise ConditionError(f"{images.shape[0]} image(s) for {len(frames)} frame(s): give one image per "
                             f"frame, or one image for all")
    out = []
    for n, frame in enumerate(frames):
        image = images[n if images.shape[0] > 1 else 0][None]
        j = latent_index(int(frame), output_frames, vae.cfg.temporal_factor)
        make = cond.image_to_video if j == 0 else cond.image_at_end
        (c,) = make(vae, image, strength).conditions
        out.append(FrameCondition(c.latents, j, strength))
    return ConditionPlan(tuple(out))


def sdedit_span(vae, video: torch.Tensor, first: int = 0, stop: int = 0) -> ConditionPlan:
    """SDEdit of pixel frames ``first .. stop - 1`` (``stop`` 0 = to the end) of ``video``: the latent
    frames holding them are re-generated from the source (the sampler's denoise sets how far), the
    rest stays the source (``conditions.sdedit``)."""
    span = latent_span(first, stop, video.shape[2], vae.cfg.temporal_factor)
    t_lat = latent_frames(video.shape[2], vae.cfg.temporal_factor)
    return cond.sdedit(vae, video, 1.0, None if span == (0, t_lat) else span)


__all__ = ["LatentSpec", "SpecVAE", "LatentEdit", "check_frames_fit", "to_latent", "latent_index",
           "latent_span", "pin_images", "sdedit_span"]
