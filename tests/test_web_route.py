"""The web extension's server routes (nodes/web_routes.py) as plain functions: GET /sora/geometry
gives Sora Empty Latent's readout (nearest valid values, latent shape, token grid, memory and a rough
time per step, all from sora_core.geometry / budget) and GET /sora/sample serves the pack's sample
media; both registered on ComfyUI's server through host.register_routes (a no-op outside ComfyUI).
The real server is asked over HTTP in tests/test_real_comfyui.py."""

import asyncio
import shutil
import sys
import types

import pytest
import torch

from comfyui_sora.headless import workflow
from sora_core import budget, pipeline

PACK = workflow.load_pack()
PACK.NODE_CLASS_MAPPINGS                 # imports the node layer (loaded on first use)
ROUTES = PACK.nodes.web_routes
HOST = PACK.nodes.host
SPEC = pipeline.ModelSpec.read(pipeline.default_model_dir())


def readout(**query):
    status, body = ROUTES.handle_geometry({k: str(v) for k, v in query.items()})
    assert status == 200, body
    return body


def test_valid_request_reads_out_the_geometry_and_budget_of_the_core():
    body = readout(width=64, height=96, frames=17, batch=2)
    geo = SPEC.geometry(17, 96, 64)
    assert body["notes"] == []
    assert body["valid"] == {"width": 64, "height": 96, "frames": 17}
    assert body["latent_shape"] == list(geo.latent_shape(SPEC.vae.z_dim, 2))
    assert body["token_grid"] == list(geo.token_grid) and body["tokens"] == geo.tokens
    assert body["describe"] == geo.describe()
    est = budget.estimate(SPEC, geo, 2, torch.bfloat16)
    assert body["memory"]["bytes"] == est.total and body["memory"]["text"] == budget.gib(est.total)
    step = body["step"]
    assert step["flops"] > 0 and step["seconds"] == pytest.approx(step["flops"] / (step["assumed_tflops"] * 1e12))


def test_invalid_frames_and_sizes_come_back_with_the_nearest_valid_values():
    body = readout(width=100, height=61, frames=18)
    ft = SPEC.vae.temporal_factor
    assert body["valid"] == {"width": 104, "height": 64, "frames": 17}
    assert [(n["field"], n["given"], n["valid"]) for n in body["notes"]] == [
        ("width", 100, 104), ("height", 61, 64), ("frames", 18, 17)]
    assert body["notes"][2]["why"] == f"1 or 1 + {ft}k"
    assert body["describe"] == SPEC.geometry(17, 64, 104).describe()


def test_more_tokens_cost_more_time_and_memory():
    small, large = readout(width=64, height=64, frames=9), readout(width=128, height=128, frames=33)
    assert large["tokens"] > small["tokens"]
    assert large["step"]["flops"] > small["step"]["flops"]
    assert large["memory"]["bytes"] > small["memory"]["bytes"]
    assert readout(width=64, height=64, frames=9, dtype="float32")["memory"]["bytes"] >= small["memory"]["bytes"]


@pytest.mark.parametrize("query, named", [
    ({"width": "abc", "height": "64", "frames": "17"}, "width must be an integer, got 'abc'"),
    ({"width": "64", "frames": "17"}, "height is required"),
    ({"width": "64", "height": "64", "frames": "0"}, "frames=0 is out of range: allowed 1 to 100000"),
    ({"width": "64", "height": "64", "frames": "17", "batch": "65"}, "batch=65 is out of range"),
    ({"width": "64", "height": "64", "frames": "17", "dtype": "int8"}, "dtype 'int8' is unknown; allowed: auto"),
    ({"width": "64", "height": "64", "frames": "17", "model": "nope"}, "model 'nope' is not a model folder"),
])
def test_bad_queries_are_refused_naming_the_parameter(query, named):
    status, body = ROUTES.handle_geometry(query)
    assert status == 400 and named in body["error"]


def test_a_model_folder_the_loader_lists_is_read_for_its_configs(tmp_path, monkeypatch):
    folder = tmp_path / "models" / "diffusion_models" / "mine"
    folder.mkdir(parents=True)
    for name in ROUTES.FOLDER_FILES:
        shutil.copy(pipeline.default_model_dir() / name, folder / name)
    monkeypatch.setattr(HOST._headless, "models", tmp_path / "models")
    body = readout(width=64, height=64, frames=17, model="mine")
    assert body["model"] == "mine" and body["describe"] == SPEC.geometry(17, 64, 64).describe()


def test_sample_route_serves_pack_samples_and_nothing_outside():
    sample = sorted(HOST.SAMPLES_DIR.glob("*.mp4"))[0]
    status, path = ROUTES.handle_sample({"name": HOST.SAMPLES_PREFIX + sample.name})
    assert status == 200 and path == sample.resolve()
    for name in (HOST.SAMPLES_PREFIX + "../../pyproject.toml", "pyproject.toml", HOST.SAMPLES_PREFIX + "none.mp4"):
        status, body = ROUTES.handle_sample({"name": name})
        assert status == 404 and body["error"]


def test_register_routes_is_a_no_op_outside_comfyui():
    assert "server" not in sys.modules or not hasattr(sys.modules["server"], "PromptServer")
    assert ROUTES.register() is False


def test_register_routes_adds_aiohttp_handlers_to_the_prompt_server(monkeypatch):
    from aiohttp import web
    table = web.RouteTableDef()
    fake = types.ModuleType("server")
    fake.PromptServer = types.SimpleNamespace(instance=types.SimpleNamespace(routes=table))
    monkeypatch.setitem(sys.modules, "server", fake)
    assert ROUTES.register() is True
    handlers = {route.path: route.handler for route in table}
    assert set(handlers) == {ROUTES.ROUTE_GEOMETRY, ROUTES.ROUTE_SAMPLE}
    request = types.SimpleNamespace(query={"width": "100", "height": "64", "frames": "17"})
    response = asyncio.run(handlers[ROUTES.ROUTE_GEOMETRY](request))
    assert response.status == 200 and b'"valid": {"width": 104' in response.body
    bad = asyncio.run(handlers[ROUTES.ROUTE_GEOMETRY](types.SimpleNamespace(query={"width": "x"})))
    assert bad.status == 400
