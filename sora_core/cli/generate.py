"""``sora generate``: text (and optionally an image) to a video file with the default model or Wan 2.1 / 2.2.

    sora generate "a red ball bouncing" --out ball.mp4
    sora generate "a blue box moving left" --out box.webp --frames 33 --width 96 --height 64 --seed 3
    sora generate "the ball rolls away" --image first.png --out anim.gif --seconds 2 --fps 8
    sora generate "0:a red ball moving right | 20:the ball bounces" --seconds 60 --out minute.mp4
    sora generate "a cat on a surfboard" --out cat.mp4 --device cuda --offload \
        --model models/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors \
        --vae models/vae/wan_2.1_vae.safetensors --text-encoder models/text_encoders/umt5_xxl_fp16.safetensors

--model takes the default model's kind of folder, a diffusers pipeline folder, or a Wan diffusion model
(one file, shards or a folder; then --vae and --text-encoder name the other two). Every argument is
checked (frame count, sizes, image, output folder, model files: their headers, kinds and fit) before
the model is loaded, and the estimated peak memory is printed; the text encoder is released once the
prompts are encoded. The video is written atomically at the end (mp4 H.264, webp or gif by
extension), under a new name if the file exists, so a failed run leaves no file behind.

Longer than the model's trained length (its default frame count), or with a prompt schedule
("SECONDS:prompt | SECONDS:prompt ..."), the video is made in windows of --window frames, each
continuing the last --overlap frames of the one before (sora_core.long_video), and streamed to the
file window by window (mp4 or webp): memory stays that of one window.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from . import CLIError, check_device, check_range, check_sampling_args, check_writable_folder

SAMPLER_HELP = "euler, heun, dpmpp_2m or euler_ancestral"
MAX_SECONDS = 3600.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("prompt", help="what the video shows, e.g. 'a red ball bouncing'")
    p.add_argument("--out", required=True, help="output file: .mp4 (H.264), .webp or .gif; never overwritten")
    p.add_argument("--seed", type=int, default=None, help="noise seed (default: random, printed)")
    p.add_argument("--width", type=int, default=None, help="width in pixels (default: the model's)")
    p.add_argument("--height", type=int, default=None, help="height in pixels (default: the model's)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int, default=None, help="frame count: 1 (an image) or 1 + k * ft")
    length.add_argument("--seconds", type=float, default=None, help="duration; rounded to a valid frame count")
    p.add_argument("--fps", type=float, default=None, help="frames per second (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--cfg", type=float, default=None, help="classifier-free guidance scale (1 = off)")
    p.add_argument("--sampler", default=None, help=f"sampler: {SAMPLER_HELP} (default: the model's)")
    p.add_argument("--shift", type=float, default=None, help="schedule shift (> 0; default: the model's)")
    p.add_argument("--negative", default="", help="negative prompt (used when --cfg != 1)")
    p.add_argument("--image", default=None, help="animate this image: it becomes the first frame")
    p.add_argument("--strength", type=float, default=1.0, help="how strictly the image is kept, in [0, 1]")
    p.add_argument("--condition-mode", default=None, choices=["timestep", "replace"],
                   help="how the image is applied: per-frame timesteps (models trained with them: the default "
                        "model, Wan 2.2 TI2V) or replacement (Wan 2.1); default: the model family's")
    p.add_argument("--window", type=int, default=None,
                   help="long videos: frames per window, 1 + k * ft (default: the model's trained length)")
    p.add_argument("--overlap", type=int, default=None,
                   help="long videos: frames each window continues from the one before, 1 + k * ft (default 5 "
                        "for the default model: 2 latent frames)")
    p.add_argument("--anchor", default="auto", choices=["auto", "on", "off"],
                   help="long videos: keep the first frame as context of every window (auto: on for models with "
                        "per-frame timesteps, e.g. the default model; see docs/long_video.md)")
    p.add_argument("--match-colors", action="store_true",
                   help="long videos: match each window's colours to the one before at the join (drifts more "
                        "on the default model, see docs/long_video.md)")
    p.add_argument("--expand", action=argparse.BooleanOptionalAction, default=None,
                   help="expand the prompt into a detailed caption of the kind the model was trained on before "
                        "encoding it (default: on for the default model, which was trained on such captions; "
                        "off for Wan models); the caption sent is printed. --no-expand sends the prompt as written")
    p.add_argument("--model", default=None, help="model folder, diffusers pipeline folder or Wan diffusion model "
                                                 "file / folder (default: the shipped default model)")
    p.add_argument("--vae", default=None, help="the Wan VAE (file or folder), e.g. models/vae/wan_2.1_vae.safetensors")
    p.add_argument("--text-encoder", default=None,
                   help="the umT5 text encoder (file or folder), e.g. models/text_encoders/umt5_xxl_fp16.safetensors")
    p.add_argument("--offload", action="store_true",
                   help="keep the DiT blocks (and the text encoder) in RAM and stream each block to the GPU "
                        "while it runs: slower, for models that do not fit (no effect with --device cpu)")
    p.add_argument("--vae-tile", type=int, default=None,
                   help="decode in spatial tiles of this many pixels (flat memory for large frames)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ...")
    p.add_argument("--fp32", action="store_true", help="compute in float32 (default: bfloat16 autocast)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def register(subparsers) -> None:
    p = subparsers.add_parser("generate", help="generate a video from a text prompt (and an optional image)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


# ---------------------------------------------------------------------------------------------
# Validation (nothing here loads weights)
# ---------------------------------------------------------------------------------------------

@dataclass
class Request:
    """A validated request."""
    prompt: str
    out: Path
    frames: int
    height: int
    width: int
    fps: float
    steps: int
    cfg: float
    sampler: str
    shift: float
    image: object = None          # uint8 (H, W, 3) at the output size, or None
    estimate: object = None       # budget.Estimate of the peak memory
    windows: object = None        # long video: cli.long_generate.LongPlan, else None


def _check_output(out: str) -> Path:
    """The --out path: a video extension, in a folder that exists (or can be made) and is writable."""
    from ..media.video_io import WRITE_EXTS
    path = Path(out)
    if path.suffix.lower() not in WRITE_EXTS:
        raise CLIError(f"--out {out!r}: unknown video extension {path.suffix or '(none)'!r}; "
                       f"allowed are {', '.join(WRITE_EXTS)}")
    if path.is_dir():
        raise CLIError(f"--out {out!r} is a folder; give a video file name in it, e.g. {path / 'video.mp4'}")
    check_writable_folder(path.parent, "out")
    return path


def _check_args(args) -> None:
    """Every number (finite, in range) and the device, before anything is read."""
    check_sampling_args(args)
    check_range("fps", args.fps, 0.0, 1000.0, lo_open=True)
    check_range("seconds", args.seconds, 0.0, MAX_SECONDS, lo_open=True)
    check_range("strength", args.strength, 0.0, 1.0)
    if args.seed is not None and not 0 <= args.seed < 2 ** 63:
        raise CLIError(f"--seed={args.seed} must be in [0, 2**63)")
    check_device(args.device)


def _check_fps(fps: float, out: Path) -> None:
    """The frame rate must be one the output format can store (see video_io.FPS_LIMITS)."""
    from ..media.video_io import VideoIOError, check_fps
    try:
        check_fps(fps, out.suffix.lower())
    except VideoIOError as e:
        raise CLIError(f"--fps {fps:g}: {e}") from None


def _check_model(args):
    """(ModelSpec, components.Found) of --model / --vae / --text-encoder, from the files' headers only:
    each exists, is safetensors, holds the right kind of component, and the three fit together."""
    from ..components import ModelError, ModelMissingError, is_sora_file
    from ..models.wan.tokenizer import TokenizerNotFound
    from ..pipeline import MODEL_FILES, ModelSpec, default_model_dir
    from ..weights import WeightsError
    extra = {"vae": args.vae, "text-encoder": args.text_encoder}
    if args.model is None and any(extra.values()):
        given = " and ".join(f"--{k}" for k, v in extra.items() if v)
        raise CLIError(f"{given} go with --model (a Wan diffusion model); the default model has its own")
    for option, value in extra.items():
        if value is not None and not Path(value).exists():
            raise CLIError(f"--{option} {value!r} does not exist (a .safetensors file or a model folder)")
    source = default_model_dir() if args.model is None else args.model
    if Path(source).is_file() and is_sora_file(source):
        raise CLIError(f"--model {str(source)!r} is a file; --model takes the model's folder (holding "
                       f"{', '.join(MODEL_FILES.values())}), or a Wan diffusion model")
    try:
        return ModelSpec.locate(source, args.vae, args.text_encoder)
    except ModelMissingError:
        raise
    except (ModelError, WeightsError, TokenizerNotFound) as e:
        options = "--model" + "".join(f" / --{k}" for k, v in extra.items() if v)
        raise CLIError(f"{options}: {e}") from None


def _read_image(path: str):
    from ..media.video_io import read_video
    p = Path(path)
    if p.is_dir():
        raise CLIError(f"--image {path!r} is a folder; --image takes one image file (.png, .jpg, ...)")
    if not p.is_file():
        raise CLIError(f"--image {path!r} does not exist")
    frames, _ = read_video(path, max_frames=1)
    return frames[0]


def _size(args, spec, image) -> tuple[int, int]:
    """(height, width): given, else the model's default area at the image's aspect, else the defaults."""
    from ..geometry import nearest_valid_size, size_multiple
    d = spec.defaults
    if image is None or (args.width is not None and args.height is not None):
        return (d.height if args.height is None else args.height), (d.width if args.width is None else args.width)
    ih, iw = image.shape[:2]
    multiple = size_multiple(spec.vae.spatial_factor, *spec.dit.patch_size[1:])
    if args.width is not None:
        return nearest_valid_size(round(args.width * ih / iw), args.width, multiple)[0], args.width
    if args.height is not None:
        return args.height, nearest_valid_size(args.height, round(args.height * iw / ih), multiple)[1]
    scale = (d.height * d.width / (ih * iw)) ** 0.5
    return nearest_valid_size(round(ih * scale), round(iw * scale), multiple)


def _fit_image(image, height: int, width: int):
    """Resize to cover (height, width) and crop the centre: uint8 (height, width, 3)."""
    import cv2
    ih, iw = image.shape[:2]
    scale = max(height / ih, width / iw)
    h, w = max(height, round(ih * scale)), max(width, round(iw * scale))
    img = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    top, left = (h - height) // 2, (w - width) // 2
    return img[top:top + height, left:left + width]


def _offloads(args) -> bool:
    """--offload streams blocks to an accelerator; on the CPU it changes nothing."""
    return bool(getattr(args, "offload", False)) and not args.device.startswith("cpu")


def validate(args, spec, found=None) -> Request:
    """Check every argument against the model's configs ``spec`` (a pipeline.ModelSpec) and estimate the
    peak memory (from the stored weights' sizes when ``found`` holds checkpoints)."""
    from ..diffusion.flow import check_cfg, check_shift
    from ..geometry import frames_for_seconds
    from ..diffusion.samplers import get_sampler
    _check_args(args)
    out = _check_output(args.out)
    fps = spec.defaults.fps if args.fps is None else args.fps
    _check_fps(fps, out)
    image = _read_image(args.image) if args.image else None
    height, width = _size(args, spec, image)
    ft = spec.vae.temporal_factor
    frames = (frames_for_seconds(args.seconds, fps, ft) if args.seconds is not None
              else spec.defaults.frames if args.frames is None else args.frames)
    from .long_generate import check_long
    windows = check_long(args, spec, frames, height, width, fps, out, image)
    geo = spec.geometry(frames if windows is None else windows.window, height, width)  # GeometryError names it
    check_range("vae-tile", getattr(args, "vae_tile", None), 2 * spec.vae.spatial_factor, 1 << 16)
    from ..budget import check_request                                # BudgetError: estimate vs. free memory
    stored = found.storage_bytes() if found is not None and found.kind == "wan" else None
    est = check_request(spec, geo, device=args.device, dtype=None if args.fp32 else "bfloat16",
                        weight_bytes=stored, offload=_offloads(args))
    s = spec.schedule
    sampler = s.sampler if args.sampler is None else args.sampler
    get_sampler(sampler)
    stored = "the model's stored schedule (sora.schedule): "   # --cfg / --shift are checked already
    cfg = check_cfg(s.cfg, stored + "cfg") if args.cfg is None else args.cfg
    shift = check_shift(s.shift, stored + "shift") if args.shift is None else args.shift
    if image is not None:
        image = _fit_image(image, height, width)
    return Request(args.prompt, out, frames, height, width, fps, s.steps if args.steps is None else args.steps,
                   cfg, sampler, shift, image, est, windows)


# ---------------------------------------------------------------------------------------------
# Running
# ---------------------------------------------------------------------------------------------

def _expand(prompt: str, seed: int, req: Request) -> str:
    """The world's prompt expansion for this grid (scaled up to the world's smallest frame, same aspect)."""
    from ..prompts.expand import expand_prompt, open_size_from
    up = max(1.0, 16 / min(req.width, req.height))
    return expand_prompt(prompt, seed, open_size_from(req.image), width=round(req.width * up),
                         height=round(req.height * up), frames=req.frames, fps=req.fps)


def expansion_on(args, spec) -> bool:
    """--expand / --no-expand, or (neither given) whether the model's family reads the world's captions."""
    from ..families import family
    return family(spec.family).world_prompts if args.expand is None else bool(args.expand)


def prompt_sent(prompt: str, seed: int, req: Request, explicit: bool) -> str:
    """The expanded caption of ``prompt``. A prompt the world's vocabulary cannot read is an error with
    an explicit --expand, and otherwise goes to the model as written (with a note naming the words)."""
    try:
        return _expand(prompt, seed, req)
    except ValueError as e:                      # UnknownWordsError, or a scene the world cannot hold
        if explicit:
            raise CLIError(f"--expand: {e}") from None
        print(f"note: prompt {prompt!r} not expanded ({e}); it goes to the model as written "
              f"(--no-expand skips expansion)", file=sys.stderr)
        return prompt


def _expanded(args, spec, req: Request, seed: int) -> tuple[str, Request]:
    """(the prompt sent, the request with each cue of a prompt schedule expanded), printing each caption."""
    if not expansion_on(args, spec):
        return req.prompt, req
    explicit = args.expand is True
    plan = req.windows
    if plan is not None and len(plan.cues) > 1:
        from ..long_video import Cue
        cues = tuple(Cue(c.seconds, prompt_sent(c.prompt, seed, req, explicit)) for c in plan.cues)
        for c in cues:
            print(f"expanded prompt at {c.seconds:g} s: {c.prompt}", file=sys.stderr)
        return req.prompt, dataclasses.replace(req, windows=dataclasses.replace(plan, cues=cues))
    prompt = prompt_sent(req.prompt, seed, req, explicit)
    if prompt != req.prompt:
        print(f"expanded prompt: {prompt}", file=sys.stderr)
    return prompt, req


def _progress(total: int, disable: bool):
    from tqdm import tqdm
    bar = tqdm(total=total, desc="sampling", unit="step", disable=disable, file=sys.stderr)

    def callback(info: dict) -> None:
        bar.update(1)
        bar.set_postfix(sigma=f"{float(info['sigma']):.3f}")
    return bar, callback


def _describe(spec, found, req: Request, args) -> None:
    """The model, the estimate and (with an image) the condition mode, on stderr."""
    from ..budget import gib
    where = found.folder if found.kind == "sora" else found.checkpoints["dit"].source
    print(f"model: {spec.family} ({where})", file=sys.stderr)
    est = req.estimate
    if est is not None:
        print(f"estimated peak memory: {gib(est.total)} ({est.describe()})"
              + (" with the DiT blocks offloaded" if _offloads(args) else ""), file=sys.stderr)
    if args.offload and not _offloads(args):
        print("note: --offload has no effect with --device cpu (the weights are in RAM already)", file=sys.stderr)
    if req.image is not None:
        mode = args.condition_mode or found.family.condition_mode
        how = "per-frame timesteps" if mode == "timestep" else "replacement"
        print(f"image condition: {how} ({'--condition-mode' if args.condition_mode else spec.family + ' default'})",
              file=sys.stderr)


def run(args) -> int:
    import secrets

    import torch

    from ..diffusion.conditions import image_to_video
    from ..media.files import remove_orphan_temps_of
    from ..pipeline import SoraModel, generate
    from ..models.text import PromptTruncatedWarning
    from ..media.video_io import frames_to_tensor, tensor_to_frames, write_video

    _check_args(args)
    _check_output(args.out)                     # user errors first, then the model's files
    spec, found = _check_model(args)
    req = validate(args, spec, found)
    _describe(spec, found, req, args)
    for tmp in remove_orphan_temps_of(req.out):      # left by a generate killed while writing this file
        print(f"removed {tmp}, a temp file an interrupted run left", file=sys.stderr)
    seed = secrets.randbelow(2 ** 31) if args.seed is None else args.seed
    prompt, req = _expanded(args, spec, req, seed)
    if req.windows is not None:
        from .long_generate import run_long
        return run_long(args, spec, found, req, seed, prompt)
    from .long_generate import warn_long_prompts
    warn_long_prompts(spec, found.tokenizer, prompt=prompt, **({"--negative": args.negative} if req.cfg != 1 else {}))

    t0 = time.perf_counter()
    source = found.folder if found.kind == "sora" else args.model
    model = SoraModel.open(source, args.vae, args.text_encoder, device=args.device, offload=args.offload,
                           low_memory=True)       # one prompt per run: the text encoder goes once it is used
    conditions = ()
    if req.image is not None:
        image = frames_to_tensor(req.image[None])[None]                  # (1, 3, 1, H, W)
        conditions = image_to_video(model.vae, image.to(model.device), args.strength)
    bar, callback = _progress(req.steps, args.no_progress)
    with bar, warnings.catch_warnings():
        warnings.simplefilter("ignore", PromptTruncatedWarning)         # already said above
        result = generate(model, prompt, args.negative, frames=req.frames, height=req.height, width=req.width,
                          steps=req.steps, cfg=req.cfg, sampler=req.sampler, shift=req.shift, seed=seed,
                          conditions=conditions, condition_mode=args.condition_mode, callback=callback,
                          autocast_dtype=None if args.fp32 else torch.bfloat16, tile_size=args.vae_tile)
    written = write_video(req.out, tensor_to_frames(result.video), req.fps)
    note = f" ({req.out} exists; wrote a new file)" if written != req.out else ""
    print(f"wrote {written}{note}: {req.frames} frames of {req.width}x{req.height} at {req.fps:g} fps, "
          f"seed {seed}, {time.perf_counter() - t0:.1f} s")
    return 0
