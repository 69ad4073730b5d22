"""Video VAE: shapes, errors, causality, chunking, the image path, tiling, training pass, checkpoint layout."""

import pytest
import torch

from sora_core.configs import replace, vae_preset
from sora_core.geometry import GeometryError
from sora_core.models.vae import VideoVAE, chunk_lengths, wan_original_key


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is as fast, and immune to waiting on a busy second core."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_vae(name: str = "tiny4", seed: int = 0, **changes) -> VideoVAE:
    torch.manual_seed(seed)
    cfg = vae_preset(name)
    if changes:
        cfg = replace(cfg, **changes)
    vae = VideoVAE(cfg).eval()
    with torch.no_grad():       # gammas away from 1 so the norms' weights matter
        for n, p in vae.named_parameters():
            if n.endswith("gamma"):
                p.uniform_(0.5, 1.5)
    return vae


def video(frames: int, height: int, width: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, frames, height, width, generator=g) * 2 - 1


# ---------------------------------------------------------------------------------------------
# Shapes and errors
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, frames, height, width", [
    ("tiny", 1, 16, 16), ("tiny", 5, 8, 24), ("tiny", 3, 22, 6),              # ft 2, fs 2: odd latent sizes
    ("tiny4", 1, 20, 12), ("tiny4", 9, 12, 28), ("tiny4", 5, 44, 4),           # ft 4, fs 4: 5x3, 3x7, 11x1
])
def test_encode_decode_shapes(name, frames, height, width):
    vae = make_vae(name)
    ft, fs = vae.temporal_factor, vae.spatial_factor
    x = video(frames, height, width, batch=2)
    z = vae.encode(x)
    assert z.shape == (2, vae.cfg.z_dim, 1 + (frames - 1) // ft, height // fs, width // fs)
    y = vae.decode(z)
    assert y.shape == x.shape
    assert y.dtype == torch.float32 and y.abs().max() <= 1.0


def test_factors_follow_config():
    assert (make_vae("tiny").temporal_factor, make_vae("tiny").spatial_factor) == (2, 2)
    wan_like = make_vae("bench", base_dim=4)        # mult 1,2,4,4, time down (no, yes, yes)
    assert (wan_like.temporal_factor, wan_like.spatial_factor) == (4, 8)
    z = wan_like.encode(video(5, 16, 24))
    assert z.shape == (1, 8, 2, 2, 3)
    assert wan_like.decode(z).shape == (1, 3, 5, 16, 24)


@pytest.mark.parametrize("frames", [2, 4, 6, 8])
def test_invalid_frame_count_names_allowed_values(frames):
    vae = make_vae("tiny4")
    with pytest.raises(GeometryError, match=rf"video frames={frames} .*1 \+ 4\*k"):
        vae.encode(video(frames, 8, 8))


@pytest.mark.parametrize("height, width", [(10, 8), (8, 6), (2, 8)])
def test_invalid_size_names_the_multiple(height, width):
    vae = make_vae("tiny4")
    with pytest.raises(GeometryError, match="multiple of 4"):
        vae.encode(video(1, height, width))


def test_bad_tensors_are_rejected_clearly():
    vae = make_vae("tiny4")
    with pytest.raises(ValueError, match=r"video must be a tensor \(B, 3, T, H, W\)"):
        vae.encode(torch.zeros(3, 1, 8, 8))
    with pytest.raises(ValueError, match=r"latents must be a tensor \(B, 4, T_lat, h, w\)"):
        vae.decode(torch.zeros(1, 3, 1, 2, 2))
    with pytest.raises(ValueError, match="chunk_frames=6 must be a positive multiple of the temporal factor 4"):
        vae.encode(video(9, 8, 8), chunk_frames=6)
    with pytest.raises(ValueError, match="tile_size"):
        vae.decode(torch.zeros(1, 4, 1, 4, 4), tile_size=4)
    with pytest.raises(ValueError, match="chunk_latents must be an integer >= 1"):
        vae.decode_chunks(torch.zeros(1, 4, 2, 2, 2), chunk_latents=0)     # raised before iterating
    with pytest.raises(ValueError, match="dtype=torch.int8 is not allowed"):
        vae.decode(torch.zeros(1, 4, 1, 2, 2), dtype=torch.int8)


# ---------------------------------------------------------------------------------------------
# Causality, chunking, the image path
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 5])
def test_encode_is_causal(k):
    vae = make_vae("tiny4")
    x = video(9, 12, 8)
    changed = x.clone()
    changed[:, :, k] = -changed[:, :, k]
    z, z2 = vae.encode(x, chunk_frames=8), vae.encode(changed, chunk_frames=8)
    first = 1 + (k - 1) // 4                       # the latent frame that contains frame k
    torch.testing.assert_close(z2[:, :, :first], z[:, :, :first], atol=1e-6, rtol=0)
    assert (z2[:, :, first] - z[:, :, first]).abs().max() > 1e-3


def test_decode_is_causal():
    vae = make_vae("tiny4")
    z = torch.randn(1, 4, 4, 3, 2, generator=torch.Generator().manual_seed(1))
    changed = z.clone()
    changed[:, :, 2] += 1.0
    y, y2 = vae.decode(z, chunk_latents=4), vae.decode(changed, chunk_latents=4)
    first = 1 + 4 * (2 - 1)                         # first pixel frame of latent frame 2
    torch.testing.assert_close(y2[:, :, :first], y[:, :, :first], atol=1e-6, rtol=0)
    assert (y2[:, :, first:] - y[:, :, first:]).abs().max() > 1e-3


@pytest.mark.parametrize("total, cap", [(1, 4), (5, 4), (17, 4), (9, 3), (7, 16)])
def test_chunk_lengths_are_few_even_and_capped(total, cap):
    sizes = chunk_lengths(total, cap)
    assert sum(sizes) == total and max(sizes) <= cap and max(sizes) - min(sizes) <= 1
    assert len(sizes) == -(-total // cap)


@pytest.mark.parametrize("name", ["tiny", "tiny4"])
def test_chunked_equals_one_shot(name):
    vae = make_vae(name)
    ft = vae.temporal_factor
    x = video(1 + 3 * ft, 8, 12)
    one_shot = vae.encode(x, chunk_frames=3 * ft)
    for chunk in (ft, 2 * ft):
        torch.testing.assert_close(vae.encode(x, chunk_frames=chunk), one_shot, atol=1e-5, rtol=1e-4)
    y = vae.decode(one_shot, chunk_latents=4)
    for chunk in (1, 2):
        torch.testing.assert_close(vae.decode(one_shot, chunk_latents=chunk), y, atol=1e-5, rtol=1e-4)
    streamed = torch.cat(list(vae.decode_chunks(one_shot, chunk_latents=2)), dim=2)
    torch.testing.assert_close(streamed, y, atol=1e-5, rtol=1e-4)


def test_training_pass_matches_cached_inference():
    vae = make_vae("tiny4")
    x = video(9, 8, 8)
    with torch.no_grad():
        recon, mean, logvar = vae(x, sample=False)
        torch.testing.assert_close(mean, vae.encode(x, chunk_frames=4), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(logvar, vae.encode_moments(x, chunk_frames=4)[1], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(recon.clamp(-1, 1), vae.decode(mean, chunk_latents=1), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name", ["tiny", "tiny4"])
def test_image_is_first_frame_of_video(name):
    vae = make_vae(name)
    x = video(1 + 2 * vae.temporal_factor, 8, 8)
    z = vae.encode(x)
    torch.testing.assert_close(vae.encode(x[:, :, :1]), z[:, :, :1], atol=1e-6, rtol=0)
    torch.testing.assert_close(vae.decode(z[:, :, :1]), vae.decode(z)[:, :, :1], atol=1e-6, rtol=0)


def test_bf16_compute_stays_close_to_float32():
    vae = make_vae("tiny4")
    x = video(5, 16, 16)
    z, zb = vae.encode(x), vae.encode(x, dtype=torch.bfloat16)
    assert zb.dtype == torch.float32
    assert (zb - z).abs().mean() < 0.02 * z.abs().mean()
    y, yb = vae.decode(z), vae.decode(z, dtype=torch.bfloat16)
    assert (yb - y).abs().mean() < 0.04 * y.abs().mean()


def test_sampling_uses_the_generator():
    vae = make_vae("tiny4")
    x = video(5, 8, 8)
    a = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
    b = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
    c = vae.encode(x, sample=True, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert (a - c).abs().max() > 1e-3 and (a - vae.encode(x)).abs().max() > 1e-3


def test_latents_are_normalised_per_channel():
    mean, std = (0.5, -1.0, 0.0, 2.0), (2.0, 0.5, 1.0, 4.0)
    plain, normed = make_vae("tiny4"), make_vae("tiny4", latents_mean=mean, latents_std=std)
    x = video(5, 8, 8)
    raw, z = plain.encode(x), normed.encode(x)
    m, s = torch.tensor(mean).view(1, 4, 1, 1, 1), torch.tensor(std).view(1, 4, 1, 1, 1)
    torch.testing.assert_close(z, (raw - m) / s, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(normed.decode(z), plain.decode(raw), atol=1e-5, rtol=1e-5)
    _, logvar = normed.encode_moments(x)
    torch.testing.assert_close(logvar, plain.encode_moments(x)[1] - 2 * torch.log(s), atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Tiled decode
# ---------------------------------------------------------------------------------------------

class LocalVAE(VideoVAE):
    """A VAE whose plain decode is local (each pixel from its own latent): tiling must be exact."""

    def decode(self, z, chunk_latents=None, tile_size=None, tile_overlap=None, dtype=None):
        if tile_size is not None:
            return super().decode(z, chunk_latents, tile_size, tile_overlap, dtype)
        fs, ft = self.spatial_factor, self.temporal_factor
        y = z[:, :3].repeat_interleave(fs, dim=3).repeat_interleave(fs, dim=4)
        return torch.cat([y[:, :, :1], y[:, :, 1:].repeat_interleave(ft, dim=2)], dim=2).tanh()


@pytest.mark.parametrize("tile, overlap", [(16, 8), (24, 4), (20, 12)])
def test_tiles_cover_and_blend_exactly(tile, overlap):
    vae = LocalVAE(vae_preset("tiny4"))
    z = torch.randn(1, 4, 2, 11, 7, generator=torch.Generator().manual_seed(2))
    full = vae.decode(z)
    torch.testing.assert_close(vae.decode(z, tile_size=tile, tile_overlap=overlap), full, atol=1e-6, rtol=0)


def test_tiled_decode_is_close_to_untiled():
    vae = make_vae("tiny4")
    z = vae.encode(video(1, 64, 48))                # latent 16 x 12
    full = vae.decode(z)
    err = {ov: (vae.decode(z, tile_size=40, tile_overlap=ov) - full).abs().mean() for ov in (0, 16)}
    assert err[16] < 0.2 * full.abs().mean()        # random weights: every tile edge is felt far inside
    assert err[16] < err[0]                           # blending the overlaps helps
    torch.testing.assert_close(vae.decode(z, tile_size=64), full, atol=1e-6, rtol=0)


# ---------------------------------------------------------------------------------------------
# Training pass
# ---------------------------------------------------------------------------------------------

def test_training_forward_has_finite_outputs_and_gradients(generator):
    vae = make_vae("tiny4").train()
    x = video(5, 8, 12)
    recon, mean, logvar = vae(x, generator)
    assert recon.shape == x.shape and mean.shape == logvar.shape == (1, 4, 2, 2, 3)
    assert all(torch.isfinite(t).all() for t in (recon, mean, logvar))
    loss = (recon - x).abs().mean() + 1e-3 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
    loss.backward()
    grads = {n: p.grad for n, p in vae.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    assert grads["encoder.conv_in.weight"].abs().sum() > 0 and grads["decoder.conv_out.weight"].abs().sum() > 0


# ---------------------------------------------------------------------------------------------
# Checkpoint layout (Wan 2.1 / diffusers AutoencoderKLWan)
# ---------------------------------------------------------------------------------------------

def _original_wan_keys(cfg) -> list[str]:
    """Tensor names of the original Wan 2.1 VAE release for ``cfg`` (its module tree, attn_scales empty)."""
    keys = ["conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias"]

    def res(prefix, din, dout):
        names = [f"{prefix}.residual.{i}.{p}" for i in (2, 6) for p in ("weight", "bias")]
        names += [f"{prefix}.residual.0.gamma", f"{prefix}.residual.3.gamma"]
        return names + ([f"{prefix}.shortcut.weight", f"{prefix}.shortcut.bias"] if din != dout else [])

    def resample(prefix, time):
        names = [f"{prefix}.resample.1.weight", f"{prefix}.resample.1.bias"]
        return names + ([f"{prefix}.time_conv.weight", f"{prefix}.time_conv.bias"] if time else [])

    for side in ("encoder", "decoder"):
        keys += [f"{side}.conv1.weight", f"{side}.conv1.bias", f"{side}.head.0.gamma",
                 f"{side}.head.2.weight", f"{side}.head.2.bias", f"{side}.middle.1.norm.gamma"]
        keys += [f"{side}.middle.1.{m}.{p}" for m in ("to_qkv", "proj") for p in ("weight", "bias")]
        keys += res(f"{side}.middle.0", 0, 0) + res(f"{side}.middle.2", 0, 0)
    dims, idx, n = [cfg.base_dim * u for u in (1, *cfg.dim_mult)], 0, len(cfg.dim_mult)
    for i in range(n):
        din = dims[i]
        for _ in range(cfg.num_res_blocks):
            keys += res(f"encoder.downsamples.{idx}", din, dims[i + 1])
            din, idx = dims[i + 1], idx + 1
        if i != n - 1:
            keys += resample(f"encoder.downsamples.{idx}", cfg.temporal_downsample[i])
            idx += 1
    dims, idx = [cfg.base_dim * u for u in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])], 0
    up = cfg.temporal_downsample[::-1]
    for i in range(n):
        din = dims[i] // 2 if i > 0 else dims[i]
        for _ in range(cfg.num_res_blocks + 1):
            keys += res(f"decoder.upsamples.{idx}", din, dims[i + 1])
            din, idx = dims[i + 1], idx + 1
        if i != n - 1:
            keys += resample(f"decoder.upsamples.{idx}", up[i])
            idx += 1
    return keys


def test_original_wan_names_map_onto_the_module():
    cfg = vae_preset("bench")                      # the Wan 2.1 layout at a smaller width
    ours = set(VideoVAE(cfg).state_dict())
    original = _original_wan_keys(cfg)
    assert len(original) == len(ours)
    assert {wan_original_key(k, cfg.num_res_blocks) for k in original} == ours


def test_parity_with_diffusers_autoencoder_kl_wan():
    """Same state dict, same numbers as diffusers' AutoencoderKLWan (the optional reference)."""
    diffusers = pytest.importorskip("diffusers")
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    cfg = vae_preset("tiny4")
    torch.manual_seed(0)
    ref = diffusers.AutoencoderKLWan(
        base_dim=cfg.base_dim, z_dim=cfg.z_dim, dim_mult=list(cfg.dim_mult), num_res_blocks=cfg.num_res_blocks,
        temperal_downsample=list(cfg.temporal_downsample), latents_mean=[0.0] * cfg.z_dim,
        latents_std=[1.0] * cfg.z_dim).eval()
    ours = VideoVAE(cfg).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    x = video(9, 16, 24)
    with torch.no_grad():
        mu_ref = ref.encode(x).latent_dist.mode()
        torch.testing.assert_close(ours.encode(x), mu_ref, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(ours.decode(mu_ref), ref.decode(mu_ref).sample, atol=1e-5, rtol=1e-4)
    bench = vae_preset("bench")
    original = {k: None for k in _original_wan_keys(bench)}
    assert {wan_original_key(k) for k in original} == set(convert_wan_vae_to_diffusers(original))


def test_object_pixel_weight_covers_the_objects_and_their_corners():
    from sora_core.media.video_io import frames_to_tensor
    from sora_core.train.vae_trainer import object_pixel_weight
    from sora_core.world.metrics import object_masks
    from sora_core.world.scene import ObjectRequest, sample_scene
    from sora_core.world.render import render
    frames = render(sample_scene(3, 64, 64, 5, 8.0, n_objects=1, objects=[ObjectRequest(shape="square", size="small")]))
    w = object_pixel_weight(frames_to_tensor(frames)[None], 4.0, grow=2)[0, 0]
    obj = torch.from_numpy(object_masks(frames))
    assert w.shape == obj.shape and set(w.unique().tolist()) == {1.0, 5.0}
    assert bool((w[obj] == 5.0).all())
    grown = int((w == 5.0).sum())
    assert int(obj.sum()) < grown < int(obj.sum()) * 4          # the objects plus a rim two pixels wide
