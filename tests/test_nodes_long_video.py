"""The Sora Long Video node on a tiny random model (loaded through the loader node): the same frames
as ``sora_core.long_video``, the file written straight to the output folder, the progress bar over
every window's steps with previews, Cancel between steps leaving no file, start image / video,
conditioning, bad inputs named before any sampling, and a tiny Wan 2.1 at its own window length."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch

import sora_core.long_video as lv
from conftest import tiny_sora_model
from comfyui_sora.headless import workflow
from sora_core.configs import ScheduleConfig
from sora_core.media.video_io import read_video
from sora_core.pipeline import GenerationDefaults

PACK = workflow.load_pack()
HOST = PACK.nodes.host
NODE = PACK.NODE_CLASS_MAPPINGS["SoraLongVideo"]
BASE = dict(prompt="a red ball moving right", negative="", seconds=3.0, fps=8.0, width=0, height=0, window=0,
            overlap=0, anchor="auto", match_colors=False, seed=7, steps=2, cfg=1.0, sampler_name="euler",
            shift=0.0, to_file=False, filename_prefix="sora/long", format="mp4")
FRAMES = 25                   # 3 s at 8 fps, temporal factor 2: windows of 9 frames, overlap 3


def run_node(model, **kw):
    out = getattr(NODE(), NODE.FUNCTION)(model=model, **{**BASE, **kw})
    result = out["result"] if isinstance(out, dict) else out
    assert len(result) == len(NODE.RETURN_TYPES)
    return out, result


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    tiny_sora_model(ScheduleConfig(steps=2, cfg=1.0, shift=3.0), GenerationDefaults(frames=9, height=16, width=16),
                    random_head=True).save(folder)
    loader = PACK.NODE_CLASS_MAPPINGS["SoraModelLoader"]()
    (handle,) = loader.load("default", "default", "default", "float32", model_dir=str(folder))
    return handle


@pytest.fixture
def outdir(tmp_path):
    HOST.configure(output=tmp_path / "out")
    yield tmp_path / "out"
    HOST.configure(output=tmp_path / "unused")


def test_images_are_the_core_long_video(model):
    _, (images, count, overlap, path) = run_node(model)
    assert images.shape == (FRAMES, 16, 16, 3) and images.dtype == torch.float32 and count == FRAMES
    assert overlap == 0 and path == ""
    chunks = lv.long_video(model.model, "a red ball moving right", frames=FRAMES, steps=2, cfg=1.0, seed=7,
                           autocast_dtype=None)
    core = np.concatenate([c.frames for c in chunks])
    assert np.array_equal((images.numpy() * 255).round().astype(np.uint8), core)
    _, (again, *_) = run_node(model)
    assert torch.equal(images, again)
    _, (other, *_) = run_node(model, seed=8)
    assert not torch.equal(images, other)
    _, (own, *_) = run_node(model, cfg=0.0)                       # 0: the model's own guidance (1 here)
    _, (guided, *_) = run_node(model, cfg=3.0)
    assert torch.equal(images, own) and not torch.equal(images, guided)


def test_to_file_streams_into_the_output_folder(model, outdir):
    (outdir / "sora").mkdir(parents=True)
    (outdir / "sora" / "long_00001.mp4").write_bytes(b"the user's file")
    out, (thumbs, count, _, path) = run_node(model, to_file=True)
    entry = out["ui"]["images"][0]
    assert entry == {"filename": "long_00002.mp4", "subfolder": "sora", "type": "output"}
    assert path == "sora/long_00002.mp4" and out["ui"]["animated"] == [True]
    assert (outdir / "sora" / "long_00001.mp4").read_bytes() == b"the user's file"
    frames, fps = read_video(outdir / path)
    assert frames.shape == (FRAMES, 16, 16, 3) and fps == 8.0 and count == FRAMES
    windows = lv.plan_windows(FRAMES, 9, 3, 2)
    assert thumbs.shape == (len(windows), 16, 16, 3)          # the last frame of every window


class FakeBar:
    def __init__(self, total):
        self.total, self.calls = total, []

    def update_absolute(self, value, total, preview=None):
        self.calls.append((value, total, preview))


def test_progress_over_windows_with_previews_and_cancel(model, outdir, monkeypatch):
    bars = []
    monkeypatch.setattr(HOST, "_comfy_utils", types.SimpleNamespace(ProgressBar=lambda n: bars.append(FakeBar(n)) or bars[-1]))
    monkeypatch.setattr(HOST, "_preview_settings", lambda: (True, 256))
    run_node(model)
    steps = len(lv.plan_windows(FRAMES, 9, 3, 2)) * 2
    assert bars[0].total == steps and [c[0] for c in bars[0].calls] == list(range(1, steps + 1))
    assert all(c[2][0] == "JPEG" and c[2][1].size == (16, 16) for c in bars[0].calls)
    calls = {"n": 0}

    def throw():                                   # Cancel pressed during the third window
        calls["n"] += 1
        if calls["n"] > 5:
            raise InterruptedError("cancelled")
    monkeypatch.setattr(HOST, "_mm", types.SimpleNamespace(throw_exception_if_processing_interrupted=throw))
    with pytest.raises(InterruptedError):
        run_node(model, to_file=True)
    assert not outdir.exists() or not any(p.is_file() for p in outdir.rglob("*"))    # no file, no temp


def test_start_image_and_start_video(model, monkeypatch):
    plans = []
    real = lv.sample_latents
    monkeypatch.setattr(lv, "sample_latents", lambda *a, **k: plans.append(k["conditions"]) or real(*a, **k))
    image = torch.rand(1, 16, 16, 3, generator=torch.Generator().manual_seed(1))
    _, (images, _, overlap, _) = run_node(model, start_image=image)
    assert overlap == 0 and images.shape[0] == FRAMES
    (pinned,) = plans[0].conditions
    assert pinned.position == 0 and pinned.frames == 1
    plans.clear()
    video = torch.rand(12, 16, 16, 3, generator=torch.Generator().manual_seed(2))
    _, (images, _, overlap, _) = run_node(model, start_video=video)
    assert overlap == 3 and images.shape[0] == FRAMES             # the last 3 frames of the video, regenerated
    assert [c.position for c in plans[0].conditions] == [0] and plans[0].conditions[0].frames == 2
    small = torch.rand(1, 8, 8, 3)
    _, (images, *_) = run_node(model, start_image=small)          # width / height 0: the image's size
    assert images.shape == (FRAMES, 8, 8, 3)


def test_conditioning_input_gives_the_same_video_as_its_prompt(model):
    schedule = "0:a red ball moving right | 1.5:a blue box moving left"
    (cond,) = PACK.NODE_CLASS_MAPPINGS["SoraTextEncode"]().encode(model, schedule, "")
    _, (a, *_) = run_node(model, prompt="ignored", conditioning=cond)
    _, (b, *_) = run_node(model, prompt=schedule)
    assert torch.equal(a, b)


@pytest.mark.parametrize("kw, match", [
    (dict(window=10), "input 'window'.*window=10"),
    (dict(window=9, overlap=9), "input 'overlap'.*shorter than window=9"),
    (dict(overlap=4), "input 'overlap'"),
    (dict(width=18), "input 'width'"),
    (dict(prompt="5:a red ball | 1:a blue box"), "input 'prompt'.*must start at 0"),
    (dict(prompt="0:a red ball | 9:a blue box"), "input 'prompt'.*at or after the end"),
    (dict(seconds=0.0), "input 'seconds'"),
    (dict(start_image=torch.rand(1, 8, 8, 3), width=16, height=16), "input 'start_image'.*Sora Resize Clip"),
    (dict(start_image=torch.rand(1, 16, 16, 3), start_video=torch.rand(9, 16, 16, 3)), "input 'start_video'.*not both"),
    (dict(start_video=torch.rand(2, 16, 16, 3)), "input 'start_video'.*2 frames"),
    (dict(to_file=True, filename_prefix="../out"), "prefix"),
    (dict(to_file=True, format="gif"), "input 'format'"),
    (dict(anchor="on", condition_mode="replace"), "input 'anchor'.*per-frame timesteps"),
])
def test_bad_inputs_are_named_before_sampling(model, monkeypatch, kw, match):
    monkeypatch.setattr(lv, "sample_latents", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(ValueError, match=match) as e:
        run_node(model, **kw)
    assert "Sora Long Video" in str(e.value) or "prefix" in match


def test_image_output_too_large_for_memory_points_to_to_file(model, monkeypatch):
    from sora_core import budget
    monkeypatch.setattr(budget, "available_memory", lambda device="cpu": 10_000_000)
    monkeypatch.setattr(lv, "sample_latents", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(budget.BudgetError, match="turn on to_file"):
        run_node(model, seconds=600.0)


def test_validate_inputs():
    assert NODE.VALIDATE_INPUTS(seconds=60.0, filename_prefix="sora/long") is True
    assert "input 'seconds'" in NODE.VALIDATE_INPUTS(seconds=0.0)
    assert "input 'filename_prefix'" in NODE.VALIDATE_INPUTS(filename_prefix="/etc/x")
    assert NODE.VALIDATE_INPUTS() is True                       # linked inputs are checked when the node runs


def test_a_tiny_wan_runs_in_windows_of_its_own_length(tmp_path, monkeypatch):
    """A tiny random Wan 2.1 (replacement, temporal factor 4, trained length 81 frames at 16 fps) through
    the loader and the same node: windows of 81 frames (21 latent frames), anchor auto = off."""
    import tiny_wan
    paths = tiny_wan.write_tiny_wan(tmp_path / "models", "wan2.1")
    HOST.configure(models=tmp_path / "models")
    loader = PACK.NODE_CLASS_MAPPINGS["SoraModelLoader"]()
    (wan,) = loader.load(paths["dit"].name, paths["vae"].name, paths["text_encoder"].name, "float32")
    assert wan.model.defaults.frames == 81 and wan.model.condition_mode == "replace"
    shapes, plans = [], []
    real = lv.sample_latents

    def spy(model, noise, *a, **k):
        shapes.append(tuple(noise.shape))
        plans.append(k["conditions"])
        return real(model, noise, *a, **k)
    monkeypatch.setattr(lv, "sample_latents", spy)
    _, (images, count, _, _) = run_node(wan, seconds=9.0, fps=16.0, width=32, height=32, steps=1, cfg=1.0)
    assert count == 145 and images.shape == (145, 32, 32, 3)    # 81 + 64 new frames after a 17-frame context
    assert [s[2] for s in shapes] == [21, 21] and [len(p.conditions) for p in plans] == [0, 1]
