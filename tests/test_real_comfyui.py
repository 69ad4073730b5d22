"""The pack inside a real, running ComfyUI: registration, UI -> API conversion with the server's own
/object_info, and every workflow in workflows/ run through POST /prompt to a saved video.

The server is the session fixture ``comfyui_server`` (tests/comfyui_server.py): SORA_COMFYUI_URL when
set, else a temporary copy of ../shared/comfyui started with --cpu on a free loopback port. Skipped
when neither is available (a user's machine), failed instead under SORA_REQUIRE_COMFYUI=1 (CI).

SORA_COMFYUI_STEPS (default 4) caps the sampler steps of each workflow, and a long video's length
at 32 s, to keep a CPU run short (0 keeps the workflows' own steps and lengths); SORA_COMFYUI_TIMEOUT (default 900) is the seconds per workflow;
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
WORKFLOWS = sorted(p for p in (Path(__file__).resolve().parent.parent / "workflows").glob("*.json")
                   if not p.name.startswith("native_"))       # ComfyUI's own models: test_native_workflow_...
NATIVE = sorted((Path(__file__).resolve().parent.parent / "workflows").glob("native_*.json"))


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
        if cap > 0 and node["class_type"] == "SoraLongVideo":        # past minute_long_video's change at 30 s
            node["inputs"]["seconds"] = min(node["inputs"]["seconds"], 32.0)
        if model_dir and "model_dir" in names:
            choices = (inputs.get("optional") or {}).get("model_dir", [[]])[0]
            if model_dir not in choices:
                pytest.fail(f"SORA_COMFYUI_MODEL_DIR={model_dir!r} is not a model folder of the server's "
                            f"diffusion_models folder; the server offers {choices}")
            node["inputs"]["model_dir"] = model_dir
    return api


@pytest.fixture(scope="module")
def wan_files(comfyui_server) -> dict:
    """Tiny random Wan 2.1 and 2.2 TI2V checkpoints (tests/tiny_wan.py) under ComfyUI's standard file
    names in the server's own model folders, where the wan* workflows find them."""
    from tiny_wan import FAMILIES, write_tiny_wan
    models = comfyui_server.models_dir("diffusion_models").parent
    return {family: write_tiny_wan(models, family=family) for family in FAMILIES}


def small_wan(api: dict) -> dict:
    """A Wan workflow's latents at 64x64, 9 frames (tiny checkpoints; the released sizes would only
    take longer)."""
    for node in api.values():
        if node["class_type"] == "SoraEmptyLatent":
            node["inputs"].update(width=64, height=64, frames=9)
    return api


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_workflow_runs_to_a_saved_video(path, client, server_info, tmp_path, request):
    from sora_core.media.video_io import read_video
    from comfyui_sora.headless.workflow import read_workflow, to_api
    if path.stem.startswith("wan"):
        request.getfixturevalue("wan_files")
        server_info = client.object_info()                     # the loader now lists the Wan files
    api = shorten(to_api(read_workflow(path), server_info), server_info, STEPS, MODEL_DIR)
    if path.stem.startswith("wan"):
        small_wan(api)
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


def test_wan_model_is_managed_by_comfyui(comfyui_server, client, wan_files, tmp_path):
    """The loader lists the Wan files; a Wan run registers the model's components with ComfyUI's model
    management (its log: "Requested to load SoraWeights"), and after POST /free with unload_models
    (ComfyUI's "Unload models") the next run loads them again and still saves a video."""
    import json
    import urllib.request

    from comfyui_sora.headless.workflow import read_workflow, to_api
    info = client.object_info()
    listed = info["SoraModelLoader"]["input"]["required"]
    assert {p.name for p in wan_files["wan2.1"].values()} <= set(listed["dit"][0]) | set(listed["vae"][0]) | \
        set(listed["text_encoder"][0])
    assert listed["dit"][0][0] == "default"
    path = Path(__file__).resolve().parent.parent / "workflows" / "wan21_t2v_1.3b.json"
    api = small_wan(shorten(to_api(read_workflow(path), info), info, 2, ""))
    sampler = next(k for k, n in api.items() if n["class_type"] == "SoraSampler")

    def loads() -> int:
        return comfyui_server.log.read_text(errors="replace").count("Requested to load SoraWeights")

    before = loads()
    api[sampler]["inputs"]["seed"] = 101
    assert client.run(api, lambda e: None, timeout=TIMEOUT).files()
    first = loads()
    assert first >= before + 3                       # text encoder, DiT, VAE
    request = urllib.request.Request(comfyui_server.url + "/free", data=json.dumps({"unload_models": True}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(request, timeout=60).read()
    api[sampler]["inputs"]["seed"] = 102
    assert client.run(api, lambda e: None, timeout=TIMEOUT).files()
    assert loads() > first                           # unloaded by ComfyUI, loaded again for the run


# ---------------------------------------------------------------------------------------------
# The native-latent workflows with a tiny random Wan 2.1 that ComfyUI's own loaders detect
# ---------------------------------------------------------------------------------------------

# latent frames the Sora node keeps (noise mask 0) in each workflow at 17 frames (5 latent frames)
KNOWN = {"native_wan_extend_backward": [3, 4], "native_wan_seamless_loop": [0, 4], "native_wan_connect": [0, 4]}
TINY_DIT, TINY_VAE = "sora_test_tiny_wan21_dit.safetensors", "sora_test_tiny_wan21_vae.safetensors"


@pytest.fixture(scope="module")
def tiny_wan_files(comfyui_server):
    """A tiny random Wan 2.1 T2V DiT (dim 128: one head of ComfyUI's dim / 128, ComfyUI's fixed text
    width 4096) and VAE, in ComfyUI's file layout (tests/tiny_wan.py), in the server's model folders."""
    import dataclasses

    import tiny_wan
    from safetensors.torch import save_file
    from sora_core.models.dit import DiT
    cfg = dataclasses.replace(tiny_wan.DIT["wan2.1"], text_dim=4096, num_layers=1)
    dit = tiny_wan._randomise(DiT(cfg), 0)
    save_file({tiny_wan.dit_original_key(k): v.contiguous() for k, v in dit.state_dict().items()},
              str(comfyui_server.models_dir("diffusion_models") / TINY_DIT))
    tiny_wan.write_tiny_vae(comfyui_server.models_dir("vae") / TINY_VAE, "wan2.1", seed=1)
    return TINY_DIT, TINY_VAE


def native_prompt(path: Path, info: dict) -> dict:
    """The workflow at 64x64, 17 frames, 2 steps, on the tiny files, with the test node's conditioning
    instead of umT5, and SaveLatent on the Sora node's latent and on the KSampler's."""
    from comfyui_sora.headless.workflow import read_workflow, to_api
    api = to_api(read_workflow(path), info)
    for key, node in list(api.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind == "UNETLoader":
            inputs["unet_name"] = TINY_DIT
        elif kind == "VAELoader":
            inputs["vae_name"] = TINY_VAE
        elif kind == "CLIPLoader":
            del api[key]
        elif kind == "CLIPTextEncode":
            api[key] = {"class_type": "SoraTestConditioning", "inputs": {"seed": int(key), "tokens": 8, "width": 4096}}
        elif kind in ("SoraResizeClip", "EmptyHunyuanLatentVideo"):
            inputs.update(width=64, height=64, **({"length": 17} if "length" in inputs else {}))
        elif kind == "KSampler":
            inputs.update(steps=2, cfg=3.0, sampler_name="euler")    # uni_pc stops at t = 0.001 (~1e-2 off)
            api["990"] = {"class_type": "SaveLatent", "inputs": {"samples": [key, 0], "filename_prefix": "latents/sampled"}}
            api["991"] = {"class_type": "SaveLatent", "inputs": {"samples": inputs["latent_image"],
                                                                  "filename_prefix": "latents/given"}}
    return api


@pytest.mark.parametrize("path", NATIVE, ids=[p.stem for p in NATIVE])
def test_native_workflow_keeps_the_given_frames(path, client, server_info, tiny_wan_files, tmp_path):
    """UNETLoader / VAELoader load the tiny Wan through ComfyUI's own detection, the Sora node writes
    the given frames into the latent with a noise mask, ComfyUI's KSampler samples it and the stitched
    video is saved: the kept latent frames come back unchanged (ComfyUI's latent scaling in and out
    only), the generated ones differ, and the given pixel frames sit in the saved video unchanged
    (within the mp4 codec's error) beside generated frames that differ from them."""
    import numpy as np
    import torch
    from safetensors.torch import load_file
    from sora_core.media.video_io import read_video
    result = client.run(native_prompt(path, server_info), timeout=TIMEOUT)
    local = {ref["filename"]: client.download(ref, tmp_path) for ref in result.files()}
    latents = {name.split("_")[0]: load_file(str(p))["latent_tensor"] for name, p in local.items()
               if name.endswith(".latent")}
    given, sampled = latents["given"], latents["sampled"]
    known = KNOWN[path.stem]
    free = [t for t in range(given.shape[2]) if t not in known]
    assert given.shape == sampled.shape == (1, 16, 5, 8, 8)
    assert given[:, :, known].abs().mean() > 0.01 and float(given[:, :, free].abs().max()) == 0.0
    torch.testing.assert_close(sampled[:, :, known], given[:, :, known], atol=1e-4, rtol=1e-4)
    for t in free:
        assert (sampled[:, :, t] - given[:, :, known[0]]).abs().mean() > 0.05, f"latent frame {t} was not generated"
    (video,) = [p for name, p in local.items() if not name.endswith(".latent")]
    frames, _ = read_video(video)
    frames = frames.astype(np.float32)
    if path.stem == "native_wan_seamless_loop":
        assert frames.shape[0] == 17 - 1 - 3                 # drop_start 1, drop_end ft - 1
        return
    src, _ = read_video(Path(__file__).resolve().parent.parent / "workflows" / "media" / "red_ball_right.mp4")
    src = src.astype(np.float32)
    if path.stem == "native_wan_extend_backward":          # new 17 + video 17 - 8 shared = 26
        assert frames.shape[0] == 26
        given_part, new_part = frames[-9:], frames[:9]
        assert np.abs(given_part - src[-9:]).mean() < 6.0
    else:                                                   # a 17 + new 17 + b 17 - 1 - 4 shared = 46
        assert frames.shape[0] == 46
        given_part, new_part = frames[:16], frames[17:29]
        assert np.abs(given_part - src[:16]).mean() < 6.0
    assert np.abs(new_part - given_part[: len(new_part)]).mean() > 6.0


def _get_json(url: str) -> tuple[int, dict]:
    """(status, JSON body) of a GET, error statuses included."""
    import json
    import urllib.error
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_geometry_route_answers_on_the_server(comfyui_server):
    """GET /sora/geometry (the readout of Sora Empty Latent in the web extension) is registered on the
    real server: valid values read out, invalid ones come back with the nearest valid values, bad
    queries are refused naming the parameter."""
    status, body = _get_json(comfyui_server.url + "/sora/geometry?width=100&height=64&frames=18&batch=1")
    assert status == 200, body
    assert body["valid"] == {"width": 104, "height": 64, "frames": 17}
    assert [n["field"] for n in body["notes"]] == ["width", "frames"]
    assert body["tokens"] > 0 and body["memory"]["bytes"] > 0 and body["step"]["seconds"] > 0
    status, body = _get_json(comfyui_server.url + "/sora/geometry?width=64&height=64&frames=abc")
    assert status == 400 and "frames must be an integer" in body["error"]


def test_web_extension_is_served(comfyui_server):
    """WEB_DIRECTORY: the server lists the pack's extension modules in GET /extensions and serves
    them (the frontend imports each listed file), the lib modules beside them."""
    import urllib.request
    status, listed = _get_json(comfyui_server.url + "/extensions")
    assert status == 200
    ours = {p.rsplit("/", 1)[-1] for p in listed if "/sora_" in p}
    assert {"sora_readout.js", "sora_timeline.js", "sora_preview.js"} <= ours
    path = next(p for p in listed if p.endswith("/sora_readout.js"))
    with urllib.request.urlopen(comfyui_server.url + path, timeout=60) as r:
        assert r.status == 200 and b"app.registerExtension" in r.read()
    lib = path.rsplit("/", 1)[0] + "/lib/readout.js"
    with urllib.request.urlopen(comfyui_server.url + lib, timeout=60) as r:
        assert r.status == 200 and b"export function formatReadout" in r.read()
