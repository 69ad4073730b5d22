"""``sora generate`` beyond the model's trained length: checks of the window options and the prompt
schedule (before any weights load), and the windowed run streaming to the output file
(``sora_core.long_video``)."""

from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass

from . import CLIError


@dataclass(frozen=True)
class LongPlan:
    """A validated long-video request: window and overlap (pixel frames), number of windows, cues."""
    window: int
    overlap: int
    count: int
    cues: tuple


def warn_long_prompts(spec, tokenizer=None, **prompts: str) -> None:
    """Print a warning on stderr for each prompt the text encoder will cut (``name=text``); a Wan
    model's prompts are counted by its umT5 ``tokenizer``."""
    from ..models.text import PromptTruncatedWarning, prompt_overflow
    for name, text in prompts.items():
        if tokenizer is None:
            message = prompt_overflow(text, spec.text_encoder.max_len)
        else:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", PromptTruncatedWarning)
                tokenizer([text], spec.text_encoder.max_len)
            message = next((str(w.message) for w in caught if issubclass(w.category, PromptTruncatedWarning)), None)
        if message is not None:
            print(f"warning: {name}: {message}", file=sys.stderr)


def _schedule(args, seconds: float):
    from ..long_video import ScheduleError, parse_schedule
    try:
        return parse_schedule(args.prompt, seconds)
    except ScheduleError as e:
        raise CLIError(f"prompt: {e}") from None


def check_long(args, spec, frames: int, height: int, width: int, fps: float, out, image) -> LongPlan | None:
    """None for a video of one window (the plain path), else the checked window layout. Raises a
    CLIError naming --window, --overlap, --anchor or the prompt schedule. (``out`` and
    ``image`` need no more checks: a gif is collected and written at the end, since its palette needs
    every frame; an image starts the first window.)"""
    from ..diffusion.conditions import EXTEND_CONTEXT
    from ..families import family
    from ..geometry import GeometryError, check_frames, pixel_frames
    from ..long_video import LongVideoError, plan_windows
    ft = spec.vae.temporal_factor
    window = spec.defaults.frames if args.window is None else args.window
    overlap = pixel_frames(EXTEND_CONTEXT, ft) if args.overlap is None else args.overlap
    try:
        check_frames(window, ft, "--window")
        check_frames(overlap, ft, "--overlap")
    except GeometryError as e:
        raise CLIError(str(e)) from None
    cues = _schedule(args, frames / fps)
    if frames <= window:
        if len(cues) > 1:
            raise CLIError(f"prompt: a prompt schedule changes prompts at window boundaries, and this video of "
                           f"{frames} frames is one window of {window}: make it longer or --window shorter")
        return None
    try:
        wins = plan_windows(frames, window, overlap, ft)
    except (GeometryError, LongVideoError) as e:
        raise CLIError(f"--window {window} / --overlap {overlap}: {e}") from None
    mode = args.condition_mode or family(spec.family).condition_mode
    if args.anchor == "on" and (mode != "timestep" or any(w.context < 2 for w in wins[1:])):
        raise CLIError(f"--anchor on needs per-frame timesteps (condition mode {mode!r} here) and an --overlap of "
                       f"at least {pixel_frames(2, ft)} frames")
    return LongPlan(window, overlap, len(wins), tuple(cues))


def run_long(args, spec, found, req, seed: int, prompt: str) -> int:
    """Generate ``req`` in windows and stream them to ``req.out``; prints what was written."""
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..diffusion.conditions import image_to_video
    from ..long_video import STREAM_EXTS, Cue, long_video, write_long_video
    from ..media.video_io import frames_to_tensor, write_video
    from ..models.text import PromptTruncatedWarning
    from ..pipeline import SoraModel
    plan = req.windows
    cues = plan.cues if len(plan.cues) > 1 else (Cue(0.0, prompt),)
    warn_long_prompts(spec, found.tokenizer, **{f"prompt at {c.seconds:g} s": c.prompt for c in cues},
                      **({"--negative": args.negative} if req.cfg != 1 else {}))
    print(f"long video: {plan.count} windows of {plan.window} frames, each continuing {plan.overlap} frames "
          f"of the one before", file=sys.stderr)
    t0 = time.perf_counter()
    source = found.folder if found.kind == "sora" else args.model
    model = SoraModel.open(source, args.vae, args.text_encoder, device=args.device, offload=args.offload,
                           low_memory=True)
    first = None
    if req.image is not None:
        image = frames_to_tensor(req.image[None])[None]                  # (1, 3, 1, H, W)
        first = image_to_video(model.vae, image.to(model.device), args.strength)
    bar = tqdm(total=plan.count * req.steps, desc=f"window 1/{plan.count}", unit="step",
               disable=args.no_progress, file=sys.stderr)

    def callback(info: dict) -> None:
        bar.set_description(f"window {info['window'] + 1}/{info['windows']}", refresh=False)
        bar.update(1)
    with bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptTruncatedWarning)         # already said above
        chunks = long_video(model, cues, args.negative, frames=req.frames, window=plan.window,
                            overlap=plan.overlap, height=req.height, width=req.width, fps=req.fps,
                            steps=req.steps, cfg=req.cfg, sampler=req.sampler, shift=req.shift, seed=seed,
                            anchor={"auto": None, "on": True, "off": False}[args.anchor], match_colors_at_joins=args.match_colors,
                            condition_mode=args.condition_mode, callback=callback,
                            autocast_dtype=None if args.fp32 else torch.bfloat16, tile_size=args.vae_tile,
                            first=first)
        if req.out.suffix.lower() in STREAM_EXTS:
            written = write_long_video(req.out, chunks, req.fps)
        else:                                   # a gif's palette is made from every frame: collect them
            written = write_video(req.out, np.concatenate([c.frames for c in chunks]), req.fps)
    note = f" ({req.out} exists; wrote a new file)" if written != req.out else ""
    print(f"wrote {written}{note}: {req.frames} frames of {req.width}x{req.height} at {req.fps:g} fps in "
          f"{plan.count} windows, seed {seed}, {time.perf_counter() - t0:.1f} s")
    return 0
