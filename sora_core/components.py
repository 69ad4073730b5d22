"""Finding a model's three components on disk and checking they fit together, before any weight is read.

    found = locate("models/diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors",
                   vae="models/vae/wan_2.1_vae.safetensors",
                   text_encoder="models/text_encoders/umt5_xxl_fp16.safetensors")
    found.kind        # "sora" (the pack's own model folder) or "wan"
    found.family      # a families.Family row (schedule, output defaults, condition mode, text convention)

``model`` may be
    a Sora model folder           ``vae.safetensors``, ``text_encoder.safetensors``, ``dit.safetensors``
                                  with their configs in the metadata (the shipped default model)
    a diffusers pipeline folder   ``model_index.json`` + ``transformer/``, ``vae/``, ``text_encoder/``
                                  (+ ``tokenizer/``); ``vae`` / ``text_encoder`` override its parts
    a folder of the three names   holding Wan files instead (no Sora configs inside)
    a Wan DiT                     one file, shards + index, or a diffusers ``transformer`` folder; then
                                  ``vae`` and ``text_encoder`` name the other two (file or folder each)
Every file is checked by ``loading.inspect`` (headers only: truncated or pickled files, a VAE given as
the DiT, unsupported families are named), the umT5 tokenizer is found, and the components are checked
against each other (latent channels, text width, the Wan 2.2 TI2V DiT with the Wan 2.2 VAE): one
``ModelError`` naming both files.
"""

from __future__ import annotations

from dataclasses import dataclass
import os
from pathlib import Path
from typing import Mapping, Sequence

import torch

from . import loading
from .families import VAE_OF, Family, family
from .weights import CONFIG_KEY, WeightsError, read_config, read_metadata

MODEL_FILES = {"vae": "vae.safetensors", "text_encoder": "text_encoder.safetensors", "dit": "dit.safetensors"}
EXAMPLE = {"vae": {"wan2.1-vae": "models/vae/wan_2.1_vae.safetensors", "wan2.2-vae": "models/vae/wan2.2_vae.safetensors"},
           "text_encoder": "models/text_encoders/umt5_xxl_fp16.safetensors"}


_WHAT = {"vae": "VAE", "text_encoder": "text encoder"}


class ModelError(ValueError):
    """Model files that are incomplete or whose components do not fit together."""


class ModelMissingError(FileNotFoundError):
    """The model directory (e.g. the shipped default model) or one of its files is missing."""


@dataclass(frozen=True)
class Found:
    """What ``locate`` found: a Sora model folder (``folder``), or the checkpoints of a Wan model."""
    kind: str                                           # "sora" | "wan"
    family: Family
    folder: Path | None = None
    checkpoints: dict | None = None                     # {"dit" | "vae" | "text_encoder": loading.Checkpoint}
    tokenizer: object = None                            # the umT5 tokenizer (found before any weight is read)

    def paths(self) -> dict[str, Path]:
        """{kind: the path given for it}."""
        if self.kind == "sora":
            return {k: self.folder / n for k, n in MODEL_FILES.items()}
        return {k: ck.source for k, ck in self.checkpoints.items()}

    def storage_bytes(self) -> dict[str, int]:
        """{kind: bytes of its weights as stored} (Wan checkpoints; empty for a Sora folder)."""
        return {k: ck.storage_bytes() for k, ck in (self.checkpoints or {}).items()}


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


def is_sora_file(path) -> bool:
    """Whether ``path`` is one of the files of a Sora model (its config in the metadata)."""
    try:
        return CONFIG_KEY in read_metadata(path)
    except WeightsError:
        return False


def _paths(model: Path, vae, text_encoder) -> dict | None:
    """{kind: path or None} of a Wan model given as ``model``; None for a Sora model folder."""
    if model.is_dir() and (model / "model_index.json").is_file():
        return {"dit": model, "vae": vae or model, "text_encoder": text_encoder or model}
    if model.is_dir() and all((model / n).is_file() for n in MODEL_FILES.values()):
        if is_sora_file(model / MODEL_FILES["dit"]):
            if vae is not None or text_encoder is not None:
                raise ModelError(f"{str(model)!r} is a Sora model folder with its own VAE and text encoder: "
                                 f"give no separate VAE / text encoder with it")
            return None
        return {"dit": model / MODEL_FILES["dit"], "vae": vae or model / MODEL_FILES["vae"],
                "text_encoder": text_encoder or model / MODEL_FILES["text_encoder"]}
    return {"dit": model, "vae": vae, "text_encoder": text_encoder}


def _name(ck) -> str:
    return repr(str(ck.source))


def check_fit(dit, vae, text_encoder) -> None:
    """ModelError naming both files when two checkpoints (``loading.Checkpoint``) do not belong together."""
    d, v, t = dit.detected, vae.detected, text_encoder.detected
    fam = family(d.family)
    want = VAE_OF.get(fam.name)
    if v.cfg.z_dim != d.cfg.in_channels or (want is not None and v.family != want and fam.name == "wan2.2-ti2v"):
        hint = f"; {fam.name} models use the {want} ({EXAMPLE['vae'].get(want, '')})" if want else ""
        raise ModelError(f"the VAE {_name(vae)} ({v.family}, {v.cfg.z_dim} latent channels) does not fit the "
                         f"diffusion model {_name(dit)} ({d.family}, {d.cfg.in_channels} channels){hint}")
    width = getattr(t.cfg, "d_model", getattr(t.cfg, "out_dim", None))
    if width != d.cfg.text_dim:
        raise ModelError(f"the text encoder {_name(text_encoder)} ({t.family}) outputs {width}-d embeddings but the "
                         f"diffusion model {_name(dit)} ({d.family}) expects {d.cfg.text_dim}: Wan models use "
                         f"umT5-XXL ({EXAMPLE['text_encoder']})")


def _inspect(path, kind: str):
    try:
        return loading.inspect(path, kind)
    except WeightsError as e:
        raise ModelError(str(e)) from e


def locate(model, vae=None, text_encoder=None) -> Found:
    """Find and check a model's components (see the module docstring) from headers only."""
    model = Path(model)
    if not model.exists():
        raise ModelMissingError(f"model {str(model)!r} does not exist (expected a Sora model folder, a diffusers "
                                f"pipeline folder, or a Wan diffusion model file or folder)")
    if model.is_file() and is_sora_file(model):
        raise ModelError(f"{str(model)!r} is a file; a Sora model is given as its folder (holding "
                         f"{', '.join(MODEL_FILES.values())})")
    paths = _paths(model, vae, text_encoder)
    if paths is None:
        return Found("sora", family("sora"), folder=model)
    dit = _inspect(paths["dit"], "dit")
    fam = family(dit.detected.family)
    missing = [k for k in ("vae", "text_encoder") if paths[k] is None]
    if missing:
        examples = {"vae": EXAMPLE["vae"].get(VAE_OF.get(fam.name), ""), "text_encoder": EXAMPLE["text_encoder"]}
        raise ModelError(f"{str(model)!r} is a {dit.detected.family} diffusion model alone: give its "
                         + " and its ".join(f"{_WHAT[k]} (e.g. {examples[k]})" for k in missing))
    cks = {"dit": dit, "vae": _inspect(paths["vae"], "vae"), "text_encoder": _inspect(paths["text_encoder"], "text_encoder")}
    check_fit(cks["dit"], cks["vae"], cks["text_encoder"])
    from .models.wan.tokenizer import find_tokenizer
    tokenizer = find_tokenizer(cks["text_encoder"].files[0])
    return Found("wan", fam, checkpoints=cks, tokenizer=tokenizer)


def load_wan(found: Found, device: torch.device | str = "cpu", offload: bool = False,
             text_encoder_device: torch.device | str | None = None) -> tuple:
    """(vae, text encoder, dit, BlockOffload or None) of a located Wan model, weights in their storage
    dtype. ``offload`` keeps the DiT blocks in host memory, streamed to ``device`` block by block (a
    no-op on the CPU); ``text_encoder_device`` defaults to ``device``, or the CPU with ``offload``."""
    from .models.offload import offload_dit
    from .models.wan.text_encoder import UMT5TextEncoder
    device = torch.device(device)
    streamed = offload and device.type != "cpu"
    te_device = text_encoder_device if text_encoder_device is not None else "cpu" if offload else device
    cks = found.checkpoints
    dit, _ = loading.load(cks["dit"].source, "dit", "cpu" if streamed else device)
    offloader = offload_dit(dit, device) if streamed else None
    vae, _ = loading.load(cks["vae"].source, "vae", device)
    encoder, _ = loading.load(cks["text_encoder"].source, "text_encoder", te_device)
    return vae, UMT5TextEncoder(found.tokenizer, encoder), dit, offloader


__all__ = ["MODEL_FILES", "ModelError", "ModelMissingError", "Found", "locate", "is_sora_file", "model_files", "check_fit", "load_wan"]
