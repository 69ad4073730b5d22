"""The Sora nodes with Wan models, and the loaded model under ComfyUI's model management.

Model management: the loader registers every component with ComfyUI (one ``ModelPatcher`` each,
through ``host.ManagedModel``) and each node makes its component ready (``load_models_gpu``) right
before using it; checked with stand-ins for ``comfy.model_management`` / ``comfy.model_patcher`` here,
and with ComfyUI's own modules (its venv, tests/comfy_reference.py) further down.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
import torch

from comfyui_sora.headless import workflow

PACK = workflow.load_pack()
NODES = PACK.NODE_CLASS_MAPPINGS
HOST = PACK.nodes.host
ROOT = Path(__file__).resolve().parent.parent


def run(name, **kwargs):
    cls = NODES[name]
    out = getattr(cls(), cls.FUNCTION)(**kwargs)
    return out["result"] if isinstance(out, dict) else out


# ---------------------------------------------------------------------------------------------
# Model management, with stand-ins for ComfyUI's modules
# ---------------------------------------------------------------------------------------------

class StandInPatcher:
    """Records what ``comfy.model_patcher.ModelPatcher`` is given."""

    def __init__(self, model, load_device, offload_device):
        self.model, self.load_device, self.offload_device = model, load_device, offload_device


@pytest.fixture
def comfy_stand_in(monkeypatch):
    """host with stand-in ComfyUI model management; returns the list of load_models_gpu calls
    (component kinds, force_full_load)."""
    calls = []
    cpu = torch.device("cpu")
    mm = types.SimpleNamespace(
        get_torch_device=lambda: cpu, unet_offload_device=lambda: cpu, vae_device=lambda: cpu,
        vae_offload_device=lambda: cpu, text_encoder_device=lambda: cpu, text_encoder_offload_device=lambda: cpu,
        load_models_gpu=lambda ms, force_full_load=False: calls.append(([m.model.kind for m in ms], force_full_load)),
        throw_exception_if_processing_interrupted=lambda: None)
    monkeypatch.setattr(HOST, "_mm", mm)
    monkeypatch.setattr(HOST, "_patcher", types.SimpleNamespace(ModelPatcher=StandInPatcher))
    return calls


def test_managed_model_registers_each_component_and_places_it_before_use(comfy_stand_in):
    modules = {"dit": torch.nn.Linear(2, 2), "vae": torch.nn.Linear(2, 3), "text_encoder": torch.nn.Linear(3, 2)}
    managed = HOST.ManagedModel(modules, "m")
    assert set(managed.patchers) == set(modules)
    for kind, patcher in managed.patchers.items():
        assert patcher.model.component is modules[kind] and patcher.model.kind == kind
        assert isinstance(patcher.model, torch.nn.Module)          # ModelPatcher sizes it from its state dict
        assert sum(t.nbytes for t in patcher.model.state_dict().values()) == \
            sum(t.nbytes for t in modules[kind].state_dict().values())
    managed.place("vae")
    assert comfy_stand_in == [(["vae"], True)]


def test_headless_managed_model_registers_nothing_and_place_does_nothing():
    assert HOST._mm is None                                # the project's venv has no ComfyUI
    managed = HOST.ManagedModel({"dit": torch.nn.Linear(2, 2)})
    assert managed.patchers == {}
    managed.place("dit")
    assert HOST.component_devices("dit") == (torch.device("cpu"), torch.device("cpu"))
    with pytest.raises(ValueError, match="component 'unet' is unknown; allowed: dit, vae, text_encoder"):
        HOST.component_devices("unet")


def test_every_node_places_the_component_it_uses(comfy_stand_in):
    """Text encode readies the text encoder, the sampler the DiT, encode / decode / conditions the
    VAE: ComfyUI can have moved any of them off its compute device since the loader ran."""
    (model,) = run("SoraModelLoader", dit="default", vae="default", text_encoder="default", dtype="float32")
    assert comfy_stand_in == [] and model.place is not None
    (cond,) = run("SoraTextEncode", model=model, positive="a red ball", negative="")
    assert comfy_stand_in.pop() == (["text_encoder"], True)
    latent = run("SoraEmptyLatent", model=model, width=32, height=32, frames=1, aspect="custom", seconds=0.0,
                 fps=8.0, batch_size=1)[0]
    (out,) = run("SoraSampler", model=model, conditioning=cond, latent=latent, seed=0, steps=1, cfg=1.0,
                 sampler_name="euler", shift=3.0, denoise=1.0)
    assert comfy_stand_in.pop() == (["dit"], True)
    (images,) = run("SoraVAEDecode", model=model, latent=out, tile_size=0)
    assert comfy_stand_in.pop() == (["vae"], True)
    run("SoraImageToVideo", model=model, image=images, position="start", strength=1.0)
    run("SoraVAEEncode", model=model, images=images, fit_frames="trim")
    assert comfy_stand_in == [(["vae"], True)] * 2


MANAGEMENT_SCRIPT = """
    import importlib.util
    from torch.nn.utils import parametrize
    import comfy.model_management as mm
    spec = importlib.util.spec_from_file_location("sora_host", {host!r})
    host = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(host)

    class Cast(torch.nn.Module):                     # a stored bf16 weight computed in float32
        def forward(self, w):
            return w.float()

    dit = torch.nn.Linear(8, 8).to(torch.bfloat16)
    parametrize.register_parametrization(dit, "weight", Cast(), unsafe=True)
    dit.bias.data = dit.bias.data.float()
    vae = torch.nn.Linear(4, 4)
    managed = host.ManagedModel({{"dit": dit, "vae": vae}}, "test")
    managed.place("dit")
    first = mm.current_loaded_models[0]
    outputs["placed"] = torch.tensor([len(mm.current_loaded_models), first.model_memory(),
                                      first.model.model is managed.patchers["dit"].model])
    mm.unload_all_models()
    outputs["unloaded"] = torch.tensor([len(mm.current_loaded_models)])
    managed.place("dit")
    managed.place("vae")
    managed.place("dit")
    outputs["again"] = torch.tensor([len(mm.current_loaded_models)])
    outputs["x"] = torch.randn(2, 8)
    outputs["y"] = dit(outputs["x"])
    outputs["w"] = dit.weight.detach()
    outputs["b"] = dit.bias.detach()
"""


def test_comfyui_model_management_registers_unloads_and_reloads_a_component(tmp_path):
    """ComfyUI's own ModelPatcher and load_models_gpu (its venv): a component (a parametrized bf16
    linear, as our storage-dtype loading makes them) is registered at its state dict's size, freed
    by unload_all_models (the "unload models" button), registered again by the next place, and
    still computes the same function."""
    from comfy_reference import run_reference
    out = run_reference(MANAGEMENT_SCRIPT.format(host=str(ROOT / "nodes" / "host.py")), {}, tmp_path)
    count, size, same = out["placed"].tolist()
    assert count == 1 and same == 1
    assert size == 8 * 8 * 2 + 8 * 4                   # bf16 weight as stored + float32 bias
    assert out["unloaded"].tolist() == [0]
    assert out["again"].tolist() == [2]
    expected = out["x"] @ out["w"].T + out["b"]
    assert torch.allclose(out["y"], expected, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# Every node with a Wan model (tiny random checkpoints in ComfyUI's layout, tests/tiny_wan.py)
# ---------------------------------------------------------------------------------------------

FAMILIES = {"wan2.1": dict(channels=16, spatial=8, shift=5.0, mode="replace"),
            "wan2.2-ti2v": dict(channels=48, spatial=16, shift=5.0, mode="timestep")}
H = W = 32


@pytest.fixture(scope="module")
def wan_models(tmp_path_factory):
    """A models folder holding both tiny families' files (ComfyUI's file names)."""
    from tiny_wan import write_tiny_wan
    folder = tmp_path_factory.mktemp("wan_models")
    return folder, {f: write_tiny_wan(folder, family=f) for f in FAMILIES}


@pytest.fixture(params=list(FAMILIES))
def wan(request, wan_models, monkeypatch):
    """(family, loaded model, prompt conditioning) through the loader node, headless folders at the
    tiny models."""
    folder, files = wan_models
    monkeypatch.setattr(HOST._headless, "models", folder)
    paths = files[request.param]
    (model,) = run("SoraModelLoader", dit=paths["dit"].name, vae=paths["vae"].name,
                   text_encoder=paths["text_encoder"].name, dtype="float32")
    (cond,) = run("SoraTextEncode", model=model, positive="a red ball", negative="blurry")
    return request.param, model, cond


def clip(frames, seed=0):
    return torch.rand(frames, H, W, 3, generator=torch.Generator().manual_seed(seed))


def sample(model, cond, latent, **kw):
    args = dict(model=model, conditioning=cond, latent=latent, seed=1, steps=2, cfg=2.0, sampler_name="euler",
                shift=0.0, denoise=1.0)
    return run("SoraSampler", **{**args, **kw})[0]["samples"]


def test_loader_lists_the_wan_files_after_the_default(wan_models, monkeypatch):
    folder, _ = wan_models
    monkeypatch.setattr(HOST._headless, "models", folder)
    required = NODES["SoraModelLoader"].INPUT_TYPES()["required"]
    assert required["dit"][0] == ["default", "wan2.1_t2v_1.3B_bf16.safetensors", "wan2.2_ti2v_5B_fp16.safetensors"]
    assert required["vae"][0] == ["default", "wan2.2_vae.safetensors", "wan_2.1_vae.safetensors"]
    assert required["text_encoder"][0] == ["default", "umt5_xxl_fp16.safetensors"]
    assert all(spec[1]["default"] == "default" for spec in (required["dit"], required["vae"], required["text_encoder"]))


def test_empty_latent_has_the_wan_vae_geometry(wan):
    family, model, _ = wan
    f = FAMILIES[family]
    assert model.model.family.name.startswith(family) and model.place is not None
    latent, grid, *_, w, h, frames = run("SoraEmptyLatent", model=model, width=40, height=H, frames=8,
                                         aspect="custom", seconds=0.0, fps=16.0, batch_size=1)
    multiple = 2 * f["spatial"]                                   # VAE factor x patch 2
    assert (frames, h, w % multiple) == (9, H, 0)
    assert latent["samples"].shape == (1, f["channels"], 3, h // f["spatial"], w // f["spatial"])
    assert model.rgb_map.shape == (f["channels"] + 1, 3)


def test_sampler_takes_the_family_shift_and_condition_mode(wan):
    """shift 0 = the family's (5.0), condition_mode auto = replace for Wan 2.1, timestep for 2.2
    TI2V: the automatic runs equal the explicit ones and differ from the other mode."""
    family, model, cond = wan
    f = FAMILIES[family]
    latent = run("SoraEmptyLatent", model=model, width=W, height=H, frames=9, aspect="custom", seconds=0.0,
                 fps=16.0, batch_size=1)[0]
    auto = sample(model, cond, latent)
    assert torch.equal(auto, sample(model, cond, latent, shift=f["shift"]))
    assert not torch.allclose(auto, sample(model, cond, latent, shift=1.0))
    (conds,) = run("SoraImageToVideo", model=model, image=clip(1), position="start", strength=0.7)
    other = "timestep" if f["mode"] == "replace" else "replace"
    pinned = sample(model, cond, latent, frame_conditions=conds)
    assert torch.equal(pinned, sample(model, cond, latent, frame_conditions=conds, condition_mode=f["mode"]))
    assert not torch.allclose(pinned, sample(model, cond, latent, frame_conditions=conds, condition_mode=other))


def test_vae_and_condition_nodes_work_with_a_wan_model(wan):
    family, model, cond = wan
    c = FAMILIES[family]["channels"]
    (latent,) = run("SoraVAEEncode", model=model, images=clip(9), fit_frames="trim")
    assert latent["samples"].shape == (1, c, 3, H // FAMILIES[family]["spatial"], W // FAMILIES[family]["spatial"])
    (images,) = run("SoraVAEDecode", model=model, latent=latent, tile_size=0)
    assert images.shape == (9, H, W, 3) and 0 <= images.min() and images.max() <= 1
    video, other = clip(9, 1), clip(9, 2)
    fwd, overlap = run("SoraExtendForward", model=model, video=video, latent_frames=2, strength=1.0)
    back, _ = run("SoraExtendBackward", model=model, video=video, latent_frames=1, strength=1.0)
    loop, drop_end, drop_start = run("SoraSeamlessLoop", model=model, image=clip(1), strength=1.0)
    conn, a, b = run("SoraConnectClips", model=model, first=video, second=other, latent_frames=1, strength=1.0)
    (blend,) = run("SoraClipBlend", model=model, first=video, second=other, curve="linear", start=0.25, end=0.75,
                   strength=0.9, transition_strength=0.5)
    assert overlap == 5 and (drop_start, drop_end) == (1, 3) and (a, b) == (1, 4) and len(blend) == 3
    for conds in (fwd, back, loop, conn, blend):
        assert all(k.latents.shape[1] == c for k in conds)
        out = sample(model, cond, latent, frame_conditions=conds)
        assert out.shape == latent["samples"].shape and torch.isfinite(out).all()
    held = sample(model, cond, latent, frame_conditions=fwd)
    assert torch.allclose(held[:, :, :2], fwd[0].latents, atol=1e-5)             # pinned at strength 1
    edited = sample(model, cond, latent, denoise=0.3)                            # SDEdit of the encoded clip
    fresh = sample(model, cond, latent)
    assert (edited - latent["samples"]).abs().mean() < (fresh - latent["samples"]).abs().mean()


def test_a_wan_file_with_default_components_is_refused_naming_the_inputs(wan_models, monkeypatch):
    folder, files = wan_models
    monkeypatch.setattr(HOST._headless, "models", folder)
    with pytest.raises(ValueError, match=r"dit 'wan2.1_t2v_1.3B_bf16.safetensors': a Wan model needs its diffusion "
                                         r"model, VAE and text encoder chosen together; vae and text_encoder are "
                                         r"still 'default'"):
        run("SoraModelLoader", dit=files["wan2.1"]["dit"].name, vae="default", text_encoder="default", dtype="auto")
    with pytest.raises(ValueError, match="wan2.2_vae"):
        run("SoraModelLoader", dit=files["wan2.1"]["dit"].name, vae=files["wan2.2-ti2v"]["vae"].name,
            text_encoder=files["wan2.1"]["text_encoder"].name, dtype="auto")
