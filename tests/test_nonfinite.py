"""Non-finite numbers never become a black video: NaN / inf guidance, shift or schedule and NaN weights
stop with an error naming the value (the core, the nodes and a stored schedule)."""

import copy
import math

import pytest
import torch

from comfyui_sora.nodes import graph_ops
from comfyui_sora.headless import workflow
from sora_core.configs import ScheduleConfig
from sora_core.diffusion.flow import FlowError, cfg_denoiser, check_cfg, check_shift, sigma_schedule
from sora_core.pipeline import GenerationDefaults, SoraModel, generate
from sora_core.diffusion.samplers import SAMPLERS, SamplerError, check_sigmas

from test_pipeline import SIZE, latents_of, tiny_model

NAN, INF = math.nan, math.inf


@pytest.fixture(scope="module")
def model():
    return tiny_model()


# ---------------------------------------------------------------------------------------------
# Schedules and guidance
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [NAN, INF, -INF, 0.0, -1.0])
def test_shift_must_be_finite_and_positive(value):
    with pytest.raises(FlowError, match="shift must be a finite number > 0"):
        sigma_schedule(4, value)
    with pytest.raises(FlowError, match="the stored shift"):
        check_shift(value, "the stored shift")


@pytest.mark.parametrize("value", [NAN, INF, -INF, "x"])
def test_cfg_must_be_finite(value):
    with pytest.raises(FlowError, match="cfg"):
        check_cfg(value)
    with pytest.raises(FlowError, match="cfg"):
        cfg_denoiser(None, None, None, value)


def test_schedule_with_nan_is_refused():
    with pytest.raises(SamplerError, match="finite"):
        check_sigmas(torch.tensor([1.0, NAN, 0.0]))
    with pytest.raises(SamplerError, match="finite"):
        check_sigmas(torch.tensor([INF, 0.5, 0.0]))


@pytest.mark.parametrize("kw,match", [({"cfg": NAN}, "cfg"), ({"cfg": INF}, "cfg"), ({"shift": NAN}, "shift"),
                                      ({"shift": INF}, "shift")])
def test_generate_refuses_nonfinite_options(model, kw, match):
    with pytest.raises(ValueError, match=match):
        generate(model, "a ball", seed=0, **SIZE, **kw)


def test_sample_latents_refuses_nan_cfg(model):
    with pytest.raises(ValueError, match="cfg"):
        latents_of(model, "a ball", cfg=NAN)


@pytest.mark.parametrize("field", ["cfg", "shift"])
def test_stored_schedule_with_nan_is_named(model, field):
    with pytest.raises(ValueError, match=f"stored schedule.*{field}|{field}"):
        bad = SoraModel(model.vae, model.text_encoder, model.dit,
                        ScheduleConfig(steps=2, **{"cfg": 2.0, "shift": 3.0, field: NAN}),
                        GenerationDefaults(**SIZE, fps=8.0))
        generate(bad, "a ball", seed=0)


# ---------------------------------------------------------------------------------------------
# The sampler loop stops when the latent turns non-finite
# ---------------------------------------------------------------------------------------------

def nan_from_step(k):
    """A denoiser that returns x0 = 0 until its k-th call (0-based), then NaN."""
    calls = []

    def denoiser(x, sigma):
        calls.append(1)
        return torch.zeros_like(x) if len(calls) <= k else torch.full_like(x, NAN)
    return denoiser


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_sampler_names_the_step_and_sigma(name):
    sigmas = sigma_schedule(4, 1.0)
    x = torch.randn(1, 2, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    calls = 2 if name == "heun" else 1                     # heun evaluates twice per step
    with pytest.raises(SamplerError, match=r"NaN or infinite at step 2 of 4 \(sigma 0\.75\)"):
        SAMPLERS[name](nan_from_step(calls), x, sigmas, generator=torch.Generator().manual_seed(0))


def test_nan_weights_stop_generation(model):
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.dit.proj_out.weight.fill_(NAN)
    with pytest.raises(SamplerError, match="step 1 of 2.*weights"):
        generate(broken, "a ball", seed=0, **SIZE)


def test_huge_cfg_stops_instead_of_a_black_video(model):
    with pytest.raises(SamplerError, match="step 1 of 2"):
        generate(model, "a ball", "", seed=0, cfg=1e308, **SIZE)


# ---------------------------------------------------------------------------------------------
# The Sora Sampler node (comfyui_sora.nodes.graph_ops.sample underneath)
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handle(model):
    return graph_ops.LoadedModel(model, None, torch.zeros(model.spec.vae.z_dim + 1, 3))


@pytest.mark.parametrize("field,value", [("cfg", NAN), ("cfg", INF), ("shift", NAN)])
def test_sampler_node_names_nonfinite_inputs(handle, field, value):
    pack = workflow.load_pack()
    node = pack.NODE_CLASS_MAPPINGS["SoraSampler"]()
    prompt = graph_ops.encode_prompts(handle, "a ball", "")
    latent = {"samples": torch.zeros(1, handle.model.spec.vae.z_dim, 2, 4, 4)}
    args = dict(model=handle, conditioning=prompt, latent=latent, seed=0, steps=2, cfg=2.0,
                sampler_name="euler", shift=3.0, denoise=1.0)
    with pytest.raises(ValueError, match=f"{field}.*finite"):
        node.sample(**{**args, field: value})
