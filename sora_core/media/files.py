"""Writing files safely: atomically, and without overwriting what the user already has.

Every file the project writes (videos, weights, checkpoints, reports, downloads) goes through
``atomic_write``: the bytes go to a temporary file in the target folder, which is then moved into
place, so a reader sees the old file or the new one and a failed write leaves nothing behind. With
``overwrite=False`` an existing file is never replaced: the new file takes the first free numbered
name (``clip_00001.mp4``), claimed with a hard link so two concurrent writers cannot collide.

Temp files are named ``.NAME.PID-HOST-XXXXXXXX.tmpSUFFIX`` (e.g. ``.clip.4242-3fa9c1-k2j8x0aq.tmp.mp4``
for ``clip.mp4``): the suffix stays last for writers that pick the format from it, and the writing
process (PID on the host with that 6-hex tag) is recorded, so ``remove_orphan_temps`` can delete the
temp files a killed process (kill -9, power loss) left behind, and only those.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import tempfile
import time
from pathlib import Path
from typing import Callable

_NUMBERED = re.compile(r"^(?P<base>.*)_(?P<num>\d{5})$")
STALE_AFTER_S = 24 * 3600.0     # a temp file untouched this long is an orphan whoever wrote it


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


def _host_tag() -> str:
    """6 hex digits naming this machine, so a PID is only judged on the host it belongs to."""
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:6]


def _temp_affixes(path: Path) -> tuple[str, str]:
    """(prefix, suffix) of this process's temp files for ``path`` (mkstemp adds 8 random chars)."""
    stem, suffix = _split(path)
    return f".{stem}.{os.getpid()}-{_host_tag()}-", f".tmp{suffix}"


def temp_pattern(name: str) -> re.Pattern:
    """The names of ``atomic_write``'s temp files for a target file called ``name``."""
    stem, suffix = _split(Path(name))
    return re.compile(rf"^\.{re.escape(stem)}\.(?P<pid>\d+)-(?P<host>[0-9a-f]{{6}})-[a-z0-9_]{{8}}"
                      rf"\.tmp{re.escape(suffix)}$")


def _process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (one we may not signal counts as alive)."""
    if pid == os.getpid():
        return True
    if not 0 < pid < 2 ** 31:          # no process has such an id (0 and -1 would signal groups)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphan_temps(folder: str | os.PathLike, names, *, stale_after: float = STALE_AFTER_S) -> list[Path]:
    """Delete the temp files ``atomic_write`` left in ``folder`` for the targets ``names`` when the
    process that wrote them is gone; returns the removed paths.

    A temp file is an orphan when its PID (recorded in its name) no longer runs on this machine, or
    when it was not modified for ``stale_after`` seconds (the only test for another machine's files on
    a shared folder). Only names matching ``temp_pattern`` of a target are ever touched, never the
    targets or any other file; a folder that does not exist or cannot be listed is left alone.
    """
    patterns = [temp_pattern(n) for n in names]
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    host, now, removed = _host_tag(), time.time(), []
    for entry in entries:
        m = next((m for p in patterns if (m := p.match(entry.name))), None)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        try:
            stale = now - entry.stat(follow_symlinks=False).st_mtime > stale_after
            if stale or (m["host"] == host and not _process_alive(int(m["pid"]))):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except FileNotFoundError:       # removed meanwhile (its writer finished or another cleaner)
            continue
    return removed


def remove_orphan_temps_of(path: str | os.PathLike) -> list[Path]:
    """``remove_orphan_temps`` for the one target file ``path`` (in its folder)."""
    path = Path(path)
    return remove_orphan_temps(path.parent, [path.name])


def atomic_write(path: str | os.PathLike, write_fn: Callable[[Path], None], *, overwrite: bool = True) -> Path:
    """Call ``write_fn(tmp_path)`` to write a temp file beside ``path``, then move it into place.

    ``overwrite=True`` replaces ``path`` atomically (``os.replace``); ``overwrite=False`` keeps any
    existing file and returns the first free numbered name instead. Returns the final path.
    The folder is created if needed; a failed write removes the temp file and re-raises.
    """
    path = Path(path)
    prefix, suffix = _temp_affixes(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=path.parent)
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
