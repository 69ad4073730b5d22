"""Writing files safely: atomically, and without overwriting what the user already has.

Every file the project writes (videos, weights, checkpoints, reports, downloads) goes through
``atomic_write``: the bytes go to a temporary file in the target folder, which is then moved into
place, so a reader sees the old file or the new one and a failed write leaves nothing behind. With
``overwrite=False`` an existing file is never replaced: the new file takes the first free numbered
name (``clip_00001.mp4``), claimed with a hard link so two concurrent writers cannot collide.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Callable

_NUMBERED = re.compile(r"^(?P<base>.*)_(?P<num>\d{5})$")


def _split(path: Path) -> tuple[str, str]:
    suffix = path.suffix
    return (path.name[: len(path.name) - len(suffix)] if suffix else path.name), suffix


def numbered_names(path: str | os.PathLike):
    """``path``, then ``name_00001.ext``, ``name_00002.ext``... (a name already ending in ``_NNNNN``
    continues from that number)."""
    path = Path(path)
    yield path
    stem, suffix = _split(path)
    m = _NUMBERED.match(stem)
    base, start = (m["base"], int(m["num"]) + 1) if m else (stem, 1)
    for n in range(start, 10 ** 6):
        yield path.with_name(f"{base}_{n:05d}{suffix}")


def unique_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing exists there, else the first free numbered name (files and folders)."""
    for cand in numbered_names(path):
        if not cand.exists():
            return cand
    raise FileExistsError(f"no free numbered name left next to {path}")


def _umask_mode() -> int:
    """Mode of a normally created file (0o666 minus the process umask); mkstemp would give 0o600."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, write_fn: Callable[[Path], None], *, overwrite: bool = True) -> Path:
    """Call ``write_fn(tmp_path)`` to write a temp file beside ``path``, then move it into place.

    ``overwrite=True`` replaces ``path`` atomically (``os.replace``); ``overwrite=False`` keeps any
    existing file and returns the first free numbered name instead. Returns the final path.
    The folder is created if needed; a failed write removes the temp file and re-raises.
    """
    path = Path(path)
    stem, suffix = _split(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    except OSError as e:
        raise PermissionError(f"cannot write into the folder {path.parent}: {e.strerror or e}") from None
    os.close(fd)
    tmp = Path(tmp)
    try:
        write_fn(tmp)
        os.chmod(tmp, _umask_mode())      # after the write: some writers (safetensors) recreate the file
        if overwrite:
            os.replace(tmp, path)
            return path
        return _claim_new_name(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _claim_new_name(tmp: Path, path: Path) -> Path:
    """Hard-link ``tmp`` to the first free numbered name of ``path`` (fails on existing names,
    so a concurrent writer is never overwritten)."""
    for cand in numbered_names(path):
        try:
            os.link(tmp, cand)
            return cand
        except FileExistsError:
            continue
        except OSError:             # a file system without hard links: check, then move
            final = unique_path(path)
            os.replace(tmp, final)
            return final
    raise FileExistsError(f"no free numbered name left next to {path}")


def write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Write ``data`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data), overwrite=overwrite)


def write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Write UTF-8 ``text`` atomically (see ``atomic_write``)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), overwrite=overwrite)
