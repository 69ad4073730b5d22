"""Stage 2: the DiT and the byte text encoder, trained jointly by flow matching over latents of the
frozen VAE.

Per sample: x_t = (1 - t) x0 + t noise with t = shift(sigmoid(N(m, s))) (logit-normal), target
v = noise - x0 (Wan convention). A condition mask picks latent frames that are given (none, first,
last, first+last, a leading or trailing span, random frames): those sit at t = 0 (clean) and carry no
loss, so the model natively supports frame conditions with per-frame timesteps. Captions mix short and
descriptive ones and are dropped to the empty prompt for classifier-free guidance.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..diffusion.flow import shift_sigmas
from ..media.video_io import tensor_to_frames
from .buckets import BucketTable
from .common import autocast, step_generator, step_seed
from .data import WorldClips
from .latent_cache import LatentCache
from .loop import StageTrainer, check_export_dir
from .shared import (TextContextCache, encoder_id, flow_pair, grow_mask, parse_bucket, resolve_weights,
                     trained_pair_paths)


# ---------------------------------------------------------------------------------------------
# Flow matching pieces (pure functions)
# ---------------------------------------------------------------------------------------------

def sample_t(n: int, generator: torch.Generator, mean: float = 0.0, std: float = 1.0,
             shift: float = 1.0) -> torch.Tensor:
    """(n,) flow times in (0, 1): logit-normal, then the resolution shift ``flow.shift_sigmas``
    (shift*s / (1 + (shift - 1) s)); ``shift`` must be a finite number > 0."""
    s = torch.sigmoid(mean + std * torch.randn(n, generator=generator))
    return shift_sigmas(s, shift)


def condition_mask(kind: str, frames: int, rng: np.random.Generator) -> np.ndarray:
    """(frames,) bool, True = given latent frame, for one condition kind. At least one frame stays
    free; a 1-frame latent (an image) is never conditioned."""
    m = np.zeros(frames, bool)
    if frames < 2 or kind == "none":
        return m
    if kind == "first":
        m[0] = True
    elif kind == "last":
        m[-1] = True
    elif kind == "first_last":
        m[0] = m[-1] = True
        if frames == 2:
            m[-1] = False
    elif kind in ("lead_span", "trail_span"):
        k = int(rng.integers(1, frames))
        m[:k] = True
        if kind == "trail_span":
            m = m[::-1].copy()
    elif kind == "random":
        m = rng.random(frames) < 0.5
        if m.all():
            m[int(rng.integers(frames))] = False
    else:
        raise ValueError(f"unknown condition kind {kind!r}")
    return m


def condition_masks(probs: dict, n: int, frames: int, rng: np.random.Generator) -> tuple[torch.Tensor, list]:
    """(n, frames) bool masks and their kinds, kinds drawn with probabilities ``probs``."""
    names = list(probs)
    p = np.array([probs[k] for k in names], np.float64)
    kinds = [names[i] for i in rng.choice(len(names), size=n, p=p / p.sum())]
    return torch.from_numpy(np.stack([condition_mask(k, frames, rng) for k in kinds])), kinds


def masked_mse(v: torch.Tensor, target: torch.Tensor, free: torch.Tensor,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error over the free latent frames only; ``free`` (B, T) bool. ``weight``
    (B, T, H, W), optional: a per-latent-pixel weight (shared by the channels); the result is then the
    weighted mean (sum of weighted errors over the sum of the weights of the free frames)."""
    w = free[:, None, :, None, None].float().expand(-1, 1, -1, v.shape[3], v.shape[4])
    if weight is not None:
        w = w * weight[:, None].float()
    per = (v.float() - target.float()).pow(2) * w
    return per.sum() / (w.sum() * v.shape[1]).clamp_min(1e-8)


def object_latent_mask(frames: np.ndarray, spatial: int, temporal: int, grow: int = 1) -> torch.Tensor:
    """(T', H', W') float 0/1: the latent pixels an object of the world touches, for frames (T, H, W, 3)
    uint8 seen through a causal VAE with factors ``spatial`` and ``temporal`` (latent frame 0 is frame 0,
    latent frame k frames (k-1)*temporal+1 .. k*temporal), grown by ``grow`` latent pixels so the
    background at an object's edges and corners counts too: that is where the shape is drawn."""
    from ..world.metrics import object_masks
    m = torch.from_numpy(object_masks(frames)).float()                       # (T, H, W)
    m = torch.cat([m[:1].expand(temporal - 1, -1, -1), m]) if temporal > 1 else m
    m = torch.nn.functional.max_pool3d(m[None, None], (temporal, spatial, spatial))
    return grow_mask(m, grow)[0, 0]


def add_ghosts(z: torch.Tensor, objects: torch.Tensor, t_frames: torch.Tensor, apply: torch.Tensor,
               strength: torch.Tensor, offsets: torch.Tensor, t_min: float) -> torch.Tensor:
    """x0 with a faint copy of its objects: for each sample with ``apply``, the latent moved by
    ``offsets`` (dy, dx latent pixels, wrapping around like the world) replaces a ``strength`` share
    of the latent where the moved object mask falls outside the objects, on the frames whose noise
    level is >= ``t_min`` (never on given, clean frames). A copy moves in step with the objects, like
    the unasked copies text-to-video draws. z (B, C, T, H, W); objects (B, T, H, W) 0/1;
    t_frames (B, T); apply (B,) bool; strength (B,); offsets (B, 2) long."""
    out = z.clone()
    for b in torch.nonzero(apply).flatten().tolist():
        dy, dx = (int(v) for v in offsets[b])
        moved, moved_mask = (torch.roll(x, (dy, dx), dims=(-2, -1)) for x in (z[b], objects[b]))
        where = moved_mask * (1 - objects[b]) * (t_frames[b] >= t_min).to(z.dtype)[:, None, None]
        out[b] = z[b] + float(strength[b]) * where[None] * (moved - z[b])
    return out


class FlowModel(nn.Module):
    """The trainable pair: text encoder + DiT. ``forward(x_t, t (B, T), ids, mask) -> v``; with
    ``context`` (text features already computed, e.g. by a frozen encoder) ``ids`` is not read."""

    def __init__(self, dit: nn.Module, text_encoder: nn.Module):
        super().__init__()
        self.dit, self.text_encoder = dit, text_encoder

    def forward(self, x_t, t, ids, mask, context=None):
        return self.dit(x_t, t, self.text_encoder(ids, mask) if context is None else context, mask)


# ---------------------------------------------------------------------------------------------
# The stage
# ---------------------------------------------------------------------------------------------

class DiTTrainer(StageTrainer):
    stage = "dit"
    export_names = ("dit.safetensors", "text_encoder.safetensors")

    def __init__(self, preset, run_dir, env=None, resume=False, progress=True, vae_path: str | None = None,
                 init_dir: str | None = None, text_path: str | None = None):
        self.vae_path, self.init_dir = vae_path, init_dir
        self.text_path = text_path or preset.text_weights
        self.init_fresh: list[str] = []          # DiT parameters --init's file lacked (kept at their init)
        super().__init__(preset, run_dir, env, resume, progress)

    def build(self) -> None:
        from ..configs import dit_preset, text_encoder_preset
        from ..models.dit import DiT
        from ..models.text import ByteTextEncoder
        p = self.preset
        self.vae, self.vae_cfg, self.vae_id = self._load_vae()
        self.dit_cfg, self.text_cfg = dit_preset(p.dit), text_encoder_preset(p.text_encoder)
        if self.dit_cfg.in_channels != self.vae_cfg.z_dim:
            raise ValueError(f"DiT preset {p.dit!r} takes {self.dit_cfg.in_channels} latent channels but the VAE "
                             f"makes {self.vae_cfg.z_dim}")
        if self.dit_cfg.text_dim != self.text_cfg.out_dim:
            raise ValueError(f"DiT text_dim {self.dit_cfg.text_dim} != text encoder out_dim {self.text_cfg.out_dim}")
        if self.init_dir is not None:
            dit, text_encoder = self._load_init()
        else:
            dit, text_encoder = DiT(self.dit_cfg), ByteTextEncoder(self.text_cfg)
        if self.text_path is not None:
            text_encoder = self._load_text()
        elif not p.train_text_encoder and self.init_dir is None:
            raise ValueError(f"DiT preset {p.name!r} keeps the text encoder frozen, so it needs trained text "
                             f"encoder weights: pass --text FILE (from 'sora train text') or --init DIR")
        if not p.train_text_encoder:
            text_encoder.requires_grad_(False)
        self.module = FlowModel(dit, text_encoder)
        self.buckets = BucketTable.from_dict(p.buckets)
        self.buckets.validate(self.vae_cfg.temporal_factor, self.vae_cfg.spatial_factor, self.dit_cfg.patch_size)
        self.data = WorldClips(self.buckets, p.seed, p.fps, p.long_caption_prob, self.env.rank,
                               self.env.world_size, p.pool_size, p.object_probs, p.shape_probs, p.phrasing_prob,
                               p.size_probs)
        scenes = self.data.scene_mix
        self.cache = LatentCache(self.run_dir / f"latent_cache.r{self.env.rank}.safetensors", self.vae_id,
                                 scenes=scenes)
        self.text_cache = None if p.train_text_encoder else TextContextCache(text_encoder, self.env.device,
                                                                            p.loop.bf16)
        # object masks at the latent grid (object_weight > 0 or ghosts), cached per pool entry like the latents
        self.mask_id = f"object_mask:{self.vae_cfg.spatial_factor}x{self.vae_cfg.temporal_factor}:grow1"
        self.mask_cache = (LatentCache(self.run_dir / f"mask_cache.r{self.env.rank}.safetensors", self.mask_id,
                                       scenes=scenes) if self.needs_masks else None)

    def _load_vae(self):
        """The frozen VAE and an id of its latent space (encoder weights + statistics)."""
        from ..configs import vae_preset
        from ..models.vae import VideoVAE
        from ..weights import load_component
        path = self.vae_path or self.preset.vae_weights
        if path is None:
            vae, cfg = VideoVAE(vae_preset(self.preset.vae)), vae_preset(self.preset.vae)
        else:
            vae, cfg = load_component(str(resolve_weights(path)), kind="vae")
        vae.requires_grad_(False)
        return vae.eval().to(self.env.device), cfg, encoder_id(vae)

    def _load_init(self):
        """DiT and text encoder from an exported pair (``init_dir``; "shipped" = the default model), in
        float32 and trainable. They must have been trained on this run's VAE latent space."""
        from ..weights import load_component
        paths = trained_pair_paths(self.init_dir, self.vae_id, f"--init {self.init_dir}")
        text_encoder, self.text_cfg = load_component(paths[1], kind="text_encoder")
        # into the preset's DiT config: parameters the file lacks (a path added since, e.g. pooled_text)
        # keep their initialisation
        from safetensors import safe_open
        dit, _ = load_component(paths[0], kind="dit", cfg=self.dit_cfg, allow_missing=True)
        with safe_open(str(paths[0]), framework="pt") as f:
            self.init_fresh = sorted(set(dit.state_dict()) - set(f.keys()))
        return dit.float().train().requires_grad_(True), text_encoder.float().train().requires_grad_(True)

    def _load_text(self):
        """The pretrained text encoder ``text_path`` (float32); its config must give the DiT's text_dim."""
        from ..weights import load_component
        text_encoder, cfg = load_component(str(resolve_weights(self.text_path, "text_encoder.safetensors")),
                                           kind="text_encoder")
        if cfg.out_dim != self.dit_cfg.text_dim:
            raise ValueError(f"--text {self.text_path}: the text encoder gives {cfg.out_dim}-dim features but the "
                             f"DiT reads text_dim={self.dit_cfg.text_dim}")
        self.text_cfg = cfg
        return text_encoder.float().train().requires_grad_(True)

    def configs(self) -> dict:
        return {"dit": self.dit_cfg, "text_encoder": self.text_cfg}

    def inputs(self) -> dict:
        return {"vae": self.vae_path or self.preset.vae_weights, "init": self.init_dir, "text": self.text_path,
                "vae_id": self.vae_id, "init_fresh": self.init_fresh}

    def state(self) -> dict:
        return {**super().state(), "vae_id": self.vae_id}

    def _caches(self) -> list[LatentCache]:
        return [c for c in (self.cache, self.mask_cache) if c is not None]

    def save(self) -> None:
        for cache in self._caches():    # every rank keeps its own cache files
            cache.save()
        super().save()

    def fit(self, *args, **kwargs) -> dict:
        try:
            return super().fit(*args, **kwargs)
        finally:
            for cache in self._caches():
                cache.save(force=True)

    def load_state(self, state: dict) -> None:
        if state.get("vae_id") != self.vae_id:
            raise ValueError(f"the run was trained on the latent space of VAE encoder {state.get('vae_id')} but "
                             f"this VAE's encoder is {self.vae_id}; resume with the same --vae file")
        super().load_state(state)

    # -- data -> latents ------------------------------------------------------------------------------

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """Frozen VAE, clip by clip (results do not depend on the batch): (B,3,T,H,W) -> (B,C,T',H',W')."""
        with autocast(self.env.device, self.preset.loop.bf16):
            return torch.cat([self.vae.encode(c.to(self.env.device)).float() for c in video.split(1)])

    def latents_at(self, step: int):
        """(latents (B, C, T, H, W), captions, object masks (B, T, H, W) or None) of step ``step``,
        through the pool caches when enabled; the masks only when the preset weights objects or adds ghosts."""
        weighted = self.needs_masks
        if self.preset.pool_size is None:
            batch = self.data.batch_at(step)
            masks = None
            if weighted:
                masks = torch.stack([self._object_mask(tensor_to_frames(v)) for v in batch.video])
            return self.encode(batch.video), batch.captions, None if masks is None else masks.to(self.env.device)
        batch = self.data.batch_at(step, render_video=False)
        z = self.cache.get_or_encode(batch.keys, lambda key: self._encode_pool_entry(key, batch.bucket))
        masks = None
        if weighted:
            masks = self.mask_cache.get_or_encode(
                batch.keys, lambda key: self._object_mask(self._render_pool_entry(key, batch.bucket))[None])[:, 0]
            masks = masks.to(self.env.device)
        return z.to(self.env.device), batch.captions, masks

    @property
    def needs_masks(self) -> bool:
        return self.preset.object_weight > 0 or self.preset.ghost_prob > 0

    def _object_mask(self, frames: np.ndarray) -> torch.Tensor:
        return object_latent_mask(frames, self.vae_cfg.spatial_factor, self.vae_cfg.temporal_factor, grow=1)

    def _render_pool_entry(self, key, bucket) -> np.ndarray:
        frames, _ = self.data.render(self.data.pool_scene_seed(key), bucket)
        return frames

    def _encode_pool_entry(self, key, bucket) -> torch.Tensor:
        from ..media.video_io import frames_to_tensor
        return self.encode(frames_to_tensor(self._render_pool_entry(key, bucket))[None])[0]

    # -- the loss -------------------------------------------------------------------------------------

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        p, dev = self.preset, self.env.device
        z, captions, objects = self.latents_at(step)
        rng = np.random.default_rng(step_seed(p.seed, step, self.env.rank, 2))
        gen = step_generator(p.seed, step, self.env.rank, 3)
        captions = ["" if drop else c for c, drop in zip(captions, rng.random(len(captions)) < p.caption_dropout)]
        given, _ = condition_masks(p.condition_probs, z.shape[0], z.shape[2], rng)
        t = sample_t(z.shape[0], gen, p.t_logit_mean, p.t_logit_std, p.t_shift)
        noise = torch.randn(z.shape, generator=gen)
        given, t, noise = given.to(dev), t.to(dev), noise.to(dev)
        t_frames = torch.where(given, torch.zeros((), device=dev), t[:, None].expand(-1, z.shape[2]))
        x_t, target = flow_pair(z, noise, t_frames)
        if p.ghost_prob > 0:
            # x_t from x0 with a faint copy of its objects; the target still leads to the clean x0:
            # v = (x_t - x0) / t = noise - x0 + (1 - t) / t (ghosted - x0)
            lo, hi = p.ghost_strength
            apply = torch.as_tensor(rng.random(z.shape[0]) < p.ghost_prob)
            strength = torch.as_tensor(rng.uniform(lo, hi, z.shape[0]), dtype=z.dtype)
            offsets = torch.as_tensor(np.stack([rng.integers(2, max(3, n - 1), z.shape[0])
                                                for n in z.shape[-2:]], axis=1))
            ghosted = add_ghosts(z, objects, t_frames, apply.to(dev), strength, offsets, p.ghost_t_min)
            x_t, _ = flow_pair(ghosted, noise, t_frames)
            ratio = ((1 - t_frames) / t_frames.clamp_min(p.ghost_t_min))[:, None, :, None, None]
            target = target + ratio * (ghosted - z)
        weight = None if p.object_weight <= 0 else 1.0 + p.object_weight * objects
        if self.text_cache is None:
            ids, mask = self.module.text_encoder.tokenize(captions)
            ids, mask, context = ids.to(dev), mask.to(dev), None
        else:
            context, mask = self.text_cache(captions)
            ids = None
        with autocast(dev, p.loop.bf16):
            v = self.model(x_t, t_frames, ids, mask, context)
        loss = masked_mse(v, target, ~given, weight)
        metrics = {"given_frac": float(given.float().mean())}
        if objects is not None:
            metrics["object_frac"] = float(objects.mean())
        if p.ghost_prob > 0:
            metrics["ghost_frac"] = float(apply.float().mean())
        return loss, metrics

    # -- evaluation and export ------------------------------------------------------------------------

    @torch.no_grad()
    def evaluate(self, ema_module: nn.Module) -> dict:
        """Validation flow loss of the EMA model on held-out clips at fixed t, no conditions:
        ``val_t{t}`` over the whole latent and their mean ``val_loss``; ``val_obj_t{t}`` over the latent
        pixels the objects touch (``object_latent_mask``) and their mean ``val_obj``."""
        if not hasattr(self, "_eval"):
            batch = self.data.eval_batch(self.preset.eval_clips, parse_bucket(self.preset.eval_bucket))
            objects = torch.stack([object_latent_mask(tensor_to_frames(v), self.vae_cfg.spatial_factor,
                                                      self.vae_cfg.temporal_factor, grow=0) for v in batch.video])
            self._eval = (self.encode(batch.video), batch.captions, objects.to(self.env.device))
        z, caps, objects = self._eval
        ids, mask = ema_module.text_encoder.tokenize(caps)
        gen, out, obj = torch.Generator().manual_seed(1234), {}, {}
        for tv in (0.2, 0.5, 0.8, 0.95):
            noise = torch.randn(z.shape, generator=gen).to(z.device)
            t = torch.full(z.shape[:1] + z.shape[2:3], tv, device=z.device)
            x_t, target = flow_pair(z, noise, t)
            with autocast(self.env.device, self.preset.loop.bf16):
                v = ema_module(x_t, t, ids.to(z.device), mask.to(z.device))
            every = torch.ones_like(t, dtype=torch.bool)
            out[f"val_t{tv}"] = float(masked_mse(v, target, every))
            obj[f"val_obj_t{tv}"] = float(masked_mse(v, target, every, objects))
        out["val_loss"] = sum(out.values()) / len(out)
        return {**out, **obj, "val_obj": sum(obj.values()) / len(obj)}

    def sampling_metadata(self) -> dict[str, str]:
        """The pipeline's default schedule and output size, stored in the DiT file: trained with
        condition masks (per-frame timesteps), default clip = the eval bucket at the preset's fps."""
        import json

        from ..configs import ScheduleConfig, to_json
        from ..pipeline import DEFAULTS_KEY, SCHEDULE_KEY
        b = parse_bucket(self.preset.eval_bucket)
        defaults = {"frames": b.frames, "height": b.height, "width": b.width, "fps": self.preset.fps}
        return {SCHEDULE_KEY: to_json(ScheduleConfig(**self.preset.schedule)), DEFAULTS_KEY: json.dumps(defaults),
                "sora.condition_mode": "timestep" if len(self.preset.condition_probs) > 1 else "replace"}

    def export(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """EMA weights -> ``out_dir/dit.safetensors`` and ``out_dir/text_encoder.safetensors``."""
        from ..weights import save_component
        out_dir = check_export_dir(out_dir, self.export_names, overwrite)
        paths = [out_dir / n for n in self.export_names]
        ema = self.ema_module()
        out_dir.mkdir(parents=True, exist_ok=True)
        meta = {"train_stage": "dit", "train_preset": self.preset.name, "train_steps": str(self.step),
                "vae_id": self.vae_id}
        save_component(paths[0], ema.dit, self.dit_cfg, metadata={**meta, **self.sampling_metadata()})
        save_component(paths[1], ema.text_encoder, self.text_cfg, metadata=meta)
        return paths
