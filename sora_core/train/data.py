"""Training data: clips rendered on demand from the procedural world, in native-size buckets.

Step ``s`` on rank ``r`` is a pure function of ``(seed, s, r)``: the bucket (shared by all ranks),
the scene seeds, the caption choice (short or descriptive) and the rendered frames. So resuming at
step ``s`` reproduces the data order exactly without storing any iterator state.

Two ways of drawing scenes:
- fresh: every sample is a new scene (``pool_size=None``);
- pool: ``pool_size`` fixed scenes in all, shared out over the buckets in proportion to how many
  samples each bucket is expected to draw (at least 16 each); a step draws from its bucket's share,
  so a stage that pays for each clip once (the DiT stage encodes clips with the frozen VAE) can cache
  per pool entry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..media.video_io import frames_to_tensor
from .buckets import Bucket, BucketTable
from .common import step_seed

# independent random streams mixed into step_seed
_BUCKET, _SCENE, _CAPTION, _POOL, _EVAL, _PHRASE = 11, 12, 13, 14, 15, 16


# ---------------------------------------------------------------------------------------------
# Batches
# ---------------------------------------------------------------------------------------------

@dataclass
class Batch:
    """One step's samples: ``video`` (B, 3, T, H, W) in [-1, 1], one caption per sample."""
    video: torch.Tensor
    captions: list[str]
    bucket: Bucket
    scene_seeds: list[int]
    keys: list[tuple[int, int]] | None = None     # (bucket index, pool entry) in pool mode


def pool_shares(buckets: BucketTable, total: int, minimum: int = 16) -> list[int]:
    """Pool scenes per bucket, proportional to the expected samples drawn (share x batch size)."""
    draws = np.array([p * b.batch_size for p, b in zip(buckets.probs, buckets)])
    return [max(minimum, int(round(total * d / draws.sum()))) for d in draws]


def render_clip(scene_seed: int, bucket: Bucket, fps: float, object_probs=None, shape_probs=None,
                size_probs=None):
    """(frames uint8 (T, H, W, 3), spec) of the world scene ``scene_seed`` at the bucket's size."""
    from ..world.render import render
    spec = scene_spec(scene_seed, bucket, fps, object_probs, shape_probs, size_probs)
    return render(spec), spec


@dataclass(frozen=True)
class CaptionStyle:
    """How one sample's caption is written: the canonical descriptive or short caption, or a phrasing
    (``world.phrasings``, training lexicon) with or without the size and the background, its words
    drawn from ``seed``."""
    descriptive: bool
    phrasing: bool = False
    with_size: bool = True
    with_background: bool = True
    seed: int = 0

    def states(self) -> tuple[bool, bool]:
        """(sizes stated, background stated) by a caption of this style."""
        if self.phrasing:
            return self.with_size, self.with_background
        return self.descriptive, self.descriptive


def draw_caption_style(rng: np.random.Generator, descriptive: bool, phrasing_prob: float) -> CaptionStyle:
    """A phrasing with probability ``phrasing_prob`` (size and background each said half the time),
    else the canonical caption; nothing is drawn from ``rng`` when ``phrasing_prob`` is 0."""
    if phrasing_prob <= 0 or rng.random() >= phrasing_prob:
        return CaptionStyle(descriptive)
    size, background = (bool(v) for v in rng.random(2) < 0.5)
    return CaptionStyle(descriptive, True, size, background, int(rng.integers(2 ** 31)))


def caption_of(spec, style: "CaptionStyle | bool") -> str:
    """The caption of ``spec`` in ``style`` (a bool: the canonical descriptive / short caption)."""
    from ..world.captions import long_caption, short_caption
    if isinstance(style, bool):
        style = CaptionStyle(style)
    if style.phrasing:
        from ..world.phrasings import TRAIN, phrase
        return phrase(spec, np.random.default_rng(style.seed), TRAIN, style.with_size, style.with_background)
    return long_caption(spec) if style.descriptive else short_caption(spec)


def check_probability(name: str, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}={value} must be in [0, 1]")
    return float(value)


class WorldClips:
    """Deterministic bucketed batches of world clips for one rank of a run."""

    def __init__(self, buckets: BucketTable, seed: int, fps: float = 8.0, long_caption_prob: float = 0.5,
                 rank: int = 0, world_size: int = 1, pool_size: int | None = None, object_probs=None,
                 shape_probs=None, phrasing_prob: float = 0.0, size_probs=None):
        check_probability("long_caption_prob", long_caption_prob)
        self.phrasing_prob = check_probability("phrasing_prob", phrasing_prob)
        if pool_size is not None and pool_size < 1:
            raise ValueError(f"pool_size={pool_size} must be >= 1 or None")
        self.buckets, self.seed, self.fps = buckets, int(seed), float(fps)
        self.long_caption_prob = long_caption_prob
        self.object_probs = check_object_probs(object_probs)
        self.shape_probs = check_shape_probs(shape_probs)
        self.size_probs = check_size_probs(size_probs)
        self.rank, self.world_size, self.pool_size = rank, world_size, pool_size
        self.pool_sizes = pool_shares(buckets, pool_size) if pool_size is not None else None

    @property
    def scene_mix(self) -> str:
        """The scene distribution's options as text ('' = the world's own); part of a cache's identity."""
        parts = [f"{name}={list(v)}" for name, v in (("object_probs", self.object_probs),
                                                     ("shape_probs", self.shape_probs),
                                                     ("size_probs", self.size_probs)) if v is not None]
        return " ".join(parts)

    def render(self, scene_seed: int, bucket: Bucket):
        """(frames, spec) of scene ``scene_seed`` at the bucket's size, drawn with this mix."""
        return render_clip(scene_seed, bucket, self.fps, self.object_probs, self.shape_probs, self.size_probs)

    def spec(self, scene_seed: int, bucket: Bucket):
        """The spec of scene ``scene_seed`` at the bucket's size, drawn with this mix (no rendering)."""
        return scene_spec(scene_seed, bucket, self.fps, self.object_probs, self.shape_probs, self.size_probs)

    # -- what step s draws ------------------------------------------------------------------------

    def bucket_at(self, step: int) -> Bucket:
        """The bucket of step ``step`` (the same on every rank)."""
        return self.buckets.pick(np.random.default_rng(step_seed(self.seed, step, _BUCKET)))

    def keys_at(self, step: int, bucket: Bucket) -> list[tuple[int, int]]:
        """Pool mode: (bucket index, pool entry) of each sample of this rank."""
        rng = np.random.default_rng(step_seed(self.seed, step, self.rank, _POOL))
        b = self.buckets.index(bucket)
        return [(b, int(j)) for j in rng.integers(0, self.pool_sizes[b], size=bucket.batch_size)]

    def pool_scene_seed(self, key: tuple[int, int]) -> int:
        return step_seed(self.seed, key[0], key[1], _POOL)

    def scene_seeds_at(self, step: int, bucket: Bucket) -> tuple[list[int], list | None]:
        if self.pool_size is None:
            return [step_seed(self.seed, step, self.rank, i, _SCENE) for i in range(bucket.batch_size)], None
        keys = self.keys_at(step, bucket)
        return [self.pool_scene_seed(k) for k in keys], keys

    def descriptive_at(self, step: int, n: int) -> list[bool]:
        rng = np.random.default_rng(step_seed(self.seed, step, self.rank, _CAPTION))
        return [bool(v) for v in rng.random(n) < self.long_caption_prob]

    def caption_styles_at(self, step: int, n: int) -> list[CaptionStyle]:
        """The caption style of each of the step's ``n`` samples (phrasings from a stream of their own,
        so a run without them draws exactly what it drew before they existed)."""
        rng = np.random.default_rng(step_seed(self.seed, step, self.rank, _PHRASE))
        return [draw_caption_style(rng, d, self.phrasing_prob) for d in self.descriptive_at(step, n)]

    # -- rendering --------------------------------------------------------------------------------

    def batch_at(self, step: int, render_video: bool = True) -> Batch:
        """The batch of step ``step``; ``render_video=False`` skips rendering (captions only)."""
        bucket = self.bucket_at(step)
        seeds, keys = self.scene_seeds_at(step, bucket)
        styles = self.caption_styles_at(step, len(seeds))
        videos, captions = [], []
        for s, d in zip(seeds, styles):
            if render_video:
                frames, spec = self.render(s, bucket)
                videos.append(frames_to_tensor(frames))
            else:
                spec = self.spec(s, bucket)
            captions.append(caption_of(spec, d))
        video = torch.stack(videos) if videos else torch.empty(0)
        return Batch(video, captions, bucket, seeds, keys)

    def eval_batch(self, n: int, bucket: Bucket) -> Batch:
        """``n`` held-out clips with descriptive captions (scene seeds from a stream training never draws)."""
        seeds = [step_seed(self.seed, i, _EVAL) for i in range(n)]
        videos, captions = [], []
        for s in seeds:
            frames, spec = render_clip(s, bucket, self.fps)
            videos.append(frames_to_tensor(frames))
            captions.append(caption_of(spec, True))
        return Batch(torch.stack(videos), captions, bucket, seeds)


def _check_probs(name: str, probs, labels: tuple[str, ...]) -> tuple[float, ...] | None:
    if probs is None:
        return None
    p = tuple(float(v) for v in probs)
    if len(p) != len(labels) or min(p) < 0 or sum(p) <= 0:
        raise ValueError(f"{name}={tuple(probs)} must be {len(labels)} weights >= 0 (for {', '.join(labels)}) "
                         f"with a positive sum, or None")
    return p


def check_object_probs(object_probs) -> tuple[float, float, float] | None:
    """None (the world's own uniform 1 to 3 objects) or three non-negative weights of 1, 2 and 3
    objects with a positive sum."""
    return _check_probs("object_probs", object_probs, ("1", "2", "3 objects"))


def check_shape_probs(shape_probs) -> tuple[float, float, float] | None:
    """None (the world's own uniform shapes) or non-negative weights of each shape of
    ``world.vocab.SHAPES`` (circle, square, triangle) with a positive sum."""
    from ..world.vocab import SHAPES
    return _check_probs("shape_probs", shape_probs, SHAPES)


def check_size_probs(size_probs) -> tuple[float, float] | None:
    """None (the world's own uniform sizes) or non-negative weights of each size of
    ``world.vocab.SIZES`` (small, large) with a positive sum."""
    from ..world.vocab import SIZES
    return _check_probs("size_probs", size_probs, SIZES)


def scene_spec(scene_seed: int, bucket: Bucket, fps: float, object_probs=None, shape_probs=None,
               size_probs=None):
    """The world scene ``scene_seed`` at the bucket's size (no rendering). ``object_probs``: weights of
    1, 2 and 3 objects; ``shape_probs`` / ``size_probs``: weights of each shape / size, drawn per
    object (None: the world's own mix; an option left at None draws the same scenes as before it
    existed)."""
    from ..world.scene import ObjectRequest, sample_scene, sample_scene_sized
    from ..world.vocab import SHAPES, SIZES
    if object_probs is None and shape_probs is None and size_probs is None:
        return sample_scene(scene_seed, width=bucket.width, height=bucket.height, frames=bucket.frames, fps=fps)
    rng = np.random.default_rng(scene_seed)
    if object_probs is None:
        n = int(rng.integers(1, 4))
    else:
        p = np.asarray(check_object_probs(object_probs))
        n = int(rng.choice(3, p=p / p.sum())) + 1
    objects = None
    if shape_probs is not None:
        q = np.asarray(check_shape_probs(shape_probs))
        objects = [ObjectRequest(shape=SHAPES[int(i)]) for i in rng.choice(len(SHAPES), size=n, p=q / q.sum())]
    if size_probs is not None:      # drawn sizes that do not fit (three large in a small frame): the world's own
        q = np.asarray(check_size_probs(size_probs))
        sizes = [SIZES[int(i)] for i in rng.choice(len(SIZES), size=n, p=q / q.sum())]
        return sample_scene_sized(rng, bucket.width, bucket.height, bucket.frames, fps, n_objects=n,
                                  objects=objects or [ObjectRequest()] * n, sizes=sizes)
    return sample_scene(rng, width=bucket.width, height=bucket.height, frames=bucket.frames, fps=fps,
                        n_objects=n, objects=objects)
