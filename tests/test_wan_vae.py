"""Wan 2.1 / 2.2 VAEs: detection from keys and shapes, key maps from ComfyUI's and diffusers' layouts,
and numerical parity with ComfyUI's own modules (comfy/ldm/wan/vae.py, vae2_2.py, run in ComfyUI's
venv through comfy_reference.py) and diffusers' AutoencoderKLWan, at tiny random configurations
with the real key names (base width 16-32 instead of 96 / 160; the real 16 / 48 latent channels,
stages, residual blocks and temporal down-sampling).

Parity bound: fp32 max abs diff <= 1e-4 of the reference output's max abs value, on the
deterministic latent (the posterior mean), before and after the per-channel latent normalisation.
bf16 (autocast) compute is covered by test_vae.py's bound (mean abs diff < 2 % / 4 % of the output).
"""

from __future__ import annotations

import pytest
import torch

from comfy_reference import run_reference
from sora_core.models.wan.detect import UnsupportedCheckpoint, detect
from sora_core.models.wan.vae_keys import (WAN21_LATENTS_MEAN, WAN21_LATENTS_STD, WAN22_LATENTS_MEAN,
                                           WAN22_LATENTS_STD, build_vae, detect_vae)

TOL = 1e-4

# Wan 2.1 at base width 32 (released: 96): mult 1,2,4,4, 2 residual blocks, time down (no, yes, yes)
TINY21 = dict(dim=32, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True])

INIT = """
def init_weights(module, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith("gamma"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.dim() == 1:
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.2)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
"""
exec(INIT)       # the same initialisation here (diffusers) as in ComfyUI's venv

COMFY21 = INIT + """
from comfy.ldm.wan.vae import WanVAE
vae = WanVAE(attn_scales=[], **{cfg!r}).eval()
init_weights(vae, 0)
with torch.no_grad():
    outputs["mu"] = vae.encode(inputs["video"])
    outputs["decoded"] = vae.decode(inputs["z"])
outputs.update({{"sd." + k: v for k, v in vae.state_dict().items()}})
"""


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is as fast, and immune to waiting on a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _video(frames: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, frames, size, size, generator=g) * 2 - 1


def _latents(channels: int, frames: int, size: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(1, channels, frames, size, size, generator=torch.Generator().manual_seed(seed))


def _close(ours: torch.Tensor, ref: torch.Tensor) -> None:
    assert ours.shape == ref.shape
    err, scale = (ours - ref).abs().max().item(), ref.abs().max().item()
    assert err <= TOL * scale, f"max abs diff {err:.3g} > {TOL} x output scale {scale:.3g}"


def _load(sd: dict[str, torch.Tensor]):
    """Detect the file layout and family from the shapes, build our module, load the mapped weights."""
    found = detect_vae({k: tuple(v.shape) for k, v in sd.items()}, {k: "F32" for k in sd})
    vae = build_vae(found.cfg).eval()
    mapped = {found.key_map(k): v for k, v in sd.items() if found.key_map(k) is not None}
    vae.load_state_dict(mapped, strict=True)
    return found, vae


def _stats(values, like: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values).view(1, -1, 1, 1, 1).to(like)


@pytest.fixture(scope="module")
def comfy21(tmp_path_factory):
    """ComfyUI's Wan 2.1 VAE at TINY21: its state dict (ComfyUI's layout) and outputs."""
    inputs = {"video": _video(9, 32), "z": _latents(16, 3, 4)}
    out = run_reference(COMFY21.format(cfg=TINY21), inputs, tmp_path_factory.mktemp("comfy21"))
    sd = {k[3:]: v for k, v in out.items() if k.startswith("sd.")}
    return inputs, sd, out


def _diffusers21():
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.AutoencoderKLWan(base_dim=TINY21["dim"], z_dim=16, dim_mult=TINY21["dim_mult"],
                                     num_res_blocks=2, temperal_downsample=TINY21["temperal_downsample"]).eval()
    init_weights(ref, 0)                                   # noqa: F821 (defined by exec(INIT))
    return ref


# ---------------------------------------------------------------------------------------------
# Wan 2.1
# ---------------------------------------------------------------------------------------------

def test_wan21_comfy_layout_is_detected_and_matches_comfyui(comfy21):
    inputs, sd, out = comfy21
    found, vae = _load(sd)
    assert (found.kind, found.family, found.layout) == ("vae", "wan2.1-vae", "comfyui")
    cfg = found.cfg
    assert (cfg.base_dim, cfg.z_dim, cfg.dim_mult, cfg.num_res_blocks, cfg.temporal_downsample) == \
        (32, 16, (1, 2, 4, 4), 2, (False, True, True))
    assert (vae.temporal_factor, vae.spatial_factor, cfg.latents_mean) == (4, 8, WAN21_LATENTS_MEAN)
    assert any("not the released size" in n for n in found.notes)
    z = vae.encode(inputs["video"])
    mean, std = _stats(WAN21_LATENTS_MEAN, z), _stats(WAN21_LATENTS_STD, z)
    _close(z * std + mean, out["mu"])                      # raw posterior mean = ComfyUI's encode
    _close(z, (out["mu"] - mean) / std)                    # what the DiT sees = latent_formats.Wan21.process_in
    _close(vae.decode((inputs["z"] - mean) / std), out["decoded"].clamp(-1, 1))


def test_wan21_diffusers_layout_matches_diffusers_and_comfyui(comfy21):
    inputs, sd_comfy, out = comfy21
    ref = _diffusers21()
    found, vae = _load(ref.state_dict())
    assert (found.family, found.layout) == ("wan2.1-vae", "diffusers")
    x, z_raw = inputs["video"], inputs["z"]
    with torch.no_grad():
        mu = ref.encode(x).latent_dist.mode()
        decoded = ref.decode(z_raw).sample
    z = vae.encode(x)
    mean, std = _stats(WAN21_LATENTS_MEAN, z), _stats(WAN21_LATENTS_STD, z)
    _close(z * std + mean, mu)
    _close(vae.decode((z_raw - mean) / std), decoded)
    # the same weights in both layouts give the same module
    _, from_comfy = _load(sd_comfy)
    ours = from_comfy.state_dict()
    assert set(ours) == set(vae.state_dict())


def test_wan21_chunked_decode_equals_whole_decode(comfy21):
    inputs, sd, _ = comfy21
    _, vae = _load(sd)
    z = _latents(16, 5, 4, seed=3)
    whole = vae.decode(z, chunk_latents=5)
    for chunk in (1, 2):
        torch.testing.assert_close(vae.decode(z, chunk_latents=chunk), whole, atol=1e-5, rtol=1e-4)
    streamed = list(vae.decode_chunks(z, chunk_latents=1))
    assert [c.shape[2] for c in streamed] == [1, 4, 4, 4, 4]          # one latent frame at a time
    torch.testing.assert_close(torch.cat(streamed, dim=2), whole, atol=1e-5, rtol=1e-4)
    x = inputs["video"]
    torch.testing.assert_close(vae.encode(x, chunk_frames=4), vae.encode(x, chunk_frames=8), atol=1e-5, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# Wan 2.2
# ---------------------------------------------------------------------------------------------

# Wan 2.2 at widths 16 / 32 (released: 160 / 256): mult 1,2,4,4, 2 residual blocks, time down (no, yes, yes)
TINY22 = dict(dim=16, dec_dim=32, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
              temperal_downsample=[False, True, True])

COMFY22 = INIT + """
from comfy.ldm.wan.vae2_2 import WanVAE
vae = WanVAE(attn_scales=[], **{cfg!r}).eval()
init_weights(vae, 0)
with torch.no_grad():
    outputs["mu"] = vae.encode(inputs["video"])
    outputs["decoded"] = vae.decode(inputs["z"])
outputs.update({{"sd." + k: v for k, v in vae.state_dict().items()}})
"""


@pytest.fixture(scope="module")
def comfy22(tmp_path_factory):
    """ComfyUI's Wan 2.2 VAE at TINY22: its state dict (ComfyUI's layout) and outputs."""
    inputs = {"video": _video(9, 64), "z": _latents(48, 3, 4)}
    out = run_reference(COMFY22.format(cfg=TINY22), inputs, tmp_path_factory.mktemp("comfy22"))
    sd = {k[3:]: v for k, v in out.items() if k.startswith("sd.")}
    return inputs, sd, out


def test_wan22_comfy_layout_is_detected_and_matches_comfyui(comfy22):
    inputs, sd, out = comfy22
    found, vae = _load(sd)
    assert (found.kind, found.family, found.layout) == ("vae", "wan2.2-vae", "comfyui")
    cfg = found.cfg
    assert (cfg.patch_size, cfg.base_dim, cfg.decoder_base_dim, cfg.z_dim, cfg.dim_mult, cfg.num_res_blocks,
            cfg.temporal_downsample) == (2, 16, 32, 48, (1, 2, 4, 4), 2, (False, True, True))
    assert (vae.temporal_factor, vae.spatial_factor, cfg.latents_mean) == (4, 16, WAN22_LATENTS_MEAN)
    z = vae.encode(inputs["video"])
    assert z.shape == (1, 48, 3, 4, 4)
    mean, std = _stats(WAN22_LATENTS_MEAN, z), _stats(WAN22_LATENTS_STD, z)
    _close(z * std + mean, out["mu"])
    _close(z, (out["mu"] - mean) / std)                    # latent_formats.Wan22.process_in
    _close(vae.decode((inputs["z"] - mean) / std), out["decoded"].clamp(-1, 1))
