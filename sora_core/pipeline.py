"""Generation: the model bundle and the one ``generate`` entry point, built from small steps.

    model = SoraModel.default()                       # or SoraModel.load("path/to/dir")
    result = generate(model, "a red ball bouncing", frames=17, height=64, width=64, seed=0)
    result.video                                      # (3, T, H, W) in [-1, 1]

The steps are public so the ComfyUI nodes and the command line compose the same code:
``encode_prompts`` -> ``make_noise_grid`` -> ``sample_latents`` (CFG, frame conditions, sampler)
-> ``decode_latents``; ``encode_video`` turns pixels into latents for conditions and SDEdit.
SDEdit is a condition plan too (``conditions.sdedit``): its start and its truncated schedule
(``plan.schedule(steps, shift)``) go through the same ``sample_latents``.

A model directory holds ``vae.safetensors``, ``text_encoder.safetensors`` and ``dit.safetensors``,
each with its config in the metadata (``weights.py``). The DiT file may also carry
``sora.schedule`` (a ScheduleConfig JSON: default steps, cfg, shift, sampler) and ``sora.defaults``
(JSON: default frames, height, width, fps); the presets below are used otherwise.

Real open weights (Wan 2.1 / 2.2) load from the files people have (``components.locate``):

    model = SoraModel.open("models/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors",
                           vae="models/vae/wan_2.1_vae.safetensors",
                           text_encoder="models/text_encoders/umt5_xxl_fp16.safetensors", device="cuda")

A model has a family (``families.py``): its default schedule and size, how frame conditions are held
(``condition_mode=None`` takes the family's: per-frame timesteps for the default model and Wan 2.2
TI2V, replacement for Wan 2.1) and its text convention (Wan: the 512-token umT5 context, zero padded,
no cross-attention mask). Memory: weights stay in their storage dtype; ``offload=True`` keeps the DiT
blocks in host memory and streams each to the GPU while it runs; ``low_memory=True`` releases the text
encoder once ``generate`` has encoded the prompts; ``tile_size`` decodes in spatial tiles.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping, Sequence

import torch

from .diffusion.conditions import (ConditionError, ConditionPlan, FrameCondition, Start, as_plan, condition_denoiser,
                                   prepare_latent, resolve)
from .configs import ConfigError, DiTConfig, ScheduleConfig, TextEncoderConfig, VAEConfig, from_dict, from_json, to_json
from .diffusion.flow import FlowDenoiser, TextCond, cfg_denoiser, check_cfg, check_shift, make_noise
from .geometry import LatentGeometry
from .diffusion.samplers import get_sampler
from .components import MODEL_FILES, ModelError, ModelMissingError, Found, load_wan, locate, model_files
from .families import Family, GenerationDefaults, family
from .weights import load_component, read_config, read_metadata, save_component

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
SCHEDULE_KEY, DEFAULTS_KEY = "sora.schedule", "sora.defaults"


# ---------------------------------------------------------------------------------------------
# Model files and configs (cheap: headers only, for validating requests before loading weights)
# ---------------------------------------------------------------------------------------------

def _missing_default_message(folder: Path) -> str:
    return (f"the default model is missing: {folder} must hold {', '.join(MODEL_FILES.values())}. Train it with "
            f"`sora train vae --preset default --out runs/vae --export runs/model` then `sora train dit --preset "
            f"default --out runs/dit --vae runs/model/vae.safetensors --export runs/model`, and copy the files "
            f"into {folder} (or pass the folder with --model / SoraModel.load)")


def text_width(cfg) -> int:
    """Width of a text encoder config's embeddings (the default encoder's out_dim, umT5's d_model)."""
    return cfg.out_dim if hasattr(cfg, "out_dim") else cfg.d_model


@dataclass(frozen=True)
class ModelSpec:
    """The configs of a model's three components plus its schedule, output defaults and family name."""
    vae: VAEConfig
    text_encoder: TextEncoderConfig
    dit: DiTConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)
    family: str = "sora"

    def __post_init__(self):
        v, t, d = self.vae, self.text_encoder, self.dit
        if not (v.z_dim == d.in_channels == d.out_channels):
            raise ModelError(f"the VAE has {v.z_dim} latent channels but the DiT takes {d.in_channels} and "
                             f"predicts {d.out_channels}: they were not trained together")
        if text_width(t) != d.text_dim:
            raise ModelError(f"the text encoder outputs {text_width(t)}-d embeddings but the DiT expects {d.text_dim}")

    @classmethod
    def locate(cls, model, vae=None, text_encoder=None) -> tuple["ModelSpec", Found]:
        """(spec, what ``components.locate`` found) for any model path (headers only)."""
        found = locate(model, vae, text_encoder)
        if found.kind == "sora":
            return cls.read(found.folder), found
        c = {k: ck.detected.cfg for k, ck in found.checkpoints.items()}
        f = found.family
        return cls(c["vae"], c["text_encoder"], c["dit"], f.schedule, f.defaults, f.name), found

    @classmethod
    def read(cls, source) -> "ModelSpec":
        """Configs from weight files (headers only). ``source``: see ``model_files``."""
        files = model_files(source)
        cfgs = {k: read_config(p, k) for k, p in files.items()}
        meta = read_metadata(files["dit"])
        try:
            schedule = from_json(meta[SCHEDULE_KEY], "schedule") if SCHEDULE_KEY in meta else ScheduleConfig()
            defaults = (from_dict(GenerationDefaults, json.loads(meta[DEFAULTS_KEY]))
                        if DEFAULTS_KEY in meta else GenerationDefaults())
        except (ConfigError, ValueError, TypeError) as e:
            raise ModelError(f"{files['dit']}: bad {SCHEDULE_KEY} / {DEFAULTS_KEY} metadata: {e}") from e
        return cls(cfgs["vae"], cfgs["text_encoder"], cfgs["dit"], schedule, defaults)

    def geometry(self, frames: int, height: int, width: int) -> LatentGeometry:
        """Validated geometry of a request (GeometryError names any bad value)."""
        return LatentGeometry.create(frames, height, width, self.vae.temporal_factor, self.vae.spatial_factor,
                                     tuple(self.dit.patch_size))


def default_model_dir() -> Path:
    """The shipped default model's folder; a clear error explains how to make it when it is missing."""
    if not all((DEFAULT_MODEL_DIR / n).is_file() for n in MODEL_FILES.values()):
        raise ModelMissingError(_missing_default_message(DEFAULT_MODEL_DIR))
    return DEFAULT_MODEL_DIR


# ---------------------------------------------------------------------------------------------
# The model bundle
# ---------------------------------------------------------------------------------------------

class SoraModel:
    """VAE + text encoder + DiT (+ schedule, output defaults and family). Modules are in eval mode.

    ``offload``: a ``models.offload.BlockOffload`` streaming the DiT blocks (``SoraModel.open``);
    ``low_memory``: ``generate`` releases the text encoder once the prompts are encoded."""

    def __init__(self, vae, text_encoder, dit, schedule: ScheduleConfig | None = None,
                 defaults: GenerationDefaults | None = None, family_name: str = "sora", offload=None,
                 low_memory: bool = False):
        self.family: Family = family(family_name)
        self.vae, self.text_encoder, self.dit = vae.eval(), text_encoder.eval(), dit.eval()
        self.spec = ModelSpec(vae.cfg, text_encoder.cfg, dit.cfg, schedule or self.family.schedule,
                              defaults or self.family.defaults, self.family.name)
        self.offload, self.low_memory = offload, low_memory

    @property
    def schedule(self) -> ScheduleConfig:
        return self.spec.schedule

    @property
    def defaults(self) -> GenerationDefaults:
        return self.spec.defaults

    @property
    def condition_mode(self) -> str:
        """How frame conditions are held by default (the family's: "timestep" or "replace")."""
        return self.family.condition_mode

    @property
    def device(self) -> torch.device:
        if self.offload is not None:
            return self.offload.device
        return next(self.dit.parameters()).device

    def to(self, device: torch.device | str) -> "SoraModel":
        """Move the modules (with offload: all but the DiT blocks, which keep streaming to ``device``)."""
        self.vae.to(device)
        if self.offload is None:
            self.text_encoder.to(device)
            self.dit.to(device)
        else:                                   # the text encoder stays where it was put (the CPU)
            from .models.offload import offload_dit
            self.offload.remove()
            self.offload = offload_dit(self.dit, device, self.offload.storage)
        return self

    def geometry(self, frames: int, height: int, width: int) -> LatentGeometry:
        return self.spec.geometry(frames, height, width)

    def release_text_encoder(self) -> None:
        """Drop the text encoder's weights (after encoding, to free memory); encoding again raises."""
        if hasattr(self.text_encoder, "release"):
            self.text_encoder.release()
        self.text_encoder = _ReleasedTextEncoder(self.text_encoder.cfg)

    @classmethod
    def from_files(cls, dit, vae, text_encoder, device: torch.device | str = "cpu", offload: bool = False,
                   text_encoder_device: torch.device | str | None = None, low_memory: bool = False) -> "SoraModel":
        """A Wan model from its three components (each a file, shards or a folder in any layout
        ``loading`` reads); everything is checked from the headers before a weight is read."""
        return cls.open(dit, vae, text_encoder, device, offload, text_encoder_device, low_memory)

    @classmethod
    def open(cls, model, vae=None, text_encoder=None, device: torch.device | str = "cpu", offload: bool = False,
             text_encoder_device: torch.device | str | None = None, low_memory: bool = False) -> "SoraModel":
        """Any model ``components.locate`` finds: a Sora model folder, a diffusers pipeline folder, or a
        Wan DiT with its VAE and text encoder. ``offload`` streams the DiT blocks to ``device`` (no-op
        on the CPU); the text encoder runs on ``text_encoder_device`` (default: ``device``, the CPU
        with ``offload``)."""
        spec, found = ModelSpec.locate(model, vae, text_encoder)
        if found.kind == "sora":
            loaded = cls.load(found.folder, device)
            loaded.low_memory = low_memory
            return loaded
        v, t, d, off = load_wan(found, device, offload, text_encoder_device)
        return cls(v, t, d, spec.schedule, spec.defaults, spec.family, off, low_memory)

    @classmethod
    def load(cls, source, device: torch.device | str = "cpu") -> "SoraModel":
        """Load from a directory, a list of the three weight files, or a {kind: path} mapping."""
        spec = ModelSpec.read(source)
        files = model_files(source)
        mods = {k: load_component(p, k, device)[0] for k, p in files.items()}
        return cls(mods["vae"], mods["text_encoder"], mods["dit"], spec.schedule, spec.defaults)

    @classmethod
    def default(cls, device: torch.device | str = "cpu") -> "SoraModel":
        """The default model shipped in ``sora_core/default_model/``."""
        return cls.load(default_model_dir(), device)

    def save(self, folder: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> dict[str, Path]:
        """Write the three weight files (atomically) with schedule and defaults in the DiT's metadata."""
        folder = Path(folder)
        extra = dict(metadata or {})
        dit_meta = {**extra, SCHEDULE_KEY: to_json(self.schedule), DEFAULTS_KEY: json.dumps(asdict(self.defaults))}
        return {k: save_component(folder / MODEL_FILES[k], getattr(self, k), getattr(self, k).cfg,
                                  dit_meta if k == "dit" else extra) for k in MODEL_FILES}


class _ReleasedTextEncoder(torch.nn.Module):
    """Stands in for a released text encoder: keeps its config, refuses to encode."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg

    def encode(self, texts):
        raise ModelError("the text encoder was released after encoding (low memory): load the model again to "
                         "encode new prompts")


# ---------------------------------------------------------------------------------------------
# Steps (shared by generate, the nodes and the command line)
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_text(model: SoraModel, prompts: Sequence[str]) -> TextCond:
    """Prompts -> TextCond(context (B, L, text_dim) float32, mask (B, L) bool) on the model's device.
    Families whose DiT attends to the padding too (Wan: the 512-token zero-padded umT5 context, no
    cross-attention mask) get an all-True mask, so the DiT sees exactly what it was trained with."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a list of strings, got {prompts!r}")
    emb, mask = model.text_encoder.encode(list(prompts))
    if not model.family.text_mask:
        mask = torch.ones_like(mask)
    return TextCond(emb.float().to(model.device), mask.to(model.device))


def encode_prompts(model: SoraModel, prompt: str, negative_prompt: str = "",
                   cfg: float = 1.0) -> tuple[TextCond, TextCond | None]:
    """(cond, uncond) for one prompt; uncond (the negative prompt) only when ``cfg != 1``.
    Both are encoded in one call, so they share one token length."""
    if cfg == 1.0:
        return encode_text(model, [prompt]), None
    both = encode_text(model, [prompt, negative_prompt])
    return TextCond(both.context[:1], both.mask[:1]), TextCond(both.context[1:], both.mask[1:])


def make_noise_grid(model: SoraModel, geometry: LatentGeometry, generator: torch.Generator | None,
                    batch: int = 1) -> torch.Tensor:
    """The initial noise (B, C, T_lat, H_lat, W_lat), drawn on the CPU, moved to the model's device.
    Its size is what chooses the output's duration, resolution and aspect ratio."""
    return make_noise(geometry.latent_shape(model.spec.vae.z_dim, batch), generator, model.device)


def _start_latent(plan: ConditionPlan, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor | None:
    """The plan's SDEdit source latents (None without a start), checked against the noise grid and
    against a schedule that would ignore them (one starting at pure noise)."""
    if plan.start is None:
        return None
    z = plan.start.latents
    if z.shape[1:] != noise.shape[1:]:
        raise ConditionError(f"the SDEdit source latents have shape {tuple(z.shape)}; the noise grid is "
                             f"{tuple(noise.shape)}: generate at the source's frame count and size")
    if plan.denoise < 1.0 and float(sigmas[0]) >= 1.0:
        raise ConditionError(f"the plan edits a source (SDEdit, denoise={plan.denoise:g}) but the sigmas start "
                             f"at pure noise: sample along plan.schedule(steps, shift)")
    return z


@torch.no_grad()
def sample_latents(model: SoraModel, noise: torch.Tensor, cond: TextCond, uncond: TextCond | None = None, *,
                   sigmas: torch.Tensor, cfg: float = 1.0, sampler: str = "euler",
                   conditions: Sequence[FrameCondition] | ConditionPlan = (), condition_mode: str | None = None,
                   generator: torch.Generator | None = None, callback: Callable[[dict], None] | None = None,
                   autocast_dtype: torch.dtype | None = torch.bfloat16) -> torch.Tensor:
    """Denoise from ``noise`` (B, C, T, H, W) along ``sigmas`` -> clean latents (B, C, T, H, W).

    ``conditions``: frame conditions or a ``ConditionPlan``. The start is the plan's SDEdit source
    (``conditions.sdedit``; ``sigmas`` then come from ``plan.schedule(steps, shift)``) or zeros, with
    the conditions' clean frames, all noised to ``sigmas[0]``. ``cfg != 1`` needs ``uncond``;
    ``generator`` feeds stochastic samplers. ``condition_mode``: "timestep" | "replace", None = the
    model family's (``model.condition_mode``).
    """
    sample = get_sampler(sampler)
    cfg = check_cfg(cfg)
    if cfg != 1.0 and uncond is None:
        raise ValueError(f"cfg={cfg} needs an unconditional (negative prompt) conditioning")
    plan = as_plan(conditions)
    init_latent = _start_latent(plan, noise, sigmas)
    denoiser = cfg_denoiser(FlowDenoiser(model.dit, autocast_dtype), cond, uncond if uncond is not None else cond, cfg)
    cond_latent, mask = resolve(list(plan.conditions), tuple(noise.shape), noise.device)
    if plan.conditions:
        mode = model.condition_mode if condition_mode is None else condition_mode
        denoiser = condition_denoiser(denoiser, cond_latent, mask, noise, mode)
    x = prepare_latent(noise, sigmas[0], cond_latent, mask, init_latent)
    return sample(denoiser, x, sigmas, callback=callback, generator=generator)


@torch.no_grad()
def decode_latents(model: SoraModel, latents: torch.Tensor, autocast_dtype: torch.dtype | None = None,
                   tile_size: int | None = None) -> torch.Tensor:
    """Latents (B, C, T_lat, h, w) -> video (B, 3, T, H, W) float32 in [-1, 1]."""
    video = model.vae.decode(latents.to(model.device), tile_size=tile_size, dtype=autocast_dtype)
    return video.float().clamp(-1, 1)


@torch.no_grad()
def encode_video(model: SoraModel, video: torch.Tensor, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Video (B, 3, T, H, W) or (3, T, H, W) in [-1, 1] -> latents (B, C, T_lat, h, w) (posterior mean)."""
    if video.ndim == 4:
        video = video[None]
    return model.vae.encode(video.to(model.device), dtype=autocast_dtype)


# ---------------------------------------------------------------------------------------------
# One call
# ---------------------------------------------------------------------------------------------

@dataclass
class GenerationResult:
    """video (3, T, H, W) in [-1, 1]; latents (1, C, T_lat, h, w); the geometry, seed and sigmas used."""
    video: torch.Tensor
    latents: torch.Tensor
    geometry: LatentGeometry
    seed: int | None
    sigmas: torch.Tensor


def _generator(seed: int | None, generator: torch.Generator | None) -> tuple[torch.Generator, int | None]:
    if generator is not None:
        if seed is not None:
            raise ValueError("pass either seed or generator, not both")
        return generator, None
    seed = secrets.randbelow(2 ** 31) if seed is None else int(seed)
    return torch.Generator().manual_seed(seed), seed


def _sdedit_shorthand(conditions: Sequence[FrameCondition] | ConditionPlan, init_latent: torch.Tensor | None,
                     denoise: float) -> ConditionPlan:
    """The conditions as a plan, with ``generate``'s ``init_latent`` / ``denoise`` (a shorthand for
    ``conditions.sdedit(None, init_latent, denoise)``) as its start."""
    plan = as_plan(conditions)
    if init_latent is None:
        if denoise != 1.0:
            raise ValueError(f"denoise={denoise} edits an existing video: pass its latents as init_latent, or "
                             f"conditions=conditions.sdedit(vae, video, denoise)")
        return plan
    if plan.start is not None:
        raise ValueError("the conditions already carry an SDEdit start (conditions.sdedit); drop init_latent / denoise")
    return replace(plan, start=Start(init_latent, denoise))


def generate(model: SoraModel, prompt: str, negative_prompt: str = "", *, frames: int | None = None,
             height: int | None = None, width: int | None = None, steps: int | None = None,
             cfg: float | None = None, sampler: str | None = None, shift: float | None = None,
             seed: int | None = None, generator: torch.Generator | None = None,
             conditions: Sequence[FrameCondition] | ConditionPlan = (), init_latent: torch.Tensor | None = None,
             denoise: float = 1.0, condition_mode: str | None = None, callback: Callable[[dict], None] | None = None,
             device: torch.device | str | None = None, autocast_dtype: torch.dtype | None = torch.bfloat16,
             tile_size: int | None = None) -> GenerationResult:
    """Text (+ a condition plan: frame conditions, SDEdit) -> one video. Unset options take the model's
    schedule and defaults. Noise is drawn on the CPU from ``seed`` (random when unset) or ``generator``.
    ``conditions=conditions.sdedit(...)`` edits a video (at its size); ``init_latent`` + ``denoise`` are a
    shorthand for that plan. ``callback`` gets the sampler's dict(i, x, sigma, sigma_next, denoised)
    plus ``steps``. ``condition_mode`` None = the family's; ``tile_size`` (pixels) decodes in spatial
    tiles; a ``low_memory`` model releases its text encoder once the prompts are encoded."""
    d, s = model.defaults, model.schedule
    geometry = model.geometry(d.frames if frames is None else frames, d.height if height is None else height,
                              d.width if width is None else width)
    stored = "the model's stored schedule (sora.schedule): "
    steps = s.steps if steps is None else steps
    cfg = check_cfg(s.cfg, stored + "cfg") if cfg is None else check_cfg(cfg)
    sampler = s.sampler if sampler is None else sampler
    get_sampler(sampler)
    shift = check_shift(s.shift, stored + "shift") if shift is None else check_shift(shift)
    plan = _sdedit_shorthand(conditions, init_latent, denoise)
    sigmas = plan.schedule(steps, shift)
    if device is not None:
        model.to(device)
    gen, seed = _generator(seed, generator)
    cond, uncond = encode_prompts(model, prompt, negative_prompt, cfg)
    if model.low_memory:
        model.release_text_encoder()
    noise = make_noise_grid(model, geometry, gen)
    report = None if callback is None else (lambda info: callback({**info, "steps": steps}))
    latents = sample_latents(model, noise, cond, uncond, sigmas=sigmas, cfg=cfg, sampler=sampler,
                             conditions=plan, condition_mode=condition_mode, generator=gen, callback=report,
                             autocast_dtype=autocast_dtype)
    video = decode_latents(model, latents, autocast_dtype, tile_size)
    return GenerationResult(video[0], latents, geometry, seed, sigmas)


__all__ = ["MODEL_FILES", "DEFAULT_MODEL_DIR", "ModelError", "ModelMissingError", "GenerationDefaults", "ModelSpec", "Family",
           "SoraModel", "GenerationResult", "model_files", "default_model_dir", "encode_text", "encode_prompts",
           "make_noise_grid", "sample_latents", "decode_latents", "encode_video", "generate", "text_width"]
