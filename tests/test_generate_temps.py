"""``sora generate`` removes the temp files a killed earlier generate left for its output file."""

import os
import subprocess
import sys

from test_cli_generate import model_dir, sora_generate  # noqa: F401  (model_dir is a fixture)

from sora_core.media.files import _host_tag


def test_generate_removes_orphan_temps_of_its_output_and_nothing_else(tmp_path, model_dir, capsys):  # noqa: F811
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    orphan = f".clip.{dead}-{_host_tag()}-abcd1234.tmp.mp4"           # a generate killed while writing clip.mp4
    keep = [f".clip.{os.getpid()}-{_host_tag()}-abcd1234.tmp.mp4",    # a writer still running
            f".other.{dead}-{_host_tag()}-abcd1234.tmp.mp4",           # another output's
            ".clip.notes.tmp.mp4"]                                      # the user's
    for name in [orphan, *keep]:
        (tmp_path / name).write_bytes(b"partial")
    assert sora_generate("a red ball", "--out", tmp_path / "clip.mp4", "--model", model_dir, "--seed", 1,
                         "--no-progress") == 0
    assert orphan in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == sorted([*keep, "clip.mp4"])
