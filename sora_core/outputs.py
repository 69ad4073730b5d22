"""Output file names: numbered, never overwriting, never leaving the output folder.

``numbered_output(folder, "sora/clip", ".mp4")`` gives ``folder/sora/clip_00001.mp4`` (the next
free number), as ComfyUI's save nodes name their files; a prefix that is absolute or climbs out of
``folder`` (``../x``, a symlink out) is refused.
"""

from __future__ import annotations

import re
from pathlib import Path


class OutputPathError(ValueError):
    """A filename prefix that is empty, absolute, or points outside the output folder."""


def resolve_prefix(folder: str | Path, prefix: str) -> tuple[Path, str]:
    """(target folder inside ``folder``, file base name) for a prefix like ``"sora/clip"``."""
    prefix = (prefix or "").strip().replace("\\", "/")
    if not prefix or prefix.endswith("/"):
        raise OutputPathError(f"filename_prefix {prefix!r} needs a file name after any folders, e.g. 'sora/clip'")
    if prefix.startswith("/") or re.match(r"^[A-Za-z]:", prefix):
        raise OutputPathError(f"filename_prefix {prefix!r} must be relative to the output folder, not absolute")
    root = Path(folder).resolve()
    target = (root / prefix).resolve()
    if not target.is_relative_to(root) or target == root:
        raise OutputPathError(f"filename_prefix {prefix!r} points outside the output folder {root}")
    return target.parent, target.name


def numbered_output(folder: str | Path, prefix: str, ext: str) -> Path:
    """The next free ``<prefix>_<NNNNN><ext>`` inside ``folder`` (the highest number in use + 1)."""
    parent, base = resolve_prefix(folder, prefix)
    pattern = re.compile(rf"^{re.escape(base)}_(\d{{5,}})\D")
    used = [int(m.group(1)) for p in (parent.iterdir() if parent.is_dir() else [])
            if (m := pattern.match(p.name))]
    number = max(used, default=0) + 1
    while True:
        path = parent / f"{base}_{number:05d}{ext}"
        if not path.exists():
            return path
        number += 1


def ui_entry(path: str | Path, folder: str | Path, kind: str) -> dict:
    """ComfyUI's ``{"filename", "subfolder", "type"}`` for a file written inside ``folder``."""
    path, root = Path(path).resolve(), Path(folder).resolve()
    sub = path.parent.relative_to(root).as_posix()
    return {"filename": path.name, "subfolder": "" if sub == "." else sub, "type": kind}
