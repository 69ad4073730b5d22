"""Stage 0: the byte-level text encoder learns to read the world's captions before the DiT uses it.

A diffusion model trained from scratch with its text encoder gets only a weak, noisy signal about the
prompt through the flow loss, and learns to close the text path before it learns to use it
(docs/training.md). Real video models start from a pretrained text encoder; the world has no corpus,
but every caption comes with the scene it describes. So the encoder is pretrained to recover the
scene from the caption: a linear head on the pooled text features (the same RMS-normalised mean the
DiT's pooled path reads) predicts a multi-hot vector of what the caption states:

    colour / shape / motion / size <w> each word class on its own (learned first: a curriculum for
                                       the bindings below)
    object <colour> <shape> <motion>   which objects move how (binds colour, shape and motion)
    object <colour> <shape> <size>     their sizes                   (descriptive captions only)
    count <n>                          how many objects
    background <kind> / <colour>, ground                              (descriptive captions only)
    event <kind>, pan <direction>      the world event

trained with binary cross-entropy over the groups the caption states (short captions say nothing
about size or background). No video is rendered: scene specs and their captions are enough, so a
step takes a fraction of a DiT step. The exported ``text_encoder.safetensors`` is then given to the
DiT stage with ``--text FILE`` and stays frozen there.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .buckets import BucketTable
from .common import autocast, step_seed
from .loop import StageTrainer, check_export_dir

_TEXT, _TEXT_EVAL = 0x7E47, 0x7E48

GROUPS = ("words", "sizes", "motion", "size", "count", "background", "event")
GROUPS_STATED = {False: ("words", "motion", "count", "event"), True: GROUPS}   # descriptive caption or not


@lru_cache(maxsize=1)
def label_space() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(label names, the group of each label), fixed by the world's vocabulary."""
    from ..world import vocab as V
    names, groups = [], []

    def add(group, items):
        for item in items:
            names.append(item)
            groups.append(group)
    add("words", [f"colour {c}" for c in V.COLOURS] + [f"shape {s}" for s in V.SHAPES]
        + [f"motion {m}" for m in V.MOTIONS])
    add("sizes", [f"size {z}" for z in V.SIZES])
    add("motion", [f"object {c} {s} {m}" for c in V.COLOURS for s in V.SHAPES for m in V.MOTIONS])
    add("size", [f"object {c} {s} {z}" for c in V.COLOURS for s in V.SHAPES for z in V.SIZES])
    add("count", [f"count {n}" for n in (1, 2, 3)])
    add("background", [f"background {k}" for k in V.BACKGROUND_KINDS]
        + [f"background colour {c}" for c in V.BACKGROUND_COLOURS] + ["ground"])
    add("event", [f"event {e}" for e in V.EVENTS] + ["pan left", "pan right"])
    return tuple(names), tuple(groups)


@lru_cache(maxsize=1)
def _label_index() -> dict[str, int]:
    return {n: i for i, n in enumerate(label_space()[0])}


def scene_labels(spec, descriptive: bool) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot targets, loss weights) float32 over ``label_space()`` for the caption of ``spec``
    (descriptive or short): weight 1 on the groups that caption states, 0 elsewhere."""
    from ..world.captions import describe
    names, groups = label_space()
    index = _label_index()
    d = describe(spec)
    y = np.zeros(len(names), np.float32)
    on = [f"count {len(d.objects)}", f"event {d.event}", f"background {d.background}"]
    on += [f"{k} {v}" for o in d.objects for k, v in
           (("colour", o.colour), ("shape", o.shape), ("motion", o.motion), ("size", o.size))]
    on += [f"object {o.colour} {o.shape} {o.motion}" for o in d.objects]
    on += [f"object {o.colour} {o.shape} {o.size}" for o in d.objects]
    on += [f"background colour {c}" for c in d.colours] + (["ground"] if d.ground else [])
    on += [f"pan {d.pan}"] if d.pan else []
    for name in on:
        y[index[name]] = 1.0
    stated = GROUPS_STATED[bool(descriptive)]
    w = np.array([1.0 if g in stated else 0.0 for g in groups], np.float32)
    return y, w


class CaptionReader(nn.Module):
    """Text encoder + the pretraining head: pooled text features -> label logits."""

    def __init__(self, text_encoder: nn.Module, num_labels: int):
        super().__init__()
        self.text_encoder = text_encoder
        self.head = nn.Linear(text_encoder.out_dim, num_labels)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        from ..models.dit import pooled_text
        return self.head(pooled_text(self.text_encoder(ids, mask), mask))


def masked_bce(logits: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy averaged over the weighted (stated) labels."""
    per = F.binary_cross_entropy_with_logits(logits.float(), y, reduction="none") * w
    return per.sum() / w.sum().clamp_min(1.0)


class TextTrainer(StageTrainer):
    stage = "text"
    export_names = ("text_encoder.safetensors",)
    plot_keys = ("loss",)

    def build(self) -> None:
        from ..configs import text_encoder_preset
        from ..models.text import ByteTextEncoder
        p = self.preset
        self.text_cfg = text_encoder_preset(p.text_encoder)
        self.names, self.groups = label_space()
        self.module = CaptionReader(ByteTextEncoder(self.text_cfg), len(self.names))
        self.buckets = BucketTable.from_dict(p.buckets)

    def configs(self) -> dict:
        return {"text_encoder": self.text_cfg}

    # -- data -----------------------------------------------------------------------------------------

    def captions_at(self, seeds: list[int], rng: np.random.Generator, descriptive: list[bool] | None = None):
        """(captions, targets (B, K), weights (B, K)) of the world scenes ``seeds``."""
        from .data import caption_of, scene_spec
        caps, ys, ws = [], [], []
        for i, s in enumerate(seeds):
            bucket = self.buckets.pick(rng)
            spec = scene_spec(s, bucket, self.preset.fps)
            d = bool(rng.random() < self.preset.long_caption_prob) if descriptive is None else descriptive[i]
            y, w = scene_labels(spec, d)
            caps.append(caption_of(spec, d))
            ys.append(y)
            ws.append(w)
        return caps, torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ws))

    def batch_at(self, step: int):
        p, r = self.preset, self.env.rank
        rng = np.random.default_rng(step_seed(p.seed, step, r, _TEXT))
        return self.captions_at([step_seed(p.seed, step, r, i, _TEXT) for i in range(p.batch_size)], rng)

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        caps, y, w = self.batch_at(step)
        ids, mask = self.module.text_encoder.tokenize(caps)
        dev = self.env.device
        with autocast(dev, self.preset.loop.bf16):
            logits = self.model(ids.to(dev), mask.to(dev))
        return masked_bce(logits, y.to(dev), w.to(dev)), {}

    # -- evaluation and export ------------------------------------------------------------------------

    def eval_set(self, descriptive: bool):
        p = self.preset
        rng = np.random.default_rng(step_seed(p.seed, _TEXT_EVAL, int(descriptive)))
        seeds = [step_seed(p.seed, i, _TEXT_EVAL) for i in range(p.eval_captions)]
        return self.captions_at(seeds, rng, [descriptive] * len(seeds))

    @torch.no_grad()
    def evaluate(self, ema_module: nn.Module) -> dict:
        """Held-out BCE and exact-match rates of the EMA encoder: the fraction of captions whose
        predicted (colour, shape, motion) objects (logit > 0) are exactly the true ones."""
        if not hasattr(self, "_eval"):
            self._eval = {d: self.eval_set(d) for d in (False, True)}
        motion = torch.tensor([g == "motion" for g in self.groups])
        out = {}
        for d, (caps, y, w) in self._eval.items():
            ids, mask = ema_module.text_encoder.tokenize(caps)
            with autocast(self.env.device, self.preset.loop.bf16):
                logits = ema_module(ids.to(self.env.device), mask.to(self.env.device)).float().cpu()
            tag = "long" if d else "short"
            out[f"val_bce_{tag}"] = float(masked_bce(logits, y, w))
            exact = ((logits[:, motion] > 0) == (y[:, motion] > 0.5)).all(1).float().mean()
            out[f"val_objects_exact_{tag}"] = float(exact)
        return out

    def export(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        """EMA text encoder -> ``out_dir/text_encoder.safetensors`` (the head is not exported)."""
        from ..weights import save_component
        path = check_export_dir(out_dir, self.export_names, overwrite) / self.export_names[0]
        ema = self.ema_module()
        path.parent.mkdir(parents=True, exist_ok=True)
        save_component(path, ema.text_encoder, self.text_cfg,
                       metadata={"train_stage": "text", "train_preset": self.preset.name,
                                 "train_steps": str(self.step)})
        return [path]
