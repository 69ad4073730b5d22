"""``sora eval --tasks long`` (``sora_core.evaluation.long``): the per-window scores read a rendered
long clip as perfect and a drifting / cut one as not, the task runs end to end on a tiny model with the
peak RSS measured in subprocesses, and its options are checked before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest

from comfyui_sora.headless.cli import main
from sora_core.evaluation.long import colour_shifts, long_scores
from sora_core.long_video import plan_windows
from sora_core.prompts.expand import prompt_to_scene
from sora_core.world.render import render

PROMPT = "a large red ball moving right"


def layout(frames: int, window: int = 17, overlap: int = 5, ft: int = 4):
    """(spans, joins) of the long-video windows tiling ``frames``."""
    wins = plan_windows(frames, window, overlap, ft)
    return ([(w.start, w.start + w.frames(ft)) for w in wins],
            [w.start + w.context_frames(ft) for w in wins[1:]])


@pytest.fixture(scope="module")
def clip():
    """10 s of the world's own rendering of the prompt (81 frames, 64x64)."""
    return render(prompt_to_scene(PROMPT, 3, width=64, height=64, frames=81, fps=8.0))


def test_a_rendered_long_clip_scores_perfectly(clip):
    spans, joins = layout(len(clip))
    m = long_scores(clip, 8.0, spans, joins, PROMPT)
    assert len(spans) == 7 and len(joins) == 6
    assert m["colour_kept"] == m["shape_kept"] == m["size_kept"] == m["count_kept"] == 1.0, m
    assert m["colour_same"] == m["shape_same"] == m["size_same"] == 1.0, m
    assert m["object_colour_shift"] < 2.0 and m["background_colour_shift"] < 0.5, m
    assert m["boundary_continuity"] <= 1.5 and m["joins_smooth"] == 1.0, m


def test_drift_and_cuts_are_caught(clip):
    """The object turning blue halfway, a dimmed background in the last part, and a jump at one join
    each lower the scores that measure them."""
    spans, joins = layout(len(clip))
    bad = clip.copy()
    half = len(bad) // 2
    obj = bad.max(axis=-1) >= 170
    tail = bad[half:]
    tail[obj[half:]] = np.array([48, 92, 244], np.uint8)              # red -> the world's blue
    bad[-30:][~obj[-30:]] //= 2                                       # background darker at the end
    j = joins[2]
    bad[j:] = np.roll(bad[j:], 20, axis=2)                            # a jump of 20 pixels at one join
    m = long_scores(bad, 8.0, spans, joins, PROMPT)
    assert m["colour_kept"] <= 4 / 7 and m["colour_same"] <= 3 / 6, m
    assert m["object_colour_shift"] > 30 and m["background_colour_shift"] > 3, m
    assert m["boundary_continuity"] > 1.5 and m["joins_smooth"] == 5 / 6, m
    assert m["shape_kept"] == m["shape_same"] == 1.0                  # the shape did not change


def test_count_kept_is_only_scored_when_the_first_window_had_the_count(clip):
    spans, joins = layout(len(clip))
    m = long_scores(clip, 8.0, spans, joins, "a red ball and a blue box")   # one object seen, two asked
    assert m["count_kept"] is None and m["colour_kept"] == 0.0
    assert m["colour_same"] is None                                   # the first window lacks the blue box
    m = long_scores(clip, 8.0, spans, joins, "a green ball")          # the wrong colour, kept all along
    assert m["colour_kept"] == 0.0 and m["colour_same"] == 1.0 and m["shape_same"] == 1.0


def test_colour_shift_of_a_still_and_of_a_fading_video():
    still = np.full((40, 16, 16, 3), 20, np.uint8)
    still[:, 4:10, 4:10] = (232, 40, 40)
    assert colour_shifts(still, 8.0) == (0.0, 0.0)
    fade = still.copy()
    fade[20:, 4:10, 4:10] = (200, 40, 40)                              # object red 232 -> 200
    obj, back = colour_shifts(fade, 8.0, edge=2.0)
    assert obj == pytest.approx(32 / 3) and back == 0.0
    dark = np.full((10, 8, 8, 3), 20, np.uint8)                        # no object pixels at all
    assert colour_shifts(dark, 8.0)[0] is None


def test_eval_long_task_end_to_end(tiny_model_dir, tmp_path):
    """Two prompts of 2 s (17 frames: windows of the tiny model's 5 frames), every long metric in the
    report, the video whole in the report folder, and the peak RSS / time of 1 s vs 2 s measured in
    two subprocesses."""
    from sora_core.media.video_io import read_video
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a big red ball rolling to the right\na green box sliding left\na blue ball\n")
    out = tmp_path / "rep"
    assert main(["eval", "--generate", "--prompts", str(prompts), "--count", "2", "--model", str(tiny_model_dir),
                 "--tasks", "long", "--seconds", "2", "--rss-seconds", "1,2", "--seeds", "5", "--out", str(out),
                 "--no-progress"]) == 0
    data = json.loads((out / "report.json").read_text())
    assert [c["task"] for c in data["clips"]] == ["long", "long"]           # --count 2: the first two prompts
    for c in data["clips"]:
        m = c["metrics"]
        assert {"colour_kept", "shape_kept", "colour_same", "object_colour_shift", "background_colour_shift", "boundary_continuity",
                "joins_smooth", "temporal_flicker", "count_kept"} <= set(m)
        assert m["boundary_continuity"] is not None and 0 <= m["joins_smooth"] <= 1
        assert read_video(out / c["video"])[0].shape == (17, 24, 24, 3)
        assert any("windows of 5 frames" in n for n in c["notes"])
    mem = data["settings"]["long_memory"]
    assert mem["short_seconds"] == 1 and mem["long_seconds"] == 2 and mem["short_clips"] == 2
    assert mem["short_peak_rss_mib"] > 50 and mem["long_peak_rss_mib"] > 50
    assert mem["rss_ratio"] == pytest.approx(mem["long_peak_rss_mib"] / mem["short_peak_rss_mib"], rel=1e-2)
    assert "target <= 1.1x" in (out / "report.md").read_text()


def test_eval_long_expand_gives_the_model_the_caption(tiny_model_dir, tmp_path, monkeypatch):
    """--expand: the windows are generated from the expanded caption; the prompt as written is scored."""
    import sora_core.long_video as lv
    from sora_core.evaluation.evaluate import fills_seed
    from sora_core.prompts.expand import expand_prompt
    seen, real = [], lv.long_video

    def spy(model, prompt, *a, **k):
        seen.append(prompt)
        return real(model, prompt, *a, **k)
    monkeypatch.setattr(lv, "long_video", spy)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a big red ball rolling to the right\n")
    out = tmp_path / "rep"
    assert main(["eval", "--generate", "--prompts", str(prompts), "--model", str(tiny_model_dir), "--tasks", "long",
                 "--seconds", "1", "--rss-seconds", "off", "--seeds", "5", "--steps", "1", "--expand", "--out", str(out),
                 "--no-progress"]) == 0
    assert seen == [expand_prompt("a big red ball rolling to the right", fills_seed(5, 1), width=24, height=24,
                                  frames=5, fps=8.0)]
    assert json.loads((out / "report.json").read_text())["clips"][0]["prompt"] == "a big red ball rolling to the right"


@pytest.mark.parametrize("extra, match", [
    (["--tasks", "t2v", "--seconds", "30"], "--seconds only applies to --generate --tasks long"),
    (["--tasks", "t2v", "--rss-seconds", "10,60"], "--rss-seconds only applies"),
    (["--tasks", "long", "--seconds", "0"], "--seconds must be > 0"),
    (["--tasks", "long", "--seconds", "nan"], "--seconds must be a finite number"),
    (["--tasks", "long", "--rss-seconds", "60,10"], "need 0 < SHORT < LONG"),
    (["--tasks", "long", "--rss-seconds", "ten"], "give SHORT,LONG seconds"),
    (["--tasks", "long,t3v"], "--tasks: unknown t3v; allowed: t2v, i2v, extend, loop, sdedit, connect, vae, long"),
])
def test_long_options_are_checked_first(extra, match, tmp_path, capsys, monkeypatch):
    import sora_core.pipeline as pipeline
    monkeypatch.setattr(pipeline.SoraModel, "default", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "never"
    assert main(["eval", "--generate", "--prompt-set", "world-single", "--count", "1", *extra,
                 "--out", str(out), "--no-progress"]) == 2
    assert match in capsys.readouterr().err
    assert not out.exists()
