"""The video compression network: a causal 3D convolutional VAE (Wan 2.1 structure).

A video of T frames (T == 1 or (T - 1) % ft == 0) of H x W pixels becomes ``1 + (T - 1) // ft``
latent frames of ``H / fs`` x ``W / fs``: the first frame alone, then every group of ``ft`` frames.
An image is the one-frame case of the same path. Encode and decode run chunk after chunk with a
feature cache (``causal_conv.FeatureCache``), so working memory does not grow with the video length
and chunking does not change the result. Latents are normalised per channel:
``z = (mu - latents_mean) / latents_std``.

Checkpoint layout. Module names and parameter shapes are those of diffusers' ``AutoencoderKLWan``
(``encoder.conv_in``, ``encoder.down_blocks.N.{norm1,conv1,norm2,conv2,conv_shortcut}``,
``encoder.down_blocks.N.resample.1`` / ``.time_conv``, ``encoder.mid_block.{resnets,attentions}``,
``encoder.norm_out``, ``encoder.conv_out``, ``quant_conv``, ``post_quant_conv``,
``decoder.conv_in``, ``decoder.mid_block``, ``decoder.up_blocks.N.resnets.M``,
``decoder.up_blocks.N.upsamplers.0.{resample.1,time_conv}``, ``decoder.norm_out``,
``decoder.conv_out``), so a diffusers-format Wan 2.1 VAE state dict loads with the identity map.
The original Wan release names the same tensors differently; ``wan_original_key`` translates them
(``conv1`` = quant_conv, ``conv2`` = post_quant_conv, ``encoder.downsamples`` = down_blocks,
``middle`` = mid_block, ``head`` = norm_out + conv_out, ``residual.{0,2,3,6}`` = norm1, conv1,
norm2, conv2, ``shortcut`` = conv_shortcut).
"""

from __future__ import annotations

import contextlib
import re
from typing import Iterator

import torch
from einops import rearrange
from torch import Tensor, nn

from ..configs import VAEConfig
from ..geometry import GeometryError, check_frames, check_size, group_frames, latent_frames, pixel_frames
from .causal_conv import CL3D, CausalConv3d, FeatureCache
from .vae_blocks import Decoder3d, Encoder3d

# Work per chunk: at most this many pixel positions (B * T * H * W) go through the encoder or the
# decoder at once (16 frames of 64 x 64; 4 frames, one latent frame, from 128 x 128 up). Larger chunks
# amortise per-call overhead (measured: decode time stops improving beyond ~4 latent frames at
# 64 x 64); the cap keeps working memory flat in the number of frames.
CHUNK_PIXELS = 16 * 64 * 64
LOGVAR_RANGE = (-30.0, 20.0)


class VideoVAE(nn.Module):
    """Causal video VAE. ``encode``: (B, 3, T, H, W) in [-1, 1] -> (B, z_dim, T_lat, H/fs, W/fs);
    ``decode`` the reverse. See the module docstring for the checkpoint layout."""

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder3d(cfg.in_channels, cfg.base_dim, cfg.z_dim * 2, cfg.dim_mult, cfg.num_res_blocks,
                                 cfg.attn_scales, cfg.temporal_downsample, cfg.dropout)
        self.quant_conv = CausalConv3d(cfg.z_dim * 2, cfg.z_dim * 2, 1)
        self.post_quant_conv = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder3d(cfg.base_dim, cfg.z_dim, cfg.dim_mult, cfg.num_res_blocks,
                                 cfg.temporal_downsample[::-1], cfg.dropout, cfg.in_channels)
        mean = torch.tensor(cfg.latents_mean or [0.0] * cfg.z_dim, dtype=torch.float32)
        std = torch.tensor(cfg.latents_std or [1.0] * cfg.z_dim, dtype=torch.float32)
        self.register_buffer("latents_mean", rearrange(mean, "c -> c 1 1 1"), persistent=False)
        self.register_buffer("latents_std", rearrange(std, "c -> c 1 1 1"), persistent=False)

    @property
    def temporal_factor(self) -> int:
        return self.cfg.temporal_factor

    @property
    def spatial_factor(self) -> int:
        return self.cfg.spatial_factor

    # -----------------------------------------------------------------------------------------
    # Public API
    # -----------------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None,
               chunk_frames: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """video (B, 3, T, H, W) in [-1, 1] -> normalised latents z (B, z_dim, T_lat, H/fs, W/fs).

        ``sample`` draws from the posterior (noise from ``generator`` on the CPU), else its mean.
        ``chunk_frames``: pixel frames per causal chunk after the first (a multiple of ft; default
        from ``CHUNK_PIXELS``). ``dtype``: compute dtype (e.g. torch.bfloat16 = autocast).
        """
        mean, logvar = self.encode_moments(video, chunk_frames=chunk_frames, dtype=dtype)
        if not sample:
            return mean
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return mean + torch.exp(0.5 * logvar) * noise

    @torch.no_grad()
    def encode_moments(self, video: Tensor, chunk_frames: int | None = None,
                       dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """video (B, 3, T, H, W) -> (mean, logvar), each (B, z_dim, T_lat, H/fs, W/fs), normalised space."""
        self._check_video(video)
        chunks = self._encode_chunks(video.shape, chunk_frames)
        cache, outs, start = FeatureCache(), [], 0
        with self._compute(dtype):
            for i, n in enumerate(chunks):
                cache.final = i == len(chunks) - 1
                x = self._prepare(video[:, :, start:start + n])
                outs.append(self.quant_conv(self.encoder(x, cache), cache).float())
                start += n
        return self._normalise_moments(torch.cat(outs, dim=2))

    @torch.no_grad()
    def decode(self, z: Tensor, chunk_latents: int | None = None, tile_size: int | None = None,
               tile_overlap: int | None = None, dtype: torch.dtype | None = None) -> Tensor:
        """Normalised latents z (B, z_dim, T_lat, h, w) -> video (B, 3, 1 + (T_lat-1)*ft, h*fs, w*fs) in [-1, 1].

        ``chunk_latents``: latent frames per causal chunk (default from ``CHUNK_PIXELS``).
        ``tile_size`` / ``tile_overlap`` (pixels): decode in overlapping spatial tiles blended
        linearly, for frames too large to decode at once. ``dtype``: compute dtype (autocast).
        """
        self._check_latents(z)
        if tile_size is not None:
            return self._tiled_decode(z, tile_size, tile_overlap, chunk_latents, dtype)
        B, _, T, h, w = z.shape
        fs = self.spatial_factor
        out = torch.empty(B, self.cfg.in_channels, pixel_frames(T, self.temporal_factor), h * fs, w * fs,
                          dtype=torch.float32, device=z.device)
        start = 0
        for chunk in self.decode_chunks(z, chunk_latents=chunk_latents, dtype=dtype):
            out[:, :, start:start + chunk.shape[2]] = chunk
            start += chunk.shape[2]
        return out

    def decode_chunks(self, z: Tensor, chunk_latents: int | None = None,
                      dtype: torch.dtype | None = None) -> Iterator[Tensor]:
        """Stream the decode: yields consecutive pixel chunks (B, 3, t_i, H, W) in [-1, 1], float32.

        Memory stays flat however long the video, for writers that consume frames as they come.
        Arguments are checked here, before the first chunk is asked for.
        """
        self._check_latents(z)
        B, _, T, h, w = z.shape
        if chunk_latents is None:
            chunk_latents = self._auto_chunk(B * h * w * self.spatial_factor ** 2)
        if not isinstance(chunk_latents, int) or chunk_latents < 1:
            raise ValueError(f"chunk_latents must be an integer >= 1, got {chunk_latents!r}")
        self._compute(dtype)                                  # checks dtype now
        return self._decode_stream(z, chunk_lengths(T, chunk_latents), dtype)

    @torch.no_grad()
    def _decode_stream(self, z: Tensor, chunks: list[int], dtype: torch.dtype | None) -> Iterator[Tensor]:
        cache, start = FeatureCache(), 0
        for i, n in enumerate(chunks):
            cache.final = i == len(chunks) - 1
            with self._compute(dtype):
                x = self._prepare(self._denormalise(z[:, :, start:start + n]))
                y = self.decoder(self.post_quant_conv(x, cache), cache)
            start += n
            yield y.float().clamp_(-1.0, 1.0)

    def forward(self, video: Tensor | None, generator: torch.Generator | None = None,
                sample: bool = True, latents: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Training pass, one causal pass with gradients: video (B, 3, T, H, W) ->
        (recon (B, 3, T, H, W), mean, logvar (B, z_dim, T_lat, H/fs, W/fs), normalised space).
        With ``latents`` (normalised) instead of a video, only the decoder runs, on those: (recon,
        latents, zeros) (decoder training on latents made elsewhere, e.g. by a DiT)."""
        if latents is not None:
            if video is not None:
                raise ValueError("pass either video or latents, not both")
            self._check_latents(latents)
            recon = self.decoder(self.post_quant_conv(self._prepare(self._denormalise(latents))))
            return recon.float(), latents, torch.zeros_like(latents)
        self._check_video(video)
        x = self._prepare(video)
        mean, logvar = self._normalise_moments(self.quant_conv(self.encoder(x)).float())
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            z = mean + torch.exp(0.5 * logvar) * noise
        recon = self.decoder(self.post_quant_conv(self._prepare(self._denormalise(z))))
        return recon.float(), mean, logvar

    # -----------------------------------------------------------------------------------------
    # Tiled decode
    # -----------------------------------------------------------------------------------------

    def _tiled_decode(self, z: Tensor, tile_size: int, tile_overlap: int | None,
                      chunk_latents: int | None, dtype: torch.dtype | None) -> Tensor:
        """Decode overlapping spatial tiles and blend them with linear ramps over the overlaps."""
        fs = self.spatial_factor
        if tile_overlap is None:
            tile_overlap = tile_size // 4
        if tile_size < 2 * fs or not 0 <= tile_overlap < tile_size:
            raise ValueError(f"tile_size={tile_size} must be >= {2 * fs} pixels and tile_overlap={tile_overlap} "
                             f"in [0, tile_size)")
        tile, overlap = tile_size // fs, tile_overlap // fs
        B, _, T, h, w = z.shape
        out = torch.zeros(B, self.cfg.in_channels, pixel_frames(T, self.temporal_factor), h * fs, w * fs,
                          dtype=torch.float32, device=z.device)
        weight = torch.zeros(h * fs, w * fs, dtype=torch.float32, device=z.device)
        for i in _tile_starts(h, tile, overlap):
            for j in _tile_starts(w, tile, overlap):
                sub = z[:, :, :, i:i + tile, j:j + tile]
                y = self.decode(sub, chunk_latents=chunk_latents, dtype=dtype)
                ramp_h = _ramp(sub.shape[3] * fs, overlap * fs, i > 0, i + tile < h)
                ramp_w = _ramp(sub.shape[4] * fs, overlap * fs, j > 0, j + tile < w)
                wt = (ramp_h[:, None] * ramp_w[None, :]).to(out.device)                    # (th, tw)
                rows, cols = slice(i * fs, i * fs + y.shape[3]), slice(j * fs, j * fs + y.shape[4])
                out[:, :, :, rows, cols] += y * wt
                weight[rows, cols] += wt
        return out.div_(weight)

    # -----------------------------------------------------------------------------------------
    # Internals
    # -----------------------------------------------------------------------------------------

    def _compute(self, dtype: torch.dtype | None):
        """Autocast context when ``dtype`` is lower than the parameters' (else nothing)."""
        param_dtype = self.post_quant_conv.weight.dtype
        if dtype is None or dtype == param_dtype:
            return contextlib.nullcontext()
        if dtype not in (torch.bfloat16, torch.float16):
            raise ValueError(f"dtype={dtype} is not allowed for {param_dtype} weights: use None, "
                             f"{param_dtype}, torch.bfloat16 or torch.float16")
        return torch.autocast(self.post_quant_conv.weight.device.type, dtype=dtype)

    def _prepare(self, x: Tensor) -> Tensor:
        """Channels-last copy in the parameters' dtype (kept float32 under autocast)."""
        dtype = self.post_quant_conv.weight.dtype
        return x.to(dtype=dtype).contiguous(memory_format=CL3D)

    def _denormalise(self, z: Tensor) -> Tensor:
        return z * self.latents_std.to(z) + self.latents_mean.to(z)

    def _normalise_moments(self, moments: Tensor) -> tuple[Tensor, Tensor]:
        mu, logvar = moments.chunk(2, dim=1)
        std = self.latents_std.to(mu)
        mean = (mu - self.latents_mean.to(mu)) / std
        logvar = logvar.clamp(*LOGVAR_RANGE) - 2.0 * torch.log(std)
        return mean, logvar

    def _auto_chunk(self, pixels_per_frame: int) -> int:
        """Latent frames per chunk: as many groups of ft frames as fit in ``CHUNK_PIXELS``."""
        return max(1, CHUNK_PIXELS // max(1, pixels_per_frame * self.temporal_factor))

    def _encode_chunks(self, shape: tuple[int, ...], chunk_frames: int | None) -> list[int]:
        """Pixel frames per chunk: 1 + k*ft first (the first frame leads), then k*ft each."""
        B, _, T, H, W = shape
        ft = self.temporal_factor
        if chunk_frames is None:
            chunk_frames = self._auto_chunk(B * H * W) * ft
        if not isinstance(chunk_frames, int) or chunk_frames < ft or chunk_frames % ft:
            raise ValueError(f"chunk_frames={chunk_frames} must be a positive multiple of the temporal "
                             f"factor {ft}")
        lat = chunk_lengths(latent_frames(T, ft), chunk_frames // ft)
        return [pixel_frames(lat[0], ft)] + [group_frames(n, ft) for n in lat[1:]]

    def _check_video(self, video: Tensor) -> None:
        if not isinstance(video, Tensor) or video.dim() != 5 or video.shape[1] != self.cfg.in_channels:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise ValueError(f"video must be a tensor (B, {self.cfg.in_channels}, T, H, W), got {shape}")
        check_frames(video.shape[2], self.temporal_factor, name="video frames")
        check_size(video.shape[3], video.shape[4], self.spatial_factor, name="video")

    def _check_latents(self, z: Tensor) -> None:
        if not isinstance(z, Tensor) or z.dim() != 5 or z.shape[1] != self.cfg.z_dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"latents must be a tensor (B, {self.cfg.z_dim}, T_lat, h, w), got {shape}")
        if min(z.shape[2:]) < 1:
            raise GeometryError(f"latents have an empty dimension: {tuple(z.shape)}")


def chunk_lengths(total: int, cap: int) -> list[int]:
    """Split ``total`` into the fewest chunks of at most ``cap``, as even as possible (larger first)."""
    count = -(-total // cap)
    base, extra = divmod(total, count)
    return [base + 1] * extra + [base] * (count - extra)


def _tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering [0, size) with the given overlap; the last tile ends at ``size``."""
    if tile >= size:
        return [0]
    stride = max(1, tile - overlap)
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def _ramp(n: int, overlap: int, ramp_in: bool, ramp_out: bool) -> Tensor:
    """Blend weights (n,): 1 inside, linear ramps over ``overlap`` at the sides that have neighbours."""
    w = torch.ones(n)
    k = min(overlap, n)
    if k:
        up = torch.arange(1, k + 1, dtype=torch.float32) / (k + 1)
        if ramp_in:
            w[:k] = torch.minimum(w[:k], up)
        if ramp_out:
            w[n - k:] = torch.minimum(w[n - k:], up.flip(0))
    return w


# ---------------------------------------------------------------------------------------------
# Checkpoint names of the original Wan 2.1 release
# ---------------------------------------------------------------------------------------------

_WAN_RULES = [
    (r"^conv1\.", "quant_conv."), (r"^conv2\.", "post_quant_conv."),
    (r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."),
    (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."), (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
    (r"^encoder\.downsamples\.", "encoder.down_blocks."),
    (r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0."),
    (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."),
    (r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1."),
    (r"\.residual\.0\.", ".norm1."), (r"\.residual\.2\.", ".conv1."),
    (r"\.residual\.3\.", ".norm2."), (r"\.residual\.6\.", ".conv2."), (r"\.shortcut\.", ".conv_shortcut."),
]


def wan_original_key(key: str, num_res_blocks: int = 2) -> str:
    """Name in this module of a tensor named ``key`` in an original Wan 2.1 VAE checkpoint.

    The decoder's flat ``decoder.upsamples.N`` list becomes ``decoder.up_blocks.S.resnets.M`` /
    ``.upsamplers.0`` (``num_res_blocks + 1`` residual blocks per stage, then a resampler).
    """
    m = re.match(r"^decoder\.upsamples\.(\d+)\.(.*)$", key)
    if m:
        idx, rest = int(m.group(1)), m.group(2)
        per_stage = num_res_blocks + 2                     # resnets + resampler (last stage: no resampler)
        stage, pos = divmod(idx, per_stage)
        if pos <= num_res_blocks:
            key = f"decoder.up_blocks.{stage}.resnets.{pos}.{rest}"
        else:
            key = f"decoder.up_blocks.{stage}.upsamplers.0.{rest}"
    for pattern, repl in _WAN_RULES:
        key = re.sub(pattern, repl, key)
    return key


def decoded_frames(latent_frames: int, cfg: VAEConfig) -> int:
    """Pixel frames produced by decoding ``latent_frames`` latent frames."""
    return pixel_frames(latent_frames, cfg.temporal_factor)


__all__ = ["VideoVAE", "FeatureCache", "wan_original_key", "decoded_frames", "chunk_lengths", "CHUNK_PIXELS"]
