"""Stage 1: the video VAE (video compression network) on bucketed world clips.

Loss = L1 or MSE (``recon_loss``) + ``ssim_weight`` * (1 - SSIM) (kornia, per frame) + ``kl_weight`` * KL. Training runs
with identity latent normalisation; at export the per-channel mean and std of the posterior means over
held-out clips go into the config, so the shipped VAE yields normalised latents.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from .buckets import BucketTable
from .common import autocast, step_generator, step_seed
from .data import WorldClips
from .loop import StageTrainer, check_export_dir
from .shared import (TextContextCache, encoder_id, flow_pair, grow_mask, parse_bucket, resolve_weights,
                     trained_pair_paths)


# ---------------------------------------------------------------------------------------------
# Losses and measures
# ---------------------------------------------------------------------------------------------

def kl_loss(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, 1)) averaged over every latent element."""
    return 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def ssim_frames(a: torch.Tensor, b: torch.Tensor, window: int = 7) -> torch.Tensor:
    """Mean SSIM over frames of two videos (B, 3, T, H, W) in [-1, 1]."""
    import kornia
    fa = rearrange((a + 1) / 2, "b c t h w -> (b t) c h w")
    fb = rearrange((b + 1) / 2, "b c t h w -> (b t) c h w")
    return kornia.metrics.ssim(fa, fb, window_size=window, max_val=1.0).mean()


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two videos in [-1, 1] after rounding to uint8 (the saved-file view)."""
    qa = ((a.float().clamp(-1, 1) + 1) * 127.5).round()
    qb = ((b.float().clamp(-1, 1) + 1) * 127.5).round()
    mse = float((qa - qb).pow(2).mean())
    return 99.0 if mse == 0 else 10.0 * math.log10(255.0 ** 2 / mse)


def random_crop(video: torch.Tensor, size: int | None, rng) -> torch.Tensor:
    """A ``size`` x ``size`` crop at a random place of each clip (B, 3, T, H, W); None = whole clips."""
    H, W = video.shape[-2:]
    if size is None or (size >= H and size >= W):
        return video
    size_h, size_w = min(size, H), min(size, W)
    tops = rng.integers(0, H - size_h + 1, size=len(video))
    lefts = rng.integers(0, W - size_w + 1, size=len(video))
    return torch.stack([v[..., int(t):int(t) + size_h, int(l):int(l) + size_w] for v, t, l in zip(video, tops, lefts)])


@torch.no_grad()
def object_pixel_weight(video: torch.Tensor, weight: float, grow: int = 2) -> torch.Tensor:
    """(B, 1, T, H, W) loss weights of clips (B, 3, T, H, W) in [-1, 1]: 1 + ``weight`` on the world's
    object pixels (``metrics.object_masks``), grown by ``grow`` pixels so the background at an object's
    corners counts too."""
    from ..media.video_io import tensor_to_frames
    from ..world.metrics import object_masks
    m = torch.from_numpy(np.stack([object_masks(tensor_to_frames(v)) for v in video])).float()
    return 1.0 + weight * grow_mask(m[:, None], grow).to(video.device)


@torch.no_grad()
def reconstruct(vae: nn.Module, video: torch.Tensor, bf16: bool = False) -> torch.Tensor:
    """Encode (posterior mean) and decode, clip by clip: (B, 3, T, H, W) -> same shape."""
    out = []
    with autocast(str(video.device), bf16):
        for clip in video.split(1):
            out.append(vae.decode(vae.encode(clip)).float())
    return torch.cat(out)


@torch.no_grad()
def latent_stats(vae: nn.Module, clips: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of the raw (unnormalised) posterior means of ``clips`` (N, 3, T, H, W).

    ``vae`` may carry statistics already (a run started from a trained VAE): its normalisation is
    undone first, so the result is what goes into a config's ``latents_mean`` / ``latents_std``.
    """
    means = [vae.encode_moments(c)[0].float() * vae.latents_std + vae.latents_mean for c in clips.split(1)]
    z = torch.cat([rearrange(m, "b c t h w -> c (b t h w)") for m in means], dim=1)
    return tuple(z.mean(1).tolist()), tuple(z.std(1).clamp_min(1e-4).tolist())


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------

class VAETrainer(StageTrainer):
    stage = "vae"
    export_names = ("vae.safetensors",)
    plot_keys = ("loss", "l1", "kl")

    def __init__(self, preset, run_dir, env=None, resume=False, progress=True, init_path: str | None = None):
        self.init_path = init_path
        super().__init__(preset, run_dir, env, resume, progress)

    def build(self) -> None:
        from ..configs import replace, vae_preset
        from ..models.vae import VideoVAE
        p = self.preset
        path = self.init_path or p.init_weights
        if path:                       # continue from trained weights (keeping their latent statistics)
            from ..weights import load_component
            self.module, self.cfg = load_component(str(resolve_weights(path)), kind="vae")
        else:
            self.cfg = replace(vae_preset(p.vae), latents_mean=(), latents_std=())
            self.module = init_for_training(VideoVAE(self.cfg))
        if not p.train_encoder:
            if not self.cfg.latents_std:
                raise ValueError("decoder-only training needs a trained VAE with latent statistics: pass --vae "
                                 "an exported vae.safetensors")
            for m in (self.module.encoder, self.module.quant_conv):
                m.requires_grad_(False)
        self.buckets = BucketTable.from_dict(p.buckets)
        self.buckets.validate(self.cfg.temporal_factor, self.cfg.spatial_factor)
        if p.crop is not None and (p.crop < 1 or p.crop % self.cfg.spatial_factor):
            raise ValueError(f"crop={p.crop} must be a positive multiple of the VAE's spatial factor "
                             f"{self.cfg.spatial_factor}")
        self.data = WorldClips(self.buckets, p.seed, p.fps, 0.0, self.env.rank, self.env.world_size,
                               object_probs=p.object_probs, shape_probs=p.shape_probs, size_probs=p.size_probs)
        self.dit = self.text_context = None
        if p.denoised_dit is not None:
            self._load_dit(p.denoised_dit)

    def _load_dit(self, source: str) -> None:
        """The frozen DiT (and its text encoder) whose x0 predictions the decoder learns to decode."""
        from ..weights import load_component
        paths = trained_pair_paths(source, encoder_id(self.module), f"denoised_dit {source}")
        dit, _ = load_component(paths[0], kind="dit")
        text_encoder, _ = load_component(paths[1], kind="text_encoder")
        self.dit = dit.float().eval().requires_grad_(False).to(self.env.device)
        text_encoder = text_encoder.float().eval().requires_grad_(False).to(self.env.device)
        self.text_context = TextContextCache(text_encoder, self.env.device, self.preset.loop.bf16)

    def configs(self) -> dict:
        return {"vae": self.cfg}

    def inputs(self) -> dict:
        return {"init_weights": self.init_path or self.preset.init_weights, "denoised_dit": self.preset.denoised_dit}

    @torch.no_grad()
    def denoised_latents(self, video: torch.Tensor, captions: list[str], step: int, frac: float | None = None,
                         t_value: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(latents (B, C, T', h, w), denoised (B,) bool) of whole clips: the frozen encoder's means, and
        for ``denoised_frac`` of the clips instead the DiT's guided x0 prediction from those latents
        noised to a t drawn from ``denoised_t`` (what the sampler's last step hands the decoder)."""
        p, dev = self.preset, self.env.device
        rng = np.random.default_rng(step_seed(p.seed, step, self.env.rank, 5))
        gen = step_generator(p.seed, step, self.env.rank, 6)
        with autocast(dev, p.loop.bf16):
            z = torch.cat([self.module.encode(c) for c in video.split(1)]).float()
        pick = torch.from_numpy(rng.random(len(z)) < (p.denoised_frac if frac is None else frac))
        t = torch.from_numpy(rng.uniform(*p.denoised_t, size=len(z))).float()
        if t_value is not None:
            t = torch.full_like(t, t_value)
        noise = torch.randn(z.shape, generator=gen)
        if not pick.any():
            return z, pick
        idx = pick.nonzero()[:, 0]
        zi, ti = z[idx], t[idx].to(dev)
        t_frames = ti[:, None].expand(-1, z.shape[2])
        x_t, _ = flow_pair(zi, noise[idx].to(dev), t_frames)
        cond, cmask = self.text_context([captions[i] for i in idx.tolist()])
        uncond, umask = self.text_context([""] * len(idx))
        with autocast(dev, p.loop.bf16):
            v = self.dit(x_t, t_frames, cond, cmask).float()
            if p.denoised_cfg != 1.0:
                vu = self.dit(x_t, t_frames, uncond, umask).float()
                v = vu + p.denoised_cfg * (v - vu)
        z = z.clone()
        z[idx] = x_t - ti[:, None, None, None, None] * v
        return z, pick

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        p = self.preset
        rng = np.random.default_rng(step_seed(p.seed, step, self.env.rank, 4))
        if self.dit is not None:
            return self._denoised_loss(step, rng)
        x = random_crop(self.data.batch_at(step).video, p.crop, rng).to(self.env.device)
        gen = step_generator(p.seed, step, self.env.rank, 1)
        with autocast(self.env.device, p.loop.bf16):
            recon, mean, logvar = self.model(x, gen, sample=p.sample_posterior)
        kl = kl_loss(mean.float(), logvar.float())
        loss, metrics = self._recon_loss(recon.float(), x)
        return loss + p.kl_weight * kl, {**metrics, "kl": float(kl.detach())}

    def _recon_loss(self, recon: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, dict]:
        """L1 or MSE (``recon_loss``; weighted by ``object_pixel_weight`` when ``object_weight`` > 0) +
        ``ssim_weight`` * (1 - SSIM), and the plain l1 / mse / ssim figures."""
        p = self.preset
        err = recon - x
        l1, mse = err.abs().mean(), err.pow(2).mean()
        ssim = ssim_frames(recon, x) if p.ssim_weight else torch.zeros(())
        if p.object_weight > 0:
            w = object_pixel_weight(x, p.object_weight)
            per = err.pow(2) if p.recon_loss == "mse" else err.abs()
            rec = (per * w).sum() / (w.sum() * x.shape[1])
        else:
            rec = mse if p.recon_loss == "mse" else l1
        loss = rec + p.ssim_weight * (1.0 - ssim)
        return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "ssim": float(ssim.detach())}

    def _denoised_loss(self, step: int, rng) -> tuple[torch.Tensor, dict]:
        """Decoder-only loss on latents of whole clips (clean or DiT-denoised), decoded over a random
        ``crop`` x ``crop`` window: the same window of the latents and of the clip."""
        p = self.preset
        batch = self.data.batch_at(step)
        x = batch.video.to(self.env.device)
        z, pick = self.denoised_latents(x, batch.captions, step)
        fs = self.cfg.spatial_factor
        H, W = x.shape[-2:]
        ch, cw = (H, W) if p.crop is None else (min(p.crop, H), min(p.crop, W))
        tops = rng.integers(0, (H - ch) // fs + 1, size=len(x)) * fs
        lefts = rng.integers(0, (W - cw) // fs + 1, size=len(x)) * fs
        zc = torch.stack([zi[..., t // fs:(t + ch) // fs, l // fs:(l + cw) // fs] for zi, t, l in zip(z, tops, lefts)])
        xc = torch.stack([xi[..., t:t + ch, l:l + cw] for xi, t, l in zip(x, tops, lefts)])
        with autocast(self.env.device, p.loop.bf16):
            recon, _, _ = self.model(None, latents=zc)
        loss, metrics = self._recon_loss(recon.float(), xc)
        return loss, {**metrics, "kl": 0.0, "denoised_frac": float(pick.float().mean())}

    def eval_clips(self) -> torch.Tensor:
        return self._eval_batch().video.to(self.env.device)

    def _eval_batch(self):
        if not hasattr(self, "_eval"):
            self._eval = self.data.eval_batch(self.preset.eval_clips, parse_bucket(self.preset.eval_bucket))
        return self._eval

    def evaluate(self, ema_module: nn.Module) -> dict:
        """Held-out round-trip PSNR / SSIM; with a DiT also ``psnr_denoised``: the clips decoded from the
        DiT's x0 prediction at t = 0.15 (their descriptive captions; the same latents at every eval)."""
        x = self.eval_clips()
        recon = reconstruct(ema_module, x, self.preset.loop.bf16)
        out = {"psnr": psnr(recon, x), "ssim_eval": float(ssim_frames(recon.clamp(-1, 1), x))}
        if self.dit is not None:
            if not hasattr(self, "_eval_denoised"):
                self._eval_denoised = self.denoised_latents(x, self._eval_batch().captions, step=10**9, frac=1.0, t_value=0.15)[0]
            with torch.no_grad(), autocast(self.env.device, self.preset.loop.bf16):
                dec = torch.cat([ema_module.decode(z) for z in self._eval_denoised.split(1)]).float()
            out["psnr_denoised"] = psnr(dec, x)
        return out

    def export(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """EMA VAE with per-channel latent statistics -> ``out_dir/vae.safetensors``.

        The statistics are measured here when the encoder was trained, else kept from the init file.
        """
        from ..configs import replace
        from ..models.vae import VideoVAE
        from ..weights import save_component
        out = check_export_dir(out_dir, self.export_names, overwrite) / self.export_names[0]
        ema, cfg = self.ema_module(), self.cfg
        if self.preset.train_encoder:
            clips = WorldClips(self.buckets, self.preset.seed + 1, self.preset.fps).eval_batch(
                self.preset.stats_clips, parse_bucket(self.preset.eval_bucket)).video.to(self.env.device)
            mean, std = latent_stats(ema, clips)
            cfg = replace(self.cfg, latents_mean=mean, latents_std=std)
        vae = VideoVAE(cfg)
        vae.load_state_dict(ema.state_dict())         # the statistics live in the config, not the weights
        x = self.eval_clips()
        meta = {"train_stage": "vae", "train_preset": self.preset.name, "train_steps": str(self.step),
                "eval_psnr": f"{psnr(reconstruct(vae.eval(), x), x):.2f}", "encoder_id": encoder_id(vae)}
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        save_component(out, vae, cfg, metadata=meta)
        return [out]


@torch.no_grad()
def init_for_training(vae: nn.Module) -> nn.Module:
    """Start-of-training initialisation that keeps more of the input visible at the output.

    With PyTorch's default init, the conv biases and the 1x1 quant/post-quant convs bury the
    per-clip signal (e.g. a clip's colours) under constants: at the decoder output it is ~3% of the
    activations (~20% with zero biases and identity quant/post-quant convs). The posterior starts
    narrow (logvar -8) so its noise does not drown latent means of ~0.2. Measured here, this helps on
    a solid-colour probe but the world-clip loss curve stays about the same (docs/training.md).
    """
    for m in vae.modules():
        if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.bias is not None:
            m.bias.zero_()
    for conv in (vae.quant_conv, vae.post_quant_conv):
        w = torch.zeros_like(conv.weight)
        n = min(w.shape[0], w.shape[1])
        w[torch.arange(n), torch.arange(n)] = 1.0
        conv.weight.copy_(w)
    vae.quant_conv.bias[vae.cfg.z_dim:] = -8.0
    return vae
