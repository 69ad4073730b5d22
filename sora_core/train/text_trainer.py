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


def scene_labels(spec, style) -> tuple[np.ndarray, np.ndarray]:
    """(multi-hot targets, loss weights) float32 over ``label_space()`` for the caption of ``spec``
    in ``style`` (``data.CaptionStyle``, or a bool: the canonical descriptive / short caption): weight 1
    on the groups that caption states, 0 elsewhere."""
    from .data import CaptionStyle
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
    style = CaptionStyle(style) if isinstance(style, bool) else style
    sizes, background = style.states()
    stated = set(GROUPS_STATED[False]) | ({"sizes", "size"} if sizes else set()) | ({"background"} if background else set())
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

    def __init__(self, preset, run_dir, env=None, resume=False, progress=True, init_path: str | None = None):
        self.init_path = init_path or preset.init
        super().__init__(preset, run_dir, env, resume, progress)

    def build(self) -> None:
        from ..configs import text_encoder_preset
        from ..models.text import ByteTextEncoder
        p = self.preset
        self.names, self.groups = label_space()
        if self.init_path is not None:
            encoder = self._load_init()
        else:
            self.text_cfg = text_encoder_preset(p.text_encoder)
            encoder = ByteTextEncoder(self.text_cfg)
        self.module = CaptionReader(encoder, len(self.names))
        # the features the DiT was trained on, kept for the canonical captions (distill_weight > 0)
        self.teacher = None
        if p.distill_weight > 0:
            if self.init_path is None:
                raise ValueError(f"text preset {p.name!r} has distill_weight > 0, which keeps the features of "
                                 f"an initial encoder: pass --init FILE (or 'shipped')")
            import copy
            self.teacher = copy.deepcopy(encoder).eval().requires_grad_(False).to(self.env.device)
        self.buckets = BucketTable.from_dict(p.buckets)

    def _load_init(self):
        """The encoder to start from (``init_path``: a text_encoder.safetensors, a folder holding one,
        or "shipped"), float32 and trainable."""
        from ..weights import load_component
        from .shared import resolve_weights
        encoder, self.text_cfg = load_component(str(resolve_weights(self.init_path, "text_encoder.safetensors")),
                                                kind="text_encoder")
        return encoder.float().train().requires_grad_(True)

    def inputs(self) -> dict:
        return {"init": self.init_path}

    def configs(self) -> dict:
        return {"text_encoder": self.text_cfg}

    # -- data -----------------------------------------------------------------------------------------

    def captions_at(self, seeds: list[int], rng: np.random.Generator, descriptive: list[bool] | None = None,
                    phrasing_prob: float | None = None):
        """(captions, targets (B, K), weights (B, K), canonical captions) of the world scenes ``seeds``;
        a caption is a phrasing with probability ``phrasing_prob`` (default: the preset's)."""
        from .data import caption_of, draw_caption_style, scene_spec
        p = self.preset
        phrasing_prob = p.phrasing_prob if phrasing_prob is None else phrasing_prob
        caps, ys, ws, canon = [], [], [], []
        for i, s in enumerate(seeds):
            bucket = self.buckets.pick(rng)
            spec = scene_spec(s, bucket, p.fps)
            d = bool(rng.random() < p.long_caption_prob) if descriptive is None else descriptive[i]
            style = draw_caption_style(rng, d, phrasing_prob)
            y, w = scene_labels(spec, style)
            caps.append(caption_of(spec, style))
            canon.append(caption_of(spec, d))
            ys.append(y)
            ws.append(w)
        return caps, torch.from_numpy(np.stack(ys)), torch.from_numpy(np.stack(ws)), canon

    def batch_at(self, step: int):
        p, r = self.preset, self.env.rank
        rng = np.random.default_rng(step_seed(p.seed, step, r, _TEXT))
        return self.captions_at([step_seed(p.seed, step, r, i, _TEXT) for i in range(p.batch_size)], rng)

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        caps, y, w, canon = self.batch_at(step)
        ids, mask = self.module.text_encoder.tokenize(caps)
        dev = self.env.device
        with autocast(dev, self.preset.loop.bf16):
            logits = self.model(ids.to(dev), mask.to(dev))
        bce = masked_bce(logits, y.to(dev), w.to(dev))
        if self.teacher is None:
            return bce, {}
        drift = self.feature_drift(self.module.text_encoder, canon)
        return bce + self.preset.distill_weight * drift, {"bce": float(bce.detach()), "drift": float(drift.detach())}

    def feature_drift(self, encoder: nn.Module, captions: list[str]) -> torch.Tensor:
        """Mean squared distance of ``encoder``'s features from the initial encoder's on ``captions``,
        relative to the initial features' mean square (0 = unchanged; what the DiT reads stays put)."""
        ids, mask = encoder.tokenize(captions)
        ids, mask = ids.to(self.env.device), mask.to(self.env.device)
        with torch.no_grad(), autocast(self.env.device, self.preset.loop.bf16):
            target = self.teacher(ids, mask).float()
        with autocast(self.env.device, self.preset.loop.bf16):
            out = encoder(ids, mask).float()
        m = mask.unsqueeze(-1).float()
        return ((out - target).pow(2) * m).sum() / (target.pow(2) * m).sum().clamp_min(1e-12)

    # -- evaluation and export ------------------------------------------------------------------------

    def eval_set(self, kind: str):
        """Held-out captions: "short" / "long" canonical ones, or "phrased" (every one a phrasing)."""
        p = self.preset
        descriptive = kind == "long"
        rng = np.random.default_rng(step_seed(p.seed, _TEXT_EVAL, {"short": 0, "long": 1, "phrased": 2}[kind]))
        seeds = [step_seed(p.seed, i, _TEXT_EVAL) for i in range(p.eval_captions)]
        return self.captions_at(seeds, rng, [descriptive] * len(seeds), 1.0 if kind == "phrased" else 0.0)

    @torch.no_grad()
    def evaluate(self, ema_module: nn.Module) -> dict:
        """Held-out BCE and exact-match rates of the EMA encoder: the fraction of captions whose
        predicted (colour, shape, motion) objects (logit > 0) are exactly the true ones."""
        if not hasattr(self, "_eval"):
            kinds = ("short", "long") + (("phrased",) if self.preset.phrasing_prob > 0 else ())
            self._eval = {k: self.eval_set(k) for k in kinds}
        motion = torch.tensor([g == "motion" for g in self.groups])
        out = {}
        for tag, (caps, y, w, canon) in self._eval.items():
            ids, mask = ema_module.text_encoder.tokenize(caps)
            with autocast(self.env.device, self.preset.loop.bf16):
                logits = ema_module(ids.to(self.env.device), mask.to(self.env.device)).float().cpu()
            out[f"val_bce_{tag}"] = float(masked_bce(logits, y, w))
            exact = ((logits[:, motion] > 0) == (y[:, motion] > 0.5)).all(1).float().mean()
            out[f"val_objects_exact_{tag}"] = float(exact)
            if self.teacher is not None and tag != "phrased":
                out[f"val_drift_{tag}"] = float(self.feature_drift(ema_module.text_encoder, canon))
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
