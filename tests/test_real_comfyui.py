"""The pack inside a real, running ComfyUI: registration, UI -> API conversion with the server's own
/object_info, and every workflow in workflows/ run through POST /prompt to a saved video.

The server is the session fixture ``comfyui_server`` (tests/comfyui_server.py): SORA_COMFYUI_URL when
set, else a temporary copy of ../shared/comfyui started with --cpu on a free loopback port. Skipped
when neither is available (a user's machine), failed instead under SORA_REQUIRE_COMFYUI=1 (CI).

SORA_COMFYUI_STEPS (default 4) caps the sampler steps of each workflow to keep a CPU run short (0
keeps the workflows' own steps); SORA_COMFYUI_TIMEOUT (default 900) is the seconds per workflow;
SORA_COMFYUI_MODEL_DIR, the name of a model folder (vae / text_encoder / dit .safetensors) under the
server's models/diffusion_models folder, as the loader's model_dir choices list it, replaces the default
model in every model loader (a server never loads a path a workflow names).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from comfyui_sora.headless import comfy_client as cc

STEPS = int(os.environ.get("SORA_COMFYUI_STEPS", "4"))
TIMEOUT = float(os.environ.get("SORA_COMFYUI_TIMEOUT", "900"))
MODEL_DIR = os.environ.get("SORA_COMFYUI_MODEL_DIR", "").strip()
WORKFLOWS = sorted((Path(__file__).resolve().parent.parent / "workflows").glob("*.json"))


@pytest.fixture(scope="module")
def client(comfyui_server) -> cc.ComfyClient:
    return cc.ComfyClient(comfyui_server.url, http_timeout=60)


@pytest.fixture(scope="module")
def server_info(client) -> dict:
    return client.object_info()


@pytest.fixture(scope="module")
def pack_info() -> dict:
    """/object_info of the pack as loaded here, the way ComfyUI loads it."""
    from comfyui_sora.headless.workflow import load_pack, object_info_from_classes
    pack = load_pack()
    return object_info_from_classes(pack.NODE_CLASS_MAPPINGS, pack.NODE_DISPLAY_NAME_MAPPINGS)


def test_pack_nodes_are_registered(server_info, pack_info):
    missing = sorted(set(pack_info) - set(server_info))
    assert not missing, f"the server did not load these nodes of the pack (import failure?): {missing}"
    for name, ours in pack_info.items():
        theirs = server_info[name]
        assert theirs["input_order"] == ours["input_order"], name
        assert theirs["output"] == ours["output"] and theirs["output_name"] == ours["output_name"], name
        assert theirs["category"] == ours["category"] and theirs["category"].startswith("Sora"), name


def shorten(api: dict, info: dict, cap: int, model_dir: str) -> dict:
    """Lower every ``steps`` input above ``cap`` (a short run of the same graph) and point every
    input named ``model_dir`` at ``model_dir`` when one is given."""
    for node in api.values():
        inputs = info[node["class_type"]]["input"]
        names = set(inputs.get("required") or {}) | set(inputs.get("optional") or {})
        if cap > 0 and "steps" in names and isinstance(node["inputs"].get("steps"), int):
            node["inputs"]["steps"] = min(node["inputs"]["steps"], cap)
        if model_dir and "model_dir" in names:
            choices = (inputs.get("optional") or {}).get("model_dir", [[]])[0]
            if model_dir not in choices:
                pytest.fail(f"SORA_COMFYUI_MODEL_DIR={model_dir!r} is not a model folder of the server's "
                            f"diffusion_models folder; the server offers {choices}")
            node["inputs"]["model_dir"] = model_dir
    return api


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_runs_to_a_saved_video(path, client, server_info, tmp_path):
    from sora_core.media.video_io import read_video
    from comfyui_sora.headless.workflow import read_workflow, to_api
    api = shorten(to_api(read_workflow(path), server_info), server_info, STEPS, MODEL_DIR)
    assert all(node["class_type"] in server_info for node in api.values())
    events = []
    result = client.run(api, events.append, timeout=TIMEOUT, extra_data={"preview_method": "auto"})
    kinds = {e.kind for e in events if isinstance(e, cc.Event)}
    assert {"execution_start", "executing"} <= kinds
    files = result.files()
    assert files, f"{path.name} saved nothing (outputs: {result.outputs})"
    for ref in files:
        local = client.download(ref, tmp_path)
        frames, fps = read_video(local)
        assert frames.ndim == 4 and frames.shape[0] >= 1 and frames.shape[-1] == 3 and fps > 0, local


def test_overrides_run_on_the_server(comfyui_server, server_info, tmp_path):
    """``sora batch`` against the real server: one job per row with its own prompt and seed, outputs
    downloaded into out/JOB/ and decodable, the last latent preview saved, and the seed override
    reaching the server (two seeds, two different videos)."""
    import numpy as np

    from comfyui_sora.headless import batch
    from sora_core.media.video_io import read_video
    from comfyui_sora.headless.workflow import read_workflow, to_api
    workflow = Path(__file__).resolve().parent.parent / "workflows" / "text_to_video.json"
    api = to_api(read_workflow(workflow), server_info)
    sampler = next(k for k, n in api.items() if n["class_type"] == "SoraSampler")
    expand = next(k for k, n in api.items() if n["class_type"] == "SoraPromptExpand")
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(f'{{"job": "{name}", "{expand}.text": "a {c} ball moving right", '
                            f'"{sampler}.seed": {seed}}}\n' for name, c, seed in
                            [("red", "red", 11), ("blue", "blue", 12)]))
    jobs = batch.prepare(str(workflow), [comfyui_server.url], [], str(rows))
    for job in jobs:
        shorten(job.prompt, server_info, STEPS, MODEL_DIR)
    batch.run_batch([comfyui_server.url], jobs, tmp_path / "out", retries=1, timeout=TIMEOUT, stream=io.StringIO(), previews=True)
    assert [(j.name, j.status) for j in jobs] == [("red", "ok"), ("blue", "ok")], [j.message for j in jobs]
    videos = []
    for job in jobs:
        assert job.files and all(Path(f).parent == tmp_path / "out" / job.name for f in job.files)
        frames, _ = read_video(job.files[0])
        assert frames.shape[0] > 1 and frames.shape[-1] == 3
        previews = list((tmp_path / "out" / job.name).glob("last_preview.*"))
        assert len(previews) == 1 and previews[0].stat().st_size > 0, previews
        videos.append(frames.astype(np.float32))
    assert np.abs(videos[0] - videos[1]).mean() > 1.0, "two rows with different prompts and seeds gave the same video"


@pytest.mark.parametrize("path", ["/etc", "../../..", "../models/vae"])
def test_server_refuses_model_dir_paths(client, server_info, path):
    """A shared workflow cannot make the server load from (or probe) a path: model_dir is a choice
    among the model folders, checked by the node before anything is read."""
    assert server_info["SoraModelLoader"]["input"]["optional"]["model_dir"][0][0] == "none"
    prompt = {"1": {"class_type": "SoraModelLoader", "inputs": {"dit": "default", "vae": "default",
                                                                "text_encoder": "default", "dtype": "auto",
                                                                "model_dir": path}},
              "2": {"class_type": "SoraEmptyLatent", "inputs": {"model": ["1", 0], "width": 64, "height": 64,
                                                               "frames": 1, "aspect": "custom", "seconds": 0.0,
                                                               "fps": 8.0, "batch_size": 1}},
              "3": {"class_type": "SoraPreviewVideo", "inputs": {"images": ["4", 0], "fps": 8.0}},
              "4": {"class_type": "SoraVAEDecode", "inputs": {"model": ["1", 0], "latent": ["2", 0],
                                                             "tile_size": 0}}}
    with pytest.raises(cc.ValidationFailed) as e:
        client.queue_prompt(prompt)
    assert "model_dir" in "\n".join(e.value.lines) and "no absolute paths" in "\n".join(e.value.lines)
