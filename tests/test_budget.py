"""Memory budget: one estimate of a request's peak memory, checked against the available memory
(monkeypatched here, so the tests do not depend on the machine) before anything is allocated."""

import argparse
import dataclasses

import pytest
import torch

from sora_core import budget, configs
from comfyui_sora.nodes import graph_ops
from sora_core.budget import BudgetError
from sora_core.models.dit import DiT
from sora_core.pipeline import GenerationDefaults, ModelSpec, SoraModel
from sora_core.models.text import ByteTextEncoder
from sora_core.models.vae import VideoVAE

GIB = 2 ** 30


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    torch.manual_seed(0)
    model = SoraModel(VideoVAE(configs.vae_preset("tiny")), ByteTextEncoder(configs.text_encoder_preset("tiny")),
                      DiT(configs.dit_preset("tiny")), configs.ScheduleConfig(steps=1, cfg=1.0),
                      GenerationDefaults(frames=5, height=16, width=16, fps=8.0))
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return folder


@pytest.fixture(scope="module")
def handle(model_dir):
    return graph_ops.load_model(model_dir, dtype="float32")


@pytest.fixture
def memory(monkeypatch):
    """Set the available memory (bytes) the checks see."""
    seen = []

    def set_to(n):
        def available(device="cpu"):
            seen.append(torch.device(device))
            return n
        monkeypatch.setattr(budget, "available_memory", available)
        return seen
    return set_to


def test_estimate_counts_every_part_and_scales():
    spec = ModelSpec(configs.vae_preset("default"), configs.text_encoder_preset("default"),
                     configs.dit_preset("default"), configs.ScheduleConfig(), GenerationDefaults())
    small = budget.estimate(spec, spec.geometry(17, 64, 64))
    assert set(small.device) >= {"weights", "latents"} and small.host["decoded video"] == 17 * 64 * 64 * 3 * 9
    params = sum(budget.parameter_count(c) for c in (spec.vae, spec.text_encoder, spec.dit))
    assert small.device["weights"] == 4 * params == 4 * sum(
        p.numel() for m in (VideoVAE(spec.vae), DiT(spec.dit)) for p in m.state_dict().values()) + 4 * sum(
        p.numel() for p in ByteTextEncoder(spec.text_encoder).state_dict().values())
    double = budget.estimate(spec, spec.geometry(17, 64, 64), batch=2)
    assert double.device["latents"] == 2 * small.device["latents"]
    long = budget.estimate(spec, spec.geometry(100001, 64, 64))
    assert long.total > 50 * GIB                                       # 1.6 M tokens
    bf16 = budget.estimate(spec, spec.geometry(401, 64, 64), dtype="bfloat16")
    assert bf16.total < budget.estimate(spec, spec.geometry(401, 64, 64)).total
    assert budget.estimate(spec, spec.geometry(17, 64, 64), weights=False).device.get("weights") is None


def test_real_sizes_estimate_without_allocating():
    """Wan 2.1 1.3B sizes: the parameters are counted on the meta device (no 5 GB allocation)."""
    spec = ModelSpec(configs.vae_preset("wan2.1"), configs.TextEncoderConfig(out_dim=1536),
                     configs.replace(configs.dit_preset("wan2.1-1.3b"), text_dim=1536), configs.ScheduleConfig(),
                     GenerationDefaults())
    assert 1.2e9 < budget.parameter_count(spec.dit) < 1.6e9
    est = budget.estimate(spec, spec.geometry(81, 480, 832))
    assert 5 * GIB < est.device["weights"] < 7 * GIB


def test_check_fits_names_estimate_and_available(memory):
    est = budget.Estimate({"weights": 3 * GIB, "latents": GIB}, {"decoded video": GIB})
    memory(10 * GIB)
    assert budget.check_fits(est, "cpu", "x") is est
    memory(2 * GIB)
    with pytest.raises(BudgetError, match=r"the thing needs about 5.0 GiB \(weights 3.0 GiB, latents 1.0 GiB, "
                                          r"decoded video 1.0 GiB\) but cpu has 2.0 GiB of memory available"):
        budget.check_fits(est, "cpu", "the thing")
    memory(None)                                                       # unknown: no check
    budget.check_fits(est, "cpu", "x")


def test_cuda_checks_device_and_host_separately(memory):
    seen = memory(4 * GIB + 1)
    est = budget.Estimate({"weights": 4 * GIB}, {"decoded video": 4 * GIB})
    budget.check_fits(est, "cuda:0", "x")                              # 8 GiB in all, 4 + 4 in two pools
    assert [d.type for d in seen] == ["cuda", "cpu"]


def test_available_memory_reads_meminfo():
    n = budget.available_memory("cpu")
    assert n is None or n > 0
    assert budget.available_memory("cuda") is None or torch.cuda.is_available()


def test_empty_latent_node_refuses_before_allocating(handle, memory, monkeypatch):
    memory(64 * GIB)
    zeros = torch.zeros

    def no_alloc(*shape, **kw):
        raise AssertionError(f"allocated {shape}")
    monkeypatch.setattr(torch, "zeros", no_alloc)
    with pytest.raises(BudgetError, match=r"100001 frames x 4096x4096 x batch 64 needs about .* but cpu has "
                                          r"64.0 GiB"):
        graph_ops.empty_latent(handle, handle.model.geometry(100001, 4096, 4096), 64)
    with pytest.raises(BudgetError, match="100001 frames x 4096x4096 needs"):     # the node: before batch
        graph_ops.request_geometry(handle, 4096, 4096, 100000)
    monkeypatch.setattr(torch, "zeros", zeros)
    latent = graph_ops.empty_latent(handle, handle.model.geometry(5, 16, 16), 2)
    assert latent["samples"].shape[0] == 2
    with pytest.raises(ValueError, match="batch size must be an integer >= 1, got 0"):
        graph_ops.empty_latent(handle, handle.model.geometry(5, 16, 16), 0)


def test_sample_and_decode_check_the_latent_they_get(handle, memory):
    prompt = graph_ops.encode_prompts(handle, "a ball")
    latent = graph_ops.empty_latent(handle, handle.model.geometry(5, 16, 16), 1)
    memory(1000)                                                       # 1000 bytes: nothing fits
    with pytest.raises(BudgetError, match="needs about"):
        graph_ops.sample(handle, prompt, latent, 0, 1, 1.0, "euler", 3.0)
    with pytest.raises(BudgetError, match="decoded video"):
        graph_ops.decode_latent(handle, latent)
    memory(64 * GIB)
    out = graph_ops.sample(handle, prompt, latent, 0, 1, 1.0, "euler", 3.0)
    assert graph_ops.decode_latent(handle, out).shape == (5, 16, 16, 3)


def _generate(*argv):
    from sora_core.cli import generate as cli
    parser = argparse.ArgumentParser(prog="sora")
    cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["generate", *map(str, argv)])
    return args.func(args)


def test_generate_refuses_what_cannot_fit_before_loading(tmp_path, model_dir, memory, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the model was loaded before the request was checked")
    monkeypatch.setattr(SoraModel, "load", classmethod(refuse))
    memory(GIB)
    for extra in (["--frames", 100001, "--window", 100001], ["--width", 99984, "--height", 16]):   # one window
        with pytest.raises(BudgetError, match=r"needs about .* but cpu has 1.0 GiB of memory available"):
            _generate("a ball", "--out", tmp_path / "x.mp4", "--model", model_dir, *extra)
    assert list(tmp_path.iterdir()) == []


def test_configs_change_the_estimate():
    spec = ModelSpec(configs.vae_preset("tiny"), configs.text_encoder_preset("tiny"), configs.dit_preset("tiny"),
                     configs.ScheduleConfig(), GenerationDefaults())
    wider = dataclasses.replace(spec, dit=configs.replace(spec.dit, ffn_dim=4096))
    geo = spec.geometry(9, 64, 64)
    assert budget.estimate(wider, geo).device["weights"] > budget.estimate(spec, geo).device["weights"]
    assert budget.estimate(wider, geo, weights=False).total > budget.estimate(spec, geo, weights=False).total
