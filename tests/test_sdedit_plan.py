"""SDEdit as a condition plan (``conditions.sdedit``) on the shipped default model: the plan, the
Sora Sampler's ``denoise`` and ``sora eval``'s sdedit task give exactly what the by-hand SDEdit gives
(the source latents noised to the first level of the truncated schedule, then the sampler), for every
sampler; a span re-generates only its frames."""

import pytest
import torch

from comfyui_sora.nodes import graph_ops
from sora_core import pipeline
from sora_core.diffusion.conditions import ConditionError, sdedit
from sora_core.diffusion.flow import FlowDenoiser, add_noise, cfg_denoiser, make_noise, sigma_schedule
from sora_core.diffusion.samplers import SAMPLERS
from sora_core.pipeline import SoraModel, encode_prompts, encode_video, generate, sample_latents

PROMPT, CFG, STEPS, SHIFT, SEED = "a red ball bouncing", 2.0, 4, 3.0, 11
SIZE = dict(frames=9, height=64, width=64)


@pytest.fixture(scope="module")
def model():
    return SoraModel.default()


@pytest.fixture(scope="module")
def source(model):
    """Latents (1, C, 3, 16, 16) of a random 9-frame 64x64 video."""
    video = torch.rand(1, 3, 9, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    return encode_video(model, video)


def by_hand(model, src, sampler, denoise):
    """SDEdit written out with the flow and sampler primitives only, in float32: the noise and the
    stochastic samplers' noise from one seeded generator, the source noised to the first level of
    ``sigma_schedule(steps, shift, denoise)``, then the sampler along that schedule."""
    gen = torch.Generator().manual_seed(SEED)
    cond, uncond = encode_prompts(model, PROMPT, "", CFG)
    noise = make_noise(tuple(src.shape), gen)
    sigmas = sigma_schedule(STEPS, SHIFT, denoise)
    denoiser = cfg_denoiser(FlowDenoiser(model.dit, None), cond, uncond, CFG)
    return SAMPLERS[sampler](denoiser, add_noise(src, noise, sigmas[0]), sigmas, generator=gen)


def via_generate(model, src, sampler, denoise):
    plan = sdedit(None, src, denoise)
    return generate(model, PROMPT, steps=STEPS, cfg=CFG, sampler=sampler, shift=SHIFT, seed=SEED,
                    conditions=plan, autocast_dtype=None, **SIZE).latents


def via_node(model, src, sampler, denoise):
    handle = graph_ops.LoadedModel(model, None, torch.zeros(model.spec.vae.z_dim + 1, 3))
    prompt = graph_ops.encode_prompts(handle, PROMPT, "")
    return graph_ops.sample(handle, prompt, {"samples": src}, SEED, STEPS, CFG, sampler, SHIFT, denoise)["samples"]


@pytest.mark.parametrize("path", [via_generate, via_node], ids=["generate", "node"])
@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_plan_equals_sdedit_by_hand(model, source, sampler, path):
    for denoise in (0.35, 0.6):
        expected = by_hand(model, source, sampler, denoise)
        got = path(model, source, sampler, denoise)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert (got - source).abs().mean() > 1e-3                # it did edit


def test_init_latent_shorthand_is_the_plan(model, source):
    a = generate(model, PROMPT, steps=2, seed=0, init_latent=source, denoise=0.5, **SIZE)
    b = generate(model, PROMPT, steps=2, seed=0, conditions=sdedit(None, source, 0.5), **SIZE)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.sigmas, sigma_schedule(2, model.schedule.shift, 0.5))
    with pytest.raises(ValueError, match="already carry an SDEdit start"):
        generate(model, PROMPT, seed=0, conditions=sdedit(None, source, 0.5), init_latent=source, denoise=0.5, **SIZE)


def test_span_regenerates_only_its_frames(model):
    video = torch.rand(1, 3, 17, 64, 64, generator=torch.Generator().manual_seed(4)) * 2 - 1
    src = encode_video(model, video)                                            # 5 latent frames
    plan = sdedit(None, src, 0.8, span=(1, -1))
    assert [(c.position, c.frames, c.strength) for c in plan.conditions] == [(0, 1, 1.0), (4, 1, 1.0)]
    out = generate(model, PROMPT, frames=17, height=64, width=64, steps=STEPS, cfg=CFG, sampler="heun",
                   shift=SHIFT, seed=SEED, conditions=plan, autocast_dtype=None).latents
    torch.testing.assert_close(out[:, :, [0, 4]], src[:, :, [0, 4]], rtol=0, atol=1e-5)
    assert (out[:, :, 1:4] - src[:, :, 1:4]).abs().mean() > 0.05
    assert sdedit(None, src, 0.8, span=(0, 5)).conditions == ()                # the whole clip: no pins


def test_eval_task_uses_the_plan(model, monkeypatch):
    from sora_core.evaluation import tasks
    from sora_core.evaluation.evaluate import PromptEntry
    seen, real = [], pipeline.generate

    def spy(*args, **kw):
        seen.append(kw)
        return real(*args, **kw)
    monkeypatch.setattr(pipeline, "generate", spy)
    settings = tasks.RunSettings(steps=2, cfg=CFG, strengths=(0.3, 0.7), **SIZE)
    entry = PromptEntry(PROMPT, task="sdedit", line=1)
    run = tasks.task_sdedit(model, entry, 2, settings)
    truth = encode_video(model, tasks._tensor(tasks.truth_frames(model, entry, 2, settings)))
    assert len(run.clips) == 2 and [kw["conditions"].denoise for kw in seen] == [0.3, 0.7]
    assert all(torch.equal(kw["conditions"].start.latents, truth) and "init_latent" not in kw for kw in seen)


def test_mismatched_source_and_schedule_are_refused(model, source):
    with pytest.raises(ConditionError, match="generate at the source's frame count and size"):
        generate(model, PROMPT, steps=1, seed=0, conditions=sdedit(None, source, 0.5), frames=17, height=64, width=64)
    cond, _ = encode_prompts(model, PROMPT)
    noise = make_noise(tuple(source.shape), torch.Generator().manual_seed(0))
    with pytest.raises(ConditionError, match=r"plan.schedule\(steps, shift\)"):
        sample_latents(model, noise, cond, sigmas=sigma_schedule(2, SHIFT), conditions=sdedit(None, source, 0.5))
