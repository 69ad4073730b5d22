"""Atomic, non-overwriting file writes shared by every writer of the project."""

import os
import stat

import pytest

from sora_core.files import atomic_write, unique_path, write_bytes, write_text


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
