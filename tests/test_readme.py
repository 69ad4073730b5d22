"""README's Python example runs as written (with fewer sampling steps) and does what it says."""

import functools
import re
from pathlib import Path

import numpy as np

from sora_core import pipeline
from sora_core.media.video_io import read_video

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_python_example_runs_and_writes_a_new_file(tmp_path, monkeypatch):
    blocks = python_blocks()
    assert len(blocks) == 1, "README has one Python example"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "generate", functools.partial(pipeline.generate, steps=2))
    (tmp_path / "ball.mp4").write_bytes(b"a file the user already has")
    scope: dict = {}
    exec(compile(blocks[0], str(README), "exec"), scope)
    assert (tmp_path / "ball.mp4").read_bytes() == b"a file the user already has"
    path = Path(scope["path"]).resolve()
    assert path.parent == tmp_path and path.name != "ball.mp4"
    frames, fps = read_video(path)
    assert frames.shape == (17, 64, 64, 3) and fps == 8
    clip, more, plan, video = scope["clip"], scope["more"], scope["plan"], scope["video"]
    assert more.video.shape == clip.video.shape and plan.drop_start > 0
    assert video.shape[1] == 2 * clip.video.shape[1] - plan.drop_start
    # the extension starts on the clip's last frames (an unconditioned clip is ~0.22 away)
    gap = (more.video[:, 0] - clip.video[:, -plan.drop_start]).abs().mean().item()
    assert gap < 0.1, gap
    assert np.isfinite(video.numpy()).all()
