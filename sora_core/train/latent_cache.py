"""Latents of pool scenes, encoded once by the frozen VAE and kept (bf16) in memory and on disk.

Encoding is clip by clip and deterministic, so the cache only saves time: a lost or stale cache file
is rebuilt on demand and gives the same values. The file records which VAE made it and which scene
distribution (``scenes``, e.g. the object mix) its entries were drawn from, and is ignored when either
differs.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from ..media.files import atomic_write, remove_orphan_temps


class LatentCache:
    """``{(bucket index, pool entry): latent (C, T, H, W)}`` for one rank."""

    def __init__(self, path: str | Path, vae_id: str, save_interval_s: float = 600.0, scenes: str = ""):
        self.path, self.vae_id, self.save_interval_s = Path(path), vae_id, save_interval_s
        self.scenes = scenes
        self.entries: dict[tuple[int, int], torch.Tensor] = {}
        self.dirty, self.last_save = False, time.time()
        self.hits = self.misses = 0
        remove_orphan_temps(self.path.parent, [self.path.name])     # left by a process killed mid-save
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        """Read the cache file; a damaged one is ignored (its latents are encoded again)."""
        try:
            with safe_open(str(self.path), framework="pt") as f:
                meta = f.metadata() or {}
                if meta.get("vae_id") != self.vae_id or meta.get("scenes", "") != self.scenes:
                    return
            entries = load_file(str(self.path))
        except SafetensorError as e:
            print(f"ignoring the damaged cache {self.path} ({e}); its latents are encoded again", file=sys.stderr)
            return
        for k, v in entries.items():
            b, j = (int(s) for s in k.split("_"))
            self.entries[(b, j)] = v

    def get_or_encode(self, keys: list[tuple[int, int]],
                      encode: Callable[[tuple[int, int]], torch.Tensor]) -> torch.Tensor:
        """(B, C, T, H, W) float latents for ``keys``, encoding the missing ones with ``encode(key)``."""
        out = []
        for key in keys:
            if key not in self.entries:
                self.entries[key] = encode(key).detach().to("cpu", torch.bfloat16).contiguous()
                self.dirty, self.misses = True, self.misses + 1
            else:
                self.hits += 1
            out.append(self.entries[key])
        return torch.stack(out).float()

    def save(self, force: bool = False) -> None:
        """Write atomically when there are new entries and the interval has passed (or ``force``)."""
        if not self.dirty or not (force or time.time() - self.last_save >= self.save_interval_s):
            return
        tensors = {f"{b}_{j}": v for (b, j), v in self.entries.items()}
        meta = {"vae_id": self.vae_id, "scenes": self.scenes}
        atomic_write(self.path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
        self.dirty, self.last_save = False, time.time()

    def __len__(self) -> int:
        return len(self.entries)
