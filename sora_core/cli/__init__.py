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
