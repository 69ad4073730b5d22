"""Wan 2.1 / 2.2 TI2V through the pipeline and ``sora generate``, on tiny random checkpoints in ComfyUI's
file layout (tests/tiny_wan.py): finding and checking the components, the family defaults and conventions
(unmasked 512-token text context, the condition mode), block offload, releasing the text encoder, the
memory estimate."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

import tiny_wan
from sora_core import budget, loading, pipeline
from sora_core.cli import main
from sora_core.components import ModelError, locate
from sora_core.diffusion.conditions import image_to_video
from sora_core.families import FAMILIES
from sora_core.models.dit import DiT
from sora_core.models.offload import BlockOffload, offload_dit
from sora_core.pipeline import SoraModel, encode_text, generate

SMALL = dict(frames=5, height=64, width=64, steps=2, seed=0)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """{family: {kind: path}} of tiny files in one ComfyUI models folder per family."""
    root = tmp_path_factory.mktemp("models")
    return {f: tiny_wan.write_tiny_wan(root / f, f) for f in tiny_wan.FAMILIES}


def open_model(paths, **kw) -> SoraModel:
    return SoraModel.open(paths["dit"], paths["vae"], paths["text_encoder"], **kw)


@pytest.fixture
def no_weight_reads(monkeypatch):
    """Fail if any weights are loaded (checks must come first)."""
    def refuse(*a, **k):
        raise AssertionError("weights were loaded")
    monkeypatch.setattr(loading, "load", refuse)


# ---------------------------------------------------------------------------------------------
# Loading and generating
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family,row", [("wan2.1", "wan2.1-t2v"), ("wan2.2-ti2v", "wan2.2-ti2v")])
def test_each_family_generates_with_its_defaults(files, family, row):
    model = open_model(files[family])
    assert model.family is FAMILIES[row] and model.spec.family == row
    assert model.schedule == FAMILIES[row].schedule and model.defaults == FAMILIES[row].defaults
    stored = {p.dtype for n, p in model.dit.named_parameters() if n.endswith("original")}
    assert stored == {tiny_wan.DIT_DTYPE[family]}                      # weights kept as stored
    result = generate(model, "a red ball bouncing", **SMALL)
    assert result.video.shape == (3, 5, 64, 64) and torch.isfinite(result.video).all()
    assert result.video.std() > 0.01


def test_encode_text_is_wans_unmasked_512_token_context(files):
    model = open_model(files["wan2.1"])
    cond = encode_text(model, ["a red ball", "a blue box moving left"])
    assert cond.context.shape == (2, 512, tiny_wan.UMT5.d_model) and bool(cond.mask.all())
    _, real = model.text_encoder.encode(["a red ball"])
    n = int(real.sum())
    assert 1 < n < 20 and bool((cond.context[0, n:] == 0).all()) and bool(cond.context[0, :n].abs().sum(-1).gt(0).all())


def test_the_default_model_keeps_its_masked_text():
    model = SoraModel.default()
    assert model.family.name == "sora" and model.condition_mode == "timestep"
    cond = encode_text(model, ["a red ball", "a blue box moving slowly to the left"])
    assert not bool(cond.mask[0].all()) and bool(cond.mask[1].all())


def test_a_diffusers_pipeline_folder_and_a_sora_folder_are_found(tmp_path):
    folder = tiny_wan.write_tiny_pipeline(tmp_path / "Wan2.1-T2V-tiny-Diffusers", "wan2.1")
    found = locate(folder)
    assert found.kind == "wan" and {ck.detected.layout for ck in found.checkpoints.values()} == {"diffusers"}
    model = SoraModel.open(folder)
    assert model.family.name == "wan2.1-t2v"
    assert generate(model, "a cat", **SMALL).video.shape == (3, 5, 64, 64)
    assert locate(pipeline.DEFAULT_MODEL_DIR).kind == "sora"


# ---------------------------------------------------------------------------------------------
# Frame conditions: the family's mode, the user's override
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family,override,mode", [("wan2.2-ti2v", None, "timestep"), ("wan2.1", None, "replace"),
                                                  ("wan2.1", "timestep", "timestep")])
def test_image_to_video_mode_follows_the_family(files, monkeypatch, family, override, mode):
    model = open_model(files[family])
    seen, times = [], []
    real = pipeline.condition_denoiser
    monkeypatch.setattr(pipeline, "condition_denoiser",
                        lambda *a: (seen.append(a[-1]), real(*a))[1])
    model.dit.register_forward_pre_hook(lambda m, args: times.append(tuple(args[1].shape)))
    image = torch.rand(1, 3, 1, 64, 64) * 2 - 1
    plan = image_to_video(model.vae, image)
    result = generate(model, "a red ball", conditions=plan, condition_mode=override, cfg=1.0, **SMALL)
    assert seen == [mode] and torch.isfinite(result.video).all()
    latent_frames = result.latents.shape[2]
    assert all(t == ((1, latent_frames) if mode == "timestep" else (1,)) for t in times), times


# ---------------------------------------------------------------------------------------------
# Components that do not fit: one error naming both files, before any weight is read
# ---------------------------------------------------------------------------------------------

def test_ti2v_dit_with_the_21_vae_is_refused(files, no_weight_reads):
    with pytest.raises(ModelError) as e:
        open_model({**files["wan2.2-ti2v"], "vae": files["wan2.1"]["vae"]})
    msg = str(e.value)
    assert str(files["wan2.1"]["vae"]) in msg and str(files["wan2.2-ti2v"]["dit"]) in msg and "wan2.2-vae" in msg


def test_21_dit_with_the_22_vae_is_refused(files, no_weight_reads):
    with pytest.raises(ModelError, match="48 latent channels.*16 channels"):
        open_model({**files["wan2.1"], "vae": files["wan2.2-ti2v"]["vae"]})


def test_text_width_mismatch_names_both_files(files, tmp_path, no_weight_reads):
    dit = DiT(dataclasses.replace(tiny_wan.DIT["wan2.1"], text_dim=32))
    path = tmp_path / "wan2.1_t2v_other_text.safetensors"
    save_file({tiny_wan.dit_original_key(k): v.contiguous() for k, v in dit.state_dict().items()}, str(path))
    with pytest.raises(ModelError, match=r"outputs 64-d embeddings.*expects 32") as e:
        open_model({**files["wan2.1"], "dit": path})
    assert str(path) in str(e.value) and str(files["wan2.1"]["text_encoder"]) in str(e.value)


def test_swapped_and_missing_components_are_named(files, no_weight_reads):
    f = files["wan2.1"]
    with pytest.raises(ModelError, match="VAE, not a diffusion model"):
        SoraModel.open(f["vae"], f["dit"], f["text_encoder"])
    with pytest.raises(ModelError, match="text encoder, not a VAE"):
        SoraModel.open(f["dit"], f["text_encoder"], f["text_encoder"])
    with pytest.raises(ModelError, match="diffusion model alone: give its VAE .*wan_2.1_vae.* and its text encoder"):
        SoraModel.open(f["dit"])


# ---------------------------------------------------------------------------------------------
# Memory: offload, releasing the text encoder, the estimate, SDPA
# ---------------------------------------------------------------------------------------------

def _dit_inputs(cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, cfg.in_channels, 2, 4, 4, generator=g)
    return x, torch.tensor([0.7]), torch.randn(1, 512, cfg.text_dim, generator=g)


def test_offload_streams_each_block_and_keeps_the_output(files):
    dit, _ = loading.load(files["wan2.1"]["dit"], "dit")             # bf16 storage with Upcast
    dit.set_kernels("plain")
    x, t, ctx = _dit_inputs(dit.cfg)
    with torch.no_grad():
        before = dit(x, t, ctx)
    moves = []
    off = offload_dit(dit, "cpu", on_move=lambda event, i: moves.append((event, i)))
    host = [[p.data_ptr() for p in b.parameters()] for b in dit.blocks]
    with torch.no_grad():
        after = dit(x, t, ctx)
    assert torch.equal(before, after)
    assert moves == [(e, i) for i in range(dit.cfg.num_layers) for e in ("load", "unload")]
    assert host == [[p.data_ptr() for p in b.parameters()] for b in dit.blocks]   # back on the host copies
    assert off.host_bytes() == sum(p.numel() * p.element_size() for b in dit.blocks for p in b.parameters())
    off.remove()
    with torch.no_grad():
        dit(x, t, ctx)
    assert len(moves) == 2 * dit.cfg.num_layers                                   # hooks gone


def test_block_offload_moves_a_block_to_the_device_only_while_it_runs():
    """Two real devices on a CPU-only machine: the host (cpu) and the meta device as the 'GPU'."""
    block = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    during = []
    block[0].register_forward_hook(lambda m, a, o: during.append((m.weight.device.type, block[1].weight.device.type)))
    off = BlockOffload([block], "meta")
    host_ptr = block[0].weight.data_ptr()
    out = block(torch.randn(2, 4, device="meta"))
    assert out.device.type == "meta" and during == [("meta", "meta")]
    assert block[0].weight.device.type == "cpu" and block[0].weight.data_ptr() == host_ptr
    off.remove()


def test_offload_on_the_cpu_is_a_no_op_and_generates_the_same(files):
    plain = generate(open_model(files["wan2.1"]), "a red ball", **SMALL)
    model = open_model(files["wan2.1"], offload=True)
    assert model.offload is None
    assert torch.equal(generate(model, "a red ball", **SMALL).video, plain.video)


def test_low_memory_releases_the_text_encoder(files):
    model = open_model(files["wan2.2-ti2v"], low_memory=True)
    te = model.text_encoder
    generate(model, "a red ball", **SMALL)
    assert te.released and model.text_encoder is not te
    with pytest.raises(ModelError, match="released"):
        encode_text(model, ["again"])


def test_estimate_counts_stored_bytes_and_offload(files):
    spec, found = pipeline.ModelSpec.locate(files["wan2.1"]["dit"], files["wan2.1"]["vae"],
                                            files["wan2.1"]["text_encoder"])
    stored = found.storage_bytes()
    assert stored["dit"] == sum(p.numel() * p.element_size() for p in tiny_wan.tiny_dit("wan2.1").parameters()) // 2
    geo = spec.geometry(5, 64, 64)
    full = budget.estimate(spec, geo, weight_bytes=stored)
    off = budget.estimate(spec, geo, weight_bytes=stored, offload=True)
    assert full.device["weights"] == sum(stored.values())
    assert off.device["weights"] < full.device["weights"] and off.host["offloaded weights"] == stored["dit"] + stored["text_encoder"]


def test_plain_dit_attention_goes_through_sdpa(monkeypatch):
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention
    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention",
                        lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    dit = tiny_wan.tiny_dit("wan2.1").set_kernels("plain")
    with torch.no_grad():
        dit(*_dit_inputs(dit.cfg))
    assert len(calls) == 2 * dit.cfg.num_layers                # self- and cross-attention in every block


# ---------------------------------------------------------------------------------------------
# sora generate
# ---------------------------------------------------------------------------------------------

def _sora_generate(paths, out, *extra) -> int:
    return main(["generate", "a red ball bouncing", "--out", str(out), "--model", str(paths["dit"]), "--vae",
                 str(paths["vae"]), "--text-encoder", str(paths["text_encoder"]), "--frames", "5", "--width", "64",
                 "--height", "64", "--steps", "2", "--seed", "1", "--no-progress", *map(str, extra)])


@pytest.mark.parametrize("family", tiny_wan.FAMILIES)
def test_cli_writes_a_video_and_prints_the_estimate(files, family, tmp_path, capsys):
    out = tmp_path / "ball.mp4"
    assert _sora_generate(files[family], out, "--offload", "--vae-tile", 32) == 0
    assert out.is_file() and out.stat().st_size > 0
    err = capsys.readouterr().err
    assert "estimated peak memory:" in err and "weights" in err and "--offload has no effect" in err


def test_cli_image_to_video_uses_the_familys_mode(files, tmp_path, capsys):
    import cv2
    image = tmp_path / "first.png"
    cv2.imwrite(str(image), (torch.rand(48, 80, 3) * 255).to(torch.uint8).numpy())
    assert _sora_generate(files["wan2.2-ti2v"], tmp_path / "a.mp4", "--image", image) == 0
    assert "image condition: per-frame timesteps (wan2.2-ti2v default)" in capsys.readouterr().err
    assert _sora_generate(files["wan2.1"], tmp_path / "b.mp4", "--image", image) == 0
    assert "image condition: replacement (wan2.1-t2v default)" in capsys.readouterr().err


def test_cli_checks_the_files_before_loading(files, tmp_path, capsys, no_weight_reads):
    f = files["wan2.1"]
    args = ["generate", "x", "--out", str(tmp_path / "x.mp4"), "--model", str(f["dit"])]
    assert main(args + ["--vae", str(tmp_path / "nope.safetensors")]) != 0
    assert "--vae" in capsys.readouterr().err
    assert main(args + ["--vae", str(f["text_encoder"]), "--text-encoder", str(f["text_encoder"])]) != 0
    assert "text encoder, not a VAE" in capsys.readouterr().err
    assert main(args + ["--vae", str(files["wan2.2-ti2v"]["vae"]), "--text-encoder", str(f["text_encoder"])]) != 0
    assert "does not fit" in capsys.readouterr().err
    assert main(["generate", "x", "--out", str(tmp_path / "x.mp4"), "--vae", str(f["vae"])]) != 0
    assert "--vae go with --model" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
