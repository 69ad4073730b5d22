"""The ``sora`` command line: one subcommand per module.

Each command module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
callable taking the parsed arguments and returning an exit code. Modules import torch lazily so that
``sora --help`` stays fast. This package holds the core's commands (``generate``, ``train``,
``eval``); the node pack adds the ones that run its graphs (``run``, ``export-api``, ``batch``, in
``headless/``) by calling ``main(argv, extra=[...])``: the installed ``sora`` script is the pack's
``headless.cli.main``; ``sora_core.cli.main`` alone offers the core's commands.

Exit codes: 0 success, 2 a user error (printed without a traceback), 130 interrupted by Ctrl-C,
143 stopped by SIGTERM. SIGTERM is handled like Ctrl-C (a ``KeyboardInterrupt`` is raised in the
main thread), so the same cleanup runs: atomic writes remove their temp files, nothing half-written
is left behind.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import math
import os
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# the core's subcommand modules, in the order ``sora --help`` lists them
COMMANDS = ["generate", "train", "eval"]
EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 2, 130, 143

# (lowest, highest, lowest excluded) of the sampling options; None = the model's value
SAMPLING_RANGES = {"steps": (1, 10_000, False), "cfg": (0.0, 100.0, False), "shift": (0.0, 100.0, True)}


class CLIError(Exception):
    """A user error on the command line: printed without a traceback, exit code 2."""


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt so every cleanup path for Ctrl-C runs (exit code 143)."""


# ---------------------------------------------------------------------------------------------
# Checks shared by the subcommands (nothing here loads weights)
# ---------------------------------------------------------------------------------------------

def check_range(option: str, value, lo: float, hi: float, *, lo_open: bool = False) -> None:
    """Raise a CLIError naming ``--option`` unless ``value`` (None = unset) is a finite number in
    [lo, hi] ((lo, hi] with ``lo_open``). NaN and infinities are refused."""
    if value is None:
        return
    allowed = f"{'(' if lo_open else '['}{lo:g}, {hi:g}]"
    if isinstance(value, float) and not math.isfinite(value):
        raise CLIError(f"--{option} must be a finite number in {allowed}, got --{option}={value}")
    if value < lo or (lo_open and value == lo):
        raise CLIError(f"--{option} must be {'>' if lo_open else '>='} {lo:g} (allowed: {allowed}), "
                       f"got --{option}={value}")
    if value > hi:
        raise CLIError(f"--{option} must be <= {hi:g} (allowed: {allowed}), got --{option}={value}")


def check_sampling_args(args) -> None:
    """The sampling options that ``sora generate`` and ``sora eval`` share (--steps, --cfg, --shift,
    --sampler; None = the model's), checked before any model loads: finite and in range."""
    for name, (lo, hi, lo_open) in SAMPLING_RANGES.items():
        check_range(name, getattr(args, name), lo, hi, lo_open=lo_open)
    if args.sampler is not None:
        from ..diffusion.samplers import SAMPLERS, SamplerError
        if args.sampler not in SAMPLERS:
            raise SamplerError(f"--sampler {args.sampler!r} is unknown; allowed: {', '.join(SAMPLERS)}")


def available_devices() -> list[str]:
    """The devices torch can use here: cpu, then cuda:0 ... when CUDA is available."""
    import torch
    cuda = [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []
    mps = ["mps"] if torch.backends.mps.is_available() else []
    return ["cpu", *cuda, *mps]


def check_device(value: str, option: str = "device", extra: tuple[str, ...] = ()) -> None:
    """Raise a CLIError naming ``--option`` unless ``value`` is a device of this machine (``cpu``,
    ``cuda`` / ``cuda:N`` when CUDA is available) or one of ``extra`` (e.g. ``auto``)."""
    devices = available_devices()
    has_cuda = any(d.startswith("cuda") for d in devices)
    allowed = [*extra, *devices, *(["cuda"] if has_cuda else [])]
    if value in allowed:
        return
    hint = " (this torch has no usable CUDA device)" if str(value).startswith("cuda") and not has_cuda else ""
    raise CLIError(f"--{option} {value!r} is not available here{hint}; available: {', '.join(allowed)}")


def check_writable_folder(folder: str | os.PathLike, option: str) -> None:
    """Raise a CLIError naming ``--option`` unless files can be created in ``folder`` (or, when it does
    not exist yet, in its nearest existing ancestor, where it would be created): it must be a folder,
    and a probe file must be creatable there (removed at once)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise CLIError(f"--{option}: {folder} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".sora-write-probe.", dir=folder)
    except OSError as e:
        raise CLIError(f"--{option}: cannot write into the folder {folder}: {e.strerror or e}") from None
    os.close(fd)
    os.unlink(probe)


# ---------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------

def build_parser(extra: Sequence[ModuleType] = ()) -> argparse.ArgumentParser:
    """The ``sora`` parser: the core's commands, then those of the ``extra`` command modules."""
    parser = argparse.ArgumentParser(
        prog="sora", description="Sora-style video generation with a small default model that runs on a CPU.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in [importlib.import_module(f"{__name__}.{name}") for name in COMMANDS] + list(extra):
        module.register(sub)
    return parser


@contextlib.contextmanager
def sigterm_as_interrupt():
    """While active (main thread only), SIGTERM raises ``Terminated`` like Ctrl-C raises
    KeyboardInterrupt; the previous handler is restored after."""
    def handler(signum, frame):
        raise Terminated(f"signal {signum}")
    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:                      # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None, extra: Sequence[ModuleType] = ()) -> int:
    """Parse ``argv`` and run the command; returns the exit code (see the module docstring)."""
    parser = build_parser(extra)
    args = parser.parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except (CLIError, ValueError, FileNotFoundError, PermissionError) as e:
        print(f"sora {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Terminated:
        print(f"sora {args.command}: stopped by SIGTERM", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print(f"sora {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
