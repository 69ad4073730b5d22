"""Training presets: "tiny" for the tests (seconds on a CPU) and "default" for the shipped model.

A preset names the model configs (``sora_core.configs`` presets), the bucket table and the recipe.
It is stored whole in every checkpoint and run directory, so a run describes itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field


# ---------------------------------------------------------------------------------------------
# Recipe pieces
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class OptimConfig:
    """AdamW with linear warmup then cosine decay to ``min_lr_ratio * lr``; EMA of the weights."""
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 500
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    ema_decay: float = 0.999


@dataclass(frozen=True)
class LoopConfig:
    """Steps of the cosine schedule and how often to log, evaluate and checkpoint."""
    steps: int = 1000
    log_every: int = 10
    eval_every: int = 500
    ckpt_every: int = 250
    bf16: bool = True


# condition-mask kinds the DiT stage trains with (see dit_trainer.sample_condition_mask)
CONDITION_KINDS = ("none", "first", "last", "first_last", "lead_span", "trail_span", "random")


@dataclass(frozen=True)
class VAETrainPreset:
    """Video VAE: a reconstruction loss (``recon_loss``: 'mse' or 'l1') + SSIM (kornia) + a small KL,
    on bucketed world clips."""
    name: str
    vae: str
    buckets: dict
    optim: OptimConfig
    loop: LoopConfig
    kl_weight: float = 1e-6
    ssim_weight: float = 0.2
    recon_loss: str = "l1"                   # 'mse' escapes the early mean-clip plateau ~2x sooner (docs/training.md)
    crop: int | None = None                  # train on random crop x crop windows of the clips
    init_weights: str | None = None          # start from a trained VAE file ("shipped" = the default model's)
    train_encoder: bool = True               # False: decoder-only fine-tuning (the latent space stays fixed)
    sample_posterior: bool = True            # decode posterior samples (else the means, as the DiT makes)
    # decoder-only training on what a trained DiT makes: ``denoised_frac`` of the clips are decoded from
    # the DiT's x0 prediction (with classifier-free guidance ``denoised_cfg`` on the clip's short caption)
    # from the clip's latents noised to t ~ U(denoised_t), the rest from their clean latents; the target
    # is the clip. ``denoised_dit``: a folder with dit.safetensors + text_encoder.safetensors ("shipped")
    denoised_dit: str | None = None
    denoised_frac: float = 0.5
    denoised_t: tuple[float, float] = (0.02, 0.3)
    denoised_cfg: float = 5.0
    # the scene mix (train.data.scene_spec; None: the world's own) and a loss weight 1 + object_weight on
    # the objects' pixels grown by two (their corners); the held-out clips stay the world's own
    object_probs: tuple[float, float, float] | None = None
    shape_probs: tuple[float, float, float] | None = None
    size_probs: tuple[float, float] | None = None
    object_weight: float = 0.0
    fps: float = 8.0
    seed: int = 0
    eval_bucket: str = "64x64x17"           # HxWxT of the held-out PSNR clips
    eval_clips: int = 8
    stats_clips: int = 64                    # clips for the per-channel latent statistics
    kind = "vae"

    def __post_init__(self):
        if self.recon_loss not in ("mse", "l1"):
            raise ValueError(f"recon_loss={self.recon_loss!r} is unknown; allowed: mse, l1")
        from .data import check_object_probs, check_shape_probs, check_size_probs
        check_object_probs(self.object_probs)
        check_shape_probs(self.shape_probs)
        check_size_probs(self.size_probs)
        if not self.object_weight >= 0:
            raise ValueError(f"object_weight={self.object_weight} must be >= 0")
        if self.denoised_dit is not None:
            if self.train_encoder:
                raise ValueError("denoised_dit trains the decoder on a DiT's latents: it needs train_encoder=False "
                                 "(the DiT was trained on the encoder's latent space)")
            lo, hi = self.denoised_t
            if not (0.0 <= lo <= hi <= 1.0):
                raise ValueError(f"denoised_t={self.denoised_t} must be (lo, hi) with 0 <= lo <= hi <= 1")
            if not 0.0 <= self.denoised_frac <= 1.0:
                raise ValueError(f"denoised_frac={self.denoised_frac} must be in [0, 1]")


@dataclass(frozen=True)
class DiTTrainPreset:
    """DiT + byte text encoder (trained jointly) by flow matching over latents of a frozen VAE."""
    name: str
    dit: str
    text_encoder: str
    vae: str                                 # VAE config preset, used when no trained VAE is given
    buckets: dict
    optim: OptimConfig
    loop: LoopConfig
    vae_weights: str | None = None           # a trained VAE file ("shipped" = the default model's); None = fresh
    text_weights: str | None = None          # a pretrained text encoder file (``sora train text``); --text overrides
    train_text_encoder: bool = True          # False: the text encoder stays frozen (needs pretrained weights)
    caption_dropout: float = 0.1             # empty prompt, for classifier-free guidance
    long_caption_prob: float = 0.5           # descriptive vs short captions
    phrasing_prob: float = 0.0               # a phrasing (world.phrasings) instead of the canonical caption
    condition_probs: dict = field(default_factory=lambda: {"none": 1.0})
    t_logit_mean: float = 0.0                # t = sigmoid(N(mean, std)), then the schedule shift
    t_logit_std: float = 1.0
    t_shift: float = 1.0
    pool_size: int | None = None             # scenes per bucket whose latents are cached (None = fresh)
    object_probs: tuple[float, float, float] | None = None   # weights of 1, 2, 3 objects (None: the world's)
    shape_probs: tuple[float, float, float] | None = None    # weights of circle, square, triangle per object
    size_probs: tuple[float, float] | None = None            # weights of small, large per object
    # loss weight 1 + object_weight on the latent pixels an object touches (grown by one latent pixel,
    # so its edges and corners count); 0 = a plain mean over the latent
    object_weight: float = 0.0
    # distractor suppression: in this fraction of samples a faint copy of the clip's objects (strength
    # drawn from ghost_strength, moved by a random offset, in step with them) is added to x0 on the
    # frames at noise level >= ghost_t_min, and the target stays the clean x0, so the model learns to
    # erase a weaker copy of the asked object rather than finish it (docs/training.md, "Ghosts")
    ghost_prob: float = 0.0
    ghost_strength: tuple[float, float] = (0.2, 0.6)
    ghost_t_min: float = 0.3
    fps: float = 8.0
    seed: int = 0
    eval_bucket: str = "64x64x17"           # also the exported default clip size
    eval_clips: int = 16
    schedule: dict = field(default_factory=lambda: {"shift": 3.0, "steps": 20, "cfg": 5.0, "sampler": "euler"})
    kind = "dit"

    def __post_init__(self):
        bad = sorted(set(self.condition_probs) - set(CONDITION_KINDS))
        if bad:
            raise ValueError(f"condition_probs has unknown kinds {bad}; allowed: {', '.join(CONDITION_KINDS)}")
        from .data import check_object_probs, check_probability, check_shape_probs, check_size_probs
        check_object_probs(self.object_probs)
        check_shape_probs(self.shape_probs)
        check_size_probs(self.size_probs)
        if not self.object_weight >= 0:
            raise ValueError(f"object_weight={self.object_weight} must be >= 0")
        check_probability("ghost_prob", self.ghost_prob)
        lo, hi = self.ghost_strength
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"ghost_strength={self.ghost_strength} must be (low, high) with 0 < low <= high <= 1")
        if not 0.0 < self.ghost_t_min < 1.0:
            raise ValueError(f"ghost_t_min={self.ghost_t_min} must be in (0, 1)")


@dataclass(frozen=True)
class TextTrainPreset:
    """Byte text encoder pretrained to read the world's captions (``text_trainer``): scene labels from
    short and descriptive captions of scenes drawn like the DiT's (``buckets`` only sets their sizes)."""
    name: str
    text_encoder: str
    buckets: dict
    optim: OptimConfig
    loop: LoopConfig
    batch_size: int = 64
    long_caption_prob: float = 0.5
    fps: float = 8.0
    seed: int = 0
    eval_captions: int = 256
    # start from these weights (a text_encoder.safetensors, a folder, or "shipped"; --init overrides)
    init: str | None = None
    # the share of captions written as a phrasing (world.phrasings, training lexicon) instead of the
    # canonical caption
    phrasing_prob: float = 0.0
    # keep the initial encoder's features on the canonical captions (what a trained DiT reads): the
    # loss adds this times their relative squared drift
    distill_weight: float = 0.0
    kind = "text"

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be >= 1")
        from .data import check_probability
        check_probability("phrasing_prob", self.phrasing_prob)
        if not self.distill_weight >= 0:
            raise ValueError(f"distill_weight={self.distill_weight} must be >= 0")


def preset_json(p) -> str:
    return json.dumps({"kind": p.kind, "preset": dataclasses.asdict(p)}, sort_keys=True, default=str)


# ---------------------------------------------------------------------------------------------
# Presets
# ---------------------------------------------------------------------------------------------

_TINY_BUCKETS = {"16x16": {1: (0.5, 2), 5: (1.0, 2)}, "16x24": {3: (0.5, 2)}}

# rendered at these sizes, trained on random 32 x 32 crops (the VAE is convolutional)
_DEFAULT_VAE_BUCKETS = {
    "64x64": {1: (0.2, 16), 5: (0.3, 8), 9: (1.0, 8), 17: (0.3, 4)},
    "48x80": {9: (0.3, 8)},
    "80x48": {9: (0.3, 8)},
}

# about 2,000 tokens per step in every bucket (patch 1x2x2 over a /4 latent: 64 tokens per latent frame of
# 64x64); images teach colour and shape cheaply, videos motion; 64x64x17 is the default clip
_DEFAULT_DIT_BUCKETS = {
    "64x64": {1: (0.25, 24), 9: (0.3, 10), 17: (0.6, 6), 33: (0.1, 3)},
    "48x80": {1: (0.05, 24), 17: (0.1, 6)},
    "80x48": {1: (0.05, 24), 17: (0.1, 6)},
}

_DEFAULT_CONDITIONS = {"none": 0.45, "first": 0.2, "last": 0.05, "first_last": 0.1,
                       "lead_span": 0.08, "trail_span": 0.04, "random": 0.08}

_VAE_PRESETS = {
    "tiny": lambda: VAETrainPreset(
        name="tiny", vae="tiny", buckets=_TINY_BUCKETS, crop=12,
        optim=OptimConfig(lr=1e-3, warmup=2, ema_decay=0.9),
        loop=LoopConfig(steps=4, log_every=1, eval_every=4, ckpt_every=2, bf16=False),
        eval_bucket="16x16x5", eval_clips=2, stats_clips=4),
    "default": lambda: VAETrainPreset(
        name="default", vae="default", buckets=_DEFAULT_VAE_BUCKETS, crop=32,
        optim=OptimConfig(lr=5e-4, warmup=100, min_lr_ratio=0.05, ema_decay=0.998, weight_decay=0.0),
        loop=LoopConfig(steps=4000, log_every=10, eval_every=250, ckpt_every=100)),
    # stage 2 of the shipped VAE: MSE only (PSNR is what it optimises), from the stage-1 weights
    # given with --vae (or the shipped file); the latent statistics are measured again at export
    "default-mse": lambda: VAETrainPreset(
        name="default-mse", vae="default", buckets=_DEFAULT_VAE_BUCKETS, crop=32, init_weights="shipped",
        recon_loss="mse", ssim_weight=0.0,
        optim=OptimConfig(lr=1e-3, warmup=50, min_lr_ratio=0.05, ema_decay=0.995, weight_decay=0.0),
        loop=LoopConfig(steps=3000, log_every=10, eval_every=250, ckpt_every=100)),
    # decoder-only fine-tuning of a trained VAE: sharper reconstructions, same latents for the DiT
    "default-decoder": lambda: VAETrainPreset(
        name="default-decoder", vae="default", buckets=_DEFAULT_VAE_BUCKETS, crop=32, init_weights="shipped",
        train_encoder=False, kl_weight=0.0, sample_posterior=False,
        optim=OptimConfig(lr=1e-3, warmup=100, min_lr_ratio=0.05, ema_decay=0.998, weight_decay=0.0),
        loop=LoopConfig(steps=4000, log_every=10, eval_every=250, ckpt_every=100)),
    # the shipped decoder fine-tuned on what the shipped DiT makes at low noise (half the clips) and on
    # clean latents (the other half), L1 + SSIM: the DiT's last x0 prediction rounds small shapes' corners
    # that the decoder can learn to put back (docs/training.md); the latent space stays the same
    "default-denoised-decoder": lambda: VAETrainPreset(
        name="default-denoised-decoder", vae="default", buckets=_DEFAULT_VAE_BUCKETS, crop=32,
        init_weights="shipped", train_encoder=False, kl_weight=0.0, sample_posterior=False,
        denoised_dit="shipped",
        optim=OptimConfig(lr=3e-4, warmup=100, min_lr_ratio=0.05, ema_decay=0.995, weight_decay=0.0),
        loop=LoopConfig(steps=2500, log_every=10, eval_every=250, ckpt_every=100)),
    # the shipped decoder fine-tuned for small shapes: the round trip reads a small box (10 px, under
    # three latent pixels a side) as a ball in a quarter of the clips, any other object almost never
    # (docs/training.md, "Small boxes"); scenes with twice the boxes and two small objects for each large
    # one, the loss weighted 5x on the objects and their corners; the latent space stays the same
    "default-decoder-small": lambda: VAETrainPreset(
        name="default-decoder-small", vae="default", buckets=_DEFAULT_VAE_BUCKETS, crop=32,
        init_weights="shipped", train_encoder=False, kl_weight=0.0, sample_posterior=False,
        shape_probs=(1.0, 2.0, 1.0), size_probs=(2.0, 1.0), object_weight=4.0,
        optim=OptimConfig(lr=3e-4, warmup=100, min_lr_ratio=0.05, ema_decay=0.995, weight_decay=0.0),
        loop=LoopConfig(steps=2500, log_every=10, eval_every=250, ckpt_every=100)),
}

def _continued(p, name: str, lr: float, warmup: int, steps: int):
    """Preset ``p`` with another peak learning rate, warmup and schedule length; the rest kept."""
    return dataclasses.replace(p, name=name, optim=dataclasses.replace(p.optim, lr=lr, warmup=warmup),
                               loop=dataclasses.replace(p.loop, steps=steps))


_DIT_PRESETS = {
    "tiny": lambda: DiTTrainPreset(
        name="tiny", dit="tiny", text_encoder="tiny", vae="tiny", buckets=_TINY_BUCKETS,
        optim=OptimConfig(lr=1e-3, warmup=2, ema_decay=0.9),
        loop=LoopConfig(steps=4, log_every=1, eval_every=4, ckpt_every=2),
        condition_probs=dict(_DEFAULT_CONDITIONS), eval_bucket="16x16x5", eval_clips=2),
    "default": lambda: DiTTrainPreset(
        name="default", dit="default", text_encoder="default", vae="default", buckets=_DEFAULT_DIT_BUCKETS,
        vae_weights="shipped",
        optim=OptimConfig(lr=5e-4, warmup=200, min_lr_ratio=0.05, ema_decay=0.998),
        loop=LoopConfig(steps=3500, log_every=10, eval_every=500, ckpt_every=100),
        condition_probs=dict(_DEFAULT_CONDITIONS), pool_size=4096,
        # the text encoder comes pretrained from the text stage (--text FILE) and stays frozen: trained
        # jointly from scratch, the flow loss closed the text path before it learned to use it
        train_text_encoder=False,
        # train where the sampler spends its steps: the default schedule's shift 3 puts 5 of 20 steps
        # above t = 0.9, which logit-normal(0, 1) alone almost never draws (docs/training.md)
        t_shift=3.0,
        # more one-object scenes than the world's uniform 1-3 (60 % instead of 33 %): committing to one
        # object from noise is what text-to-video lacks; two and three objects keep binding in training
        object_probs=(0.6, 0.25, 0.15)),
    # the default recipe continued from trained weights (--init shipped): half the peak learning rate
    # and a short warmup (9,000 steps), since a restart at 5e-4 spent ~2,500 steps climbing back to its starting loss
    "default-continue": lambda: _continued(_DIT_PRESETS["default"](), "default-continue",
                                           lr=2.5e-4, warmup=100, steps=9000),
    # the same continued with the loss weighted 5x on and around the objects (~15 % of the latent
    # pixels, so ~half the loss): a plain mean spends most of the loss on the background, while a
    # prompt's shape is decided on a few latent pixels at an object's corners (docs/training.md)
    "default-objects": lambda: dataclasses.replace(
        _continued(_DIT_PRESETS["default"](), "default-objects", lr=2.5e-4, warmup=100, steps=8000),
        object_weight=4.0),
    # the object-weighted recipe on scenes with twice as many boxes as balls or triangles: text-to-video
    # draws balls and triangles right almost always and boxes in a third of the clips (docs/training.md);
    # the scenes are new, so the continued DiT also sees a fresh pool after ~45,000 steps on the old one
    "default-boxes": lambda: dataclasses.replace(
        _continued(_DIT_PRESETS["default"](), "default-boxes", lr=2.5e-4, warmup=100, steps=7000),
        object_weight=4.0, shape_probs=(1.0, 2.0, 1.0)),
    # the same on a pool four times larger at a lower peak learning rate: each 7,000-step run on one new
    # pool of 4,096 scenes swung shape and the one-object count 10 to 20 points in opposite directions,
    # the model tracking the last pool it saw (docs/training.md, "A fourth pool")
    "default-large-pool": lambda: dataclasses.replace(
        _continued(_DIT_PRESETS["default-boxes"](), "default-large-pool", lr=1.5e-4, warmup=100, steps=7000),
        pool_size=16384),
    # the box recipe with four of five training scenes holding one object (60 % before): a test of
    # whether the unasked second object of text-to-video comes from the scene mix's prior
    "default-single": lambda: dataclasses.replace(
        _continued(_DIT_PRESETS["default-boxes"](), "default-single", lr=2.5e-4, warmup=100, steps=5000),
        object_probs=(0.8, 0.15, 0.05)),
    # the box recipe on captions people write: half the captions a phrasing of the training lexicon
    # (world.phrasings; synonyms, word orders, size and background said or not, sentence forms), read
    # by the encoder of the text preset "phrasings" (--text): text-to-video without expansion
    "default-phrasings": lambda: dataclasses.replace(
        _continued(_DIT_PRESETS["default-boxes"](), "default-phrasings", lr=2.5e-4, warmup=100, steps=6000),
        phrasing_prob=0.5),
    # the box recipe with ghosts (distractor suppression) in half the samples, shipped guidance 3 in
    # its schedule: text-to-video adds an unasked copy of the asked object in a fifth to a third of
    # the clips, settled while the noise level falls from ~0.9 to ~0.15 (docs/model_card.md)
    "default-ghosts": lambda: dataclasses.replace(
        _continued(_DIT_PRESETS["default-boxes"](), "default-ghosts", lr=2.5e-4, warmup=100, steps=6000),
        ghost_prob=0.5, schedule={"shift": 3.0, "steps": 20, "cfg": 3.0, "sampler": "euler"}),
    # the ghost recipe with two small objects for each large one: a small box (10 px, under three latent
    # pixels a side) is drawn as a ball in half the clips that ask for one, a large box almost never
    # (docs/training.md, "Small boxes"); with the box-weighted shapes a third of the objects are small boxes
    "default-ghosts-small": lambda: dataclasses.replace(
        _DIT_PRESETS["default-ghosts"](), name="default-ghosts-small", size_probs=(2.0, 1.0)),
}

_TEXT_PRESETS = {
    "tiny": lambda: TextTrainPreset(
        name="tiny", text_encoder="tiny", buckets=_TINY_BUCKETS, batch_size=4,
        optim=OptimConfig(lr=1e-3, warmup=2, ema_decay=0.9),
        loop=LoopConfig(steps=4, log_every=1, eval_every=4, ckpt_every=2), eval_captions=8),
    "default": lambda: TextTrainPreset(
        name="default", text_encoder="default", buckets=_DEFAULT_DIT_BUCKETS, batch_size=32,
        optim=OptimConfig(lr=2e-3, warmup=100, min_lr_ratio=0.05, ema_decay=0.995),
        loop=LoopConfig(steps=1500, log_every=10, eval_every=250, ckpt_every=250)),
    # the shipped encoder taught to read the phrasings people write (world.phrasings): two of three
    # captions phrased, the canonical captions' features held where the shipped DiT learned them
    "phrasings": lambda: dataclasses.replace(
        _TEXT_PRESETS["default"](), name="phrasings", init="shipped", phrasing_prob=2 / 3, distill_weight=1.0,
        optim=OptimConfig(lr=5e-4, warmup=50, min_lr_ratio=0.1, ema_decay=0.99),
        loop=LoopConfig(steps=800, log_every=10, eval_every=200, ckpt_every=100)),
    "tiny-phrasings": lambda: dataclasses.replace(
        _TEXT_PRESETS["tiny"](), name="tiny-phrasings", phrasing_prob=0.5, distill_weight=1.0),
}

PRESETS = {"text": _TEXT_PRESETS, "vae": _VAE_PRESETS, "dit": _DIT_PRESETS}


def train_preset(stage: str, name: str):
    """The training preset ``name`` of ``stage`` ('vae' or 'dit')."""
    if stage not in PRESETS:
        raise ValueError(f"unknown training stage {stage!r}; allowed: {', '.join(PRESETS)}")
    if name not in PRESETS[stage]:
        raise ValueError(f"unknown {stage} training preset {name!r}; allowed: {', '.join(PRESETS[stage])}")
    return PRESETS[stage][name]()
