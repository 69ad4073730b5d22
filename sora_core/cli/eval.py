"""``sora eval``: score videos with the world metrics and write a report.

Score a folder of videos against a prompts file (jsonl / txt / csv: file name + prompt per line):
    sora eval --videos clips/ --prompts prompts.jsonl --out eval_report

Generate from prompts with fixed seeds and score what comes out (default model unless --model):
    sora eval --generate --prompts prompts.txt --seeds 0,1,2
    sora eval --generate --prompt-set world-single --count 100 --seed 0 --tasks t2v,i2v,loop

A minute of video per prompt in windows, scored per window, plus peak RSS at 10 s and 60 s:
    sora eval --generate --prompts long_prompts.txt --tasks long --seconds 60 --rss-seconds 10,60

Prompts files, one clip a line (blank lines and # comments are skipped):
    .jsonl  {"file": "a.mp4", "prompt": "a red ball bouncing"} with optional task fields:
            "task" (t2v i2v extend loop sdedit connect vae), "join" (extend: first new frame),
            "transition" ([start, end] frames of a connect), "source" (i2v image, sdedit/vae
            original video), "strength" (sdedit)
    .txt    a.mp4<TAB>a red ball bouncing   (or "a.mp4 | a red ball bouncing")
    .csv    a header row naming the same fields: file,prompt[,task,join,...]
With --generate the file name is not needed (.txt: one prompt a line).

The report folder (a new name if it exists) gets report.json, report.md (tables) and figures/
(metric bar charts, contact sheets of frames with the captioner's detections drawn).
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from . import CLIError, check_device, check_sampling_args, check_writable_folder

DEFAULT_TASKS = "t2v"
MAX_SECONDS = 3600.0


def register(subparsers) -> None:
    p = subparsers.add_parser("eval", help="score videos (a folder, or generated ones) with the world metrics",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_argument_group("what to score")
    src.add_argument("--videos", help="folder of videos to score (with --prompts)")
    src.add_argument("--generate", action="store_true", help="generate the videos with a model, then score them")
    src.add_argument("--prompts", help="prompts file: .jsonl, .txt or .csv (formats above)")
    src.add_argument("--prompt-set", choices=["world", "world-single", "paraphrase"],
                     help="built-in prompts sampled from the world (with --generate): any scene, one object, or "
                          "one object phrased as training never phrased it (held-out sentence forms and synonyms)")
    src.add_argument("--count", type=int, default=None,
                     help="prompts drawn from --prompt-set (default 100), or the first N of --prompts (default all)")
    src.add_argument("--seed", type=int, default=0, help="seed of the --prompt-set sample (default 0)")
    gen = p.add_argument_group("generation (--generate)")
    gen.add_argument("--seeds", default="0", help="noise seeds, e.g. 0,1,2 or 0-9 (default 0)")
    gen.add_argument("--model", default=None, help="model folder (default: the shipped default model)")
    gen.add_argument("--expand", action="store_true",
                     help="expand each prompt into the world's caption style before generating (as `sora generate` "
                          "does by default for the default model); the prompt as given is what is scored")
    gen.add_argument("--tasks", default=DEFAULT_TASKS,
                     help="comma-separated: t2v, i2v, extend, loop, sdedit, connect, vae, long (default t2v)")
    gen.add_argument("--seconds", type=float, default=None,
                     help="long task: seconds of video per prompt, made in windows (default 60)")
    gen.add_argument("--rss-seconds", default=None,
                     help="long task: SHORT,LONG seconds whose peak RSS (and time: one LONG video against "
                          "LONG/SHORT SHORT clips) is measured in fresh processes (default 10,60; 'off': skip)")
    gen.add_argument("--strengths", default="0.25,0.5,0.75",
                     help="SDEdit strengths (denoise) of the sdedit task (default 0.25,0.5,0.75)")
    gen.add_argument("--frames", type=int, default=None, help="frame count (default: the model's)")
    gen.add_argument("--width", type=int, default=None, help="width (default: the model's)")
    gen.add_argument("--height", type=int, default=None, help="height (default: the model's)")
    gen.add_argument("--steps", type=int, default=None, help="sampling steps (default: the model's)")
    gen.add_argument("--cfg", type=float, default=None, help="guidance scale (default: the model's)")
    gen.add_argument("--sampler", default=None, help="sampler, e.g. euler, heun, dpmpp_2m (default: the model's)")
    gen.add_argument("--shift", type=float, default=None, help="schedule shift (default: the model's)")
    gen.add_argument("--device", default="cpu", help="cpu, cuda ...")
    p.add_argument("--out", default="eval_report", help="report folder; a new name if it exists")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def parse_seeds(text: str) -> list[int]:
    """"0,1,2" / "0-9" / "3" -> a list of ints (a CLIError names a bad item)."""
    seeds = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                a, b = part.split("-", 1) if not part.startswith("-") else (part, part)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds += range(lo, hi + 1)
            else:
                seeds.append(int(part))
        except ValueError:
            raise CLIError(f"--seeds: {part!r} is not a seed or a range like 0-9") from None
    if not seeds:
        raise CLIError("--seeds is empty")
    return seeds


def parse_strengths(text: str) -> tuple[float, ...]:
    """"0.25,0.5" -> (0.25, 0.5), each in (0, 1] (a CLIError names a bad item)."""
    out = []
    for part in text.split(","):
        try:
            v = float(part)
        except ValueError:
            raise CLIError(f"--strengths: {part.strip()!r} is not a number") from None
        if not 0 < v <= 1:                  # NaN fails this test too
            raise CLIError(f"--strengths: {part.strip()!r} is not a number in (0, 1]")
        out.append(v)
    return tuple(out)


def _check_args(args) -> None:
    if args.generate == bool(args.videos):
        raise CLIError("give either --videos DIR (score a folder) or --generate (generate, then score)")
    if args.videos and not args.prompts:
        raise CLIError("--videos needs --prompts FILE (video file name + prompt per line)")
    if args.videos and args.prompt_set:
        raise CLIError("--prompt-set only works with --generate; a folder needs --prompts")
    if args.generate and bool(args.prompts) == bool(args.prompt_set):
        raise CLIError("--generate needs either --prompts FILE or --prompt-set world|world-single")
    if args.count is not None and args.count < 1:
        raise CLIError(f"--count must be >= 1, got {args.count}")
    check_sampling_args(args)
    _check_long_args(args)
    if args.generate:
        check_device(args.device)
        if args.model is not None and not Path(args.model).is_dir():
            what = "is a file" if Path(args.model).is_file() else "does not exist"
            raise CLIError(f"--model {args.model!r} {what}; --model takes a model folder")
    if args.videos and not Path(args.videos).is_dir():
        what = "is a file" if Path(args.videos).is_file() else "does not exist"
        raise CLIError(f"--videos {args.videos!r} {what}; --videos takes a folder of videos")
    check_writable_folder(args.out, "out")


def _settings(args, extra: dict) -> dict:
    """What the report says about the run: the command (when run from the command line), the date
    and the run's inputs."""
    argv = sys.argv[1:]
    command = "sora " + shlex.join(argv) if argv[:1] == ["eval"] else None
    return {**({"command": command} if command else {}), "date": time.strftime("%Y-%m-%d %H:%M:%S"), **extra}


def run(args) -> int:
    _check_args(args)
    from ..evaluation.evaluate import read_prompt_file, score_folder, world_prompt_set
    from ..evaluation.report import prepare_out_dir, write_report
    progress = not args.no_progress
    if args.videos:
        entries = read_prompt_file(args.prompts, need_file=True)
        results = score_folder(args.videos, entries, progress=progress)
        out = prepare_out_dir(args.out)
        extra = {"videos": args.videos, "prompts": args.prompts, "clips": len(results)}
    else:
        from ..evaluation.tasks import RunSettings, evaluate_generated
        seeds, strengths = parse_seeds(args.seeds), parse_strengths(args.strengths)
        tasks = parse_tasks(args.tasks)
        rss = parse_rss_seconds(args.rss_seconds) if "long" in tasks else None
        model = _load_model(args)
        d = model.defaults
        size = dict(width=args.width or d.width, height=args.height or d.height, frames=args.frames or d.frames)
        entries = (read_prompt_file(args.prompts, need_file=False)[:args.count] if args.prompts else
                   world_prompt_set(args.prompt_set, args.count or 100, args.seed, fps=d.fps, **size))
        settings = RunSettings(args.frames, args.height, args.width, args.steps, args.cfg, strengths,
                               args.sampler, args.shift, args.seconds, expand=args.expand)
        out = prepare_out_dir(args.out)
        results = evaluate_generated(model, entries, seeds, tasks, out, settings, progress=progress)
        extra = {"model": args.model or "default", "prompts": args.prompts or
                 f"{args.prompt_set} x {args.count or 100} (seed {args.seed})", "seeds": args.seeds,
                 "tasks": ",".join(tasks), "expand": bool(args.expand), "size": f"{size['frames']} frames of {size['width']}x{size['height']}",
                 **{k: getattr(model.schedule, k) if getattr(args, k) is None else getattr(args, k)
                    for k in ("steps", "cfg", "sampler", "shift")}, "clips": len(results)}
        if "long" in tasks:
            extra.update(_long_extra(args, rss))
    paths = write_report(out, results, _settings(args, extra))
    print(f"wrote {paths['md']} ({len(results)} clips), report.json and figures/ in {out}")
    return 0


def parse_tasks(text: str) -> list[str]:
    """"t2v,long" -> ["t2v", "long"] (a CLIError names unknown tasks)."""
    from ..evaluation.tasks import TASK_FUNCTIONS
    tasks = [t.strip() for t in text.split(",") if t.strip()]
    unknown = [t for t in tasks if t not in TASK_FUNCTIONS]
    if unknown or not tasks:
        raise CLIError(f"--tasks: unknown {', '.join(unknown) or '(none given)'}; allowed: {', '.join(TASK_FUNCTIONS)}")
    return tasks


def parse_rss_seconds(text: str | None) -> tuple[float, float] | None:
    """"10,60" -> (10.0, 60.0) (short < long, both > 0); "off" -> None; None -> the default 10,60."""
    from ..evaluation.long import RSS_SECONDS
    if text is None:
        return RSS_SECONDS
    if text.strip().lower() == "off":
        return None
    try:
        short, long = (float(v) for v in text.split(","))
    except ValueError:
        raise CLIError(f"--rss-seconds {text!r}: give SHORT,LONG seconds (e.g. 10,60) or 'off'") from None
    if not 0 < short < long <= MAX_SECONDS:
        raise CLIError(f"--rss-seconds {text!r}: need 0 < SHORT < LONG <= {MAX_SECONDS:g}")
    return short, long


def _check_long_args(args) -> None:
    """--seconds / --rss-seconds: numbers in range, and only with the long task (before any work)."""
    from . import check_range
    long = args.generate and "long" in [t.strip() for t in (args.tasks or "").split(",")]
    for option, value in (("seconds", args.seconds), ("rss-seconds", args.rss_seconds)):
        if value is not None and not long:
            raise CLIError(f"--{option} only applies to --generate --tasks long")
    check_range("seconds", args.seconds, 0.0, MAX_SECONDS, lo_open=True)
    if long:
        parse_rss_seconds(args.rss_seconds)


def _long_extra(args, rss) -> dict:
    """The report's settings for the long task: its length and the peak RSS / time measurement."""
    from ..evaluation.long import LONG_SECONDS, describe_memory, measure_memory
    out = {"long video": f"{args.seconds or LONG_SECONDS:g} s per prompt, the model's window, overlap and anchor"}
    if rss is not None:
        print(f"measuring peak RSS at {rss[0]:g} s and {rss[1]:g} s in fresh processes", file=sys.stderr)
        m = measure_memory(args.model, args.steps, *rss)
        out.update({"long video memory and time": describe_memory(m), "long_memory": m})
    return out


def _load_model(args):
    from ..pipeline import SoraModel
    model = SoraModel.load(args.model, args.device) if args.model else SoraModel.default(args.device)
    return model
