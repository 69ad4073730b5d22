"""The editing features as frame-condition plans (pixel video in, a ``ConditionPlan`` out):
image-to-video, an image at the end, extend forward / backward, connect, loop and SDEdit. The
mechanism they build on (FrameCondition, resolve, condition_denoiser, Start, ConditionPlan) lives in
``frames.py`` and is re-exported here, so ``conditions.*`` is the one place to reach both.

Causal VAE subtlety (ft = temporal factor): latent frame 0 encodes pixel frame 0 alone, latent frame
k >= 1 encodes pixel frames 1 + (k-1) ft ... k ft. The helpers below choose pixel frames so that the
encoded condition has the same layout as the output position it is placed at:

- start of the output (image-to-video, extend forward, first half of connect/loop): the pixel frames
  are encoded alone, so the first one becomes a 1-frame latent; ``1 + (k-1) ft`` pixel frames give k
  latent frames placed at position 0.
- end of the output (extend backward, second half of connect/loop): ``k ft`` pixel frames are
  encoded after a copy of their first frame (the causal warm-up), and the warm-up latent is dropped,
  leaving k group latents placed at position -k. A single image at the end is a still of ft frames.
"""

from __future__ import annotations

from typing import Sequence

import torch
from einops import rearrange, repeat

from ..geometry import group_frames, pixel_frames
from .frames import (ConditionError, ConditionPlan, FrameCondition, MODES, Start,  # noqa: F401 (re-exported)
                     condition_denoiser, prepare_latent, resolve)


def _ft(vae) -> int:
    return int(vae.cfg.temporal_factor)


def _as_video(x: torch.Tensor, name: str) -> torch.Tensor:
    """(3, T, H, W) / (B, 3, T, H, W) / an image (B, 3, H, W) -> (B, 3, T, H, W)."""
    if x.ndim == 4 and x.shape[0] == 3:
        return x[None]
    if x.ndim == 4:
        return rearrange(x, "b c h w -> b c 1 h w")
    if x.ndim == 5:
        return x
    raise ConditionError(f"{name} must be a video (B, 3, T, H, W) / (3, T, H, W) or an image (B, 3, H, W), "
                         f"got shape {tuple(x.shape)}")


@torch.no_grad()
def encode_start(vae, video: torch.Tensor) -> torch.Tensor:
    """Latents of pixel frames meant for the start of an output: encoded alone (B, C, k, h, w)."""
    return vae.encode(video)


STILL_WARMUP = 5   # latent groups of causal warm-up in front of a still image at the end (image_at_end)


@torch.no_grad()
def encode_end(vae, video: torch.Tensor, warmup: int = 0) -> torch.Tensor:
    """Latents of ``k * ft`` pixel frames meant for the end of an output: k group latents.

    The first frame, held for ``1 + warmup * ft`` frames, is encoded in front as the causal warm-up,
    then its latents are dropped. A video's head takes one warm-up frame (``warmup=0``): its latents
    are then those of the video encoded from its start. A still image takes ``STILL_WARMUP`` groups
    (``image_at_end``): the causal encoder remembers many groups back, and a still encoded after a
    single warm-up frame gets a latent that decodes several grey levels off the image inside a video
    (loop seams jumped by that much); after 5 groups the latent is within 1 % of a long still's.
    """
    ft = _ft(vae)
    if video.shape[2] % ft:
        raise ConditionError(f"frames for the end of a video come in groups of {ft}; got {video.shape[2]}")
    if warmup < 0:
        raise ConditionError(f"warmup must be >= 0 latent groups, got {warmup}")
    lead = video[:, :, :1].expand(-1, -1, pixel_frames(1 + warmup, ft), -1, -1)
    return vae.encode(torch.cat([lead, video], dim=2))[:, :, 1 + warmup:]


def _context_frames(vae, video: torch.Tensor, latent_frames: int, name: str, at_start: bool) -> int:
    """Pixel frames behind ``latent_frames`` latents of context: ``pixel_frames`` at the start of an
    output (the first frame alone), ``group_frames`` at its end; raises when the video is too short."""
    if latent_frames < 1:
        raise ConditionError(f"{name}: latent_frames must be >= 1, got {latent_frames}")
    needed = (pixel_frames if at_start else group_frames)(latent_frames, _ft(vae))
    if video.shape[2] < needed:
        raise ConditionError(f"{name}: {latent_frames} latent frame(s) of context need {needed} pixel frames "
                             f"(temporal factor {_ft(vae)}); the video has {video.shape[2]}")
    return needed


def image_to_video(vae, image: torch.Tensor, strength: float = 1.0) -> ConditionPlan:
    """Animate an image: it is encoded alone and pinned as latent frame 0 (= pixel frame 0)."""
    image = _as_video(image, "image")[:, :, :1]
    return ConditionPlan((FrameCondition(encode_start(vae, image), 0, strength),))


def image_at_end(vae, image: torch.Tensor, strength: float = 1.0) -> ConditionPlan:
    """End on an image: a still of ft frames of it becomes the last latent frame (the last ft pixels),
    encoded as the steady state of the image held still (``STILL_WARMUP``)."""
    image = _as_video(image, "image")[:, :, :1]
    still = repeat(image, "b c 1 h w -> b c t h w", t=_ft(vae))
    return ConditionPlan((FrameCondition(encode_end(vae, still, warmup=STILL_WARMUP), -1, strength),))


EXTEND_CONTEXT = 2   # default latent frames of context for extensions: the motion so far, and 5 (forward) or
                     # 8 (backward) frames to cross-fade over at the join (see ConditionPlan.assemble)


def extend_forward(vae, video: torch.Tensor, latent_frames: int = EXTEND_CONTEXT, strength: float = 1.0) -> ConditionPlan:
    """Continue a video: its last ``1 + (k-1) ft`` pixel frames become the output's first k latents.

    ``assemble`` returns the given video followed by the new frames (the overlap dropped once).
    """
    video = _as_video(video, "video")
    n = _context_frames(vae, video, latent_frames, "extend_forward", at_start=True)
    cond = FrameCondition(encode_start(vae, video[:, :, -n:]), 0, strength)
    return ConditionPlan((cond,), before=video, drop_start=n)


def extend_backward(vae, video: torch.Tensor, latent_frames: int = EXTEND_CONTEXT, strength: float = 1.0) -> ConditionPlan:
    """Lead into a video: its first ``k ft`` pixel frames become the output's last k latents.

    ``assemble`` returns the new frames followed by the given video (the overlap dropped once).
    """
    video = _as_video(video, "video")
    n = _context_frames(vae, video, latent_frames, "extend_backward", at_start=False)
    cond = FrameCondition(encode_end(vae, video[:, :, :n]), -latent_frames, strength)
    return ConditionPlan((cond,), after=video, drop_end=n)


def connect(vae, a: torch.Tensor, b: torch.Tensor, latent_frames: int = 1, strength: float = 1.0) -> ConditionPlan:
    """A transition from video ``a`` into video ``b``: a's tail at the start, b's head at the end."""
    fwd = extend_forward(vae, a, latent_frames, strength)
    bwd = extend_backward(vae, b, latent_frames, strength)
    return ConditionPlan(fwd.conditions + bwd.conditions, before=fwd.before, after=bwd.after,
                         drop_start=fwd.drop_start, drop_end=bwd.drop_end)


def loop(vae, image: torch.Tensor, strength: float = 1.0) -> ConditionPlan:
    """A seamless loop through an image: it is pinned at the start and (as a still) at the end.

    ``assemble`` keeps pixel frames ``1 .. T - ft``: it drops frame 0 (the image decoded alone, through
    the causal VAE's single-frame path) and all but the first frame of the final still, so the clip
    ends on the image decoded inside the video and, played on repeat, wraps from it to frame 1: one
    step of motion, every frame from the same decoding path, and the image shown once per cycle.
    (Ending on the frame before the still wrapped to frame 0 instead, and the two decoding paths put
    the seam 2 to 3 grey levels further apart than a step.) The loop has ``T - ft`` frames.
    """
    start, end = image_to_video(vae, image, strength), image_at_end(vae, image, strength)
    return ConditionPlan(start.conditions + end.conditions, drop_start=1, drop_end=_ft(vae) - 1)


def as_plan(conditions: "Sequence[FrameCondition] | ConditionPlan") -> ConditionPlan:
    """A plan as is, or a sequence of FrameConditions as a plan without start or splicing."""
    return conditions if isinstance(conditions, ConditionPlan) else ConditionPlan(tuple(conditions))


def _span(span, t_lat: int) -> tuple[int, int]:
    """(first, stop) latent frames of an SDEdit span, negatives counting from the end, checked."""
    try:
        first, stop = (int(v) + (t_lat if int(v) < 0 else 0) for v in span)
    except (TypeError, ValueError):
        raise ConditionError(f"sdedit span must be (first, stop) latent frames, got {span!r}") from None
    if not 0 <= first < stop <= t_lat:
        raise ConditionError(f"sdedit span {tuple(span)} is empty or outside the source's {t_lat} latent frames: "
                             f"need 0 <= first < stop <= {t_lat} (negatives count from the end)")
    return first, stop


def sdedit(vae, video: torch.Tensor, denoise: float, span: tuple[int, int] | None = None) -> ConditionPlan:
    """Video-to-video editing (SDEdit): re-generate ``video`` starting from it noised part way.

    ``vae`` encodes the pixel ``video`` (B, 3, T, H, W) / (3, T, H, W) in [-1, 1]; with ``vae=None``,
    ``video`` is already latents (B, C, T_lat, h, w), e.g. a LATENT's samples. ``denoise`` in (0, 1] is
    the strength: 1 = from pure noise, lower keeps more of the source. The plan's ``start`` carries
    both; ``plan.schedule(steps, shift)`` is the truncated schedule, so ``generate(model, prompt,
    conditions=plan)`` at the source's size does the edit. ``span=(first, stop)`` (latent frames,
    Python slice bounds) re-generates only those frames: the others are pinned to the source.
    """
    if isinstance(vae, torch.Tensor):
        raise ConditionError("sdedit takes (vae, video, denoise): pass vae=None when video holds latents")
    latents = video if vae is None else encode_start(vae, _as_video(video, "video"))
    start = Start(latents, denoise)
    if span is None:
        return ConditionPlan((), start=start)
    t_lat = latents.shape[2]
    first, stop = _span(span, t_lat)
    pins = (FrameCondition(latents[:, :, a:b], a, 1.0) for a, b in ((0, first), (stop, t_lat)) if b > a)
    return ConditionPlan(tuple(pins), start=start)


__all__ = ["ConditionError", "MODES", "FrameCondition", "resolve", "prepare_latent", "condition_denoiser",
           "Start", "ConditionPlan", "as_plan", "EXTEND_CONTEXT", "STILL_WARMUP", "encode_start", "encode_end", "image_to_video", "image_at_end", "extend_forward",
           "extend_backward", "connect", "loop", "sdedit"]
