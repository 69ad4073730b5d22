"""Every workflow in workflows/ converts to the API format and runs headless through ``sora run`` at a
small size with a tiny model, writing outputs that decode; ``sora export-api`` writes the API format;
bad workflows fail early with errors naming the node and the input."""

import json
from pathlib import Path

import pytest
import torch

from comfyui_sora.headless import executor, workflow
from sora_core.media import video_io
from comfyui_sora.headless.cli import main as sora

ROOT = Path(__file__).resolve().parent.parent
# workflows/native_*.json use ComfyUI's own nodes (UNETLoader, KSampler, VAE Decode ...): they run only in a
# real ComfyUI (tests/test_real_comfyui.py) and are left out here (test_native_workflows_need_comfyui)
WORKFLOWS = sorted(p for p in (ROOT / "workflows").glob("*.json") if not p.name.startswith("native_"))
NATIVE = sorted((ROOT / "workflows").glob("native_*.json"))
PACK = workflow.load_pack()
INFO = workflow.object_info_from_classes(PACK.NODE_CLASS_MAPPINGS, PACK.NODE_DISPLAY_NAME_MAPPINGS)
REQUIRED = {"text_to_video", "text_to_image", "image_to_video", "extend_backward", "extend_forward",
            "seamless_loop", "video_to_video_sdedit", "connect_videos", "long_video_chained"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random model (default geometry: temporal factor 4, spatial 4, patch 1x2x2) on disk."""
    from sora_core import configs, pipeline
    from sora_core.models.dit import DiT
    from sora_core.models.text import ByteTextEncoder
    from sora_core.models.vae import VideoVAE
    torch.manual_seed(0)
    model = pipeline.SoraModel(VideoVAE(configs.vae_preset("tiny4")),
                               ByteTextEncoder(configs.text_encoder_preset("tiny")), DiT(configs.dit_preset("tiny")))
    folder = tmp_path_factory.mktemp("tiny_model")
    model.save(folder)
    return folder


def overrides(api: dict, model_dir: Path) -> list[str]:
    """--set values: the tiny model for every loader, 2 steps for every sampler, 9 frames per latent
    and per loaded video."""
    sets = []
    for node_id, entry in api.items():
        kind = entry["class_type"]
        if kind == "SoraModelLoader":
            sets.append(f"{node_id}.model_dir={model_dir}")
            sets.append(f"{node_id}.dtype=float32")
        elif kind == "SoraSampler":
            sets.append(f"{node_id}.steps=2")
        elif kind == "SoraEmptyLatent":
            if entry["inputs"]["frames"] > 1:
                sets.append(f"{node_id}.frames=9")
            sets += [f"{node_id}.width=64", f"{node_id}.height=64"]          # Wan's 832x480 ... at test size
        elif kind == "SoraLoadVideo":
            sets.append(f"{node_id}.frame_load_cap=9")
        elif kind == "SoraLongVideo":              # past the schedule's change at 30 s, 2 steps a window
            sets += [f"{node_id}.steps=2", f"{node_id}.seconds=32"]
    return sets


def api_of(path: Path) -> dict:
    return workflow.ui_to_api(workflow.read_workflow(path), INFO)


def test_the_required_workflows_are_there():
    assert REQUIRED <= {p.stem for p in WORKFLOWS}


def test_native_workflows_need_comfyui():
    """The rule that leaves workflows out of the headless runs: named native_*, and each uses nodes that
    only ComfyUI has (the pack's own workflows use none)."""
    assert {p.stem for p in NATIVE} >= {"native_wan_extend_backward", "native_wan_seamless_loop", "native_wan_connect"}
    for path in NATIVE:
        kinds = {n["type"] for n in json.loads(path.read_text())["nodes"]} - {"Note"}
        assert kinds - set(INFO) and kinds & set(INFO), path.name
    for path in WORKFLOWS:
        assert {n["type"] for n in json.loads(path.read_text())["nodes"]} - {"Note"} <= set(INFO), path.name


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_converts_and_validates_with_every_widget_value_used(path, request, monkeypatch):
    if is_wan(path):                             # its file choices are listed from the models folder
        monkeypatch.setattr(PACK.nodes.host._headless, "models", request.getfixturevalue("wan_models"))
    ui = json.loads(path.read_text())
    api = workflow.ui_to_api(ui, INFO)
    checked, outputs = executor.validate_prompt(api, PACK.NODE_CLASS_MAPPINGS)
    assert outputs and all(api[o]["class_type"] in ("SoraSaveVideo", "SoraPreviewVideo", "SoraLongVideo")
                           for o in outputs)
    for node in ui["nodes"]:
        if node["type"] not in INFO:
            continue
        widgets = [(n, s) for _, n, s in workflow.ordered_inputs(INFO[node["type"]]) if workflow.is_widget(s)]
        expected = len(widgets) + sum(workflow.has_control_widget(n, s) for n, s in widgets)
        assert len(node["widgets_values"]) == expected, f"node {node['id']} ({node['type']})"


NODE_KEYS = {"id": int, "type": str, "pos": list, "size": list, "flags": dict, "order": int, "mode": int,
             "properties": dict}


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_matches_the_frontend_schema_and_links_agree(path):
    """What the frontend's workflow schema (version 0.4) requires, and slots consistent with links."""
    ui = json.loads(path.read_text())
    assert isinstance(ui["version"], (int, float)) and isinstance(ui["last_link_id"], int)
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert ui["last_node_id"] >= max(nodes) and ui["last_link_id"] >= max(l[0] for l in ui["links"])
    for node in nodes.values():
        for key, kind in NODE_KEYS.items():
            assert isinstance(node[key], kind), f"node {node['id']} {key}"
        assert len(node["pos"]) == 2 and len(node["size"]) == 2
    for link_id, src, slot, dst, dslot, kind in ui["links"]:
        assert link_id in nodes[src]["outputs"][slot]["links"], f"link {link_id} not on its output"
        target = nodes[dst]["inputs"][dslot]
        assert target["link"] == link_id and kind in (target["type"], "*"), f"link {link_id} not on its input"
        assert nodes[src]["outputs"][slot]["type"] == kind


@pytest.fixture(scope="module")
def wan_models(tmp_path_factory):
    """A models folder with tiny random Wan 2.1 and 2.2 TI2V checkpoints under ComfyUI's standard file
    names (tests/tiny_wan.py), for the wan* workflows, which name those files."""
    from tiny_wan import FAMILIES, write_tiny_wan
    folder = tmp_path_factory.mktemp("wan_models")
    for family in FAMILIES:
        write_tiny_wan(folder, family=family)
    return folder


def is_wan(path: Path) -> bool:
    return path.stem.startswith("wan")


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_runs_headless_and_writes_decodable_video(path, tiny_model, tmp_path, capsys, request):
    sets = [s for s in overrides(api_of(path), tiny_model) if ".model_dir=" not in s]
    out = tmp_path / "out"
    argv = ["run", str(path), "--out", str(out), "--quiet"]
    if is_wan(path):                             # the workflow's own Wan file choices, tiny files behind them
        argv += ["--models", str(request.getfixturevalue("wan_models"))]
    else:
        argv += ["--model", str(tiny_model)]
    argv += [a for s in sets for a in ("--set", s)]
    assert sora(argv) == 0, capsys.readouterr().err
    files = [f for f in out.rglob("*") if f.is_file()]
    assert files, "the workflow wrote nothing"
    for f in files:
        frames, fps = video_io.read_video(f)
        assert frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[0] >= 1 and fps > 0
    printed = capsys.readouterr().out
    assert all(str(f) in printed for f in files)
    videos = [f for f in files if f.suffix == ".mp4"]
    if videos:                                   # the saved video carries the graph that made it
        assert workflow.read_workflow(videos[0]) == json.loads(path.read_text())


def test_export_api_writes_the_api_format_and_never_overwrites(tmp_path, capsys):
    target = tmp_path / "t2v.api.json"
    src = str(ROOT / "workflows" / "text_to_video.json")
    assert sora(["export-api", src, "-o", str(target), "--set", "5.steps=3"]) == 0
    assert sora(["export-api", src, "-o", str(target)]) == 0
    first, second = json.loads(target.read_text()), json.loads((tmp_path / "t2v.api_00001.json").read_text())
    assert workflow.is_api_format(first) and first["5"]["inputs"]["steps"] == 3
    assert second["5"]["inputs"]["steps"] != 3
    # the API file runs the same way (sora run takes both formats): it validates against the pack
    executor.validate_prompt(first, PACK.NODE_CLASS_MAPPINGS)


def _fails(argv, capsys) -> str:
    assert sora(argv) == 2
    return capsys.readouterr().err


def test_bad_workflows_fail_early_naming_node_and_input(tmp_path, capsys):
    src = ROOT / "workflows" / "text_to_video.json"
    bad = tmp_path / "bad.json"
    bad.write_text("{ nodes: [")
    assert "not valid JSON" in _fails(["run", str(bad), "--out", str(tmp_path)], capsys)
    ui = json.loads(src.read_text())
    ui["nodes"][0]["type"] = "SoraNoSuchLoader"
    bad.write_text(json.dumps(ui))
    assert "node 1 (SoraNoSuchLoader): unknown node type" in _fails(["run", str(bad)], capsys)
    ui = json.loads(src.read_text())
    ui["links"] = [l for l in ui["links"] if not (l[3] == 5 and l[4] == 2)]        # sampler's latent
    bad.write_text(json.dumps(ui))
    err = _fails(["run", str(bad), "--out", str(tmp_path)], capsys)
    assert "node 5 (SoraSampler) input 'latent'" in err and "link" in err
    err = _fails(["run", str(src), "--out", str(tmp_path), "--set", "5.steps=0"], capsys)
    assert "(node 5 (SoraSampler) input 'steps'): value 0 is below the minimum 1" in err
    err = _fails(["run", str(src), "--out", str(tmp_path), "--set", "5.sampler_name=ddim"], capsys)
    assert "input 'sampler_name'" in err and "'euler'" in err
    assert not any((tmp_path / "out").glob("*"))


@pytest.mark.parametrize("value, message", [
    ("NaN", "'NaN' is not allowed; it expects a finite number"),
    ("Infinity", "'Infinity' is not allowed; it expects a finite number"),
    ("-Infinity", "'-Infinity' is not allowed; it expects a finite number"),
    ("1e308", "value 1e+308 is above the maximum 30.0"),
])
def test_non_finite_widget_values_fail_before_any_work(tmp_path, capsys, value, message):
    """``--set 5.cfg=NaN`` wrote an all-black video and exited 0; now the executor refuses it."""
    src = ROOT / "workflows" / "text_to_video.json"
    err = _fails(["run", str(src), "--out", str(tmp_path / "out"), "--quiet", "--set", f"5.cfg={value}"], capsys)
    assert f"--set 5.cfg={value} (node 5 (SoraSampler) input 'cfg'): {message}" in err
    assert not any((tmp_path / "out").glob("*"))
    api = api_of(src)
    api["4"]["inputs"]["fps"] = float("nan")                   # in an API workflow file as well
    api_file = tmp_path / "api.json"
    api_file.write_text(json.dumps(api))                       # json writes NaN, and reads it back
    err = _fails(["run", str(api_file), "--out", str(tmp_path / "out"), "--quiet"], capsys)
    assert "node 4 (SoraEmptyLatent) input 'fps': value nan is not a finite number" in err


def test_folder_duplicate_ids_and_deep_nesting_are_named_by_sora_run(tmp_path, capsys):
    assert "is a folder; give a workflow .json file" in _fails(["run", str(tmp_path)], capsys)
    ui = json.loads((ROOT / "workflows" / "text_to_video.json").read_text())
    ui["nodes"][1]["id"] = 1
    bad = tmp_path / "dup.json"
    bad.write_text(json.dumps(ui))
    assert "node id 1 is used twice (also by node 1 (SoraModelLoader))" in _fails(["run", str(bad)], capsys)
    bad.write_text("[" * 100_000 + "]" * 100_000)
    assert "nested more than 64 levels deep" in _fails(["run", str(bad)], capsys)


def test_save_prefix_with_a_newline_writes_nothing(tiny_model, tmp_path, capsys):
    src = ROOT / "workflows" / "text_to_image.json"
    sets = [s for s in overrides(api_of(src), tiny_model) if ".model_dir=" not in s]
    save = next(k for k, v in api_of(src).items() if v["class_type"] == "SoraSaveVideo")
    argv = ["run", str(src), "--out", str(tmp_path / "out"), "--quiet", "--model", str(tiny_model),
            "--set", f"{save}.filename_prefix=sora/clip\n../../x"]      # a real newline: --set values are text
    err = _fails(argv + [a for s in sets for a in ("--set", s)], capsys)
    assert "filename_prefix 'sora/clip\\n../../x' contains control or invisible characters (U+000A)" in err
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
