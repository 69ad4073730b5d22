"""The generate pipeline end to end with tiny random models (VAE, byte text encoder, DiT)."""

import pytest
import torch

from conftest import tiny_sora_model
from sora_core import pipeline
from sora_core.diffusion.conditions import FrameCondition, image_to_video, sdedit
from sora_core.configs import ScheduleConfig, dit_preset, replace
from sora_core.models.dit import DiT
from sora_core.geometry import GeometryError
from sora_core.diffusion.flow import sigma_schedule
from sora_core.pipeline import (GenerationDefaults, ModelError, ModelMissingError, SoraModel, encode_prompts,
                                encode_video, generate, make_noise_grid, model_files, sample_latents)

SIZE = dict(frames=5, height=16, width=16)


def latents_of(model, prompt, negative="", *, cfg=2.0, steps=2, seed=0, denoise=1.0, **kw):
    """The lower-level steps generate composes, without the decode (keeps the tests fast)."""
    cond, uncond = encode_prompts(model, prompt, negative, cfg)
    noise = make_noise_grid(model, model.geometry(**SIZE), torch.Generator().manual_seed(seed))
    return sample_latents(model, noise, cond, uncond, sigmas=sigma_schedule(steps, 3.0, denoise), cfg=cfg, **kw)


def tiny_model(seed=0) -> SoraModel:
    """Tiny random components; the DiT's zero-initialised head is randomised so it predicts something."""
    return tiny_sora_model(ScheduleConfig(steps=2, cfg=2.0, shift=3.0, sampler="euler"),
                           GenerationDefaults(frames=5, height=16, width=16, fps=8.0), random_head=True, seed=seed)


@pytest.fixture(scope="module")
def model():
    return tiny_model()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, model):
    folder = tmp_path_factory.mktemp("model")
    model.save(folder)
    return folder


def test_generate_shapes_range_and_seed(model):
    a = generate(model, "a red ball bouncing", seed=1, **SIZE)
    assert a.video.shape == (3, 5, 16, 16) and a.latents.shape == (1, 4, 3, 8, 8)
    assert a.video.min() >= -1 and a.video.max() <= 1 and torch.isfinite(a.video).all()
    assert a.geometry.frames == 5 and a.seed == 1 and a.sigmas.shape == (3,)
    b = generate(model, "a red ball bouncing", generator=torch.Generator().manual_seed(1), **SIZE)
    assert torch.equal(a.video, b.video)                                       # seeded: same video
    assert torch.equal(latents_of(model, "a red ball bouncing", seed=1), a.latents)
    assert not torch.allclose(latents_of(model, "a red ball bouncing", seed=2), a.latents)


def test_defaults_image_and_wide_grids(model):
    assert generate(model, "x", seed=0).video.shape == (3, 5, 16, 16)           # the model's defaults
    assert generate(model, "x", seed=0, frames=1, height=8, width=24).video.shape == (3, 1, 8, 24)


def test_prompt_cfg_and_negative_change_the_output(model):
    base = latents_of(model, "a red ball")
    assert not torch.allclose(base, latents_of(model, "a blue box"))
    assert not torch.allclose(base, latents_of(model, "a red ball", cfg=1.0))
    assert not torch.allclose(base, latents_of(model, "a red ball", "green"))
    assert torch.isfinite(latents_of(model, "", cfg=4.0)).all()                # empty prompt is fine


def test_callback_progress(model):
    seen = []
    generate(model, "a ball", seed=0, steps=3, sampler="heun", callback=seen.append, **SIZE)
    assert [d["i"] for d in seen] == [0, 1, 2] and all(d["steps"] == 3 for d in seen)


@pytest.mark.parametrize("mode", ["timestep", "replace"])
def test_image_condition_kept(model, mode):
    image = torch.rand(1, 3, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plan = image_to_video(model.vae, image)
    out = latents_of(model, "a ball", conditions=plan, condition_mode=mode)
    given = plan.conditions[0].latents
    assert torch.allclose(out[:, :, :1], given, atol=1e-4)
    free = latents_of(model, "a ball")
    assert not torch.allclose(free[:, :, :1], given, atol=0.1)
    assert not torch.allclose(free[:, :, 1:], out[:, :, 1:], atol=1e-3)        # the rest follows the image


def test_sdedit_strength_controls_distance(model):
    video = torch.rand(3, 5, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    src = encode_video(model, video)
    assert torch.equal(sdedit(model.vae, video, 0.5).start.latents, src)       # pixels encoded like encode_video
    dist = [(latents_of(model, "a ball", conditions=sdedit(None, src, d), denoise=d) - src).abs().mean().item()
            for d in (0.1, 0.5, 1.0)]
    assert dist[0] < dist[1] < dist[2], dist
    with pytest.raises(ValueError, match="init_latent"):
        generate(model, "a ball", seed=0, denoise=0.5, **SIZE)


def test_sdedit_plan_in_generate(model):
    """generate(conditions=sdedit plan) == its init_latent / denoise shorthand; with an image condition
    on top, the image's frame is kept and the schedule stays the truncated one."""
    video = torch.rand(1, 3, 5, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    src = encode_video(model, video)
    plan = sdedit(model.vae, video, 0.6)
    a = generate(model, "a ball", seed=3, conditions=plan, **SIZE)
    b = generate(model, "a ball", seed=3, init_latent=src, denoise=0.6, **SIZE)
    assert torch.equal(a.latents, b.latents) and torch.equal(a.sigmas, sigma_schedule(2, 3.0, 0.6))
    image = image_to_video(model.vae, video[:, :, :1])
    both = generate(model, "a ball", seed=3, conditions=plan.with_conditions(image.conditions), **SIZE)
    assert torch.allclose(both.latents[:, :, :1], image.conditions[0].latents, atol=1e-4)
    assert torch.equal(both.sigmas, a.sigmas) and not torch.allclose(both.latents, a.latents)


def test_bad_requests(model):
    with pytest.raises(GeometryError, match="frames=4"):
        generate(model, "x", seed=0, frames=4, height=16, width=16)
    with pytest.raises(GeometryError, match="width=18"):
        generate(model, "x", seed=0, frames=5, height=16, width=18)
    with pytest.raises(ValueError, match="unknown sampler"):
        generate(model, "x", seed=0, sampler="nope", **SIZE)
    with pytest.raises(ValueError, match="3 channels"):
        generate(model, "x", seed=0, conditions=[FrameCondition(torch.zeros(1, 3, 1, 4, 4))], **SIZE)


def test_save_load_round_trip(model, model_dir):
    loaded = SoraModel.load(model_dir)
    assert loaded.schedule == model.schedule and loaded.defaults == model.defaults
    a = generate(model, "a red ball", seed=5, **SIZE)
    b = generate(loaded, "a red ball", seed=5, **SIZE)
    assert torch.equal(a.latents, b.latents)
    files = model_files(model_dir)
    assert set(files) == {"vae", "text_encoder", "dit"}
    assert SoraModel.load(list(files.values())).spec == loaded.spec            # a list of files works too


def test_default_model_missing_and_found(monkeypatch, tmp_path, model_dir):
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path / "default_model")
    with pytest.raises(ModelMissingError, match="default model is missing.*sora train"):
        SoraModel.default()
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", model_dir)
    assert SoraModel.default().geometry(9, 16, 32).latent_shape(4) == (1, 4, 5, 8, 16)


def test_mismatched_components(tmp_path, model):
    bad = DiT(replace(dit_preset("tiny"), in_channels=8, out_channels=8))
    with pytest.raises(ModelError, match="4 latent channels"):
        SoraModel(model.vae, model.text_encoder, bad)
    model.save(tmp_path)
    (tmp_path / "vae.safetensors").unlink()
    with pytest.raises(ModelMissingError, match="vae"):
        SoraModel.load(tmp_path)
