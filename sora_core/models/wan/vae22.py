"""The Wan 2.2 VAE (48 latent channels, 4 x 16 x 16 compression) on the pack's causal VAE primitives.

Structure (``configs.WanVAE22Config``):

* a ``patch_size`` x ``patch_size`` space-to-channel patchify in front of the encoder and its inverse
  after the decoder (3 x 2 x 2 = 12 channels), so the causal 3D VAE inside compresses 8x spatially
  and the whole 16x;
* every encoder stage is a residual *down block*: ``num_res_blocks`` residual blocks and a resampler,
  plus a parameter-free shortcut that averages groups of channels after a space/time-to-channel fold
  (``AvgDown``); every decoder stage an *up block*: ``num_res_blocks + 1`` residual blocks and a
  resampler (which keeps the width, unlike Wan 2.1's, which halves it), plus a shortcut that repeats
  channels and unfolds them into space and time (``DupUp``);
* the encoder and the decoder have their own widths (``base_dim`` 160, ``decoder_base_dim`` 256).

Causality is the same as in ``VideoVAE``: the first frame alone, then groups of 4 frames, fed chunk
after chunk with a ``FeatureCache`` (the residual blocks, resamplers and mid block are
``vae_blocks``'s). The shortcuts need no cache: ``AvgDown`` pads the first chunk's single leading frame
with a zero frame in front (every later chunk has whole groups), ``DupUp`` drops the leading
duplicates of the video's first frame. ``WanVAE22`` is a ``VideoVAE`` with these encoder and decoder,
so encode / decode / decode_chunks / tiling / latent normalisation are shared.

Module names are those of diffusers' ``AutoencoderKLWan(is_residual=True)`` (``encoder.down_blocks.S.
resnets.M``, ``.downsampler``, ``decoder.up_blocks.S.resnets.M``, ``.upsampler``); ComfyUI's / the
original names map through ``vae_keys.comfy22_key``.
"""

from __future__ import annotations

import torch
from einops import rearrange, reduce
from torch import Tensor, nn
import torch.nn.functional as F

from ...configs import WanVAE22Config
from ..vae import VideoVAE
from ..vae_blocks import CL3D, CausalConv3d, FeatureCache, MidBlock, Resample, ResidualBlock, RMSNorm


def patchify(x: Tensor, p: int) -> Tensor:
    """(B, C, T, H*p, W*p) -> (B, C*p*p, T, H, W); channel order (c, w offset, h offset), as Wan's."""
    if p == 1:
        return x
    return rearrange(x, "b c t (h q) (w r) -> b (c r q) t h w", q=p, r=p).contiguous(memory_format=CL3D)


def unpatchify(x: Tensor, p: int) -> Tensor:
    """The inverse of ``patchify``."""
    if p == 1:
        return x
    return rearrange(x, "b (c r q) t h w -> b c t (h q) (w r)", q=p, r=p)


class AvgDown(nn.Module):
    """Shortcut of a down block: fold ``ft`` frames and ``fs`` x ``fs`` pixels into channels, then average
    groups of consecutive channels down to ``out_dim``. A chunk whose length is not a multiple of ``ft``
    (the video's first frame) is padded with zero frames in front."""

    def __init__(self, in_dim: int, out_dim: int, ft: int, fs: int):
        super().__init__()
        if in_dim * ft * fs * fs % out_dim:
            raise ValueError(f"AvgDown: {in_dim} channels x {ft * fs * fs} must be a multiple of {out_dim}")
        self.out_dim, self.ft, self.fs = out_dim, ft, fs

    def forward(self, x: Tensor) -> Tensor:
        pad = -x.shape[2] % self.ft
        if pad:
            x = F.pad(x, (0, 0, 0, 0, pad, 0))
        x = rearrange(x, "b c (t a) (h p) (w q) -> b (c a p q) t h w", a=self.ft, p=self.fs, q=self.fs)
        return reduce(x, "b (o g) t h w -> b o t h w", "mean", o=self.out_dim)


class DupUp(nn.Module):
    """Shortcut of an up block: repeat every channel, unfold groups of channels into ``ft`` frames and
    ``fs`` x ``fs`` pixels. At the video's start the first frame's ``ft - 1`` leading copies are dropped
    (the causal up-sampler makes one frame of it, not ``ft``)."""

    def __init__(self, in_dim: int, out_dim: int, ft: int, fs: int):
        super().__init__()
        if out_dim * ft * fs * fs % in_dim:
            raise ValueError(f"DupUp: {out_dim} channels x {ft * fs * fs} must be a multiple of {in_dim}")
        self.repeats, self.ft, self.fs = out_dim * ft * fs * fs // in_dim, ft, fs

    def forward(self, x: Tensor, first: bool) -> Tensor:
        x = x.repeat_interleave(self.repeats, dim=1)
        x = rearrange(x, "b (o a p q) t h w -> b o (t a) (h p) (w q)", a=self.ft, p=self.fs, q=self.fs)
        return x[:, :, self.ft - 1:] if first else x


def _add(x: Tensor, y: Tensor) -> Tensor:
    return x.add_(y) if not torch.is_grad_enabled() else x + y


class ResidualDownBlock(nn.Module):
    """Residual blocks and an optional x2 down-sampler (spatial, and temporal when ``temporal``), plus
    the ``AvgDown`` shortcut around them. (B, C_in, T, H, W) -> (B, C_out, T', H', W')."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, down: bool,
                 dropout: float = 0.0):
        super().__init__()
        self.avg_shortcut = AvgDown(in_dim, out_dim, 2 if temporal else 1, 2 if down else 1)
        dims = [in_dim] + [out_dim] * num_res_blocks
        self.resnets = nn.ModuleList([ResidualBlock(a, b, dropout) for a, b in zip(dims[:-1], dims[1:])])
        self.downsampler = Resample(out_dim, "downsample3d" if temporal else "downsample2d") if down else None

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        h = x
        for resnet in self.resnets:
            h = resnet(h, cache)
        if self.downsampler is not None:
            h = self.downsampler(h, cache)
        return _add(h, self.avg_shortcut(x))


class ResidualUpBlock(nn.Module):
    """``num_res_blocks + 1`` residual blocks and an optional x2 up-sampler keeping the width, plus the
    ``DupUp`` shortcut around them. (B, C_in, T, H, W) -> (B, C_out, T', H', W')."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, temporal: bool, up: bool,
                 dropout: float = 0.0):
        super().__init__()
        self.avg_shortcut = DupUp(in_dim, out_dim, 2 if temporal else 1, 2) if up else None
        dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
        self.resnets = nn.ModuleList([ResidualBlock(a, b, dropout) for a, b in zip(dims[:-1], dims[1:])])
        self.upsampler = (Resample(out_dim, "upsample3d" if temporal else "upsample2d", upsample_out_dim=out_dim)
                          if up else None)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        first = cache is None or cache.get(self) is None          # the chunk holding the video's first frame
        if cache is not None:
            cache.put(self, True)
        h = x
        for resnet in self.resnets:
            h = resnet(h, cache)
        if self.upsampler is None:
            return h
        return _add(self.upsampler(h, cache), self.avg_shortcut(x, first))


class Encoder22(nn.Module):
    """Pixels (B, C_in, T, H, W) -> moments (B, 2 z_dim, 1 + (T-1)/ft, H/fs, W/fs)."""

    def __init__(self, cfg: WanVAE22Config):
        super().__init__()
        self.patch_size = cfg.patch_size
        dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
        last = len(cfg.dim_mult) - 1
        self.conv_in = CausalConv3d(cfg.in_channels * cfg.patch_size ** 2, dims[0], 3, padding=1)
        self.down_blocks = nn.ModuleList([
            ResidualDownBlock(a, b, cfg.num_res_blocks, i < last and cfg.temporal_downsample[i], i < last, cfg.dropout)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))])
        self.mid_block = MidBlock(dims[-1], cfg.dropout)
        self.norm_out = RMSNorm(dims[-1], images=False, act=True)
        self.conv_out = CausalConv3d(dims[-1], cfg.z_dim * 2, 3, padding=1)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        x = self.conv_in(patchify(x, self.patch_size), cache)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache)
        return self.conv_out(x, cache, norm=self.norm_out)


class Decoder22(nn.Module):
    """Latents (B, z_dim, T_lat, h, w) -> pixels (B, C_out, 1 + (T_lat-1)*ft, h*fs, w*fs)."""

    def __init__(self, cfg: WanVAE22Config):
        super().__init__()
        self.patch_size = cfg.patch_size
        dims = [cfg.decoder_base_dim * m for m in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        last, temporal = len(cfg.dim_mult) - 1, cfg.temporal_downsample[::-1]
        self.conv_in = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0], cfg.dropout)
        self.up_blocks = nn.ModuleList([
            ResidualUpBlock(a, b, cfg.num_res_blocks, i < last and temporal[i], i < last, cfg.dropout)
            for i, (a, b) in enumerate(zip(dims[:-1], dims[1:]))])
        self.norm_out = RMSNorm(dims[-1], images=False, act=True)
        self.conv_out = CausalConv3d(dims[-1], cfg.in_channels * cfg.patch_size ** 2, 3, padding=1)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        x = self.conv_in(x, cache)
        x = self.mid_block(x, cache)
        for block in self.up_blocks:
            x = block(x, cache)
        return unpatchify(self.conv_out(x, cache, norm=self.norm_out), self.patch_size)


class WanVAE22(VideoVAE):
    """The Wan 2.2 VAE with ``VideoVAE``'s interface: ``encode`` (B, 3, T, H, W) in [-1, 1] ->
    normalised latents (B, z_dim, T_lat, H/16, W/16), ``decode`` / ``decode_chunks`` the reverse,
    ``temporal_factor`` / ``spatial_factor`` from the config.

    Only the modules differ from ``VideoVAE`` (whose constructor builds the Wan 2.1 stack, so it is not
    called): the chunked causal driving, tiling, checks and latent normalisation are inherited.
    """

    def __init__(self, cfg: WanVAE22Config):
        nn.Module.__init__(self)
        self.cfg = cfg
        self.encoder = Encoder22(cfg)
        self.quant_conv = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.post_quant_conv = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder22(cfg)
        mean = torch.tensor(cfg.latents_mean or [0.0] * cfg.z_dim, dtype=torch.float32)
        std = torch.tensor(cfg.latents_std or [1.0] * cfg.z_dim, dtype=torch.float32)
        self.register_buffer("latents_mean", rearrange(mean, "c -> c 1 1 1"), persistent=False)
        self.register_buffer("latents_std", rearrange(std, "c -> c 1 1 1"), persistent=False)


__all__ = ["WanVAE22", "Encoder22", "Decoder22", "ResidualDownBlock", "ResidualUpBlock", "AvgDown", "DupUp",
           "patchify", "unpatchify"]
