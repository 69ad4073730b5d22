"""Wan 2.1 / 2.2 VAEs: detection from keys and shapes, key maps from ComfyUI's and diffusers' layouts,
and numerical parity with ComfyUI's own modules (comfy/ldm/wan/vae.py, vae2_2.py, run in ComfyUI's
venv through comfy_reference.py) and diffusers' AutoencoderKLWan, at tiny random configurations
with the real key names (base width 16-32 instead of 96 / 160; the real 16 / 48 latent channels,
stages, residual blocks and temporal down-sampling).

Parity bound: fp32 max abs diff <= 1e-4 of the reference output's max abs value, on the
deterministic latent (the posterior mean), before and after the per-channel latent normalisation.
bf16: weights stored and computed in bf16 (a bf16 file loaded as it is) against ComfyUI's fp32 output,
measured here: max abs diff ~1.0e-2 (2.1) and ~6.6e-3 (2.2) of the output scale; asserted <= 3e-2.
"""

from __future__ import annotations

import pytest
import torch

from comfy_reference import run_reference
from sora_core.configs import preset, replace, vae_preset
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

# the released sizes' headers (comfy/sd.py's configs) and a Wan 2.1 1.3B DiT's, built on the meta device
HEADERS = """
import comfy.ops
from comfy.ldm.wan import vae as wan21, vae2_2 as wan22
from comfy.ldm.wan.model import WanModel
def header(name, module):
    for k, v in module.state_dict().items():
        outputs[f"{name}.{k}"] = torch.tensor(list(v.shape), dtype=torch.int64)
with torch.device("meta"):
    modules = {"shape21": wan21.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                       temperal_downsample=[False, True, True]),
               "shape22": wan22.WanVAE(dim=160, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                                       temperal_downsample=[False, True, True]),
               "dit": WanModel(model_type="t2v", dim=1536, ffn_dim=8960, num_heads=12, num_layers=30,
                               operations=comfy.ops.disable_weight_init)}
for name, module in modules.items():
    header(name, module)
"""

# Wan 2.2 at widths 16 / 32 (released: 160 / 256): mult 1,2,4,4, 2 residual blocks, time down (no, yes, yes)
TINY22 = dict(dim=16, dec_dim=32, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
              temperal_downsample=[False, True, True])

# ComfyUI's own modules at TINY21 / TINY22: outputs "<v>.mu", "<v>.decoded" and "<v>.sd.<key>" (its state dict)
REFERENCE = INIT + """
from comfy.ldm.wan import vae as wan21, vae2_2 as wan22
for version, cls, cfg in (("21", wan21.WanVAE, {tiny21!r}), ("22", wan22.WanVAE, {tiny22!r})):
    vae = cls(attn_scales=[], **cfg).eval()
    init_weights(vae, 0)
    with torch.no_grad():
        outputs[version + ".mu"] = vae.encode(inputs[version + ".video"])
        outputs[version + ".decoded"] = vae.decode(inputs[version + ".z"])
    outputs.update({{version + ".sd." + k: v for k, v in vae.state_dict().items()}})
""" + HEADERS.replace("{", "{{").replace("}", "}}")


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
def reference(tmp_path_factory):
    """One run of ComfyUI's code (its torch import dominates): both VAEs' outputs and state dicts, headers."""
    inputs = {"21.video": _video(9, 32), "21.z": _latents(16, 3, 4),
              "22.video": _video(9, 64), "22.z": _latents(48, 3, 4)}
    script = REFERENCE.format(tiny21=TINY21, tiny22=TINY22)
    return inputs, run_reference(script, inputs, tmp_path_factory.mktemp("comfy_wan_vae"))


def _version(reference, version: str):
    """(inputs {"video", "z"}, ComfyUI's state dict, its outputs {"mu", "decoded"}) of one VAE."""
    inputs, out = reference
    pick = lambda d, p: {k[len(p):]: v for k, v in d.items() if k.startswith(p)}    # noqa: E731
    return pick(inputs, version + "."), pick(out, version + ".sd."), pick(out, version + ".")


@pytest.fixture(scope="module")
def comfy21(reference):
    return _version(reference, "21")


@pytest.fixture(scope="module")
def comfy22(reference):
    return _version(reference, "22")


def _headers(out: dict, name: str) -> dict[str, tuple]:
    """{key: shape} of a header the reference script wrote as ``name.<key>`` shape tensors."""
    return {k[len(name) + 1:]: tuple(v.tolist()) for k, v in out.items() if k.startswith(name + ".")}


def _diffusers(sd_ours: dict[str, torch.Tensor], **config):
    """diffusers' AutoencoderKLWan holding ``sd_ours`` (our key names = diffusers' names: strict load)."""
    diffusers = pytest.importorskip("diffusers")
    ref = diffusers.AutoencoderKLWan(**config).eval()
    ref.load_state_dict(sd_ours, strict=True)
    return ref


def _parity_with_diffusers(ref, inputs, comfy_out, stats):
    """diffusers (holding ComfyUI's weights) = ComfyUI, and ours loaded from diffusers' layout = both."""
    x, z_raw = inputs["video"], inputs["z"]
    with torch.no_grad():
        mu = ref.encode(x).latent_dist.mode()
        decoded = ref.decode(z_raw).sample
    _close(mu, comfy_out["mu"])
    _close(decoded, comfy_out["decoded"].clamp(-1, 1))
    found, vae = _load(ref.state_dict())
    assert found.layout == "diffusers"
    z = vae.encode(x)
    mean, std = _stats(stats[0], z), _stats(stats[1], z)
    _close(z * std + mean, mu)
    _close(vae.decode((z_raw - mean) / std), decoded)
    return found, vae


def _chunking_is_exact(vae, z, x):
    """Decode one latent frame at a time (flat memory) = decode at once; encode chunking likewise."""
    whole = vae.decode(z, chunk_latents=z.shape[2])
    streamed = list(vae.decode_chunks(z, chunk_latents=1))
    assert [c.shape[2] for c in streamed] == [1] + [vae.temporal_factor] * (z.shape[2] - 1)
    torch.testing.assert_close(torch.cat(streamed, dim=2), whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vae.decode(z, chunk_latents=2), whole, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vae.encode(x, chunk_frames=4), vae.encode(x, chunk_frames=8), atol=1e-5, rtol=1e-4)


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
    assert z.shape == (1, 16, 3, 4, 4)
    mean, std = _stats(WAN21_LATENTS_MEAN, z), _stats(WAN21_LATENTS_STD, z)
    _close(z * std + mean, out["mu"])                      # raw posterior mean = ComfyUI's encode
    _close(z, (out["mu"] - mean) / std)                    # what the DiT sees = latent_formats.Wan21.process_in
    _close(vae.decode((inputs["z"] - mean) / std), out["decoded"].clamp(-1, 1))


def test_wan21_diffusers_layout_matches_diffusers_and_comfyui(comfy21):
    inputs, sd, out = comfy21
    found, _ = _load(sd)
    ours = {found.key_map(k): v for k, v in sd.items()}
    ref = _diffusers(ours, base_dim=32, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                     temperal_downsample=[False, True, True])
    found, _ = _parity_with_diffusers(ref, inputs, out, (WAN21_LATENTS_MEAN, WAN21_LATENTS_STD))
    assert found.family == "wan2.1-vae"


def test_wan21_chunked_decode_equals_whole_decode(comfy21):
    inputs, sd, _ = comfy21
    _, vae = _load(sd)
    _chunking_is_exact(vae, _latents(16, 4, 4, seed=3), inputs["video"])


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


def test_wan22_diffusers_layout_matches_diffusers_and_comfyui(comfy22):
    inputs, sd, out = comfy22
    found, _ = _load(sd)
    ours = {found.key_map(k): v for k, v in sd.items()}
    ref = _diffusers(ours, base_dim=16, decoder_base_dim=32, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                     temperal_downsample=[False, True, True], is_residual=True, in_channels=12, out_channels=12,
                     patch_size=2, scale_factor_spatial=16, latents_mean=list(WAN22_LATENTS_MEAN),
                     latents_std=list(WAN22_LATENTS_STD))
    found, _ = _parity_with_diffusers(ref, inputs, out, (WAN22_LATENTS_MEAN, WAN22_LATENTS_STD))
    assert found.family == "wan2.2-vae" and found.cfg.decoder_base_dim == 32


@pytest.mark.parametrize("version", ["21", "22"])
def test_bf16_weights_stay_close_to_the_fp32_reference(reference, version):
    inputs, sd, out = _version(reference, version)
    found, vae = _load(sd)
    vae = vae.to(torch.bfloat16)
    z = vae.encode(inputs["video"])
    assert z.dtype == torch.float32 and vae.post_quant_conv.weight.dtype == torch.bfloat16
    cfg = found.cfg
    mu = z * _stats(cfg.latents_std, z) + _stats(cfg.latents_mean, z)
    err = (mu - out["mu"]).abs().max() / out["mu"].abs().max()
    assert err <= 3e-2, f"bf16 encode differs by {err:.3g} of the output scale"


def test_wan22_chunked_decode_and_training_pass_equal_the_whole_pass(comfy22):
    inputs, sd, _ = comfy22
    _, vae = _load(sd)
    x, z = inputs["video"], _latents(48, 4, 2, seed=3)
    _chunking_is_exact(vae, z, x)
    with torch.no_grad():                                   # the training path: one causal pass, no cache
        recon, mean, _ = vae(x, sample=False)
    torch.testing.assert_close(mean, vae.encode(x), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(recon.clamp(-1, 1), vae.decode(mean), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(vae.decode(z, tile_size=64), vae.decode(z), atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# Released sizes, other files, errors (headers only)
# ---------------------------------------------------------------------------------------------

def test_released_sizes_are_detected(reference):
    _, out = reference
    found = detect(_headers(out, "shape21"), kind="vae")
    assert (found.family, found.layout, found.notes) == ("wan2.1-vae", "comfyui", ())
    assert found.cfg == replace(vae_preset("wan2.1"), latents_mean=WAN21_LATENTS_MEAN,
                                latents_std=WAN21_LATENTS_STD)
    found = detect(_headers(out, "shape22"), {}, kind="vae")
    assert (found.family, found.layout, found.notes) == ("wan2.2-vae", "comfyui", ())
    assert found.cfg == replace(preset("vae22", "wan2.2"), latents_mean=WAN22_LATENTS_MEAN,
                                latents_std=WAN22_LATENTS_STD)
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        d21 = diffusers.AutoencoderKLWan()
        d22 = diffusers.AutoencoderKLWan(base_dim=160, decoder_base_dim=256, z_dim=48, is_residual=True,
                                         in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16)
    for module, family in ((d21, "wan2.1-vae"), (d22, "wan2.2-vae")):
        found = detect({k: tuple(v.shape) for k, v in module.state_dict().items()}, {}, kind="vae")
        assert (found.family, found.layout, found.notes) == (family, "diffusers", ())


def test_a_dit_given_as_vae_is_named(reference):
    _, out = reference
    dit = _headers(out, "dit")
    assert detect_vae(dit, {}) is None
    with pytest.raises(UnsupportedCheckpoint, match="diffusion model .*not a VAE"):
        detect(dit, {}, kind="vae")


@pytest.mark.parametrize("name", ["shape21", "shape22"])
def test_wrong_shapes_and_missing_keys_are_named(reference, name):
    _, out = reference
    shapes = _headers(out, name)
    wrong = dict(shapes, **{"decoder.head.2.weight": (3, 7, 3, 3, 3)})
    with pytest.raises(UnsupportedCheckpoint, match=r"shape mismatch.*decoder\.head\.2\.weight \(file \(3, 7, 3, 3, 3\)"):
        detect_vae(wrong, {})
    cut = {k: v for k, v in shapes.items() if not k.startswith("decoder.middle.2.")}
    with pytest.raises(UnsupportedCheckpoint, match=r"missing key.*decoder\.mid_block\.resnets\.1\."):
        detect_vae(cut, {})
    extra = dict(shapes, **{"decoder.extra.weight": (4,)})
    with pytest.raises(UnsupportedCheckpoint, match=r"unexpected key.*decoder\.extra\.weight"):
        detect_vae(extra, {})
    no_post = {k: v for k, v in shapes.items() if not k.startswith("conv2.")}
    with pytest.raises(UnsupportedCheckpoint, match="'conv2.weight' is missing"):
        detect_vae(no_post, {})


def test_other_files_are_not_vaes():
    assert detect_vae({"encoder.block.0.layer.0.SelfAttention.q.weight": (64, 64)}, {}) is None
    assert detect_vae({"decoder.conv_in.weight": (8, 4, 3, 3)}, {}) is None


def test_uneven_stages_are_refused():
    cfg = vae_preset("tiny4")
    from sora_core.models.vae import VideoVAE
    shapes = {k: tuple(v.shape) for k, v in VideoVAE(cfg).state_dict().items()}
    shapes = {k: v for k, v in shapes.items() if not k.startswith("encoder.down_blocks.1.")}     # stages of 2 and 1
    with pytest.raises(UnsupportedCheckpoint, match="same number"):
        detect_vae(shapes, {})


def test_diffusers_22_header_missing_a_block_tensor_is_named():
    from sora_core.models.wan.vae22 import WanVAE22
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in WanVAE22(preset("vae22", "tiny")).state_dict().items()}
    assert detect_vae(shapes, {}).layout == "diffusers"
    del shapes["encoder.down_blocks.1.resnets.1.conv1.weight"]
    with pytest.raises(UnsupportedCheckpoint, match=r"'encoder\.down_blocks\.1\.resnets\.1\.conv1\.weight' is missing"):
        detect_vae(shapes, {})
