"""Long video: fixed-size windows chained by extend-forward conditions, streamed to a file.

    schedule = parse_schedule("0:a red ball moving right | 20:the ball bounces")
    for chunk in long_video(model, schedule, frames=481, seed=0):   # one chunk per window
        ...                                                          # chunk.frames: uint8 (T, H, W, 3)
    write_long_video("minute.mp4", long_video(model, schedule, frames=481, seed=0), fps=8)

How the windows are laid out (``plan_windows``): every window has the model's trained length (its
``defaults.frames``) unless told otherwise; the first is generated from text alone, each later one
starts from the last ``overlap`` pixel frames of the one before (``conditions.extend_forward``: encoded
alone, pinned as its first latent frames, held by per-frame timesteps or replacement as the model's
``condition_mode`` says) and adds the rest. The last window starts further back (more context) so
that every window keeps the trained length and the windows tile the requested frame count exactly.

Against drift and seams: the context frames are written once (the previous window's version), the
new window adds the frames after them. ``anchor`` (default: on for models with per-frame timesteps,
when the overlap has at least 2 latent frames) pins the first window's first frame as latent frame 0
of every later window, the context following as group latents: the model keeps seeing how the video
began. ``match_colors_at_joins`` (off by default) matches each new window's colour statistics to the
previous window's over the frames they share (``clips.match_colors``). Measured on the default model
(``benchmarks/bench_long_video.py``, 20 steps, docs/long_video.md): the mean colour shift between the
first and the last 5 s of a minute is 0.9/255 with the anchor, 2.7 without, 34 with colour matching
(the transfer applied to a whole window feeds its error into the next window's context and compounds).

Memory is flat in the length: the generator yields each window's new frames as soon as they are
decoded and keeps only the context pixels for the next window (no latents of finished windows).
Window ``i`` draws its noise from its own generator, seeded from ``(seed, i)``: the same seed gives the
same video, and window 0 equals a plain ``generate`` of one window with that seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
import torch

from .diffusion.conditions import EXTEND_CONTEXT, ConditionPlan, FrameCondition, encode_end, extend_forward
from .diffusion.flow import TextCond, check_cfg, check_shift
from .geometry import (GeometryError, check_frames, group_frames, latent_frames, pixel_frames)
from .media.clips import clip_to_video, match_colors, video_to_clip
from .media.video_io import VideoIOError, check_fps, pad_to_even
from .pipeline import SoraModel, decode_latents, encode_text, make_noise_grid, sample_latents
from .prompts.schedule import Cue, ScheduleError, parse_schedule


class LongVideoError(ValueError):
    """A long-video request that does not fit: window / overlap sizes, anchor, output file (a malformed
    prompt schedule is a ``prompts.schedule.ScheduleError``)."""


# ---------------------------------------------------------------------------------------------
# Prompt schedule
# ---------------------------------------------------------------------------------------------

def prompt_weights(cues: Sequence[Cue], starts: Sequence[float]) -> list[tuple[int, int, float]]:
    """Per window (start time in seconds): (previous cue, current cue, weight of the current one).

    A cue applies from the first window that starts at or after its time; that window blends the
    previous cue's embeddings with the new one's half and half, the windows after it use the new one."""
    out, last = [], 0
    for start in starts:
        cur = max(i for i, c in enumerate(cues) if c.seconds <= start + 1e-9)
        out.append((last, cur, 0.5 if cur != last else 1.0))
        last = cur
    return out


def _blend(conds: TextCond, a: int, b: int, w: float) -> TextCond:
    """(1 - w) * cue a + w * cue b (embeddings), the union of their masks."""
    ctx = conds.context[a:a + 1] * (1.0 - w) + conds.context[b:b + 1] * w
    return TextCond(ctx, conds.mask[a:a + 1] | conds.mask[b:b + 1])


# ---------------------------------------------------------------------------------------------
# Window layout
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Window:
    """One window: ``index``, the output frame its first frame is ``start``, the latent frames of
    context it takes from the previous window ``context`` (0 for the first), its latent length
    ``latents``. Its new frames start at output frame ``start + context_frames(ft)``."""
    index: int
    start: int
    context: int
    latents: int

    def frames(self, ft: int) -> int:
        """Pixel frames the window decodes to."""
        return pixel_frames(self.latents, ft)

    def context_frames(self, ft: int) -> int:
        """Pixel frames of context (encoded alone at the window's start: ``1 + (k - 1) ft``)."""
        return pixel_frames(self.context, ft) if self.context else 0


def plan_windows(frames: int, window: int, overlap: int, ft: int) -> list[Window]:
    """Windows of ``window`` pixel frames tiling ``frames`` exactly, each after the first taking
    ``overlap`` pixel frames of context (the last one more, so it keeps the full length). All three
    are valid frame counts (1 + k ft); GeometryError / LongVideoError name the bad one."""
    check_frames(frames, ft, "frames")
    check_frames(window, ft, "window")
    check_frames(overlap, ft, "overlap")
    t_total, t_win, t_ctx = latent_frames(frames, ft), latent_frames(window, ft), latent_frames(overlap, ft)
    if window < 2 or not 1 <= t_ctx < t_win:
        raise LongVideoError(f"overlap={overlap} frames must be shorter than window={window} frames (and the "
                             f"window longer than 1 frame) so each window adds new frames")
    if t_total <= t_win:
        return [Window(0, 0, 0, t_total)]
    wins, done = [Window(0, 0, 0, t_win)], t_win
    while done < t_total:
        add = min(t_win - t_ctx, t_total - done)
        ctx = t_win - add
        wins.append(Window(len(wins), pixel_frames(done, ft) - pixel_frames(ctx, ft), ctx, t_win))
        done += add
    return wins


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

@dataclass
class Chunk:
    """What a window adds to the output: ``frames`` uint8 (T, H, W, 3) starting at output frame
    ``start``; ``window`` the Window, ``total`` the number of windows."""
    frames: np.ndarray
    start: int
    window: Window
    total: int


def window_seed(seed: int, index: int) -> int:
    """The noise seed of window ``index`` (window 0: ``seed`` itself)."""
    return (int(seed) + 0x9E3779B97F4A7C15 * int(index)) % (2 ** 63)


def _conditions(model: SoraModel, prev: torch.Tensor, win: Window, anchor: torch.Tensor | None) -> ConditionPlan:
    """The window's context from the previous window's pixels ``prev`` (1, 3, T, H, W): extend forward
    (``win.context`` latent frames), or with an ``anchor`` latent: the anchor as latent frame 0 and the
    previous window's last ``win.context - 1`` groups after it (``encode_end``); both drop the same
    ``pixel_frames(win.context)`` frames."""
    if anchor is None:
        return extend_forward(model.vae, prev, win.context)
    ft = int(model.vae.cfg.temporal_factor)
    n = group_frames(win.context - 1, ft)
    groups = encode_end(model.vae, prev[:, :, prev.shape[2] - n:])
    return ConditionPlan((FrameCondition(anchor, 0), FrameCondition(groups, 1)),
                         drop_start=pixel_frames(win.context, ft))


def _resolve_anchor(model: SoraModel, anchor: bool | None, condition_mode: str | None,
                    wins: Sequence[Window]) -> bool:
    """Whether to anchor: ``None`` = when the model takes per-frame timesteps and every window has at
    least 2 latent frames of context; ``True`` checks both (a LongVideoError says which fails)."""
    mode = model.condition_mode if condition_mode is None else condition_mode
    possible = mode == "timestep" and all(w.context >= 2 for w in wins[1:])
    if anchor is None or not anchor or len(wins) == 1:
        return bool(anchor is None and possible and len(wins) > 1)
    if mode != "timestep":
        raise LongVideoError(f"anchor needs a model with per-frame timesteps (condition mode 'timestep'); this "
                             f"model's is {mode!r}: use match_colors instead")
    if any(w.context < 2 for w in wins[1:]):
        raise LongVideoError("anchor takes the first latent frame of each window's context: the overlap must be "
                             "at least 2 latent frames (1 + temporal factor pixel frames)")
    return True


def long_video(model: SoraModel, prompt: str | Sequence[Cue], negative_prompt: str = "", *, frames: int,
               window: int | None = None, overlap: int | None = None, height: int | None = None,
               width: int | None = None, fps: float | None = None, steps: int | None = None,
               cfg: float | None = None, sampler: str | None = None, shift: float | None = None, seed: int = 0,
               match_colors_at_joins: bool = False, anchor: bool | None = None, condition_mode: str | None = None,
               callback: Callable[[dict], None] | None = None, autocast_dtype: torch.dtype | None = torch.bfloat16,
               tile_size: int | None = None, first: ConditionPlan | None = None) -> Iterator[Chunk]:
    """Generate ``frames`` pixel frames in windows (see the module doc); yields one ``Chunk`` per window.

    Unset options take the model's defaults (``window``: its trained frame count; ``overlap``: the
    pixel frames of ``conditions.EXTEND_CONTEXT`` latent frames). ``prompt``: a string (a schedule,
    ``parse_schedule``) or cues. ``callback`` gets the sampler's dict plus ``window`` and ``windows``.
    ``first``: a condition plan for the first window (e.g. ``conditions.image_to_video``: start on an
    image); its frames are kept as generated (no splicing)."""
    d, s, ft = model.defaults, model.schedule, int(model.vae.cfg.temporal_factor)
    window = d.frames if window is None else window
    overlap = pixel_frames(EXTEND_CONTEXT, ft) if overlap is None else overlap
    height, width, fps = (d.height if height is None else height), (d.width if width is None else width), \
        (d.fps if fps is None else fps)
    wins = plan_windows(frames, window, overlap, ft)
    anchor = _resolve_anchor(model, anchor, condition_mode, wins)
    cues = parse_schedule(prompt, frames / fps) if isinstance(prompt, str) else tuple(prompt)
    steps, sampler = (s.steps if steps is None else steps), (s.sampler if sampler is None else sampler)
    cfg = check_cfg(s.cfg if cfg is None else cfg)
    sigmas = ConditionPlan(()).schedule(steps, check_shift(s.shift if shift is None else shift))
    texts = encode_text(model, [c.prompt for c in cues] + ([negative_prompt] if cfg != 1.0 else []))
    if model.low_memory:
        model.release_text_encoder()
    uncond = TextCond(texts.context[-1:], texts.mask[-1:]) if cfg != 1.0 else None
    weights = prompt_weights(cues, [(w.start + w.context_frames(ft)) / fps for w in wins])
    return _run(model, wins, texts, uncond, weights, dict(
        height=height, width=width, sigmas=sigmas, cfg=cfg, sampler=sampler, seed=seed, ft=ft,
        match=match_colors_at_joins, anchor=anchor, mode=condition_mode, callback=callback, dtype=autocast_dtype,
        tile=tile_size, first=ConditionPlan(()) if first is None else ConditionPlan(first.conditions)))


def _run(model, wins, texts, uncond, weights, o) -> Iterator[Chunk]:
    """The window loop behind ``long_video`` (a generator: nothing runs until the first chunk is asked)."""
    prev = anchor_latent = None          # the previous window's decoded pixels (1, 3, T, H, W) in [-1, 1]
    for win, (a, b, w) in zip(wins, weights):
        geo = model.geometry(win.frames(o["ft"]), o["height"], o["width"])
        plan = o["first"] if prev is None else _conditions(model, prev, win, anchor_latent)
        gen = torch.Generator().manual_seed(window_seed(o["seed"], win.index))
        report = None if o["callback"] is None else \
            (lambda info, i=win.index: o["callback"]({**info, "window": i, "windows": len(wins)}))
        latents = sample_latents(model, make_noise_grid(model, geo, gen), _blend(texts, a, b, w), uncond,
                                 sigmas=o["sigmas"], cfg=o["cfg"], sampler=o["sampler"], conditions=plan,
                                 condition_mode=o["mode"], generator=gen, callback=report, autocast_dtype=o["dtype"])
        video = decode_latents(model, latents, o["dtype"], o["tile"]).cpu()
        if o["anchor"] and prev is None:
            anchor_latent = latents[:, :, :1].clone()
        del latents
        video, new = _join(prev, video, plan.drop_start, o["match"], skip=int(anchor_latent is not None and
                                                                               prev is not None))
        prev = video
        yield Chunk(_to_uint8(new), win.start + win.context_frames(o["ft"]), win, len(wins))


def _join(prev: torch.Tensor | None, video: torch.Tensor, shared: int, match: bool, skip: int = 0):
    """(this window's pixels as the next window's source, the frames it adds to the output).

    The first ``shared`` frames are context, written already (from ``prev``); with ``match`` the
    window's colours are matched to ``prev`` over them (less the first ``skip``: an anchor frame),
    and its frames after them are what it adds."""
    if prev is None:
        return video, video
    if match:
        clip = match_colors(video_to_clip(video[:, :, skip:]), video_to_clip(prev), shared - skip, at="start")
        video = torch.cat([video[:, :, :skip], clip_to_video(clip).to(video)], dim=2)
    return video, video[:, :, shared:]


def _to_uint8(video: torch.Tensor) -> np.ndarray:
    """(1, 3, T, H, W) in [-1, 1] -> uint8 (T, H, W, 3)."""
    x = ((video[0].float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).numpy()


# ---------------------------------------------------------------------------------------------
# Streaming to a file
# ---------------------------------------------------------------------------------------------

STREAM_EXTS = (".mp4", ".webp")


def write_long_video(path, chunks: Iterator[Chunk], fps: float, *, overwrite: bool = False, crf: int = 16,
                     on_chunk: Callable[[Chunk], None] | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Encode the chunks frame by frame as they come (mp4 H.264 or animated webp), to a temporary
    file moved into place at the end (``files.atomic_write``; an existing file gets a new name
    unless ``overwrite``). ``on_chunk`` is called after each chunk is written. ``metadata``: text tags
    stored in an mp4 (as ``video_io.write_video`` stores them)."""
    import av

    from .media.files import atomic_write
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in STREAM_EXTS:
        raise VideoIOError(f"a long video streams to {', '.join(STREAM_EXTS)} files; {path.name!r} is not one "
                           f"(a gif needs every frame for its palette)")
    rate = check_fps(fps, ext)

    def write(tmp: Path) -> None:
        fmt, codec, pix = ("mp4", "libx264", "yuv420p") if ext == ".mp4" else ("webp", "libwebp_anim", "yuv420p")
        opts = {"crf": str(int(crf)), "preset": "medium"} if ext == ".mp4" else {"quality": "90"}
        flags = "+faststart+use_metadata_tags" if metadata else "+faststart"
        with av.open(str(tmp), "w", format=fmt, options={"movflags": flags} if ext == ".mp4" else {"loop": "0"}) as out:
            if ext == ".mp4":
                out.metadata.update(metadata or {})
            stream = None
            for chunk in chunks:
                frames = pad_to_even(chunk.frames) if ext == ".mp4" else chunk.frames
                if stream is None:
                    stream = out.add_stream(codec, rate=rate)
                    stream.pix_fmt, stream.options = pix, opts
                    stream.height, stream.width = frames.shape[1:3]
                for f in frames:
                    for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                        out.mux(packet)
                if on_chunk is not None:
                    on_chunk(chunk)
            if stream is None:
                raise LongVideoError("no frames to write: the generator yielded no window")
            for packet in stream.encode():
                out.mux(packet)

    return atomic_write(path, write, overwrite=overwrite)


__all__ = ["LongVideoError", "ScheduleError", "Cue", "parse_schedule", "prompt_weights", "Window", "plan_windows", "Chunk",
           "window_seed", "long_video", "write_long_video", "STREAM_EXTS", "GeometryError"]
