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
from .weights import load_component, read_config, read_metadata, save_component

MODEL_FILES = {"vae": "vae.safetensors", "text_encoder": "text_encoder.safetensors", "dit": "dit.safetensors"}
DEFAULT_MODEL_DIR = Path(__file__).resolve().parent / "default_model"
SCHEDULE_KEY, DEFAULTS_KEY = "sora.schedule", "sora.defaults"


class ModelError(ValueError):
    """Model files that are incomplete or whose components do not fit together."""


class ModelMissingError(FileNotFoundError):
    """The model directory (e.g. the shipped default model) or one of its files is missing."""


@dataclass(frozen=True)
class GenerationDefaults:
    """Default output size of a model (stored as ``sora.defaults`` in the DiT file)."""
    frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8.0


# ---------------------------------------------------------------------------------------------
# Model files and configs (cheap: headers only, for validating requests before loading weights)
# ---------------------------------------------------------------------------------------------

def _missing_default_message(folder: Path) -> str:
    return (f"the default model is missing: {folder} must hold {', '.join(MODEL_FILES.values())}. Train it with "
            f"`sora train vae --preset default --out runs/vae --export runs/model` then `sora train dit --preset "
            f"default --out runs/dit --vae runs/model/vae.safetensors --export runs/model`, and copy the files "
            f"into {folder} (or pass the folder with --model / SoraModel.load)")


def model_files(source: str | os.PathLike | Sequence | Mapping) -> dict[str, Path]:
    """{kind: path} for a model directory, a list of weight files, or a {kind: path} mapping."""
    if isinstance(source, Mapping):
        files = {k: Path(v) for k, v in source.items()}
    elif isinstance(source, (str, os.PathLike)):
        folder = Path(source)
        if folder.is_file():
            raise ModelError(f"{str(folder)!r} is a file; a model is a folder holding "
                             f"{', '.join(MODEL_FILES.values())}")
        if not folder.is_dir():
            raise ModelMissingError(f"model directory {str(folder)!r} does not exist")
        files = {k: folder / name for k, name in MODEL_FILES.items()}
    else:
        files = {read_config(p).kind: Path(p) for p in source}
    missing = [f"{k} ({p})" for k, p in files.items() if not p.is_file()] + \
              [k for k in MODEL_FILES if k not in files]
    if missing:
        raise ModelMissingError(f"model files missing: {', '.join(missing)}")
    unknown = sorted(set(files) - set(MODEL_FILES))
    if unknown:
        raise ModelError(f"unexpected model components {unknown}; a model has {', '.join(MODEL_FILES)}")
    return files


@dataclass(frozen=True)
class ModelSpec:
    """The configs of a model's three components plus its schedule and output defaults."""
    vae: VAEConfig
    text_encoder: TextEncoderConfig
    dit: DiTConfig
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)

    def __post_init__(self):
        v, t, d = self.vae, self.text_encoder, self.dit
        if not (v.z_dim == d.in_channels == d.out_channels):
            raise ModelError(f"the VAE has {v.z_dim} latent channels but the DiT takes {d.in_channels} and "
                             f"predicts {d.out_channels}: they were not trained together")
        if t.out_dim != d.text_dim:
            raise ModelError(f"the text encoder outputs {t.out_dim}-d embeddings but the DiT expects {d.text_dim}")

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
    """VAE + text encoder + DiT (+ schedule and output defaults). Modules are in eval mode."""

    def __init__(self, vae, text_encoder, dit, schedule: ScheduleConfig | None = None,
                 defaults: GenerationDefaults | None = None):
        self.vae, self.text_encoder, self.dit = vae.eval(), text_encoder.eval(), dit.eval()
        self.spec = ModelSpec(vae.cfg, text_encoder.cfg, dit.cfg, schedule or ScheduleConfig(),
                              defaults or GenerationDefaults())

    @property
    def schedule(self) -> ScheduleConfig:
        return self.spec.schedule

    @property
    def defaults(self) -> GenerationDefaults:
        return self.spec.defaults

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    def to(self, device: torch.device | str) -> "SoraModel":
        for m in (self.vae, self.text_encoder, self.dit):
            m.to(device)
        return self

    def geometry(self, frames: int, height: int, width: int) -> LatentGeometry:
        return self.spec.geometry(frames, height, width)

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


# ---------------------------------------------------------------------------------------------
# Steps (shared by generate, the nodes and the command line)
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def encode_text(model: SoraModel, prompts: Sequence[str]) -> TextCond:
    """Prompts -> TextCond(context (B, L, text_dim) float32, mask (B, L) bool) on the model's device."""
    if isinstance(prompts, str) or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompts must be a list of strings, got {prompts!r}")
    emb, mask = model.text_encoder.encode(list(prompts))
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
                   conditions: Sequence[FrameCondition] | ConditionPlan = (), condition_mode: str = "timestep",
                   generator: torch.Generator | None = None, callback: Callable[[dict], None] | None = None,
                   autocast_dtype: torch.dtype | None = torch.bfloat16) -> torch.Tensor:
    """Denoise from ``noise`` (B, C, T, H, W) along ``sigmas`` -> clean latents (B, C, T, H, W).

    ``conditions``: frame conditions or a ``ConditionPlan``. The start is the plan's SDEdit source
    (``conditions.sdedit``; ``sigmas`` then come from ``plan.schedule(steps, shift)``) or zeros, with
    the conditions' clean frames, all noised to ``sigmas[0]``. ``cfg != 1`` needs ``uncond``;
    ``generator`` feeds stochastic samplers.
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
        denoiser = condition_denoiser(denoiser, cond_latent, mask, noise, condition_mode)
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
             denoise: float = 1.0, condition_mode: str = "timestep", callback: Callable[[dict], None] | None = None,
             device: torch.device | str | None = None,
             autocast_dtype: torch.dtype | None = torch.bfloat16) -> GenerationResult:
    """Text (+ a condition plan: frame conditions, SDEdit) -> one video. Unset options take the model's
    schedule and defaults. Noise is drawn on the CPU from ``seed`` (random when unset) or ``generator``.
    ``conditions=conditions.sdedit(...)`` edits a video (at its size); ``init_latent`` + ``denoise`` are a
    shorthand for that plan. ``callback`` gets the sampler's dict(i, x, sigma, sigma_next, denoised)
    plus ``steps``."""
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
    noise = make_noise_grid(model, geometry, gen)
    report = None if callback is None else (lambda info: callback({**info, "steps": steps}))
    latents = sample_latents(model, noise, cond, uncond, sigmas=sigmas, cfg=cfg, sampler=sampler,
                             conditions=plan, condition_mode=condition_mode, generator=gen, callback=report,
                             autocast_dtype=autocast_dtype)
    video = decode_latents(model, latents, autocast_dtype)
    return GenerationResult(video[0], latents, geometry, seed, sigmas)


__all__ = ["MODEL_FILES", "DEFAULT_MODEL_DIR", "ModelError", "ModelMissingError", "GenerationDefaults", "ModelSpec",
           "SoraModel", "GenerationResult", "model_files", "default_model_dir", "encode_text", "encode_prompts",
           "make_noise_grid", "sample_latents", "decode_latents", "encode_video", "generate"]
