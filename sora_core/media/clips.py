"""Clip utilities for composing graphs: frames <-> video tensors, stitching, trimming, picking,
fitting frame counts to the latent geometry, and transition curves for blending two clips.

A *clip* here is ComfyUI's IMAGE layout: a float tensor (T, H, W, 3) in [0, 1], frames first.
The core's video layout is (B, 3, T, H, W) in [-1, 1]; ``clip_to_video`` / ``video_to_clip`` convert.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from ..geometry import GeometryError, ceil_valid_frames, floor_valid_frames, is_valid_frames, valid_frames_near


class ClipError(ValueError):
    """Clips that do not fit together, or a bad frame range / frame list."""


# ---------------------------------------------------------------------------------------------
# Layout conversions
# ---------------------------------------------------------------------------------------------

def check_clip(clip: torch.Tensor, name: str = "images") -> torch.Tensor:
    """Return ``clip`` if it is (T, H, W, 3) with T >= 1, else raise naming ``name``."""
    if not isinstance(clip, torch.Tensor) or clip.ndim != 4 or clip.shape[-1] != 3 or clip.shape[0] < 1:
        shape = tuple(clip.shape) if isinstance(clip, torch.Tensor) else type(clip).__name__
        raise ClipError(f"{name} must be frames (T, H, W, 3) with T >= 1, got {shape}")
    return clip


def clip_to_video(clip: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) in [0, 1] -> (1, 3, T, H, W) in [-1, 1]."""
    clip = check_clip(clip)
    return rearrange(clip.float() * 2.0 - 1.0, "t h w c -> 1 c t h w")


def video_to_clip(video: torch.Tensor) -> torch.Tensor:
    """(B, 3, T, H, W) in [-1, 1] -> (B*T, H, W, 3) in [0, 1] on the CPU (samples one after another)."""
    if video.ndim != 5 or video.shape[1] != 3:
        raise ClipError(f"video must be (B, 3, T, H, W), got {tuple(video.shape)}")
    x = ((video.detach().float().cpu() + 1.0) * 0.5).clamp(0, 1)
    return rearrange(x, "b c t h w -> (b t) h w c")


# ---------------------------------------------------------------------------------------------
# Frame counts
# ---------------------------------------------------------------------------------------------

def fit_frames(clip: torch.Tensor, ft: int, mode: str = "trim", name: str = "images") -> torch.Tensor:
    """Make the frame count valid for temporal factor ``ft`` (1 or 1 + ft*k).

    ``mode``: "trim" drops the last frames (at most ft - 1), "pad" repeats the last frame,
    "error" raises naming the nearest valid counts.
    """
    T = check_clip(clip, name).shape[0]
    if is_valid_frames(T, ft):
        return clip
    if mode == "trim":
        return clip[: floor_valid_frames(T, ft)]
    if mode == "pad":
        extra = ceil_valid_frames(T, ft) - T
        return torch.cat([clip, clip[-1:].expand(extra, *clip.shape[1:])])
    if mode == "error":
        raise GeometryError(f"{name} has {T} frames; the model needs 1 or 1 + {ft}*k frames "
                            f"(e.g. {', '.join(map(str, valid_frames_near(T, ft)))})")
    raise ClipError(f"frame fit mode {mode!r} is unknown; allowed: trim, pad, error")


# ---------------------------------------------------------------------------------------------
# Stitch, trim, pick
# ---------------------------------------------------------------------------------------------

def concat(clips: list[torch.Tensor], overlap: int = 0) -> torch.Tensor:
    """Join clips in time, dropping the first ``overlap`` frames of every clip after the first
    (the context frames a chained extension repeats). All clips need the same frame size."""
    if not clips:
        raise ClipError("concat needs at least one clip")
    if overlap < 0:
        raise ClipError(f"overlap must be >= 0, got {overlap}")
    first = check_clip(clips[0], "clip 1")
    parts = [first]
    for i, clip in enumerate(clips[1:], start=2):
        check_clip(clip, f"clip {i}")
        if clip.shape[1:] != first.shape[1:]:
            raise ClipError(f"clip {i} has frames of {tuple(clip.shape[1:3])} (H, W) but clip 1 has "
                            f"{tuple(first.shape[1:3])}; resize one of them first")
        if overlap >= clip.shape[0]:
            raise ClipError(f"overlap={overlap} would drop all {clip.shape[0]} frames of clip {i}")
        parts.append(clip[overlap:].to(first.device, first.dtype))
    return torch.cat(parts)


STITCH_DROP = ("second_start", "first_end")


def crossfade_weights(frames: int) -> torch.Tensor:
    """(frames,) weights of the second version of ``frames`` frames two clips share:
    (i + 1) / (frames + 1), so the shared frames pass evenly from the first clip's version to the
    second's and neither side of the overlap jumps."""
    if frames < 1:
        raise ClipError(f"frames must be >= 1, got {frames}")
    return torch.arange(1, frames + 1, dtype=torch.float32) / (frames + 1)


def crossfade(first: torch.Tensor, second: torch.Tensor, overlap: int, time_dim: int = 0) -> torch.Tensor:
    """``first`` then ``second`` where the last ``overlap`` frames of ``first`` and the first
    ``overlap`` of ``second`` are two versions of the same frames, kept once as a cross-fade from the
    first version to the second.

    This is how generated frames join given ones: the frames an extension repeats come back through
    the VAE slightly softer than the given pixels, and a plain cut to them shows as a jump at the join
    (on world clips even a perfect continuation, cut in after the given frames, measures a boundary
    continuity ratio of 2.6; cross-faded over 5 shared frames, 1.2)."""
    n_first, n_second = first.shape[time_dim], second.shape[time_dim]
    if not 1 <= overlap <= min(n_first, n_second):
        raise ClipError(f"overlap={overlap} must be in 1..{min(n_first, n_second)} (the shorter clip's length) "
                        f"to cross-fade clips of {n_first} and {n_second} frames")
    if first.shape[:time_dim] + first.shape[time_dim + 1:] != second.shape[:time_dim] + second.shape[time_dim + 1:]:
        raise ClipError(f"clips of shapes {tuple(first.shape)} and {tuple(second.shape)} differ in more than "
                        f"their length; resize one of them first")
    second = second.to(first.device, first.dtype)
    head, shared_a = first.split([n_first - overlap, overlap], dim=time_dim)
    shared_b, tail = second.split([overlap, n_second - overlap], dim=time_dim)
    return torch.cat([head, blend(shared_a, shared_b, crossfade_weights(overlap), time_dim), tail], dim=time_dim)


def stitch(first: torch.Tensor, second: torch.Tensor, overlap: int = 0, drop_from: str = "second_start",
           fade: bool = False) -> torch.Tensor:
    """``first`` then ``second`` with ``overlap`` shared frames kept once: dropped from the start of
    ``second`` ("second_start", extend forward) or from the end of ``first`` ("first_end", extend
    backward, where the given video's own frames are kept). ``fade``: instead of dropping either
    version, cross-fade from the first clip's version of the shared frames to the second's
    (``crossfade``); ``drop_from`` does not matter then."""
    if drop_from not in STITCH_DROP:
        raise ClipError(f"drop_from {drop_from!r} is unknown; allowed: {', '.join(STITCH_DROP)}")
    if fade and overlap > 0:
        check_clip(first, "first")
        check_clip(second, "second")
        return crossfade(first, second, overlap)
    if drop_from == "second_start" or overlap == 0:
        return concat([first, second], overlap)
    check_clip(first, "first")
    if overlap >= first.shape[0]:
        raise ClipError(f"overlap={overlap} would drop all {first.shape[0]} frames of the first clip")
    return concat([first[: first.shape[0] - overlap], second])


def trim(clip: torch.Tensor, start: int = 0, end: int = 0) -> torch.Tensor:
    """Frames ``start`` .. ``end`` (exclusive). ``end`` = 0 means to the last frame; negative values
    count from the end. An empty range is an error naming the clip length."""
    T = check_clip(clip).shape[0]
    s = start + T if start < 0 else start
    e = T if end == 0 else (end + T if end < 0 else end)
    if not 0 <= s < e <= T:
        raise ClipError(f"trim start={start}, end={end} selects no frames of a {T}-frame clip "
                        f"(start must be before end, both within -{T}..{T})")
    return clip[s:e]


def parse_frame_list(spec: str, length: int) -> list[int]:
    """Frame indices from text like ``"0, 4, -1"`` or ``"0:16:2"`` (Python slice rules) for a clip of
    ``length`` frames; raises naming the bad item."""
    out = []
    for item in (p.strip() for p in spec.replace(";", ",").split(",")):
        if not item:
            continue
        try:
            if ":" in item:
                parts = [int(p) if p.strip() else None for p in item.split(":")]
                if len(parts) > 3 or parts[-1] == 0 and len(parts) == 3:
                    raise ValueError
                out.extend(range(length)[slice(*parts)])
                continue
            i = int(item)
        except ValueError:
            raise ClipError(f"frames item {item!r} is not an index or a start:stop:step range") from None
        if not -length <= i < length:
            raise ClipError(f"frame index {i} is outside a {length}-frame clip (allowed -{length}..{length - 1})")
        out.append(i % length)
    if not out:
        raise ClipError(f"frames {spec!r} selects no frames of a {length}-frame clip")
    return out


def pick(clip: torch.Tensor, spec: str) -> torch.Tensor:
    """The frames listed by ``spec`` (see ``parse_frame_list``), in that order."""
    idx = parse_frame_list(spec, check_clip(clip).shape[0])
    return clip[torch.tensor(idx, dtype=torch.long)]


RESIZE_MODES = ("crop", "stretch", "pad")


def resize(clip: torch.Tensor, height: int, width: int, mode: str = "crop") -> torch.Tensor:
    """Resize frames (T, H, W, 3) to (T, height, width, 3).

    ``mode``: "crop" scales to cover and cuts the centre, "stretch" ignores the aspect ratio,
    "pad" scales to fit and pads with black.
    """
    T, H, W, _ = check_clip(clip).shape
    if height < 1 or width < 1:
        raise ClipError(f"resize needs height and width >= 1, got {height}x{width}")
    if mode not in RESIZE_MODES:
        raise ClipError(f"resize mode {mode!r} is unknown; allowed: {', '.join(RESIZE_MODES)}")
    if (H, W) == (height, width):
        return clip
    x = rearrange(clip.float(), "t h w c -> t c h w")
    if mode == "stretch":
        sh, sw = height, width
    else:
        scale = (max if mode == "crop" else min)(height / H, width / W)
        sh, sw = max(1, round(H * scale)), max(1, round(W * scale))
    x = F.interpolate(x, size=(sh, sw), mode="bilinear", antialias=True, align_corners=False).clamp(0, 1)
    if mode == "crop":
        top, left = (sh - height) // 2, (sw - width) // 2
        x = x[:, :, top:top + height, left:left + width]
    elif mode == "pad":
        top, left = (height - sh) // 2, (width - sw) // 2
        x = F.pad(x, (left, width - sw - left, top, height - sh - top))
    return rearrange(x, "t c h w -> t h w c").to(clip.dtype)


# ---------------------------------------------------------------------------------------------
# Transitions
# ---------------------------------------------------------------------------------------------

CURVES = {
    "linear": lambda u: u,
    "ease_in_out": lambda u: u * u * (3.0 - 2.0 * u),
    "cosine": lambda u: 0.5 - 0.5 * math.cos(math.pi * u),
    "ease_in": lambda u: u * u,
    "ease_out": lambda u: 1.0 - (1.0 - u) * (1.0 - u),
    "hard_cut": lambda u: 0.0 if u < 0.5 else 1.0,
}


def transition_weights(frames: int, curve: str = "ease_in_out", start: float = 0.0,
                       end: float = 1.0) -> torch.Tensor:
    """(frames,) weights of the second clip: 0 before ``start``, 1 after ``end``, the ``curve`` in
    between; ``start`` / ``end`` are fractions of the clip length in [0, 1]."""
    if curve not in CURVES:
        raise ClipError(f"transition curve {curve!r} is unknown; allowed: {', '.join(CURVES)}")
    if not 0.0 <= start < end <= 1.0:
        raise ClipError(f"transition range start={start}, end={end} must satisfy 0 <= start < end <= 1")
    if frames < 1:
        raise ClipError(f"frames must be >= 1, got {frames}")
    pos = [i / (frames - 1) if frames > 1 else 0.5 for i in range(frames)]
    u = [min(max((p - start) / (end - start), 0.0), 1.0) for p in pos]
    return torch.tensor([CURVES[curve](v) for v in u], dtype=torch.float32)


def blend(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor, time_dim: int) -> torch.Tensor:
    """``(1 - w) a + w b`` with one weight per index of ``time_dim`` (same shapes for a and b)."""
    if a.shape != b.shape:
        raise ClipError(f"the two clips must have the same shape to blend, got {tuple(a.shape)} and "
                        f"{tuple(b.shape)}")
    if weights.shape[0] != a.shape[time_dim]:
        raise ClipError(f"{weights.shape[0]} weights for {a.shape[time_dim]} frames")
    shape = [1] * a.ndim
    shape[time_dim] = -1
    w = weights.to(a.device, a.dtype).reshape(shape)
    return a * (1 - w) + b * w


# ---------------------------------------------------------------------------------------------
# Colour matching at joins
# ---------------------------------------------------------------------------------------------

MATCH_AT = ("start", "end")
COLOR_SPACES = ("ycbcr", "lab", "rgb")
_FLAT = 1e-3          # a channel flatter than this (std) in the overlap is shifted, not scaled


def _to_space(clip: torch.Tensor, space: str) -> torch.Tensor:
    """(T, H, W, 3) in [0, 1] -> (T, 3, H, W) in ``space`` (kornia.color)."""
    import kornia.color as kc
    x = rearrange(clip.float(), "t h w c -> t c h w")
    return {"ycbcr": kc.rgb_to_ycbcr, "lab": lambda v: kc.rgb_to_lab(v.clamp(0, 1)), "rgb": lambda v: v}[space](x)


def _from_space(x: torch.Tensor, space: str) -> torch.Tensor:
    import kornia.color as kc
    x = {"ycbcr": kc.ycbcr_to_rgb, "lab": lambda v: kc.lab_to_rgb(v, clip=False), "rgb": lambda v: v}[space](x)
    return rearrange(x.clamp(0, 1), "t c h w -> t h w c")


def match_colors(clip: torch.Tensor, reference: torch.Tensor, overlap: int, at: str = "start",
                 space: str = "ycbcr") -> torch.Tensor:
    """``clip`` (T, H, W, 3) with its colours matched to ``reference`` over the frames they share.

    A generated clip that repeats ``overlap`` frames of a given video (an extension's context) comes
    back with slightly different colour and brightness, and every chained extension adds its shift.
    Here the clip's shared frames (its first ``overlap`` frames for ``at="start"``: an extension
    forward, matched to the reference's last ones; its last for ``at="end"``: backward, matched to
    the reference's first) set a per-channel mean / std transfer that is applied to the whole clip,
    so the join agrees and drift does not build up over a chain. ``space``: "ycbcr" (default: luma
    and two chroma channels, brightness apart from colour; linear, so a brightness / colour-cast shift
    is undone exactly), "lab" (CIE Lab, perceptually uniform but non-linear: a cast comes back to a
    few percent) or "rgb"."""
    check_clip(clip, "clip")
    check_clip(reference, "reference")
    if at not in MATCH_AT:
        raise ClipError(f"match at {at!r} is unknown; allowed: {', '.join(MATCH_AT)}")
    if space not in COLOR_SPACES:
        raise ClipError(f"colour space {space!r} is unknown; allowed: {', '.join(COLOR_SPACES)}")
    if not 1 <= overlap <= min(clip.shape[0], reference.shape[0]):
        raise ClipError(f"overlap={overlap} must be in 1..{min(clip.shape[0], reference.shape[0])} (the shorter "
                        f"clip's length) to match colours of clips of {clip.shape[0]} and {reference.shape[0]} frames")
    x = _to_space(clip, space)
    ours = x[:overlap] if at == "start" else x[-overlap:]
    theirs = _to_space(reference[-overlap:] if at == "start" else reference[:overlap], space).to(x)
    m_o, s_o = ours.mean(dim=(0, 2, 3)), ours.std(dim=(0, 2, 3))
    m_t, s_t = theirs.mean(dim=(0, 2, 3)), theirs.std(dim=(0, 2, 3))
    scale = torch.where(s_o > _FLAT, s_t / s_o.clamp_min(_FLAT), torch.ones_like(s_o))
    y = (x - m_o[:, None, None]) * scale[:, None, None] + m_t[:, None, None]
    return _from_space(y, space).to(clip.device, clip.dtype)
