"""Output file names: numbered, never overwriting, never leaving the output folder.

``numbered_output(folder, "sora/clip", ".mp4")`` gives ``folder/sora/clip_00001.mp4`` (the next
free number), as ComfyUI's save nodes name their files; a prefix that is absolute or climbs out of
``folder`` (``../x``, a symlink out) is refused, and so is one with control characters (newlines,
NUL, ...), invisible direction overrides, or a file / folder name too long for the file system.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

MAX_NAME_BYTES = 200            # per file / folder name: room for "_00001.mp4" under the usual 255
MAX_PREFIX_BYTES = 1024         # the whole prefix (paths are limited to 4096 bytes)
DIRECTION_MARKS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


class OutputPathError(ValueError):
    """A filename prefix that is empty, absolute, or points outside the output folder."""


def _bad_character(char: str) -> bool:
    """Control characters, line / paragraph separators, lone surrogates and direction overrides."""
    return unicodedata.category(char) in ("Cc", "Cs", "Zl", "Zp") or char in DIRECTION_MARKS


def check_prefix(prefix: str) -> str:
    """The normalised prefix (``\\`` -> ``/``, outer spaces removed) when its characters and name
    lengths can make a file name; OutputPathError naming what is wrong otherwise. Node code can call
    this before any work starts (the folder itself is checked by ``resolve_prefix``)."""
    if not isinstance(prefix, str):
        raise OutputPathError(f"filename_prefix must be a string, got {type(prefix).__name__}")
    bad = sorted({c for c in prefix if _bad_character(c)})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        raise OutputPathError(f"filename_prefix {prefix[:60]!r} contains control or invisible characters "
                              f"({shown}); use printable characters, with '/' between subfolders")
    prefix = prefix.strip().replace("\\", "/")
    if len(prefix.encode("utf-8")) > MAX_PREFIX_BYTES:
        raise OutputPathError(f"filename_prefix is longer than {MAX_PREFIX_BYTES} bytes ({prefix[:40]!r}...)")
    long = [part for part in prefix.split("/") if len(part.encode("utf-8")) > MAX_NAME_BYTES]
    if long:
        raise OutputPathError(f"filename_prefix: the name {long[0][:40]!r}... is longer than {MAX_NAME_BYTES} "
                              "bytes; file systems allow 255 per name, with the number and extension")
    return prefix


def resolve_prefix(folder: str | Path, prefix: str) -> tuple[Path, str]:
    """(target folder inside ``folder``, file base name) for a prefix like ``"sora/clip"``."""
    prefix = check_prefix(prefix or "")
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
