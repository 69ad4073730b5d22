"""The trainers noise latents with ``diffusion.flow`` (add_noise, shift_sigmas) instead of restating the
formulas, and that changed no number: the noising, the sampled flow times and a DiT training step's
loss are bit-identical to the formulas the DiT stage used to carry itself."""

import dataclasses

import pytest
import torch

from sora_core.diffusion import flow
from sora_core.diffusion.flow import FlowError
from sora_core.train import dit_trainer, shared
from sora_core.train.presets import train_preset

pytestmark = pytest.mark.usefixtures("one_thread")


def legacy_flow_pair(x0, noise, t_frames):
    """The DiT stage's own noising before it called flow.add_noise (kept here as the reference)."""
    t = t_frames[:, None, :, None, None].to(x0.dtype)
    return (1.0 - t) * x0 + t * noise, noise - x0


def legacy_sample_t(n, generator, mean=0.0, std=1.0, shift=1.0):
    """The DiT stage's own shifted logit-normal times before it called flow.shift_sigmas."""
    s = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    return shift * s / (1.0 + (shift - 1.0) * s)


def test_trainer_noising_is_flow_add_noise_bit_for_bit(generator):
    x0 = torch.randn(3, 4, 5, 6, 7, generator=generator)
    noise = torch.randn(3, 4, 5, 6, 7, generator=generator)
    t = torch.rand(3, 5, generator=generator)
    t[0] = 0.0                                        # given frames sit at t = 0
    t[1, 2] = 1.0
    x_t, target = shared.flow_pair(x0, noise, t)
    assert torch.equal(x_t, flow.add_noise(x0, noise, t))
    old_x_t, old_target = legacy_flow_pair(x0, noise, t)
    assert torch.equal(x_t, old_x_t) and torch.equal(target, old_target)
    assert torch.equal(x_t[0], x0[0])


@pytest.mark.parametrize("shift", [1.0, 3.0, 5, 0.5])
def test_sampled_flow_times_are_unchanged(shift):
    new = dit_trainer.sample_t(4096, torch.Generator().manual_seed(7), 0.3, 1.2, shift)
    old = legacy_sample_t(4096, torch.Generator().manual_seed(7), 0.3, 1.2, shift)
    assert torch.equal(new, old)
    assert torch.equal(new, flow.shift_sigmas(legacy_sample_t(4096, torch.Generator().manual_seed(7), 0.3, 1.2), shift))


def test_a_non_positive_shift_is_refused():
    with pytest.raises(FlowError, match="shift"):
        dit_trainer.sample_t(4, torch.Generator().manual_seed(0), shift=0.0)


@pytest.mark.parametrize("t_shift", [1.0, 3.0])
def test_a_dit_training_step_gives_the_same_loss(tmp_path, monkeypatch, t_shift):
    preset = dataclasses.replace(train_preset("dit", "tiny"), t_shift=t_shift)
    trainer = dit_trainer.DiTTrainer(preset, tmp_path / "run", progress=False)
    losses = [trainer.loss(step)[0].detach() for step in (0, 1)]
    monkeypatch.setattr(dit_trainer, "flow_pair", legacy_flow_pair)
    monkeypatch.setattr(dit_trainer, "sample_t", legacy_sample_t)
    legacy = [trainer.loss(step)[0].detach() for step in (0, 1)]
    assert all(torch.equal(a, b) for a, b in zip(losses, legacy))
    assert all(torch.isfinite(v) for v in losses)
