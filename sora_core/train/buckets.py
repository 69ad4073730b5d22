"""Native-size buckets (Open-Sora style): per (resolution, frames) a keep probability and a batch size.

A bucket table is written as ``{"HxW": {frames: (keep_prob, batch_size)}}``; images are the 1-frame
buckets. Open-Sora assigns each clip of a real dataset to a bucket that fits it, keeping it there with
the bucket's probability. Our clips are rendered on demand at any size, so a clip's "native" size is
drawn uniformly from the table and kept with ``keep_prob`` (else drawn again): each step uses bucket
``b`` with probability ``keep_prob[b] / sum(keep_prob)``, and all ranks of a step share the bucket
(similar step times under DDP). Batch sizes are per process and chosen so that tokens per batch stay
roughly constant across buckets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..geometry import GeometryError, LatentGeometry


# ---------------------------------------------------------------------------------------------
# One bucket and a table of them
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Bucket:
    """Clips of ``frames`` x ``height`` x ``width`` pixels, ``batch_size`` per process and step."""
    height: int
    width: int
    frames: int
    keep_prob: float
    batch_size: int

    @property
    def name(self) -> str:
        return f"{self.height}x{self.width}x{self.frames}"

    @property
    def aspect(self) -> str:
        return "square" if self.height == self.width else ("wide" if self.width > self.height else "tall")

    def geometry(self, ft: int, fs: int, patch: tuple[int, int, int] = (1, 1, 1)) -> LatentGeometry:
        return LatentGeometry.create(self.frames, self.height, self.width, ft, fs, patch)


def _parse_resolution(res: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in str(res).lower().split("x"))
    except ValueError as e:
        raise ValueError(f"bucket resolution {res!r} must be written 'HxW', e.g. '64x64' or '48x80'") from e
    return h, w


class BucketTable:
    """A validated set of buckets with a seeded, per-step choice."""

    def __init__(self, buckets: list[Bucket]):
        if not buckets:
            raise ValueError("a bucket table needs at least one bucket")
        for b in buckets:
            if not 0.0 < b.keep_prob <= 1.0:
                raise ValueError(f"bucket {b.name}: keep_prob={b.keep_prob} must be in (0, 1]")
            if b.batch_size < 1:
                raise ValueError(f"bucket {b.name}: batch_size={b.batch_size} must be >= 1")
        self.buckets = list(buckets)
        p = np.array([b.keep_prob for b in buckets], dtype=np.float64)
        self.probs = p / p.sum()

    @classmethod
    def from_dict(cls, table: dict) -> "BucketTable":
        """``{"HxW": {frames: (keep_prob, batch_size)}}`` -> table (order as written)."""
        out = []
        for res, by_frames in table.items():
            h, w = _parse_resolution(res)
            for frames, spec in by_frames.items():
                keep, bs = spec
                out.append(Bucket(h, w, int(frames), float(keep), int(bs)))
        return cls(out)

    def to_dict(self) -> dict:
        table: dict[str, dict[int, tuple[float, int]]] = {}
        for b in self.buckets:
            table.setdefault(f"{b.height}x{b.width}", {})[b.frames] = (b.keep_prob, b.batch_size)
        return table

    def validate(self, ft: int, fs: int, patch: tuple[int, int, int] = (1, 1, 1)) -> None:
        """Raise a GeometryError naming the first bucket the model's geometry cannot represent."""
        for b in self.buckets:
            try:
                b.geometry(ft, fs, patch)
            except GeometryError as e:
                raise GeometryError(f"bucket {b.name}: {e}") from e

    def pick(self, rng: np.random.Generator) -> Bucket:
        return self.buckets[int(rng.choice(len(self.buckets), p=self.probs))]

    def index(self, bucket: Bucket) -> int:
        return self.buckets.index(bucket)

    def __len__(self) -> int:
        return len(self.buckets)

    def __iter__(self):
        return iter(self.buckets)

    def describe(self, ft: int, fs: int, patch: tuple[int, int, int] = (1, 1, 1)) -> list[dict]:
        """Rows for docs and logs: bucket, share of steps, batch, tokens per sample and per batch."""
        rows = []
        for b, p in zip(self.buckets, self.probs):
            g = b.geometry(ft, fs, patch)
            rows.append({"bucket": b.name, "aspect": b.aspect, "share": round(float(p), 3),
                         "batch": b.batch_size, "tokens": g.tokens, "batch_tokens": g.tokens * b.batch_size})
        return rows
