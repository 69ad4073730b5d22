"""The whole ``sora`` command (the installed script): the core's commands (generate, train, eval)
and the pack's own, which run its graphs (run, export-api, batch)."""

from __future__ import annotations

import sys

from sora_core import cli

from . import batch, run


def main(argv: list[str] | None = None) -> int:
    """``sora COMMAND ...``; returns the exit code."""
    return cli.main(argv, extra=[run, batch])


if __name__ == "__main__":
    sys.exit(main())
