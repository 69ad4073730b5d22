"""Pieces both training stages use, so that neither trainer imports the other.

- trained weights: ``resolve_weights`` (a path or "shipped"), ``encoder_id`` (the digest of a VAE's
  latent space), ``trained_pair_paths`` (an exported DiT + text encoder pair of a latent space);
- ``parse_bucket``: an 'HxWxT' name as a 1-sample bucket (eval and statistics clips);
- ``flow_pair``: the flow-matching input and target, noised by ``diffusion.flow.add_noise``;
- ``TextContextCache``: features of a frozen text encoder per caption.

The DiT stage trains with them, the VAE stage's decoder-on-denoised-latents mode reads a trained
DiT through them; both stages import from here (the import graph is checked acyclic by
tests/test_import_cycles.py).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from ..diffusion.flow import add_noise
from .buckets import Bucket
from .common import autocast

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "default_model"


# ---------------------------------------------------------------------------------------------
# Trained weights
# ---------------------------------------------------------------------------------------------

def resolve_weights(path: str | Path, shipped: str = "vae.safetensors") -> Path:
    """A weights path; ``"shipped"`` = the shipped default model's file ``shipped``."""
    path = DEFAULT_MODEL / shipped if path == "shipped" else Path(path)
    if not path.is_file():
        what = shipped.split(".")[0].replace("_", " ")
        raise FileNotFoundError(f"{what} weights {path} do not exist (train that stage first or pass the right file)")
    return path


def encoder_id(vae: nn.Module) -> str:
    """A digest of what fixes the latent space: encoder + quant_conv weights and latent statistics."""
    h = hashlib.sha256()
    for name, t in sorted(vae.state_dict().items()):
        if name.startswith(("encoder.", "quant_conv.")):
            h.update(name.encode())
            h.update(t.detach().float().cpu().numpy().tobytes())
    h.update(repr((vae.cfg.latents_mean, vae.cfg.latents_std)).encode())
    return h.hexdigest()[:16]


def trained_pair_paths(source: str, vae_id: str, what: str) -> tuple[Path, Path]:
    """(dit.safetensors, text_encoder.safetensors) of an exported pair in folder ``source`` ("shipped" =
    the default model), checked to exist and to come from the latent space ``vae_id``; ``what`` names
    the option in the errors (e.g. "--init runs/x")."""
    from ..weights import read_metadata
    folder = DEFAULT_MODEL if source == "shipped" else Path(source)
    paths = (folder / "dit.safetensors", folder / "text_encoder.safetensors")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{what}: missing {', '.join(missing)}")
    trained_on = read_metadata(paths[0]).get("vae_id")
    if trained_on is not None and trained_on != vae_id:
        raise ValueError(f"{what}: the DiT was trained on the latent space of VAE encoder {trained_on}, but "
                         f"this run's VAE encoder is {vae_id}; pass the matching VAE")
    return paths


def parse_bucket(name: str) -> Bucket:
    """'HxWxT' -> a 1-sample Bucket."""
    try:
        h, w, t = (int(v) for v in name.lower().split("x"))
    except ValueError as e:
        raise ValueError(f"bucket {name!r} must be written 'HxWxT', e.g. '64x64x17'") from e
    return Bucket(h, w, t, 1.0, 1)


# ---------------------------------------------------------------------------------------------
# Flow matching and text features
# ---------------------------------------------------------------------------------------------

def flow_pair(x0: torch.Tensor, noise: torch.Tensor, t_frames: torch.Tensor):
    """x_t = (1 - t) x0 + t noise per latent frame (``flow.add_noise``), and the target v = noise - x0.

    x0, noise: (B, C, T, H, W) float32; t_frames: (B, T).
    """
    return add_noise(x0, noise, t_frames), noise - x0


class TextContextCache:
    """Features of a frozen text encoder per caption, computed once (the pool repeats its captions;
    a descriptive caption is up to ~300 bytes, and encoding the batch's captions cost a quarter of a
    training step). Each caption is encoded alone, so its features do not depend on which batch or
    padding it first came with, and a resumed run gets the same values. At most ``max_entries``
    captions are kept, the least recently used dropped first (a run drawing fresh scenes rarely
    repeats a descriptive caption, but its short captions recur)."""

    def __init__(self, text_encoder: nn.Module, device, bf16: bool, max_entries: int = 16384):
        if max_entries < 1:
            raise ValueError(f"max_entries={max_entries} must be >= 1")
        self.text_encoder, self.device, self.bf16, self.max_entries = text_encoder, device, bf16, max_entries
        self.entries: OrderedDict[str, torch.Tensor] = OrderedDict()

    @torch.no_grad()
    def __call__(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(context (B, L, D) float32 zero-padded, mask (B, L) bool) for ``captions``."""
        rows = []
        for c in captions:
            if c in self.entries:
                self.entries.move_to_end(c)
            else:
                ids, mask = self.text_encoder.tokenize([c])
                with autocast(self.device, self.bf16):
                    self.entries[c] = self.text_encoder(ids.to(self.device), mask.to(self.device))[0].cpu()
                while len(self.entries) > self.max_entries:
                    self.entries.popitem(last=False)
            rows.append(self.entries[c])
        n = max(r.shape[0] for r in rows)
        context = torch.zeros(len(rows), n, rows[0].shape[1], dtype=torch.float32)
        mask = torch.zeros(len(rows), n, dtype=torch.bool)
        for i, r in enumerate(rows):
            context[i, : r.shape[0]], mask[i, : r.shape[0]] = r, True
        return context.to(self.device), mask.to(self.device)

    def __len__(self) -> int:
        return len(self.entries)


def grow_mask(mask: torch.Tensor, grow: int) -> torch.Tensor:
    """A 0/1 mask (N, C, T, H, W) grown by ``grow`` pixels in H and W (a max filter), so the background at
    an object's edges and corners counts with it."""
    if grow <= 0:
        return mask
    k = 2 * grow + 1
    return torch.nn.functional.max_pool3d(mask, (1, k, k), stride=1, padding=(0, grow, grow))
