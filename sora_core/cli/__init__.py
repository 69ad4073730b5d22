"""The ``sora`` command line: one subcommand per module of this package.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a callable
taking the parsed arguments and returning an exit code. Modules import torch lazily so that
``sora --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# subcommand modules, in the order ``sora --help`` lists them
COMMANDS = ["generate", "train", "eval", "run", "batch"]


class CLIError(Exception):
    """A user error on the command line: printed without a traceback, exit code 2."""


def check_sampling_args(args) -> None:
    """The sampling options that ``sora generate`` and ``sora eval`` share (--steps, --cfg, --shift,
    --sampler; None = the model's), checked before any model loads."""
    for name, lo, strict in (("steps", 1, False), ("cfg", 0.0, False), ("shift", 0.0, True)):
        v = getattr(args, name)
        if v is not None and (v <= lo if strict else v < lo):
            raise CLIError(f"--{name} must be {'>' if strict else '>='} {lo}, got --{name}={v}")
    if args.sampler is not None:
        from ..samplers import SAMPLERS, SamplerError
        if args.sampler not in SAMPLERS:
            raise SamplerError(f"--sampler {args.sampler!r} is unknown; allowed: {', '.join(SAMPLERS)}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sora", description="Sora-style video generation with a small default model that runs on a CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"sora {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"sora {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
