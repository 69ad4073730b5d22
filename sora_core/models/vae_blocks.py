"""Building blocks of the causal video VAE: the Wan 2.1 structure under diffusers' module names.

Every module here (and ``causal_conv.CausalConv3d``) has the same parameters, shapes and names as its
counterpart in diffusers' ``AutoencoderKLWan`` (``WanCausalConv3d``, ``WanRMS_norm``, ``WanResample``,
``WanResidualBlock``, ``WanAttentionBlock``, ``WanMidBlock``, ``WanUpBlock``, ``WanEncoder3d``,
``WanDecoder3d``), so a state dict moves between the two unchanged. What differs is how the work is scheduled:

* Causality is carried by a ``FeatureCache`` passed down the call: each causal layer keeps the last
  frames it saw, so a video can be fed in chunks of any length and the result equals one pass over
  the whole video. Without a cache a call is one causal pass (training). The cache, the causal
  convolution and the inference convolution are in ``causal_conv``.
* Activations stay channels-last (N, C, T, H, W with C innermost in memory): the per-frame 2D
  layers then see a free ``(b t) c h w`` view, and oneDNN's convolutions run without reorders.
* Spatial zero padding is done by the convolutions themselves; only the causal time padding is
  concatenated (the cached frames in front of the chunk).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from .causal_conv import CL3D, CausalConv3d, FeatureCache, cached_conv


# ---------------------------------------------------------------------------------------------
# Layers
# ---------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    """RMS norm over channels (dim 1): x / ||x|| * sqrt(C) * gamma (== x / rms(x) * gamma).

    ``images`` only sets the gamma shape, (C, 1, 1) for 4D inputs or (C, 1, 1, 1) for 5D ones, as in
    the Wan checkpoints. With ``act`` the SiLU that follows every norm in the VAE is fused in. The
    norm is reduced in float32 for float32 inputs; bf16/fp16 inputs reduce with float accumulation.
    Without gradients ``out`` receives the result (in place, no temporaries of the input's size).
    """

    def __init__(self, dim: int, images: bool = True, act: bool = False):
        super().__init__()
        self.scale = dim ** 0.5
        self.act = act
        self.gamma = nn.Parameter(torch.ones((dim, 1, 1) if images else (dim, 1, 1, 1)))

    def forward(self, x: Tensor, out: Tensor | None = None) -> Tensor:
        gamma = self.gamma.to(x.dtype).reshape(-1, *([1] * (x.dim() - 2)))
        if torch.is_grad_enabled():
            inv = torch.linalg.vector_norm(x, dim=1, keepdim=True, dtype=torch.float32)
            y = x * (self.scale / inv.clamp_min(1e-12)).to(x.dtype) * gamma
            return F.silu(y) if self.act else y
        inv = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        inv = inv.clamp_min_(1e-12).reciprocal_().mul_(self.scale)
        out = torch.mul(x, inv, out=out) if out is not None else torch.mul(x, inv)
        out.mul_(gamma)
        return F.silu(out, inplace=True) if self.act else out


class AttentionBlock(nn.Module):
    """Single-head self-attention within each frame (no mixing across time), residual.

    x: (B, C, T, H, W) -> same. Parameters as ``WanAttentionBlock`` (1x1 Conv2d to_qkv and proj).
    """

    def __init__(self, dim: int):
        super().__init__()
        self.norm = RMSNorm(dim, images=True)
        self.to_qkv = nn.Conv2d(dim, dim * 3, 1)
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        B, C, T, H, W = x.shape
        h = self.norm(x)
        h = rearrange(h, "b c t h w -> (b t) (h w) c")
        qkv = F.linear(h, self.to_qkv.weight.flatten(1), self.to_qkv.bias)          # (BT, HW, 3C)
        q, k, v = rearrange(qkv, "n l (three c) -> three n 1 l c", three=3)
        h = F.scaled_dot_product_attention(q, k, v)                                    # (BT, 1, HW, C)
        h = F.linear(rearrange(h, "n 1 l c -> n l c"), self.proj.weight.flatten(1), self.proj.bias)
        h = rearrange(h, "(b t) (h w) c -> b c t h w", b=B, h=H)
        return x + h


class ResidualBlock(nn.Module):
    """norm-SiLU-causal conv, twice, plus a (1x1x1 conv) shortcut. x: (B, C_in, T, H, W) -> (B, C_out, T, H, W)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = RMSNorm(in_dim, images=False, act=True)
        self.conv1 = CausalConv3d(in_dim, out_dim, 3, padding=1)
        self.norm2 = RMSNorm(out_dim, images=False, act=True)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = CausalConv3d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = CausalConv3d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        h = self.conv_shortcut(x, cache) if isinstance(self.conv_shortcut, CausalConv3d) else x
        x = self.conv1(x, cache, norm=self.norm1)
        if self.training and self.dropout.p > 0:
            x = self.conv2(self.dropout(self.norm2(x)), cache)
        else:
            x = self.conv2(x, cache, norm=self.norm2)
        return x.add_(h) if not torch.is_grad_enabled() else x + h


def _per_frame(fn, x: Tensor) -> Tensor:
    """Apply a 2D module to every frame: (B, C, T, H, W) -> (B, C', T, H', W') (a view when channels-last)."""
    B = x.shape[0]
    y = fn(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", b=B)


class Resample(nn.Module):
    """Spatial x2 up/down sampling per frame, with an optional causal x2 in time (the '3d' modes).

    mode: 'upsample2d' | 'upsample3d' | 'downsample2d' | 'downsample3d' | 'none'.
    The video's first frame is never resampled in time: it alone becomes the first output frame,
    every later pair of frames (down) or frame (up) becomes one (down) or two (up) frames.
    """

    def __init__(self, dim: int, mode: str, upsample_out_dim: int | None = None):
        super().__init__()
        self.mode = mode
        out_dim = upsample_out_dim if upsample_out_dim is not None else dim // 2
        if mode in ("upsample2d", "upsample3d"):
            self.resample = nn.Sequential(nn.Upsample(scale_factor=(2.0, 2.0), mode="nearest-exact"),
                                          nn.Conv2d(dim, out_dim, 3, padding=1))
        elif mode in ("downsample2d", "downsample3d"):
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(dim, dim, 3, stride=(2, 2)))
        elif mode == "none":
            self.resample = nn.Identity()
        else:
            raise ValueError(f"Resample mode={mode!r} is unknown; allowed: upsample2d, upsample3d, "
                             "downsample2d, downsample3d, none")
        if mode == "upsample3d":
            self.time_conv = CausalConv3d(dim, dim * 2, (3, 1, 1), padding=(1, 0, 0))
        elif mode == "downsample3d":
            self.time_conv = CausalConv3d(dim, dim, (3, 1, 1), stride=(2, 1, 1), padding=(0, 0, 0))

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        if self.mode == "upsample3d":
            x = self._time_up(x, cache)
        x = _per_frame(lambda frames: self._spatial(frames, cache), x)
        if self.mode == "downsample3d":
            x = self._time_down(x, cache)
        return x

    def _spatial(self, x: Tensor, cache: FeatureCache | None) -> Tensor:
        """Per-frame spatial resampling: (N, C, H, W) -> (N, C', 2H, 2W) or (N, C', H/2, W/2)."""
        if self.mode == "none":
            return x
        if self.mode.startswith("upsample"):
            x = F.interpolate(x, scale_factor=2.0, mode="nearest")   # at scale 2 the same as nearest-exact
        else:
            x = self.resample[0](x)                                      # zero pad right and bottom
        conv = self.resample[1]
        return conv(x) if cache is None or torch.is_grad_enabled() else cached_conv(conv, x, cache)

    def _time_up(self, x: Tensor, cache: FeatureCache | None) -> Tensor:
        """(B, C, T, H, W) -> (B, C, 2T - 1, ...) at the video start, else (B, C, 2T, ...)."""
        started = cache is not None and cache.get(self) is not None
        head, rest = (x[:, :, :0], x) if started else (x[:, :, :1], x[:, :, 1:])
        if cache is not None:
            cache.put(self, True)
        if rest.shape[2] == 0:
            return head
        y = self.time_conv(rest, cache)                                               # (B, 2C, T, H, W)
        y = rearrange(y, "b (two c) t h w -> b c (t two) h w", two=2)
        y = y.contiguous(memory_format=CL3D)
        return torch.cat([head, y], dim=2) if head.shape[2] else y

    def _time_down(self, x: Tensor, cache: FeatureCache | None) -> Tensor:
        """(B, C, 1 + 2k, ...) -> (B, C, 1 + k, ...) at the video start, else (B, C, 2k, ...) -> (B, C, k, ...)."""
        prev = cache.get(self) if cache is not None else None
        if cache is not None and cache.keeps():
            cache.put(self, x[:, :, -1:].clone())
        if prev is None:
            if x.shape[2] == 1:
                return x
            return torch.cat([x[:, :, :1], self.time_conv(x)], dim=2)
        return self.time_conv(torch.cat([prev, x], dim=2))


# ---------------------------------------------------------------------------------------------
# Groups of layers
# ---------------------------------------------------------------------------------------------

class MidBlock(nn.Module):
    """Residual block, attention, residual block (at the lowest resolution)."""

    def __init__(self, dim: int, dropout: float = 0.0, num_layers: int = 1):
        super().__init__()
        self.attentions = nn.ModuleList([AttentionBlock(dim) for _ in range(num_layers)])
        self.resnets = nn.ModuleList([ResidualBlock(dim, dim, dropout) for _ in range(num_layers + 1)])

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        x = self.resnets[0](x, cache)
        for attn, resnet in zip(self.attentions, self.resnets[1:]):
            x = resnet(attn(x), cache)
        return x


class UpBlock(nn.Module):
    """``num_res_blocks + 1`` residual blocks then an optional upsampler (decoder stage)."""

    def __init__(self, in_dim: int, out_dim: int, num_res_blocks: int, dropout: float = 0.0,
                 upsample_mode: str | None = None):
        super().__init__()
        dims = [in_dim] + [out_dim] * (num_res_blocks + 1)
        self.resnets = nn.ModuleList([ResidualBlock(a, b, dropout) for a, b in zip(dims[:-1], dims[1:])])
        self.upsamplers = nn.ModuleList([Resample(out_dim, upsample_mode)]) if upsample_mode else None

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        for resnet in self.resnets:
            x = resnet(x, cache)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x, cache)
        return x


def _run(layer: nn.Module, x: Tensor, cache: FeatureCache | None) -> Tensor:
    return layer(x) if isinstance(layer, AttentionBlock) else layer(x, cache)


class Encoder3d(nn.Module):
    """Pixels (B, C_in, T, H, W) -> moments (B, out_dim, 1 + (T-1)/ft, H/fs, W/fs).

    ``down_blocks`` is the flat Wan 2.1 list: per stage ``num_res_blocks`` residual blocks (each
    followed by attention when the stage's scale is in ``attn_scales``), then a Resample.
    """

    def __init__(self, in_channels: int, dim: int, out_dim: int, dim_mult, num_res_blocks: int,
                 attn_scales, temporal_downsample, dropout: float = 0.0):
        super().__init__()
        dims = [dim * u for u in (1, *dim_mult)]
        self.conv_in = CausalConv3d(in_channels, dims[0], 3, padding=1)
        blocks, scale = [], 1.0
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(num_res_blocks):
                blocks.append(ResidualBlock(d_in, d_out, dropout))
                if scale in attn_scales:
                    blocks.append(AttentionBlock(d_out))
                d_in = d_out
            if i != len(dim_mult) - 1:
                blocks.append(Resample(d_out, "downsample3d" if temporal_downsample[i] else "downsample2d"))
                scale /= 2.0
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock(dims[-1], dropout)
        self.norm_out = RMSNorm(dims[-1], images=False, act=True)
        self.conv_out = CausalConv3d(dims[-1], out_dim, 3, padding=1)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        x = self.conv_in(x, cache)
        for layer in self.down_blocks:
            x = _run(layer, x, cache)
        x = self.mid_block(x, cache)
        return self.conv_out(x, cache, norm=self.norm_out)


class Decoder3d(nn.Module):
    """Latents (B, z_dim, T_lat, h, w) -> pixels (B, C_out, 1 + (T_lat-1)*ft, h*fs, w*fs).

    Like diffusers' ``WanDecoder3d`` the decoder has no attention outside the middle block.
    """

    def __init__(self, dim: int, z_dim: int, dim_mult, num_res_blocks: int, temporal_upsample,
                 dropout: float = 0.0, out_channels: int = 3):
        super().__init__()
        dims = [dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
        self.conv_in = CausalConv3d(z_dim, dims[0], 3, padding=1)
        self.mid_block = MidBlock(dims[0], dropout)
        blocks = []
        for i, (d_in, d_out) in enumerate(zip(dims[:-1], dims[1:])):
            d_in = d_in // 2 if i > 0 else d_in       # the previous upsampler halves the channels
            mode = None
            if i != len(dim_mult) - 1:
                mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
            blocks.append(UpBlock(d_in, d_out, num_res_blocks, dropout, mode))
        self.up_blocks = nn.ModuleList(blocks)
        self.norm_out = RMSNorm(dims[-1], images=False, act=True)
        self.conv_out = CausalConv3d(dims[-1], out_channels, 3, padding=1)

    def forward(self, x: Tensor, cache: FeatureCache | None = None) -> Tensor:
        x = self.conv_in(x, cache)
        x = self.mid_block(x, cache)
        for block in self.up_blocks:
            x = block(x, cache)
        return self.conv_out(x, cache, norm=self.norm_out)


__all__ = ["CL3D", "FeatureCache", "cached_conv", "CausalConv3d", "RMSNorm", "AttentionBlock", "ResidualBlock",
           "Resample", "MidBlock", "UpBlock", "Encoder3d", "Decoder3d"]
