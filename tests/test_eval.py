"""``sora eval``: a folder of rendered clips gives a report (json, md, PNGs); bad prompt files and
bad arguments give clear errors naming the line."""

import json

import cv2
import numpy as np
import pytest

from comfyui_sora.headless.cli import main
from sora_core.media.video_io import write_image, write_video
from sora_core.evaluation.evaluate import PromptEntry, PromptFileError, fills_seed, read_prompt_file, world_prompt_set
from sora_core.prompts.expand import prompt_to_scene
from sora_core.world.render import render

PROMPTS = ["a red ball moving right", "a large blue box bouncing", "a green triangle moving up",
           "a small yellow box moving left, passing behind a bar"]


def render_prompt(prompt, seed=0, frames=17):
    return render(prompt_to_scene(prompt, seed, width=64, height=64, frames=frames))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Rendered clips of the prompts (t2v), plus a loop, an extension and a VAE 'reconstruction'."""
    d = tmp_path_factory.mktemp("clips")
    rows = []
    for i, p in enumerate(PROMPTS):
        frames = render_prompt(p, i, frames=33 if "bar" in p else 17)
        rows.append({"file": write_video(d / f"clip_{i}.mp4", frames, 8).name, "prompt": p})
    base = render_prompt(PROMPTS[0])
    write_video(d / "loop.mp4", np.concatenate([base, base[-2:0:-1]]), 8)
    write_video(d / "source.mp4", base, 8)
    write_video(d / "extended.mp4", render_prompt(PROMPTS[0], frames=25), 8)
    rows += [{"file": "loop.mp4", "prompt": PROMPTS[0], "task": "loop"},
             {"file": "extended.mp4", "prompt": PROMPTS[0], "task": "extend", "join": 13},
             {"file": "clip_0.mp4", "prompt": PROMPTS[0], "task": "vae", "source": "source.mp4"}]
    (d / "prompts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return d


def test_eval_folder_writes_report(folder, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["eval", "--videos", str(folder), "--prompts", str(folder / "prompts.jsonl"),
                 "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "report.json").read_text())
    clips = {(c["video"], c["task"]): c for c in data["clips"]}
    assert len(clips) == len(PROMPTS) + 3
    for i in range(len(PROMPTS)):
        m = clips[(f"clip_{i}.mp4", "t2v")]["metrics"]
        assert m["colour"] == m["shape"] == m["motion"] == m["count"] == 1.0, clips[(f"clip_{i}.mp4", "t2v")]
        assert m["temporal_flicker"] > 0.95 and m["identity_drift"] == 0.0
    assert clips[("clip_3.mp4", "t2v")]["metrics"]["object_permanence"] == 1.0
    assert clips[("loop.mp4", "loop")]["metrics"]["loop_seam_ratio"] < 1.5
    assert clips[("extended.mp4", "extend")]["metrics"]["boundary_continuity"] < 1.5
    assert clips[("clip_0.mp4", "vae")]["metrics"]["psnr"] > 40     # same render, only mp4 coding
    summary = data["summary"]
    assert set(summary) >= {"t2v", "loop", "extend", "vae"}
    assert summary["t2v"]["metrics"]["colour"]["mean"] == 1.0 and summary["t2v"]["metrics"]["colour"]["met"]
    md = (out / "report.md").read_text()
    assert "| colour | 1.000 |" in md and "loop_seam_ratio" in md and "![contact sheet](figures/sheets_001.png)" in md
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(pngs) >= 5 and all(str(p.relative_to(out)) in md for p in pngs)
    for p in pngs:
        img = cv2.imread(str(p))
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 300 and img.std() > 10
    # a second run never touches the first report
    before = (out / "report.json").read_bytes()
    assert main(["eval", "--videos", str(folder), "--prompts", str(folder / "prompts.jsonl"),
                 "--out", str(out), "--no-progress"]) == 0
    assert (out / "report.json").read_bytes() == before
    assert (tmp_path / "report_00001" / "report.md").is_file()


def test_corrupted_clips_score_worse(folder, tmp_path):
    """The same prompts against colour-swapped and shuffled videos: the report shows it."""
    rows = []
    for i, p in enumerate(PROMPTS[:3]):
        frames = render_prompt(p, i)
        swapped = frames[..., ::-1].copy()
        rows.append(f"bad_{i}.mp4\t{p}")
        write_video(tmp_path / f"bad_{i}.mp4", swapped, 8)
    (tmp_path / "prompts.txt").write_text("\n".join(rows) + "\n")
    assert main(["eval", "--videos", str(tmp_path), "--prompts", str(tmp_path / "prompts.txt"),
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 0
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["summary"]["t2v"]["metrics"]["colour"]["mean"] < 0.5
    assert data["summary"]["t2v"]["metrics"]["colour"]["met"] is False


# ---------------------------------------------------------------------------------------------
# Prompt files
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,text,match", [
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a red ball"}\n\n{"file": "b.mp4", "prompt": \n', r"p.jsonl:3: not valid JSON"),
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a red ball"}\n["b.mp4", "x"]\n', r":2: expected a JSON object"),
    ("p.jsonl", '{"file": "a.mp4"}\n', r":1: no prompt"),
    ("p.jsonl", '{"prompt": "a red ball"}\n', r":1: no video file name"),
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a red ball", "colour": "red"}\n', r":1: unknown field\(s\) colour"),
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a red ball", "task": "t3v"}\n', r":1: task 't3v' is unknown; allowed: t2v"),
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a red ball", "join": "x"}\n', r":1: field 'join' must be int"),
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a red ball and a red ball"}\n', r":1: .*same colour and shape"),
    ("p.jsonl", '{"file": "a.mp4", "prompt": "a"}\n{"file": "a.mp4", "prompt": "b"}\n', r":2: 'a.mp4' is listed twice \(also on line 1\)"),
    ("p.txt", "# comment\na.mp4\ta red ball\nb.mp4 a blue box\n", r"p.txt:3: expected 'FILE<TAB>PROMPT'"),
    ("p.csv", "file,prompt\na.mp4,a red ball\nb.mp4,a blue box,extra\n", r"p.csv:3: more cells than header"),
    ("p.csv", "video,text\na.mp4,a red ball\n", None),
    ("p.csv", "file,words\na.mp4,a red ball\n", r"p.csv:2: unknown field\(s\) words"),
    ("p.jsonl", "\n# nothing\n", r"no prompts in the file"),
    ("p.yaml", "a: b\n", r"unknown extension '.yaml'; allowed are .jsonl, .txt, .csv"),
])
def test_malformed_prompt_files(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    if match is None:
        entries = read_prompt_file(path)
        assert [(e.file, e.prompt, e.line) for e in entries] == [("a.mp4", "a red ball", 2)]
        return
    with pytest.raises(PromptFileError, match=match):
        read_prompt_file(path)


def test_prompt_file_formats_agree(tmp_path):
    (tmp_path / "p.jsonl").write_text('{"file": "a.mp4", "prompt": "a red ball", "task": "extend", "join": 5}\n')
    (tmp_path / "p.txt").write_text("a.mp4 | a red ball\n")
    (tmp_path / "p.csv").write_text("file,prompt,task,join\na.mp4,a red ball,extend,5\n")
    (tmp_path / "g.txt").write_text("a red ball\n\na blue box bouncing\n")
    j, t, c = (read_prompt_file(tmp_path / n) for n in ("p.jsonl", "p.txt", "p.csv"))
    assert j[0].prompt == t[0].prompt == c[0].prompt == "a red ball" and j[0].file == t[0].file == "a.mp4"
    assert (j[0].task, j[0].join) == (c[0].task, c[0].join) == ("extend", 5)
    assert [e.prompt for e in read_prompt_file(tmp_path / "g.txt", need_file=False)] == ["a red ball", "a blue box bouncing"]


def test_cli_errors(folder, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"file": "clip_0.mp4", "prompt": "a red ball"}\n{oops}\n')
    assert main(["eval", "--videos", str(folder), "--prompts", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    assert not (tmp_path / "o").exists(), "nothing is written when the input is bad"
    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"file": "nope.mp4", "prompt": "a red ball"}\n')
    assert main(["eval", "--videos", str(folder), "--prompts", str(missing), "--out", str(tmp_path / "o")]) == 2
    assert "nope.mp4 (line 1)" in capsys.readouterr().err
    extend = tmp_path / "extend.jsonl"
    extend.write_text('{"file": "clip_0.mp4", "prompt": "a red ball", "task": "extend"}\n')
    assert main(["eval", "--videos", str(folder), "--prompts", str(extend), "--out", str(tmp_path / "o")]) == 2
    assert "task extend needs 'join'" in capsys.readouterr().err
    assert main(["eval", "--videos", str(folder)]) == 2
    assert "--videos needs --prompts" in capsys.readouterr().err
    assert main(["eval", "--prompts", str(bad)]) == 2
    assert "either --videos DIR" in capsys.readouterr().err
    assert main(["eval", "--generate", "--prompt-set", "world", "--seeds", "1,x"]) == 2
    assert "--seeds: 'x'" in capsys.readouterr().err


def test_world_prompt_set_is_fixed_and_parses():
    a, b = world_prompt_set("world", 12, seed=0), world_prompt_set("world", 12, seed=0)
    assert [e.prompt for e in a] == [e.prompt for e in b]
    assert [e.prompt for e in world_prompt_set("world", 12, seed=1)] != [e.prompt for e in a]
    single = world_prompt_set("world-single", 12, seed=0)
    assert all(len(e.spec.objects) == 1 and e.spec.event.kind == "none" for e in single)
    with pytest.raises(ValueError, match="prompt set 'x' is unknown"):
        world_prompt_set("x", 3)


# ---------------------------------------------------------------------------------------------
# Generate, then score (a tiny random model: checks the plumbing of every task, not quality)
# ---------------------------------------------------------------------------------------------

def test_eval_generate_every_task(tiny_model_dir, tmp_path):
    from sora_core.media.video_io import read_video
    out = tmp_path / "gen"
    assert main(["eval", "--generate", "--prompt-set", "world-single", "--count", "1", "--seeds", "0",
                 "--model", str(tiny_model_dir), "--tasks", "t2v,i2v,extend,loop,sdedit,connect,vae",
                 "--strengths", "0.5", "--out", str(out), "--no-progress"]) == 0
    data = json.loads((out / "report.json").read_text())
    by_task = {c["task"]: c for c in data["clips"]}
    assert sorted(by_task) == sorted(["t2v", "i2v", "extend", "loop", "sdedit", "connect", "vae"])
    expected = {"i2v": "first_frame_psnr", "extend": "boundary_continuity", "loop": "loop_seam_ratio",
                "sdedit": "structure_iou@0.50", "connect": "transition_smoothness", "vae": "psnr"}
    for task, metric in expected.items():
        assert by_task[task]["metrics"][metric] is not None, task
    # every clip's video is in the report folder, decodes, and has the task's frame count
    frames = {task: read_video(out / c["video"])[0].shape[0] for task, c in by_task.items()}
    from sora_core.diffusion.conditions import EXTEND_CONTEXT
    from sora_core.configs import vae_preset
    context = 1 + (EXTEND_CONTEXT - 1) * vae_preset("tiny").temporal_factor   # given frames kept once
    assert frames["t2v"] == 5 and frames["extend"] == 5 + 5 - context and frames["loop"] == 5 - 2
    assert frames["connect"] > 5
    md = (out / "report.md").read_text()
    assert f"]({by_task['t2v']['video']})" in md, "generated videos are linked from the report"
    assert main(["eval", "--generate", "--prompt-set", "world", "--model", str(tiny_model_dir),
                 "--tasks", "t2v,t3v", "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_eval_sampling_settings(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """--sampler / --shift / --steps / --cfg reach the sampler and the report; bad values fail first."""
    import sora_core.pipeline as pipeline
    seen, real = [], pipeline.generate

    def spy(*a, **kw):
        seen.append({k: kw.get(k) for k in ("sampler", "shift", "cfg", "steps")})
        return real(*a, **kw)

    monkeypatch.setattr(pipeline, "generate", spy)
    runs = {}
    for name, extra in {"euler": [], "heun": ["--sampler", "heun", "--shift", "1.5", "--cfg", "0"]}.items():
        out = tmp_path / name
        assert main(["eval", "--generate", "--prompt-set", "world-single", "--count", "1",
                     "--model", str(tiny_model_dir), "--steps", "2", *extra, "--out", str(out), "--no-progress"]) == 0
        runs[name] = json.loads((out / "report.json").read_text())
    assert seen == [{"sampler": None, "shift": None, "cfg": None, "steps": 2},
                    {"sampler": "heun", "shift": 1.5, "cfg": 0.0, "steps": 2}]
    assert runs["heun"]["settings"]["sampler"] == "heun" and runs["heun"]["settings"]["shift"] == 1.5
    assert runs["heun"]["settings"]["cfg"] == 0 and runs["euler"]["settings"]["sampler"] == "euler"
    for bad, match in [(["--sampler", "ddim9"], "--sampler 'ddim9' is unknown; allowed: euler"),
                       (["--shift", "0"], "--shift must be > 0"), (["--steps", "0"], "--steps must be >= 1"),
                       (["--cfg", "-1"], "--cfg must be >= 0")]:
        assert main(["eval", "--generate", "--prompt-set", "world-single", "--count", "1",
                     "--model", str(tiny_model_dir), *bad, "--out", str(tmp_path / "bad")]) == 2
        assert match in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()


def test_eval_expand_sends_the_caption_and_scores_the_prompt(tiny_model_dir, tmp_path, monkeypatch):
    """--expand generates from the expanded caption of each paraphrase prompt; the report scores and
    lists the prompt as given, says the run expanded, and carries the identity metrics."""
    import sora_core.pipeline as pipeline
    from sora_core.prompts.expand import expand_prompt
    sent, real = [], pipeline.generate

    def spy(model, prompt, *a, **kw):
        sent.append(prompt)
        return real(model, prompt, *a, **kw)
    monkeypatch.setattr(pipeline, "generate", spy)
    entries = world_prompt_set("paraphrase", 2, seed=4, width=16, height=16, frames=5)
    out = tmp_path / "para"
    assert main(["eval", "--generate", "--prompt-set", "paraphrase", "--count", "2", "--seed", "4", "--expand",
                 "--model", str(tiny_model_dir), "--steps", "1", "--out", str(out), "--no-progress"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert sent == [expand_prompt(e.prompt, fills_seed(0, e.line), width=16, height=16, frames=5, fps=8.0)
                    for e in entries]
    assert [c["prompt"] for c in report["clips"]] == [e.prompt for e in entries]
    assert report["settings"]["expand"] is True
    assert {"colour_constant", "shape_constant"} <= set(report["clips"][0]["metrics"])


def test_fills_are_drawn_per_prompt_line_and_the_truth_matches_the_expansion(tiny_model_dir):
    """One run seed for all prompts still fills each line differently (sizes and backgrounds as varied
    as a user's over many seeds), reproducibly; a conditioned task's ground truth is the scene the
    expanded caption describes."""
    from sora_core.evaluation.evaluate import prompt_for_model
    from sora_core.evaluation.tasks import RunSettings, truth_frames
    from sora_core.pipeline import SoraModel
    from sora_core.world.captioner import analyze
    from sora_core.world.captions import long_caption
    captions = [prompt_for_model("a red box moving left", 0, True, 64, 64, 17, 8.0, line) for line in range(1, 41)]
    assert len(set(captions)) > 10 and {c.split()[1] for c in captions} == {"large"}     # expand.OPEN_SIZE
    small = [prompt_for_model("a tiny red box", 0, True, 64, 64, 17, 8.0, line) for line in range(1, 11)]
    assert {c.split()[1] for c in small} == {"small"} and len(set(small)) > 5
    assert captions[3] == prompt_for_model("a red box moving left", 0, True, 64, 64, 17, 8.0, 4)
    assert fills_seed(0, 4) != fills_seed(1, 4) and fills_seed(0, 4, 1) != fills_seed(0, 4)
    assert prompt_for_model("a red box", 3, False, 64, 64, 17, 8.0, 4) == "a red box"
    model = SoraModel.open(tiny_model_dir)
    entry = PromptEntry("a large red box moving left", task="i2v", line=7)
    truth = truth_frames(model, entry, 2, RunSettings(frames=5, height=32, width=32))
    expanded = prompt_for_model(entry.prompt, 2, True, 32, 32, 5, 8.0, 7)
    assert long_caption(prompt_to_scene(entry.prompt, fills_seed(2, 7), width=32, height=32, frames=5)) == expanded
    scene = prompt_to_scene(entry.prompt, fills_seed(2, 7), width=32, height=32, frames=5)
    assert np.array_equal(truth, render(scene)) and analyze(truth, 8.0).objects[0].colour == "red"


# ---------------------------------------------------------------------------------------------
# Figures (the line plot is also the training loss curve)
# ---------------------------------------------------------------------------------------------

def test_figures_draw_their_data():
    from sora_core.evaluation import figures as F
    steps = np.arange(0, 1000, 10)
    plot = F.line_plot({"loss": (steps, np.exp(-steps / 300) + 0.01), "bad": ([1, 2], [0.0, -1.0])},
                       title="loss", xlabel="step", ylabel="loss", log_y=True)
    line = np.all(plot == F.PALETTE[0], axis=-1)
    assert plot.shape == (420, 720, 3) and line.sum() > 300, "the loss curve is drawn"
    ys, xs = np.nonzero(line[60:-50, 70:-20])
    assert np.corrcoef(xs, ys)[0, 1] > 0.9, "a falling loss goes down to the right"
    bars = F.bar_chart({"a": 0.2, "b": 0.9, "c": float("nan")}, ylim=(0, 1), size=(400, 300))
    blue = np.all(bars == F.PALETTE[0], axis=-1)
    heights = [blue[:, x].sum() for x in (70 + 310 // 6, 70 + 310 // 2)]
    assert heights[1] > 3.5 * heights[0] > 0, "bar heights follow the values"
    frames = np.zeros((9, 32, 48, 3), np.uint8)
    sheet = F.contact_sheet(frames, detections=[[{"box": (4, 4, 20, 20), "label": "red ball",
                                                  "colour": (232, 40, 40)}]] * 9, count=4, title="t")
    assert sheet.shape[1] == 4 * (48 * 4 + 4) and np.all(sheet == (232, 40, 40), axis=-1).any()
