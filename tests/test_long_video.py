"""Long video (``sora_core.long_video``): windows tiling the length, the prompt schedule, the same seed
giving the same video, joins that continue, flat memory, streaming to a file, and ``sora generate``
beyond the trained length."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch

import sora_core.long_video as lv
from conftest import tiny_sora_model
from sora_core.cli import CLIError
from sora_core.cli import generate as cli
from sora_core.configs import ScheduleConfig
from sora_core.geometry import GeometryError, group_frames, latent_frames, pixel_frames
from sora_core.long_video import (Cue, LongVideoError, ScheduleError, long_video, parse_schedule, plan_windows, prompt_weights,
                                  write_long_video)
from sora_core.media.video_io import VideoIOError, read_video, tensor_to_frames
from sora_core.pipeline import GenerationDefaults, SoraModel, encode_text, generate
from sora_core.world.metrics import boundary_continuity


@pytest.fixture(scope="module")
def tiny():
    return tiny_sora_model(ScheduleConfig(steps=2, cfg=1.0, shift=3.0), GenerationDefaults(frames=9, height=16, width=16),
                           random_head=True)


@pytest.fixture(scope="module")
def default_model():
    return SoraModel.default()


def frames_of(chunks) -> np.ndarray:
    return np.concatenate([c.frames for c in chunks])


# ---------------------------------------------------------------------------------------------
# Window layout and schedule
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("ft", [1, 4])
def test_windows_tile_the_length_exactly(ft):
    for window_lat in range(2, 8):
        for ctx in range(1, window_lat):
            for total_lat in range(1, 40):
                window, overlap = pixel_frames(window_lat, ft), pixel_frames(ctx, ft)
                frames = pixel_frames(total_lat, ft)
                wins = plan_windows(frames, window, overlap, ft)
                added = wins[0].frames(ft) + sum(group_frames(w.latents - w.context, ft) for w in wins[1:])
                assert added == frames
                if total_lat >= window_lat:                 # every window keeps the trained length
                    assert all(w.latents == window_lat for w in wins)
                for a, b in zip(wins, wins[1:]):            # each continues the one before, in order
                    assert b.start + b.context_frames(ft) == a.start + a.frames(ft)
                    assert b.context >= ctx


def test_window_options_are_named():
    with pytest.raises(GeometryError, match="window=18"):
        plan_windows(481, 18, 5, 4)
    with pytest.raises(GeometryError, match="overlap=6"):
        plan_windows(481, 17, 6, 4)
    with pytest.raises(LongVideoError, match="overlap=17 frames must be shorter than window=17"):
        plan_windows(481, 17, 17, 4)


def test_schedule_parsing():
    assert parse_schedule("a red ball") == (Cue(0.0, "a red ball"),)
    assert parse_schedule("a red ball | a blue box") == (Cue(0.0, "a red ball | a blue box"),)   # no times
    assert parse_schedule(" 0:a red ball moving right | 20: the ball bounces|40.5:it stops ") == (
        Cue(0.0, "a red ball moving right"), Cue(20.0, "the ball bounces"), Cue(40.5, "it stops"))
    for spec, match in [("", "empty"), ("0:a | the ball", "part 2 .* no start time"),
                        ("5:a | 9:b", "must start at 0 s"), ("0:a | 20:b | 10:c", "part 3 starts at 10 s, not after"),
                        ("0:a | 20:  ", "part 2 .* empty prompt"), ("0:a | 60:b", "at or after the end")]:
        with pytest.raises(ScheduleError, match=match):
            parse_schedule(spec, seconds=60)


def test_prompts_change_at_window_boundaries_with_one_blended_window():
    cues = (Cue(0, "a"), Cue(2, "b"), Cue(2.5, "c"))
    assert prompt_weights(cues, [0, 1.5, 3, 4.5, 6]) == [(0, 0, 1.0), (0, 0, 1.0), (0, 2, 0.5), (2, 2, 1.0),
                                                          (2, 2, 1.0)]


def test_the_text_of_each_window_follows_the_schedule(tiny, monkeypatch):
    seen = []
    real = lv.sample_latents
    monkeypatch.setattr(lv, "sample_latents", lambda m, noise, cond, *a, **k: seen.append(cond) or real(
        m, noise, cond, *a, **k))
    list(long_video(tiny, "0:a red ball | 1:a blue box", frames=33, seed=0))   # new frames at 0, 1.125, 1.875 ... s
    both = encode_text(tiny, ["a red ball", "a blue box"])
    a, b = both.context[:1], both.context[1:]
    expected = [a, (a + b) / 2, b, b, b]
    assert len(seen) == len(expected)
    for cond, want in zip(seen, expected):
        torch.testing.assert_close(cond.context, want)


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------

def test_same_seed_same_video_and_window_zero_is_generate(tiny):
    a = frames_of(long_video(tiny, "a ball", frames=15, seed=3))
    b = frames_of(long_video(tiny, "a ball", frames=15, seed=3))
    c = frames_of(long_video(tiny, "a ball", frames=15, seed=4))
    assert a.shape == (15, 16, 16, 3) and np.array_equal(a, b) and not np.array_equal(a, c)
    one = generate(tiny, "a ball", frames=9, seed=3)
    assert np.array_equal(tensor_to_frames(one.video), a[:9])


def test_windows_are_made_lazily_and_hold_one_window(tiny):
    calls = []
    gen = long_video(tiny, "a ball", frames=41, seed=0, callback=lambda info: calls.append(info["window"]))
    assert calls == []                                       # nothing runs before a chunk is asked for
    starts, ft = [], tiny.vae.cfg.temporal_factor
    for chunk in gen:
        assert set(calls) == {chunk.window.index}            # one window sampled per chunk
        calls.clear()
        assert chunk.frames.shape[0] <= chunk.window.frames(ft)
        starts.append((chunk.start, chunk.frames.shape[0]))
        state = gen.gi_frame.f_locals                        # what the generator keeps between windows
        assert "latents" not in state                        # finished windows' latents are released
        assert state["prev"].shape[2] == chunk.window.frames(ft)
    assert starts[0][0] == 0 and all(s + n == s2 for (s, n), (s2, _) in zip(starts, starts[1:]))
    assert sum(n for _, n in starts) == 41


def test_anchoring_options(tiny, monkeypatch):
    """The anchor needs per-frame timesteps and is on by default where it can be; both options keep
    the length and the first window."""
    with pytest.raises(LongVideoError, match="per-frame timesteps"):
        long_video(tiny, "a ball", frames=25, anchor=True, condition_mode="replace")
    with pytest.raises(LongVideoError, match="at least 2 latent frames"):
        long_video(tiny, "a ball", frames=25, overlap=1, anchor=True)
    plain = frames_of(long_video(tiny, "a ball", frames=15, seed=0, anchor=False))
    assert np.array_equal(frames_of(long_video(tiny, "a ball", frames=15, seed=0)),
                          frames_of(long_video(tiny, "a ball", frames=15, seed=0, anchor=True)))
    plans = []
    real = lv.sample_latents
    monkeypatch.setattr(lv, "sample_latents", lambda *a, **k: plans.append(k["conditions"]) or real(*a, **k))
    list(long_video(tiny, "a ball", frames=25, seed=0, overlap=1))            # 1 latent of context: no anchor
    list(long_video(tiny, "a ball", frames=15, seed=0, condition_mode="replace"))
    assert all(len(p.conditions) <= 1 for p in plans)
    monkeypatch.undo()
    for kw in (dict(anchor=True), dict(match_colors_at_joins=True)):
        frames = frames_of(long_video(tiny, "a ball", frames=15, seed=0, **{"anchor": False, **kw}))
        assert frames.shape == plain.shape and np.array_equal(frames[:9], plain[:9])
        assert not np.array_equal(frames, plain)


def test_joins_continue_on_the_default_model(default_model):
    """Windows chained on their context join far more smoothly than independent clips cut together."""
    prompt = "a red ball moving right"
    chunks = list(long_video(default_model, prompt, frames=29, steps=3, seed=0))
    video = frames_of(chunks)
    joins = [c.start for c in chunks[1:]]
    chained = [boundary_continuity(video, j) for j in joins]
    clips = [tensor_to_frames(generate(default_model, prompt, frames=17, steps=3, seed=s).video) for s in range(2)]
    independent = [boundary_continuity(np.concatenate(clips), 17)]
    assert max(chained) < 2.0 and max(chained) < min(independent)


# ---------------------------------------------------------------------------------------------
# Streaming to a file, the command line
# ---------------------------------------------------------------------------------------------

def test_streamed_file_holds_every_frame_and_keeps_existing_files(tiny, tmp_path):
    out = tmp_path / "long.mp4"
    out.write_bytes(b"the user's file")
    seen = []
    written = write_long_video(out, long_video(tiny, "a ball", frames=33, seed=0), fps=8,
                               on_chunk=lambda c: seen.append(c.window.index))
    assert out.read_bytes() == b"the user's file" and written != out
    frames, fps = read_video(written)
    assert frames.shape == (33, 16, 16, 3) and fps == pytest.approx(8) and seen == [0, 1, 2, 3, 4]
    with pytest.raises(VideoIOError, match="gif"):
        write_long_video(tmp_path / "x.gif", iter(()), fps=8)


def sora_generate(*argv):
    parser = argparse.ArgumentParser(prog="sora")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", *map(str, argv)])
    return args.func(args)


def test_cli_generates_in_windows_on_the_default_model(tmp_path, capsys):
    out = tmp_path / "long.mp4"
    assert sora_generate("0:a red ball moving right | 1.5:a blue box moving left", "--seconds", 3, "--window", 9,
                         "--overlap", 5, "--steps", 2, "--seed", 0, "--out", out) == 0
    frames, _ = read_video(out)
    assert frames.shape == (25, 64, 64, 3)
    captured = capsys.readouterr()
    assert "5 windows of 9 frames" in captured.err and "window 5/5" in captured.err
    assert "in 5 windows" in captured.out
    # the default model expands every prompt, each cue of a schedule on its own
    assert "expanded prompt at 0 s: A " in captured.err and "expanded prompt at 1.5 s: A " in captured.err
    assert "red ball moving right" in captured.err and "blue box moving left" in captured.err


@pytest.mark.parametrize("extra,match", [
    (["--window", 18], "--window=18"),
    (["--overlap", 17], "--window 17 / --overlap 17"),
    (["--overlap", 4], "--overlap=4"),
    (["--prompt", "0:a | 70:b"], "prompt: .* at or after the end"),
    (["--seconds", 2, "--prompt", "0:a | 1:b"], "prompt: .* one window"),
    (["--overlap", 1, "--anchor", "on"], "--anchor on needs"),
])
def test_cli_window_options_are_checked_before_loading(tmp_path, monkeypatch, extra, match):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")
    monkeypatch.setattr(SoraModel, "load", classmethod(refuse))
    args, prompt, seconds = list(extra), "a ball", 60
    for flag in ("--prompt", "--seconds"):
        if flag in args:
            i = args.index(flag)
            prompt, seconds = (args[i + 1], seconds) if flag == "--prompt" else (prompt, args[i + 1])
            del args[i:i + 2]
    with pytest.raises(CLIError, match=match):
        sora_generate(prompt, "--seconds", seconds, "--out", tmp_path / "x.mp4", *args)
    assert list(tmp_path.iterdir()) == []


def test_cli_long_gif_from_an_image(tiny, tmp_path, capsys, monkeypatch):
    """A gif (its palette needs every frame) is collected and written at the end; --image starts window 0."""
    import cv2
    folder = tmp_path / "model"
    tiny.save(folder)
    img = tmp_path / "first.png"
    cv2.imwrite(str(img), np.full((16, 16, 3), 200, np.uint8))
    out = tmp_path / "long.gif"
    plans = []
    real = lv.sample_latents
    monkeypatch.setattr(lv, "sample_latents", lambda *a, **k: plans.append(k["conditions"]) or real(*a, **k))
    assert sora_generate("a ball", "--model", folder, "--frames", 21, "--image", img, "--seed", 0, "--out", out,
                         "--no-progress") == 0
    frames, _ = read_video(out)
    assert frames.shape == (21, 16, 16, 3) and "in 3 windows" in capsys.readouterr().out
    (pinned,) = plans[0].conditions                                   # the image, as latent frame 0
    assert pinned.position == 0 and pinned.frames == 1 and len(plans) == 3


def test_the_same_path_runs_a_wan_model_with_replacement(tmp_path, monkeypatch):
    """A tiny Wan 2.1 (frame conditions by replacement, its own temporal factor) through the same windows."""
    import tiny_wan
    paths = tiny_wan.write_tiny_wan(tmp_path / "models", "wan2.1")
    model = SoraModel.open(paths["dit"], paths["vae"], paths["text_encoder"])
    assert model.condition_mode == "replace"
    plans = []
    real = lv.sample_latents
    monkeypatch.setattr(lv, "sample_latents", lambda *a, **k: plans.append(k["conditions"]) or real(*a, **k))
    chunks = list(long_video(model, "a red ball", frames=17, window=9, overlap=5, height=32, width=32, steps=2,
                             seed=0))
    assert frames_of(chunks).shape == (17, 32, 32, 3) and len(chunks) == 3
    assert [len(p.conditions) for p in plans] == [0, 1, 1]
    with pytest.raises(LongVideoError, match="per-frame timesteps"):
        long_video(model, "a red ball", frames=17, window=9, anchor=True)
