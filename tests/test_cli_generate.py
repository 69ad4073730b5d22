"""``sora generate`` end to end with a tiny random model saved to a temporary folder."""

import argparse

import cv2
import numpy as np
import pytest

from conftest import tiny_sora_model
from sora_core.cli import CLIError
from sora_core.cli import generate as cli
from sora_core.configs import ScheduleConfig
from sora_core.geometry import GeometryError
from sora_core.pipeline import GenerationDefaults, ModelMissingError, SoraModel
from sora_core.media.video_io import read_video


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = tiny_sora_model(ScheduleConfig(steps=2, cfg=2.0), GenerationDefaults(frames=5, height=16, width=16, fps=8.0),
                            random_head=True)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return folder


def sora_generate(*argv):
    parser = argparse.ArgumentParser(prog="sora")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", *map(str, argv)])
    return args.func(args)


def test_writes_video(tmp_path, model_dir, capsys):
    out = tmp_path / "ball.mp4"
    assert sora_generate("a red ball bouncing", "--out", out, "--model", model_dir, "--seed", 1,
                         "--width", 24, "--height", 16, "--frames", 7, "--no-progress") == 0
    frames, fps = read_video(out)
    assert frames.shape == (7, 16, 24, 3) and fps == pytest.approx(8.0)
    assert f"wrote {out}" in capsys.readouterr().out


def test_existing_file_is_kept(tmp_path, model_dir, capsys):
    out = tmp_path / "clip.gif"
    out.write_bytes(b"the user's file")
    sora_generate("a ball", "--out", out, "--model", model_dir, "--seconds", 0.5, "--fps", 6, "--no-progress")
    assert out.read_bytes() == b"the user's file"
    (new,) = [p for p in tmp_path.iterdir() if p != out]
    assert new.suffix == ".gif" and f"wrote {new}" in capsys.readouterr().out
    frames, _ = read_video(new)
    assert frames.shape[0] == 3                            # 0.5 s at 6 fps -> nearest valid count 3


def test_image_and_expand(tmp_path, model_dir, capsys):
    img = tmp_path / "first.png"
    cv2.imwrite(str(img), np.full((20, 40, 3), 200, np.uint8))
    out = tmp_path / "anim.webp"
    sora_generate("a red ball", "--out", out, "--model", model_dir, "--image", img, "--expand", "--seed", 2,
                  "--no-progress")
    frames, _ = read_video(out)
    assert frames.shape == (5, 12, 24, 3)                  # the image's 2:1 aspect at the default area
    assert "expanded prompt: " in capsys.readouterr().err


def test_expansion_takes_an_open_size_from_the_start_image(tmp_path, model_dir, capsys):
    """With --image, an object whose size the prompt leaves open gets the size the image shows (the
    captioner's reading), so the caption does not contradict the first frame; a size the prompt says
    wins; without an image it is large (expand.OPEN_SIZE)."""
    from sora_core.prompts.expand import open_size_from
    from sora_core.world.render import render
    from sora_core.world.scene import ObjectRequest, sample_scene

    def frame(size):
        return render(sample_scene(5, 64, 64, 1, 8.0, n_objects=1, objects=[ObjectRequest("square", "red", size)]))[0]
    assert (open_size_from(frame("small")), open_size_from(frame("large")), open_size_from(None)) == ("small", "large", "large")
    assert open_size_from(np.zeros((64, 64, 3), np.uint8)) == "large"                   # nothing seen
    img = tmp_path / "small.png"
    cv2.imwrite(str(img), frame("small")[..., ::-1])
    for prompt, said in (("a red box moving left", "small"), ("a big red box moving left", "large")):
        sora_generate(prompt, "--out", tmp_path / "v.mp4", "--model", model_dir, "--image", img, "--width", 64,
                      "--height", 64, "--steps", 1, "--no-progress")
        assert f"expanded prompt: A {said} red box moving left" in capsys.readouterr().err


def _sent_prompts(monkeypatch):
    """Record the prompts the pipeline encodes."""
    import sora_core.pipeline as pipeline
    sent, real = [], pipeline.encode_text

    def spy(model, prompts):
        sent.extend(prompts)
        return real(model, prompts)
    monkeypatch.setattr(pipeline, "encode_text", spy)
    return sent


def test_prompts_are_expanded_by_default_for_the_world_model(tmp_path, model_dir, capsys, monkeypatch):
    """The default model's family reads the world's captions: the prompt is expanded unless --no-expand,
    and the caption sent is printed; a prompt the vocabulary cannot read goes as written, with a note."""
    from sora_core.prompts.expand import expand_prompt
    sent = _sent_prompts(monkeypatch)
    sora_generate("a small cyan disc falling", "--out", tmp_path / "a.mp4", "--model", model_dir, "--seed", 3,
                  "--no-progress")
    err = capsys.readouterr().err
    caption = expand_prompt("a small cyan disc falling", 3, width=16, height=16, frames=5, fps=8.0)
    assert f"expanded prompt: {caption}" in err and caption in sent and "small cyan ball moving down" in caption
    sent.clear()
    sora_generate("a small cyan disc falling", "--out", tmp_path / "b.mp4", "--model", model_dir, "--seed", 3,
                  "--no-progress", "--no-expand")
    assert "expanded prompt" not in capsys.readouterr().err and "a small cyan disc falling" in sent
    assert caption not in sent
    sent.clear()
    sora_generate("a red dragon bouncing", "--out", tmp_path / "c.mp4", "--model", model_dir, "--no-progress")
    err = capsys.readouterr().err
    assert "not expanded" in err and "dragon" in err and "a red dragon bouncing" in sent
    with pytest.raises(CLIError, match="--expand.*dragon"):
        sora_generate("a red dragon bouncing", "--out", tmp_path / "d.mp4", "--model", model_dir, "--no-progress",
                      "--expand")


@pytest.fixture
def no_model_load(monkeypatch):
    """Bad arguments must fail before any weights are loaded."""
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr(SoraModel, "load", classmethod(refuse))


@pytest.mark.parametrize("extra,error,match", [
    (["--frames", 4], GeometryError, "frames=4"),
    (["--width", 18], GeometryError, "width=18"),
    (["--image", "missing.png"], CLIError, "does not exist"),
    (["--steps", 0], CLIError, "--steps=0"),
    (["--sampler", "magic"], ValueError, "allowed: euler"),
    (["--strength", 2], CLIError, r"\[0, 1\]"),
])
def test_bad_arguments_leave_nothing(tmp_path, model_dir, no_model_load, extra, error, match):
    with pytest.raises(error, match=match):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--model", model_dir, *extra)
    assert list(tmp_path.iterdir()) == []


def test_bad_outputs_and_model(tmp_path, model_dir, no_model_load):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CLIError, match="is a file, not a folder"):
        sora_generate("a ball", "--out", blocker / "x.mp4", "--model", model_dir)
    with pytest.raises(CLIError, match="allowed are .mp4"):
        sora_generate("a ball", "--out", tmp_path / "x.avi", "--model", model_dir)
    with pytest.raises(ModelMissingError, match="does not exist"):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--model", tmp_path / "nope")
    with pytest.raises(SystemExit):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--frames", 5, "--seconds", 1)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_failure_while_generating_leaves_no_file(tmp_path, model_dir, monkeypatch):
    import sora_core.pipeline as pipeline

    def interrupted(*a, **k):
        raise KeyboardInterrupt
    monkeypatch.setattr(pipeline, "generate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--model", model_dir, "--no-progress")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("extra,match", [
    (["--cfg", "nan"], r"--cfg must be a finite number in \[0, 100\], got --cfg=nan"),
    (["--cfg", "inf"], "--cfg must be a finite number"),
    (["--cfg", "1e308"], r"--cfg must be <= 100 \(allowed: \[0, 100\]\)"),
    (["--shift", "nan"], r"--shift must be a finite number in \(0, 100\]"),
    (["--shift", "0"], "--shift must be > 0"),
    (["--seconds", "nan"], "--seconds must be a finite number"),
    (["--seconds", "inf"], "--seconds must be a finite number"),
    (["--strength", "nan"], r"--strength must be a finite number in \[0, 1\]"),
    (["--fps", "nan"], "--fps must be a finite number"),
    (["--fps=-inf"], "--fps must be a finite number"),
    (["--fps", "0.0001"], r"--fps 0.0001: fps must be a number in \[0.001, 1000\] for a .mp4 file"),
    (["--steps", "100000"], "--steps must be <= 10000"),
    (["--device", "cuda"], r"--device 'cuda' is not available here \(this torch has no usable CUDA device\); "
                           "available: cpu"),
    (["--device", "bogus"], "--device 'bogus' is not available here; available: cpu"),
])
def test_nonfinite_and_out_of_range_options_are_named(tmp_path, model_dir, no_model_load, extra, match):
    with pytest.raises(CLIError, match=match):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--model", model_dir, *extra)
    assert list(tmp_path.iterdir()) == []


def test_fps_the_container_cannot_store(tmp_path, model_dir, no_model_load):
    for fps in ("60", "0.001"):
        with pytest.raises(CLIError, match=r"fps must be a number in \[0.002, 50\] for a .gif file"):
            sora_generate("a ball", "--out", tmp_path / "x.gif", "--model", model_dir, "--fps", fps)
    assert list(tmp_path.iterdir()) == []


def test_slow_gif_keeps_its_rate(tmp_path, model_dir):
    sora_generate("a ball", "--out", tmp_path / "slow.gif", "--model", model_dir, "--fps", 0.25, "--frames", 5,
                  "--no-progress")
    assert read_video(tmp_path / "slow.gif")[1] == pytest.approx(0.25)


def test_unwritable_out_fails_before_loading(tmp_path, model_dir, no_model_load):
    with pytest.raises(CLIError, match="--out: cannot write into the folder /proc"):
        sora_generate("a ball", "--out", "/proc/x.mp4", "--model", model_dir)
    folder = tmp_path / "v.mp4"
    folder.mkdir()
    with pytest.raises(CLIError, match="is a folder; give a video file name"):
        sora_generate("a ball", "--out", folder, "--model", model_dir)
    (tmp_path / "f").write_text("a file where a folder would go")
    with pytest.raises(CLIError, match="is a file, not a folder"):
        sora_generate("a ball", "--out", tmp_path / "f" / "deeper" / "x.mp4", "--model", model_dir)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f", "v.mp4"] and not any(folder.iterdir())


def test_folder_image_and_file_model_are_named(tmp_path, model_dir, no_model_load):
    with pytest.raises(CLIError, match="--image .* is a folder; --image takes one image file"):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--model", model_dir, "--image", tmp_path)
    with pytest.raises(CLIError, match=r"--model .* is a file; --model takes the model's folder"):
        sora_generate("a ball", "--out", tmp_path / "x.mp4", "--model", model_dir / "dit.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_long_prompt_is_warned_once(tmp_path, model_dir, capsys, recwarn):
    long = "a red ball bouncing " * 5                                         # 100 bytes; the tiny encoder reads 62
    sora_generate(long, "--out", tmp_path / "x.mp4", "--model", model_dir, "--seed", 0, "--no-progress")
    err = capsys.readouterr().err
    assert "warning: prompt: the prompt is 100 bytes long but the text encoder reads at most 62" in err
    assert err.count("bytes long") == 1 and not recwarn.list
