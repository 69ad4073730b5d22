"""``sora train text|vae|dit``: train a stage of the default model (or the tiny test model).

    sora train text --preset default --out runs/text --export runs/text/export
    sora train vae --preset default --out runs/vae
    sora train dit --preset default --out runs/dit --vae runs/vae/export/vae.safetensors \
        --text runs/text/export/text_encoder.safetensors --export DIR
    torchrun --nproc_per_node 2 -m sora_core.cli.train dit --preset tiny --out runs/dit_ddp

``--steps`` is the length of the cosine schedule; ``--until`` and ``--hours`` stop earlier (with a
checkpoint) so one schedule can be spread over several runs joined by ``--resume``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("stage", choices=["text", "vae", "dit"], help="which stage to train")
    from ..train.presets import PRESETS
    listing = "; ".join(f"{stage}: {', '.join(names)}" for stage, names in PRESETS.items())
    p.add_argument("--preset", default="default",
                   help=f"training preset (tiny = the tests' model, default = the shipped recipe; see "
                        f"docs/training.md): {listing}")
    p.add_argument("--out", required=True, help="run directory (checkpoint, log.jsonl, loss.png)")
    p.add_argument("--steps", type=int, default=None, help="total steps of the schedule (default: the preset's)")
    p.add_argument("--until", type=int, default=None, help="stop after this step (the schedule keeps --steps)")
    p.add_argument("--hours", type=float, default=None, help="stop (with a checkpoint) after this wall time")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--export", default=None, metavar="DIR",
                   help="afterwards write the EMA weights as safetensors into DIR")
    p.add_argument("--overwrite", action="store_true", help="let --export replace existing weight files")
    p.add_argument("--vae", default=None,
                   help="dit: the frozen VAE's weights; vae: start from these weights (default: the preset's)")
    p.add_argument("--text", default=None, metavar="FILE",
                   help="dit: a pretrained text encoder (from 'sora train text'); replaces the one --init "
                        "or the preset would start from")
    p.add_argument("--init", default=None, metavar="DIR",
                   help="dit: start from the dit.safetensors + text_encoder.safetensors in DIR ('shipped' = the "
                        "default model), e.g. to continue the shipped model on a new schedule; text: start from "
                        "this text_encoder.safetensors (or a folder holding one, or 'shipped')")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the initial weights, the data order and the scene pool (default: the preset's); "
                        "a new seed draws new training scenes")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs still go to log.jsonl)")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train the VAE or the DiT + text encoder on the procedural world",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


MAX_STEPS = 10 ** 9
MAX_HOURS = 100_000.0
MAX_THREADS = 1024


def _check(args) -> None:
    """Every number, checked before anything is built or read (NaN and inf included)."""
    from . import check_range
    for name in ("steps", "until"):
        check_range(name, getattr(args, name), 1, MAX_STEPS)
    check_range("hours", args.hours, 0.0, MAX_HOURS, lo_open=True)
    check_range("seed", args.seed, 0, 2 ** 63 - 1)
    check_range("threads", args.threads, 1, MAX_THREADS)


def _trainer_class(stage: str):
    if stage == "text":
        from ..train.text_trainer import TextTrainer
        return TextTrainer
    if stage == "vae":
        from ..train.vae_trainer import VAETrainer
        return VAETrainer
    from ..train.dit_trainer import DiTTrainer
    return DiTTrainer


def _check_stage_options(args) -> None:
    if args.stage != "dit":
        for name in ("init", "text") if args.stage == "vae" else ("text",):
            if getattr(args, name) is not None:
                raise ValueError(f"--{name} is for the dit stage; the {args.stage} stage does not take it")
    if args.stage == "text" and args.vae is not None:
        raise ValueError("--vae is for the vae and dit stages; the text stage reads captions only")


def _check_run(args, preset, cls) -> None:
    """Before any model is built: --export can take the weights, and a resumed run has steps left."""
    from pathlib import Path

    from ..train.common import checkpoint_step
    from ..train.loop import CHECKPOINT, check_end, check_export_dir
    from . import check_writable_folder
    check_writable_folder(args.out, "out")
    if args.export:
        check_export_dir(args.export, cls.export_names, args.overwrite)
        check_writable_folder(args.export, "export")
    ckpt = Path(args.out) / CHECKPOINT
    if args.resume and ckpt.is_file():
        check_end(Path(args.out), checkpoint_step(ckpt), args.steps, args.until, preset.loop.steps, quiet=True)


def _make_trainer(cls, args, preset, env):
    kw = {"vae": {"init_path": args.vae}, "text": {"init_path": args.init},
          "dit": {"vae_path": args.vae, "init_dir": args.init, "text_path": args.text}}.get(args.stage, {})
    return cls(preset, args.out, env, resume=args.resume, progress=not args.no_progress, **kw)


def run(args) -> int:
    import torch

    from ..train.common import cleanup_distributed, setup_distributed
    from ..train.presets import train_preset
    _check(args)
    _check_stage_options(args)
    preset = train_preset(args.stage, args.preset)
    if args.seed is not None:
        preset = dataclasses.replace(preset, seed=args.seed)
    cls = _trainer_class(args.stage)
    try:
        _check_run(args, preset, cls)
    except FileExistsError as e:
        raise ValueError(str(e)) from e
    if args.threads:
        torch.set_num_threads(args.threads)
    env = setup_distributed(args.device)
    try:
        trainer = _make_trainer(cls, args, preset, env)
        summary = trainer.fit(steps=args.steps, until=args.until, hours=args.hours)
        if args.export and env.is_main:
            summary["exported"] = [str(p) for p in trainer.export(args.export, overwrite=args.overwrite)]
        if env.is_main:
            print(json.dumps(summary))
    except FileExistsError as e:
        raise ValueError(str(e)) from e
    finally:
        cleanup_distributed()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m sora_core.cli.train`` (used by torchrun)."""
    parser = argparse.ArgumentParser(prog="sora train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    from . import CLIError
    try:
        return run(args)
    except (CLIError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"sora train: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
