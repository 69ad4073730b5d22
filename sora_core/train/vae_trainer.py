"""Stage 1: the video VAE (video compression network) on bucketed world clips.

Loss = L1 or MSE (``recon_loss``) + ``ssim_weight`` * (1 - SSIM) (kornia, per frame) + ``kl_weight`` * KL. Training runs
with identity latent normalisation; at export the per-channel mean and std of the posterior means over
held-out clips go into the config, so the shipped VAE yields normalised latents.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from .buckets import Bucket, BucketTable
from .common import autocast, step_generator, step_seed
from .data import WorldClips
from .loop import StageTrainer


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


def parse_bucket(name: str) -> Bucket:
    """'HxWxT' -> a 1-sample Bucket."""
    try:
        h, w, t = (int(v) for v in name.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"bucket {name!r} must be written 'HxWxT', e.g. '64x64x17'") from e
    return Bucket(h, w, t, 1.0, 1)


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
    plot_keys = ("loss", "l1", "kl")

    def __init__(self, preset, run_dir, env=None, resume=False, progress=True, init_path: str | None = None):
        self.init_path = init_path
        super().__init__(preset, run_dir, env, resume, progress)

    def build(self) -> None:
        from ..configs import replace, vae_preset
        from ..vae import VideoVAE
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
        self.data = WorldClips(self.buckets, p.seed, p.fps, 0.0, self.env.rank, self.env.world_size)

    def configs(self) -> dict:
        return {"vae": self.cfg}

    def inputs(self) -> dict:
        return {"init_weights": self.init_path or self.preset.init_weights}

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        p = self.preset
        rng = np.random.default_rng(step_seed(p.seed, step, self.env.rank, 4))
        x = random_crop(self.data.batch_at(step).video, p.crop, rng).to(self.env.device)
        gen = step_generator(p.seed, step, self.env.rank, 1)
        with autocast(self.env.device, p.loop.bf16):
            recon, mean, logvar = self.model(x, gen, sample=p.sample_posterior)
        recon, mean, logvar = recon.float(), mean.float(), logvar.float()
        err = recon - x
        l1, mse = err.abs().mean(), err.pow(2).mean()
        ssim = ssim_frames(recon, x) if p.ssim_weight else torch.zeros(())
        kl = kl_loss(mean, logvar)
        loss = (mse if p.recon_loss == "mse" else l1) + p.ssim_weight * (1.0 - ssim) + p.kl_weight * kl
        return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "ssim": float(ssim.detach()),
                      "kl": float(kl.detach())}

    def eval_clips(self) -> torch.Tensor:
        if not hasattr(self, "_eval"):
            self._eval = self.data.eval_batch(self.preset.eval_clips, parse_bucket(self.preset.eval_bucket)).video
        return self._eval.to(self.env.device)

    def evaluate(self, ema_module: nn.Module) -> dict:
        x = self.eval_clips()
        recon = reconstruct(ema_module, x, self.preset.loop.bf16)
        return {"psnr": psnr(recon, x), "ssim_eval": float(ssim_frames(recon.clamp(-1, 1), x))}

    def export(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """EMA VAE with per-channel latent statistics -> ``out_dir/vae.safetensors``.

        The statistics are measured here when the encoder was trained, else kept from the init file.
        """
        from ..configs import replace
        from ..vae import VideoVAE
        from ..weights import save_component
        out = Path(out_dir) / "vae.safetensors"
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
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


def encoder_id(vae: nn.Module) -> str:
    """A digest of what fixes the latent space: encoder + quant_conv weights and latent statistics."""
    h = hashlib.sha256()
    for name, t in sorted(vae.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.")):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
    h.update(repr((vae.cfg.latents_mean, vae.cfg.latents_std)).encode())
    return h.hexdigest()[:16]


def resolve_weights(path: str | Path, shipped: str = "vae.safetensors") -> Path:
    """A weights path; ``"shipped"`` = the shipped default model's file ``shipped``."""
    path = Path(__file__).resolve().parents[1] / "default_model" / shipped if path == "shipped" else Path(path)
    if not path.is_file():
        what = shipped.split(".")[0].replace("_", " ")
        raise FileNotFoundError(f"{what} weights {path} do not exist (train that stage first or pass the right file)")
    return path
