"""Operations of the node graph: one function per node, on the values that travel between nodes.

The ComfyUI layer (``nodes/``) only declares inputs and calls these. Values:
- ``LoadedModel``: a ``pipeline.SoraModel`` plus its compute dtype and a latent -> RGB preview map;
- ``PromptConditioning``: positive and negative ``TextCond`` of one text-encoder call;
- LATENT: ``{"samples": (B, C, T_lat, H_lat, W_lat)}``; IMAGE: (T, H, W, 3) in [0, 1] (``clips``);
- frame conditions: a tuple of ``conditions.FrameCondition``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import torch
from einops import rearrange, repeat

from sora_core import budget, geometry, pipeline, weights
from sora_core.media import clips
from sora_core.diffusion import conditions
from sora_core.diffusion.flow import TextCond, make_noise
from sora_core.diffusion.samplers import get_sampler
from sora_core.weights import load_component

DTYPES = {"auto": "auto", "float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


# ---------------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model bundle with the dtype its DiT runs in (autocast; None = float32) and a preview map."""
    model: pipeline.SoraModel
    dtype: torch.dtype | None                   # the DiT's autocast dtype (None = float32)
    rgb_map: torch.Tensor                       # (C + 1, 3): latent channels + bias -> RGB in [-1, 1]
    name: str = "model"
    vae_dtype: torch.dtype | None = None        # the VAE's (float32 unless chosen explicitly)
    # moves a component ("dit" | "vae" | "text_encoder") to its compute device right before it is
    # used (ComfyUI's model management, see host.ManagedModel); None: modules stay where they are
    place: Callable[[str], None] | None = None
    device: torch.device | None = None          # the DiT's compute device (None: where its weights are)

    def use(self, kind: str) -> torch.device:
        """Make component ``kind`` ready (``place``) and return the device its weights are on."""
        if self.place is not None:
            self.place(kind)
        return module_device(getattr(self.model, kind))


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (the CPU for one without any)."""
    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")


def resolve_dtype(name: str, device: torch.device) -> torch.dtype | None:
    """Compute dtype for a choice of ``DTYPES``: auto = bfloat16 autocast (float16 on GPUs without bf16)."""
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is unknown; allowed: {', '.join(DTYPES)}")
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return torch.float16
    return torch.bfloat16


@torch.no_grad()
def latent_rgb_map(vae, device: torch.device | str = "cpu") -> torch.Tensor:
    """Least-squares linear map from latent channels (+ bias) to RGB, fitted on solid colours.

    Encodes 27 flat colours as one-frame images and solves ``[z, 1] @ M = rgb``; used for cheap
    sampling previews of any VAE. Returns M (C + 1, 3).
    """
    levels = torch.tensor([-0.8, 0.0, 0.8])
    rgb = torch.cartesian_prod(levels, levels, levels)                             # (27, 3)
    size = 2 * vae.spatial_factor
    images = repeat(rgb, "n c -> n c 1 h w", h=size, w=size).to(device)
    z = vae.encode(images).float().mean(dim=(2, 3, 4))                              # (27, C)
    z1 = torch.cat([z, torch.ones(len(z), 1, device=z.device)], dim=1)
    return torch.linalg.lstsq(z1.cpu(), rgb).solution                              # (C + 1, 3)


def load_model(model_dir: str | Path | None = None, files: dict[str, Path | None] | None = None,
               dtype: str = "auto", device: torch.device | str = "cpu",
               compute_device: torch.device | str | None = None) -> LoadedModel:
    """The default model, a model folder, or the default with some components from files.

    ``files``: {"dit" | "vae" | "text_encoder": path or None (= the default's)}. Weights are loaded
    onto ``device``; ``compute_device`` (default: ``device``) is where the DiT will run (it chooses
    the autocast dtype). Modules are built outside inference mode even when called inside it
    (ComfyUI runs nodes in ``inference_mode``), so their parameters stay ordinary tensors.
    """
    compute = torch.device(compute_device if compute_device is not None else device)
    with torch.inference_mode(False):
        return _load_model(model_dir, files, dtype, torch.device(device), compute)


def with_placement(handle: LoadedModel, place: Callable[[str], None] | None,
                   device: torch.device | str | None = None) -> LoadedModel:
    """The same model whose components are made ready by ``place(kind)`` before each use, its DiT
    computing on ``device`` (see ``LoadedModel.place``)."""
    return replace(handle, place=place, device=None if device is None else torch.device(device))


def is_sora_file(path: Path) -> bool:
    """Whether ``path`` is one of the pack's own weight files (its config in the metadata); anything
    else (a Wan checkpoint, or a bad file, which the Wan loader then names) goes to ``SoraModel.open``."""
    try:
        return Path(path).is_file() and weights.CONFIG_KEY in weights.read_metadata(path)
    except weights.WeightsError:
        return False


def _wan_files(files: dict[str, Path]) -> dict[str, Path] | None:
    """The three files of a Wan model when any chosen file is not a Sora file; None for Sora files.
    Raises ``pipeline.ModelError`` naming the inputs left at the default (they cannot be mixed)."""
    wan = sorted(k for k, p in files.items() if not is_sora_file(p))
    if not wan:
        return None
    missing = [k for k in pipeline.MODEL_FILES if k not in files]
    if missing:
        chosen = ", ".join(f"{k} {Path(files[k]).name!r}" for k in wan)
        raise pipeline.ModelError(
            f"{chosen}: a Wan model needs its diffusion model, VAE and text encoder chosen together; "
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} still 'default' (the pack's own "
            f"model, which does not fit): choose the Wan file(s) there (e.g. dit wan2.1_t2v_1.3B_bf16.safetensors, "
            f"vae wan_2.1_vae.safetensors, text_encoder umt5_xxl_fp16.safetensors)")
    return files


def _load_model(model_dir, files, dtype: str, device: torch.device, compute: torch.device) -> LoadedModel:
    files = {k: v for k, v in (files or {}).items() if v is not None}
    wan = None if model_dir else _wan_files(files)
    if model_dir:
        model, name = pipeline.SoraModel.open(model_dir, device=device), Path(model_dir).name
    elif wan is not None:
        model = pipeline.SoraModel.from_files(wan["dit"], wan["vae"], wan["text_encoder"], device=device)
        name = Path(wan["dit"]).stem
    elif len(files) == len(pipeline.MODEL_FILES):
        model, name = pipeline.SoraModel.load(files, device), "files"
    else:
        model, name = pipeline.SoraModel.default(device), "default"
    if files and not model_dir and len(files) < len(pipeline.MODEL_FILES):
        mods = {k: load_component(p, k, device)[0] for k, p in files.items()}
        parts = {k: mods.get(k, getattr(model, k)) for k in pipeline.MODEL_FILES}
        model = pipeline.SoraModel(parts["vae"], parts["text_encoder"], parts["dit"], model.schedule,
                                   model.defaults)
        name = "default+" + "+".join(sorted(files))
    vae_dtype = None if dtype == "auto" else resolve_dtype(dtype, compute)
    return LoadedModel(model, resolve_dtype(dtype, compute), latent_rgb_map(model.vae, device), name, vae_dtype)


# ---------------------------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class PromptConditioning:
    """Positive and negative prompt embeddings (encoded together: one token length)."""
    cond: TextCond
    uncond: TextCond
    positive: str
    negative: str


def encode_prompts(handle: LoadedModel, positive: str, negative: str = "") -> PromptConditioning:
    handle.use("text_encoder")
    both = pipeline.encode_text(handle.model, [positive, negative])
    return PromptConditioning(TextCond(both.context[:1], both.mask[:1]),
                              TextCond(both.context[1:], both.mask[1:]), positive, negative)


# ---------------------------------------------------------------------------------------------
# Latents
# ---------------------------------------------------------------------------------------------

def request_geometry(handle: LoadedModel, width: int, height: int, frames: int, aspect: str = "custom",
                     seconds: float = 0.0, fps: float = 8.0) -> tuple[geometry.LatentGeometry, list[str]]:
    """The nearest valid geometry for a request, with notes on every value that was snapped.

    ``aspect`` other than "custom" keeps about ``width * height`` pixels at that aspect ratio;
    ``seconds`` > 0 replaces ``frames`` by ``seconds * fps`` frames.
    """
    spec = handle.model.spec
    ft, fs, patch = spec.vae.temporal_factor, spec.vae.spatial_factor, tuple(spec.dit.patch_size)
    multiple = geometry.size_multiple(fs, patch[1], patch[2])
    notes = []
    if aspect != "custom":
        h, w = geometry.size_for_aspect(aspect, width * height, multiple)
        notes.append(f"{aspect}: {w}x{h}")
    else:
        h, w = geometry.nearest_valid_size(height, width, multiple)
        if (h, w) != (height, width):
            notes.append(f"size {width}x{height} -> {w}x{h} (multiples of {multiple})")
    t = geometry.frames_for_seconds(seconds, fps, ft) if seconds > 0 else geometry.nearest_valid_frames(frames, ft)
    if seconds > 0:
        notes.append(f"{seconds:g} s at {fps:g} fps -> {t} frames")
    elif t != frames:
        notes.append(f"frames {frames} -> {t} (1 + {ft}k)")
    t = geometry.frames_for_temporal_patch(t, ft, patch[0])
    geo = handle.model.geometry(t, h, w)
    check_budget(handle, geo)
    return geo, notes


def check_budget(handle: LoadedModel, geo: geometry.LatentGeometry, batch: int = 1, **phases) -> budget.Estimate:
    """Refuse (``budget.BudgetError``, with the estimate and the available memory) a request on this
    loaded model that cannot fit in memory; ``phases``: see ``budget.estimate`` (weights are loaded)."""
    if type(batch) is not int or batch < 1:
        raise ValueError(f"batch size must be an integer >= 1, got {batch!r}")
    device = getattr(handle, "device", None) or handle.model.device        # compute device, else the weights'
    return budget.check_request(handle.model.spec, geo, batch, device, handle.dtype,
                                weights=False, **phases)


def empty_latent(handle: LoadedModel, geo: geometry.LatentGeometry, batch: int = 1) -> dict:
    """LATENT of zeros for a geometry: {"samples": (B, C, T_lat, H_lat, W_lat)}; refused before
    allocating when sampling and decoding it cannot fit in memory."""
    check_budget(handle, geo, batch)
    shape = geo.latent_shape(handle.model.spec.vae.z_dim, batch)
    return {"samples": torch.zeros(shape)}


def _latent_geometry(handle: LoadedModel, x: torch.Tensor) -> geometry.LatentGeometry:
    spec = handle.model.spec
    return geometry.latent_geometry_of(tuple(x.shape), spec.vae.temporal_factor, spec.vae.spatial_factor,
                                       tuple(spec.dit.patch_size))


def check_latent(handle: LoadedModel, latent: dict, name: str = "latent") -> torch.Tensor:
    """The samples of a LATENT made for this model, or an error naming what does not fit."""
    x = latent.get("samples") if isinstance(latent, dict) else None
    c = handle.model.spec.vae.z_dim
    if not isinstance(x, torch.Tensor) or x.ndim != 5 or x.shape[1] != c:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a Sora video latent (B, {c}, T, H, W), got {shape}; make it with "
                         f"Sora Empty Latent or Sora VAE Encode")
    return x


# ---------------------------------------------------------------------------------------------
# Sampling
# ---------------------------------------------------------------------------------------------

def sample(handle: LoadedModel, prompt: PromptConditioning, latent: dict, seed: int, steps: int, cfg: float | None,
           sampler: str, shift: float | None = None, denoise: float = 1.0,
           frame_conditions: Sequence[conditions.FrameCondition] = (), condition_mode: str | None = None,
           callback: Callable[[int, torch.Tensor], None] | None = None) -> dict:
    """Denoise a LATENT: pure noise (denoise = 1) or SDEdit of its samples (denoise < 1: the plan of
    ``conditions.sdedit``, with the frame conditions on top, sampled along its truncated schedule).

    ``shift`` / ``cfg`` None: the model's (its family's default or its stored schedule); ``condition_mode``
    None: the model's ("timestep" where its DiT understands per-frame times, else "replace").
    Noise comes from ``seed`` on the CPU. ``callback(step, denoised)`` after every step.
    """
    x = check_latent(handle, latent)
    model = handle.model
    shift = model.schedule.shift if shift is None else shift
    cfg = model.schedule.cfg if cfg is None else cfg
    get_sampler(sampler)
    if not 0.0 < denoise <= 1.0:
        raise ValueError(f"denoise must be in (0, 1], got {denoise}")
    check_budget(handle, _latent_geometry(handle, x), x.shape[0], decode=False)
    generator = torch.Generator().manual_seed(int(seed))
    device = handle.use("dit")
    noise = make_noise(tuple(x.shape), generator, device)
    plan = conditions.as_plan(frame_conditions)
    if denoise < 1.0:
        plan = conditions.sdedit(None, x.to(device), denoise).with_conditions(plan.conditions)
    report = None if callback is None else (lambda info: callback(info["i"] + 1, info["denoised"]))
    cond, uncond = (TextCond(c.context.to(device), c.mask.to(device)) for c in (prompt.cond, prompt.uncond))
    out = pipeline.sample_latents(
        model, noise, cond, uncond, sigmas=plan.schedule(steps, shift), cfg=cfg, sampler=sampler,
        conditions=plan, condition_mode=condition_mode, generator=generator, callback=report,
        autocast_dtype=handle.dtype)
    return {"samples": out.float().cpu()}


@torch.no_grad()
def preview_image(handle: LoadedModel, latents: torch.Tensor) -> torch.Tensor:
    """uint8 (H, W, 3) preview of the middle latent frame of the first sample, at pixel size."""
    z = latents[0, :, latents.shape[2] // 2].float().cpu()                          # (C, h, w)
    z1 = torch.cat([z, torch.ones_like(z[:1])])
    rgb = torch.einsum("chw,cr->hwr", z1, handle.rgb_map).clamp(-1, 1)
    fs = handle.model.spec.vae.spatial_factor
    rgb = repeat(rgb, "h w r -> (h a) (w b) r", a=fs, b=fs)
    return ((rgb + 1) * 127.5).round().to(torch.uint8)


# ---------------------------------------------------------------------------------------------
# VAE
# ---------------------------------------------------------------------------------------------

def encode_images(handle: LoadedModel, images: torch.Tensor, fit: str = "trim") -> dict:
    """IMAGE (T, H, W, 3) -> LATENT; T is fitted to a valid count (``clips.fit_frames``)."""
    vae_cfg = handle.model.spec.vae
    images = clips.fit_frames(images, vae_cfg.temporal_factor, fit)
    geometry.check_size(images.shape[1], images.shape[2], vae_cfg.spatial_factor, "images")
    device = handle.use("vae")
    with torch.no_grad():
        z = handle.model.vae.encode(clips.clip_to_video(images).to(device), dtype=handle.vae_dtype)
    return {"samples": z.float().cpu()}


def decode_latent(handle: LoadedModel, latent: dict, tile_size: int = 0,
                  progress: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """LATENT -> IMAGE (B*T, H, W, 3), chunk by chunk (``progress(done, total)`` in pixel frames)."""
    z = check_latent(handle, latent)
    check_budget(handle, _latent_geometry(handle, z), z.shape[0], sampling=False)
    z = z.to(handle.use("vae"))
    if tile_size:
        with torch.no_grad():
            video = handle.model.vae.decode(z, tile_size=tile_size, dtype=handle.vae_dtype)
        return clips.video_to_clip(video.float().clamp(-1, 1).cpu())
    total = geometry.pixel_frames(z.shape[2], handle.model.spec.vae.temporal_factor)
    parts, done = [], 0
    for chunk in handle.model.vae.decode_chunks(z, dtype=handle.vae_dtype):           # (B, 3, t, H, W)
        parts.append(chunk.cpu())
        done += chunk.shape[2]
        if progress is not None:
            progress(done, total)
    return clips.video_to_clip(torch.cat(parts, dim=2))


# ---------------------------------------------------------------------------------------------
# Frame conditions from IMAGE frames
# ---------------------------------------------------------------------------------------------

Conditions = tuple  # of conditions.FrameCondition


def _video(handle: LoadedModel, images: torch.Tensor, name: str) -> torch.Tensor:
    """IMAGE (T, H, W, 3) -> (1, 3, T, H, W) in [-1, 1] on the model's device."""
    return clips.clip_to_video(clips.check_clip(images, name)).to(handle.use("vae"))


def image_conditions(handle: LoadedModel, image: torch.Tensor, position: str = "start",
                     strength: float = 1.0) -> Conditions:
    """Pin the first frame of ``image`` at the start (image-to-video) or the end of the output."""
    if position not in ("start", "end"):
        raise ValueError(f"position {position!r} is unknown; allowed: start, end")
    first = _video(handle, image, "image")[:, :, :1]
    build = conditions.image_to_video if position == "start" else conditions.image_at_end
    return build(handle.model.vae, first, strength).conditions


def extend_conditions(handle: LoadedModel, video: torch.Tensor, direction: str,
                      latent_frames: int = conditions.EXTEND_CONTEXT,
                      strength: float = 1.0) -> tuple[Conditions, int]:
    """(conditions, overlap pixel frames) to continue ``video`` forward or lead into it backward."""
    if direction not in ("forward", "backward"):
        raise ValueError(f"direction {direction!r} is unknown; allowed: forward, backward")
    v = _video(handle, video, "video")
    if direction == "forward":
        plan = conditions.extend_forward(handle.model.vae, v, latent_frames, strength)
        return plan.conditions, plan.drop_start
    plan = conditions.extend_backward(handle.model.vae, v, latent_frames, strength)
    return plan.conditions, plan.drop_end


def loop_conditions(handle: LoadedModel, image: torch.Tensor, strength: float = 1.0) -> tuple[Conditions, int, int]:
    """(conditions, frames to drop at the start, frames to drop at the end) for a seamless loop
    through the first frame of ``image`` (see ``conditions.loop``)."""
    plan = conditions.loop(handle.model.vae, _video(handle, image, "image")[:, :, :1], strength)
    return plan.conditions, plan.drop_start, plan.drop_end


def connect_conditions(handle: LoadedModel, first: torch.Tensor, second: torch.Tensor, latent_frames: int = 1,
                       strength: float = 1.0) -> tuple[Conditions, int, int]:
    """(conditions, overlap with ``first``, overlap with ``second``) for a transition between clips."""
    plan = conditions.connect(handle.model.vae, _video(handle, first, "first"), _video(handle, second, "second"),
                              latent_frames, strength)
    return plan.conditions, plan.drop_start, plan.drop_end


def blend_conditions(handle: LoadedModel, first: torch.Tensor, second: torch.Tensor, curve: str = "ease_in_out",
                     start: float = 0.25, end: float = 0.75, strength: float = 0.9,
                     transition_strength: float = 0.5) -> Conditions:
    """Per-latent-frame conditions interpolating from ``first`` to ``second`` along ``curve``.

    Both clips (same size, frame counts fitted down to the shorter valid count) are encoded, their
    latents blended with ``clips.transition_weights`` over [start, end] of the length; frames inside
    the transition get ``transition_strength`` (lower = more freedom to invent the passage).
    """
    n = min(first.shape[0], second.shape[0])
    if first.shape[1:] != second.shape[1:]:
        raise ValueError(f"first and second must have the same frame size, got {tuple(first.shape[1:3])} and "
                         f"{tuple(second.shape[1:3])}; use Sora Resize Clip")
    za = encode_images(handle, first[:n], "trim")["samples"]
    zb = encode_images(handle, second[:n], "trim")["samples"]
    w = clips.transition_weights(za.shape[2], curve, start, end)
    mixed = clips.blend(za, zb, w, time_dim=2).to(handle.model.device)
    out = []
    for k in range(mixed.shape[2]):
        s = transition_strength if 0.0 < float(w[k]) < 1.0 else strength
        out.append(conditions.FrameCondition(mixed[:, :, k:k + 1], k, float(s)))
    return tuple(out)
