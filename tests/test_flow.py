"""Flow matching: schedule, shift, SDEdit start, noise, denoiser and CFG wrappers."""

import pytest
import torch

from sora_core.diffusion.flow import FlowDenoiser, FlowError, TextCond, add_noise, cfg_denoiser, concat_conds, make_noise, sdedit_start_sigma, shift_sigmas, sigma_schedule


# ---------------------------------------------------------------------------------------------
# Schedules
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [1, 4, 20])
@pytest.mark.parametrize("shift", [1.0, 3.0, 0.5])
def test_schedule_shape_and_monotonic(steps, shift):
    s = sigma_schedule(steps, shift)
    assert s.shape == (steps + 1,) and s.dtype == torch.float32
    assert s[0].item() == pytest.approx(1.0) and s[-1].item() == 0.0
    assert bool((s[1:] < s[:-1]).all())


def test_shift_formula():
    base = torch.linspace(1, 0, 11, dtype=torch.float64)
    s = sigma_schedule(10, 3.0).double()
    assert torch.allclose(s, 3 * base / (1 + 2 * base), atol=1e-6)
    # shift > 1 spends more steps at high noise; shift 1 is the identity
    assert bool((s[1:-1] > base[1:-1]).all())
    assert torch.allclose(sigma_schedule(10, 1.0).double(), base, atol=1e-6)
    assert shift_sigmas(0.5, 1.0) == 0.5


@pytest.mark.parametrize("denoise", [0.25, 0.5, 0.9])
def test_sdedit_start_sigma(denoise):
    s = sigma_schedule(8, 3.0, denoise=denoise)
    assert s.shape == (9,) and s[-1].item() == 0.0
    assert s[0].item() == pytest.approx(3 * denoise / (1 + 2 * denoise), abs=1e-6)
    assert sdedit_start_sigma(denoise, 1.0) == pytest.approx(denoise)
    # lower strength starts lower: a weaker edit
    assert sdedit_start_sigma(denoise, 3.0) < sdedit_start_sigma(1.0, 3.0)


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_denoise_out_of_range(bad):
    with pytest.raises(FlowError, match=r"denoise must be in \(0, 1\]"):
        sigma_schedule(4, 3.0, denoise=bad)


def test_bad_steps_and_shift():
    with pytest.raises(FlowError, match="steps"):
        sigma_schedule(0)
    with pytest.raises(FlowError, match="shift"):
        sigma_schedule(4, shift=0.0)


# ---------------------------------------------------------------------------------------------
# Noise
# ---------------------------------------------------------------------------------------------

def test_add_noise_endpoints_and_per_frame():
    x0, n = torch.ones(2, 3, 4, 2, 2), torch.zeros(2, 3, 4, 2, 2)
    assert torch.equal(add_noise(x0, n, 0.0), x0) and torch.equal(add_noise(x0, n, 1.0), n)
    per_frame = torch.tensor([[0.0, 0.25, 0.5, 1.0]]).expand(2, 4)
    out = add_noise(x0, n, per_frame)
    assert torch.allclose(out[0, 0, :, 0, 0], torch.tensor([1.0, 0.75, 0.5, 0.0]))
    with pytest.raises(FlowError, match="does not fit"):
        add_noise(x0, n, torch.zeros(2, 5))


def test_make_noise_seeded_on_cpu():
    a = make_noise((2, 3), torch.Generator().manual_seed(3))
    b = make_noise((2, 3), torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and not torch.equal(a, make_noise((2, 3), torch.Generator().manual_seed(4)))


# ---------------------------------------------------------------------------------------------
# Denoisers
# ---------------------------------------------------------------------------------------------

class OracleVelocity(torch.nn.Module):
    """Returns the true velocity noise - x0 of a known pair; records the t it was given."""

    def __init__(self, x0, noise):
        super().__init__()
        self.x0, self.noise, self.seen = x0, noise, []

    def forward(self, x, t, context, mask):
        self.seen.append(t.clone())
        return (self.noise - self.x0).expand_as(x)


def _cond(batch=1, length=3, dim=4, value=1.0):
    return TextCond(torch.full((batch, length, dim), value), torch.ones(batch, length, dtype=torch.bool))


@pytest.mark.parametrize("sigma", [torch.tensor(0.7), torch.tensor([0.3, 0.9]),
                                   torch.tensor([[0.0, 0.2, 0.8], [1.0, 0.5, 0.1]])])
def test_flow_denoiser_recovers_x0(sigma, generator):
    x0 = torch.randn(2, 4, 3, 2, 2, generator=generator)
    noise = torch.randn(2, 4, 3, 2, 2, generator=generator)
    model = OracleVelocity(x0, noise)
    out = FlowDenoiser(model)(add_noise(x0, noise, sigma), sigma, _cond())
    assert torch.allclose(out, x0, atol=1e-5)
    expected_t = (2,) if sigma.ndim < 2 else (2, 3)
    assert model.seen[0].shape == expected_t


class ContextVelocity(torch.nn.Module):
    """v = mean of the real context tokens, so cond and uncond give different outputs."""

    def __init__(self):
        super().__init__()
        self.calls, self.batches = 0, []

    def forward(self, x, t, context, mask):
        self.calls += 1
        self.batches.append(x.shape[0])
        m = mask.float()[..., None]
        v = (context * m).sum(1) / m.sum(1)                    # (B, D)
        return v.mean(-1).view(-1, 1, 1, 1, 1).expand_as(x)


def test_cfg_combination_and_batching():
    x = torch.zeros(2, 1, 2, 1, 1)
    cond, uncond = _cond(value=2.0), _cond(length=5, value=-1.0)
    model = ContextVelocity()
    den = FlowDenoiser(model)
    scale = 4.0
    batched = cfg_denoiser(den, cond, uncond, scale)(x, torch.tensor(0.5))
    assert model.calls == 1 and model.batches == [4]        # cond + uncond in one forward
    x0_c, x0_u = x - 0.5 * 2.0, x - 0.5 * -1.0
    assert torch.allclose(batched, x0_u + scale * (x0_c - x0_u))
    split = cfg_denoiser(den, cond, uncond, scale, batched=False)(x, torch.tensor(0.5))
    assert torch.allclose(split, batched)
    model.calls = 0
    cfg_denoiser(den, cond, uncond, 1.0)(x, torch.tensor(0.5))
    assert model.calls == 1 and model.batches[-1] == 2      # scale 1: no unconditional pass


def test_cfg_with_per_frame_sigma():
    x = torch.zeros(1, 1, 3, 1, 1)
    sig = torch.tensor([[0.0, 0.5, 1.0]])
    out = cfg_denoiser(FlowDenoiser(ContextVelocity()), _cond(value=1.0), _cond(value=0.0), 2.0)(x, sig)
    assert torch.allclose(out.flatten(), -2.0 * sig.flatten())


def test_concat_conds_pads_masked():
    both = concat_conds(_cond(length=2), _cond(length=4, value=3.0))
    assert both.context.shape == (2, 4, 4)
    assert both.mask.tolist() == [[True, True, False, False], [True] * 4]
    with pytest.raises(FlowError, match="batch"):
        _cond(batch=2).expand(3)
