"""Video nodes: save never overwrites and cannot leave the output folder, preview writes only to the
temp folder, load reads back what was saved (with skip / cap / every-nth)."""

import numpy as np
import pytest
import torch

from sora_core.media import outputs, video_io
from comfyui_sora.headless import workflow


@pytest.fixture(scope="module")
def pack():
    return workflow.load_pack()


@pytest.fixture
def folders(pack, tmp_path):
    dirs = {k: tmp_path / k for k in ("output", "temp", "input", "models")}
    for d in dirs.values():
        d.mkdir()
    pack.nodes.host.configure(**dirs)
    return dirs


def clip(frames=9, h=16, w=24):
    """A clip whose frames differ: a bright bar moving right over a gradient."""
    x = torch.linspace(0, 1, w).expand(frames, h, w).clone()
    for t in range(frames):
        x[t, :, (t * 2) % w] = 1.0
    return torch.stack([x, 1 - x, x * 0.5], dim=-1)


def node(pack, name):
    return pack.NODE_CLASS_MAPPINGS[name]()


def test_save_writes_numbered_mp4s_that_decode_and_never_overwrite(pack, folders):
    images = clip()
    ui1 = node(pack, "SoraSaveVideo").save(images, 8.0, "sora/test", "mp4")["ui"]
    ui2 = node(pack, "SoraSaveVideo").save(images, 8.0, "sora/test", "mp4")["ui"]
    e1, e2 = ui1["images"][0], ui2["images"][0]
    assert ui1["animated"] == [True]
    assert (e1["subfolder"], e1["type"]) == ("sora", "output")
    assert e1["filename"] == "test_00001.mp4" and e2["filename"] == "test_00002.mp4"
    frames, fps = video_io.read_video(folders["output"] / "sora" / e1["filename"])
    assert frames.shape == (9, 16, 24, 3) and fps == pytest.approx(8.0)
    assert not any(folders["temp"].iterdir())


def test_saved_mp4_carries_the_workflow_and_prompt(pack, folders):
    import av
    import json
    workflow_ui, prompt = {"nodes": [{"id": 1}], "links": []}, {"1": {"class_type": "X", "inputs": {}}}
    ui = node(pack, "SoraSaveVideo").save(clip(3), 8.0, "meta", "mp4", prompt=prompt,
                                          extra_pnginfo={"workflow": workflow_ui})["ui"]
    with av.open(str(folders["output"] / ui["images"][0]["filename"])) as container:
        tags = dict(container.metadata)
    assert json.loads(tags["workflow"]) == workflow_ui and json.loads(tags["prompt"]) == prompt


@pytest.mark.parametrize("prefix", ["../escape", "/abs/clip", "sora/../../x", ""])
def test_save_refuses_prefixes_outside_the_output_folder(pack, folders, prefix):
    with pytest.raises(outputs.OutputPathError):
        node(pack, "SoraSaveVideo").save(clip(3), 8.0, prefix, "mp4")
    assert not any(folders["output"].parent.glob("escape*"))


def test_save_png_writes_one_image_per_frame_and_webp_gif(pack, folders):
    ui = node(pack, "SoraSaveVideo").save(clip(1), 8.0, "still", "png")["ui"]
    assert ui["animated"] == [False] and ui["images"][0]["filename"] == "still_00001.png"
    for fmt in ("webp", "gif"):
        entry = node(pack, "SoraSaveVideo").save(clip(5), 8.0, "anim", fmt)["ui"]["images"][0]
        frames, _ = video_io.read_video(folders["output"] / entry["filename"])
        assert frames.shape[0] == 5


def test_preview_writes_to_temp_only(pack, folders):
    ui = node(pack, "SoraPreviewVideo").preview(clip(5), 8.0)["ui"]
    entry = ui["images"][0]
    assert entry["type"] == "temp" and entry["filename"].endswith(".mp4")
    assert (folders["temp"] / entry["filename"]).is_file()
    assert not any(folders["output"].iterdir())


def test_load_reads_back_with_skip_cap_and_every_nth(pack, folders):
    src = clip(9)
    frames = (src.numpy() * 255).round().astype(np.uint8)
    video_io.write_video(folders["input"] / "moving.mp4", frames, 8.0, crf=0)
    loader = pack.NODE_CLASS_MAPPINGS["SoraLoadVideo"]
    choices = loader.INPUT_TYPES()["required"]["video"][0]
    assert "moving.mp4" in choices
    images, count, fps = loader().load("moving.mp4", 3, 1, 2)
    assert count == 3 and images.shape == (3, 16, 24, 3) and fps == pytest.approx(4.0)
    # each loaded frame is closest to source frame 1, 3, 5 (yuv420p is lossy in colour)
    err = (images[:, None] - src[None]).abs().mean(dim=(2, 3, 4))          # (3 loaded, 9 source)
    assert err.argmin(dim=1).tolist() == [1, 3, 5]
    with pytest.raises(FileNotFoundError, match="nothere.mp4"):
        loader().load("nothere.mp4", 0, 0, 1)
    with pytest.raises(ValueError, match="outside the input folder"):
        loader().load("../output/x.mp4", 0, 0, 1)


def test_load_refuses_what_cannot_fit_before_decoding(pack, folders, monkeypatch):
    """cap 0 (all frames) on a video too large for the available memory: refused from the file's
    header, before a frame is decoded; a cap that fits loads."""
    from sora_core import budget
    video_io.write_video(folders["input"] / "long.mp4", (clip(17, 64, 64).numpy() * 255).astype(np.uint8), 8.0)
    assert video_io.probe_video(folders["input"] / "long.mp4") == (17, 64, 64)
    monkeypatch.setattr(budget, "available_memory", lambda device="cpu": 200_000)
    read = video_io.read_video

    def refuse(*a, **k):
        raise AssertionError("decoded before the memory check")
    monkeypatch.setattr(video_io, "read_video", refuse)
    load = node(pack, "SoraLoadVideo").load
    with pytest.raises(budget.BudgetError, match=r"Sora Load Video: video 'long.mp4' \(17 frames of 64x64; lower "
                                                 r"frame_load_cap.*needs about 1.2 MiB but cpu has 0.2 MiB"):
        load("long.mp4", 0, 0, 1)
    monkeypatch.setattr(video_io, "read_video", read)
    images, count, _ = load("long.mp4", 2, 0, 1)
    assert count == 2 and images.shape == (2, 64, 64, 3)


@pytest.mark.parametrize("fps, prefix, fmt, why", [
    (60.0, "sora/x", "gif", "for a .gif file"),            # a gif stores whole-centisecond delays
    (8.0, "sora/a\nb", "mp4", "control or invisible"),
    (8.0, "sora/x", "avi", "allowed: mp4"),
    (float("nan"), "sora/x", "png", "input 'fps': must be in"),
])
def test_save_refuses_what_it_cannot_write_before_the_graph_runs(pack, folders, fps, prefix, fmt, why):
    """The save's own checks run at validation (ComfyUI and the headless executor call VALIDATE_INPUTS
    before any node executes), so a bad prefix or rate never costs a generation."""
    from comfyui_sora.headless import executor
    cls = pack.NODE_CLASS_MAPPINGS["SoraSaveVideo"]
    assert why in cls.VALIDATE_INPUTS(fps=fps, filename_prefix=prefix, format=fmt)
    assert cls.VALIDATE_INPUTS(fps=8.0, filename_prefix="sora/ok", format=fmt if fmt != "avi" else "mp4") is True
    api = {"1": {"class_type": "SoraLoadVideo", "inputs": {"video": "sora-samples/red_ball_right.mp4", "frame_load_cap": 0,
                                                          "skip_first_frames": 0, "select_every_nth": 1}},
           "2": {"class_type": "SoraSaveVideo", "inputs": {"images": ["1", 0], "fps": fps,
                                                          "filename_prefix": prefix, "format": fmt}}}
    with pytest.raises(Exception) as err:
        executor.validate_prompt(api, pack.NODE_CLASS_MAPPINGS)
    assert "node 2 (SoraSaveVideo)" in str(err.value)     # named by the executor or by the node itself
    assert not list(folders["output"].rglob("*"))
