"""Atomic, non-overwriting file writes shared by every writer of the project."""

import os
import stat

import pytest

from sora_core.media.files import atomic_write, unique_path, write_bytes, write_text


def test_overwrite_replaces_and_leaves_no_temp(tmp_path):
    p = tmp_path / "a.txt"
    write_text(p, "one")
    assert write_text(p, "two") == p
    assert p.read_text() == "two"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]


def test_no_overwrite_takes_the_next_free_name(tmp_path):
    p = tmp_path / "clip.mp4"
    first = write_bytes(p, b"1", overwrite=False)
    second = write_bytes(p, b"2", overwrite=False)
    third = write_bytes(p, b"3", overwrite=False)
    assert (first.name, second.name, third.name) == ("clip.mp4", "clip_00001.mp4", "clip_00002.mp4")
    assert [q.read_bytes() for q in (first, second, third)] == [b"1", b"2", b"3"]
    assert unique_path(p).name == "clip_00003.mp4"
    assert unique_path(second).name == "clip_00003.mp4"   # a numbered name continues from its number


def test_failed_write_keeps_the_old_file_and_leaves_nothing(tmp_path):
    p = tmp_path / "w.safetensors"
    write_bytes(p, b"old")

    def boom(tmp):
        tmp.write_bytes(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(p, boom)
    assert p.read_bytes() == b"old"
    assert sorted(os.listdir(tmp_path)) == ["w.safetensors"]


def test_files_get_normal_permissions_not_private_temp_ones(tmp_path):
    old = os.umask(0o022)
    try:
        p = write_text(tmp_path / "r.md", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


def test_folder_is_created(tmp_path):
    p = write_text(tmp_path / "new" / "deeper" / "f.json", "{}")
    assert p.read_text() == "{}"


# ---------------------------------------------------------------------------------------------
# Temp files: named after their writer, removed when that writer is gone
# ---------------------------------------------------------------------------------------------

def _dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(proc.stdout)


def _temp_name(target: str, pid: int, host: str | None = None) -> str:
    from sora_core.media.files import _host_tag
    stem, dot, ext = target.rpartition(".")
    return f".{stem}.{pid}-{host or _host_tag()}-ab12cd34.tmp.{ext}"


def test_temp_files_carry_the_writer_and_keep_the_suffix(tmp_path):
    from sora_core.media.files import temp_pattern
    seen = []

    def write(tmp):
        seen.append(tmp.name)
        tmp.write_bytes(b"x")

    write_bytes(tmp_path / "clip.mp4", b"old")
    atomic_write(tmp_path / "clip.mp4", write)
    m = temp_pattern("clip.mp4").match(seen[0])
    assert m and int(m["pid"]) == os.getpid() and seen[0].endswith(".tmp.mp4")
    assert not temp_pattern("clip.webp").match(seen[0]) and not temp_pattern("cli.mp4").match(seen[0])


def test_orphan_temps_of_dead_writers_are_removed_and_nothing_else(tmp_path):
    from sora_core.media.files import remove_orphan_temps
    dead = _dead_pid()
    keep = ["ckpt.safetensors", _temp_name("ckpt.safetensors", os.getpid()),   # the target; a live writer
            _temp_name("other.safetensors", dead),                             # another target's temp
            _temp_name("ckpt.safetensors", dead, host="0f0f0f"),               # another machine's, recent
            ".ckpt.notes.tmp.safetensors", "ckpt.1234.tmp.safetensors"]        # user files
    gone = [_temp_name("ckpt.safetensors", dead)]
    for name in keep + gone:
        (tmp_path / name).write_bytes(b"x")
    old = tmp_path / _temp_name("ckpt.safetensors", os.getpid(), host="0f0f0f")   # another machine's, stale
    old.write_bytes(b"x")
    os.utime(old, (0, 0))
    removed = remove_orphan_temps(tmp_path, ["ckpt.safetensors"])
    assert sorted(p.name for p in removed) == sorted(gone + [old.name])
    assert sorted(os.listdir(tmp_path)) == sorted(keep)
    assert remove_orphan_temps(tmp_path / "missing", ["ckpt.safetensors"]) == []


def test_a_writer_killed_mid_write_leaves_the_old_file_and_an_orphan_the_next_start_removes(tmp_path):
    import subprocess
    import sys

    from sora_core.media.files import remove_orphan_temps_of
    target = tmp_path / "w.safetensors"
    write_bytes(target, b"old")
    code = ("import os, signal, sys; from sora_core.media.files import atomic_write\n"
            "def die(tmp):\n    tmp.write_bytes(b'partial'); os.kill(os.getpid(), signal.SIGKILL)\n"
            "atomic_write(sys.argv[1], die)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr
    assert target.read_bytes() == b"old" and len(os.listdir(tmp_path)) == 2
    assert [p.parent for p in remove_orphan_temps_of(target)] == [tmp_path]
    assert os.listdir(tmp_path) == ["w.safetensors"]
