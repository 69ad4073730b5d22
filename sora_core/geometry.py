"""Latent geometry: the one place that knows how pixels, latents and tokens relate.

A causal video VAE with temporal factor ``ft`` and spatial factor ``fs`` maps a video of T frames of
H x W pixels to ``T_lat = 1 + (T - 1) // ft`` latent frames of ``H / fs`` x ``W / fs``. The first
frame is encoded alone (so an image is the 1-frame case), every later group of ``ft`` frames becomes
one latent frame; hence T is valid when ``T == 1`` or ``(T - 1) % ft == 0``. The transformer then
cuts the latent grid into spacetime patches of ``pt x ph x pw``, so the token grid is
``(T_lat / pt, H_lat / ph, W_lat / pw)``. Pixel sizes are therefore multiples of
``size_multiple(fs, ph, pw) = fs * lcm(ph, pw)`` (= ``fs * ph`` for the square patches of every
shipped config).

Nodes, command line, training and the web extension all read the geometry from here: no other module
restates these formulas (``tests/test_geometry_owner.py`` greps the tree for them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


class GeometryError(ValueError):
    """A size, frame count or duration that the model's latent geometry cannot represent."""


# ---------------------------------------------------------------------------------------------
# Frame counts
# ---------------------------------------------------------------------------------------------

def is_valid_frames(frames: int, ft: int) -> bool:
    """True when ``frames`` is 1 or ``frames - 1`` is a multiple of the temporal factor ``ft``."""
    return frames >= 1 and (frames == 1 or (frames - 1) % ft == 0)


def valid_frames_near(frames: int, ft: int, count: int = 3) -> list[int]:
    """A few valid frame counts around ``frames`` (for error messages and pickers)."""
    base = max(1, 1 + round((max(frames, 1) - 1) / ft) * ft)
    cands = {1, base, base - ft, base + ft, base + 2 * ft}
    return sorted(c for c in cands if c >= 1)[: max(count, 1) + 1]


def nearest_valid_frames(frames: int, ft: int) -> int:
    """The valid frame count closest to ``frames`` (ties go up)."""
    if frames < 1:
        raise GeometryError(f"frames must be >= 1, got {frames}")
    return 1 + math.floor((frames - 1) / ft + 0.5) * ft


def check_frames(frames: int, ft: int, name: str = "frames") -> int:
    """Return ``frames`` or raise a GeometryError naming the input and the nearest allowed values."""
    if not isinstance(frames, int) or isinstance(frames, bool):
        raise GeometryError(f"{name} must be an integer, got {frames!r}")
    if not is_valid_frames(frames, ft):
        near = valid_frames_near(frames, ft)
        raise GeometryError(
            f"{name}={frames} is not a valid frame count for a causal VAE with temporal factor {ft}: "
            f"allowed are 1 or 1 + {ft}*k (e.g. {', '.join(map(str, near))})")
    return frames


def latent_frames(frames: int, ft: int) -> int:
    """Number of latent frames for a valid pixel frame count: ``1 + (T - 1) // ft``."""
    check_frames(frames, ft)
    return 1 + (frames - 1) // ft


def pixel_frames(t_lat: int, ft: int) -> int:
    """Pixel frame count decoded from ``t_lat`` latent frames: ``1 + (t_lat - 1) * ft``."""
    if t_lat < 1:
        raise GeometryError(f"latent frames must be >= 1, got {t_lat}")
    return 1 + (t_lat - 1) * ft


def group_frames(groups: int, ft: int) -> int:
    """Pixel frames behind ``groups`` latent frames that follow the first: ``groups * ft``.

    A clip placed at the end of an output, or a chunk after the first, has no leading single frame.
    """
    if groups < 0:
        raise GeometryError(f"latent frame groups must be >= 0, got {groups}")
    return groups * ft


def floor_valid_frames(frames: int, ft: int) -> int:
    """The largest valid frame count <= ``frames`` (``frames`` >= 1): trimming a clip."""
    if frames < 1:
        raise GeometryError(f"frames must be >= 1, got {frames}")
    return 1 + (frames - 1) // ft * ft


def ceil_valid_frames(frames: int, ft: int) -> int:
    """The smallest valid frame count >= ``frames`` (``frames`` >= 1): padding a clip."""
    if frames < 1:
        raise GeometryError(f"frames must be >= 1, got {frames}")
    return 1 + -(-(frames - 1) // ft) * ft


def frames_for_temporal_patch(frames: int, ft: int, pt: int) -> int:
    """The smallest valid frame count >= the valid ``frames`` whose latent frame count is a multiple
    of the temporal patch size ``pt`` (so the DiT can cut it into whole patches)."""
    t_lat = latent_frames(frames, ft)
    return pixel_frames(-(-t_lat // pt) * pt, ft)


def frames_for_seconds(seconds: float, fps: float, ft: int) -> int:
    """The valid frame count nearest to ``seconds * fps`` (at least 1)."""
    if seconds <= 0 or fps <= 0:
        raise GeometryError(f"seconds and fps must be > 0, got seconds={seconds}, fps={fps}")
    return nearest_valid_frames(max(1, round(seconds * fps)), ft)


# ---------------------------------------------------------------------------------------------
# Spatial sizes
# ---------------------------------------------------------------------------------------------

def size_multiple(fs: int, ph: int = 1, pw: int | None = None) -> int:
    """The one multiple both pixel sizes must have: ``fs * lcm(ph, pw)`` (``pw`` defaults to ``ph``).

    Height must be a multiple of ``fs * ph`` and width of ``fs * pw``; a single multiple for both (what
    size pickers and snapping use) is their least common multiple. For square patches (ph == pw, every
    shipped config: fs 4, patch 1x2x2 -> 8) this equals ``fs * max(ph, pw)``; for e.g. ph=2, pw=3
    ``fs * max`` would allow sizes that are not whole patches, the lcm does not.
    """
    pw = ph if pw is None else pw
    if min(fs, ph, pw) < 1:
        raise GeometryError(f"spatial factor and patch sizes must be >= 1, got fs={fs}, ph={ph}, pw={pw}")
    return fs * math.lcm(ph, pw)


def check_size(height: int, width: int, multiple: int, name: str = "size") -> tuple[int, int]:
    """Return (height, width) or raise naming the bad value and the nearest allowed sizes."""
    for label, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or isinstance(v, bool) or v < multiple or v % multiple:
            lo = max(multiple, (max(int(v), 0) // multiple) * multiple) if isinstance(v, (int, float)) else multiple
            raise GeometryError(
                f"{name} {label}={v!r} is not allowed: it must be a positive multiple of {multiple} "
                f"(nearest: {lo} or {lo + multiple})")
    return height, width


def nearest_valid_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """Round (height, width) to the nearest multiples of ``multiple`` (at least one multiple)."""
    def r(v: int) -> int:
        return max(multiple, int(math.floor(v / multiple + 0.5)) * multiple)
    return r(height), r(width)


ASPECTS = {"square": (1, 1), "wide": (16, 9), "tall": (9, 16), "landscape": (4, 3), "portrait": (3, 4)}


def size_for_aspect(aspect: str, area: int, multiple: int) -> tuple[int, int]:
    """(height, width) with about ``area`` pixels at a named aspect ratio, rounded to ``multiple``."""
    if aspect not in ASPECTS:
        raise GeometryError(f"aspect={aspect!r} is unknown; allowed: {', '.join(ASPECTS)}")
    aw, ah = ASPECTS[aspect]
    w = math.sqrt(area * aw / ah)
    return nearest_valid_size(round(w * ah / aw), round(w), multiple)


# ---------------------------------------------------------------------------------------------
# Token grid
# ---------------------------------------------------------------------------------------------

def check_patch(patch) -> tuple[int, int, int]:
    """``patch`` as a tuple (pt, ph, pw) of positive integers, or a GeometryError."""
    if len(patch) != 3 or any(not isinstance(p, int) or p < 1 for p in patch):
        raise GeometryError(f"patch must be three positive integers (pt, ph, pw), got {tuple(patch)}")
    return tuple(patch)


def token_grid_of(latent_grid: tuple[int, int, int], patch) -> tuple[int, int, int]:
    """Token grid (T/pt, H/ph, W/pw) of a latent grid (T_lat, H_lat, W_lat); an axis that is not a
    whole number of patches raises a GeometryError naming it."""
    patch = check_patch(patch)
    for axis, size, p in zip("THW", latent_grid, patch):
        if size % p:
            raise GeometryError(
                f"latent {axis}={size} is not divisible by the patch size {p} along {axis} "
                f"(patch {patch}, latent grid {tuple(latent_grid)}); allowed are multiples of {p}")
    return tuple(size // p for size, p in zip(latent_grid, patch))


# ---------------------------------------------------------------------------------------------
# The full picture for one request
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class LatentGeometry:
    """Pixel, latent and token grids of one video, for a VAE (ft, fs) and a patch size (pt, ph, pw)."""
    frames: int
    height: int
    width: int
    ft: int
    fs: int
    patch: tuple[int, int, int] = (1, 1, 1)

    @classmethod
    def create(cls, frames: int, height: int, width: int, ft: int, fs: int,
               patch: tuple[int, int, int] = (1, 1, 1)) -> "LatentGeometry":
        """Validate and build; raises GeometryError naming any bad input."""
        patch = check_patch(patch)
        check_frames(frames, ft)
        check_size(height, width, size_multiple(fs, patch[1], patch[2]))
        g = cls(frames, height, width, ft, fs, patch)
        if g.latent_frames % patch[0]:
            raise GeometryError(
                f"frames={frames} gives {g.latent_frames} latent frames, not a multiple of the temporal "
                f"patch size {patch[0]}")
        return g

    @property
    def latent_frames(self) -> int:
        return latent_frames(self.frames, self.ft)

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.height // self.fs, self.width // self.fs

    def latent_shape(self, channels: int, batch: int = 1) -> tuple[int, int, int, int, int]:
        """(B, C, T_lat, H_lat, W_lat)."""
        h, w = self.latent_size
        return (batch, channels, self.latent_frames, h, w)

    @property
    def token_grid(self) -> tuple[int, int, int]:
        """(T_tok, H_tok, W_tok) of spacetime patches (GeometryError for a grid of partial patches)."""
        return token_grid_of((self.latent_frames, *self.latent_size), self.patch)

    @property
    def tokens(self) -> int:
        t, h, w = self.token_grid
        return t * h * w

    def describe(self) -> str:
        t, h, w = self.token_grid
        lh, lw = self.latent_size
        return (f"{self.frames}x{self.height}x{self.width} px -> latent {self.latent_frames}x{lh}x{lw} "
                f"-> {t}x{h}x{w} = {self.tokens} tokens")


def latent_geometry_of(shape: tuple[int, ...], ft: int, fs: int,
                       patch: tuple[int, int, int] = (1, 1, 1)) -> LatentGeometry:
    """Geometry of an existing latent tensor of shape (B, C, T_lat, H_lat, W_lat)."""
    if len(shape) != 5:
        raise GeometryError(f"latent must have shape (B, C, T, H, W), got {tuple(shape)}")
    _, _, t, h, w = shape
    return LatentGeometry(pixel_frames(t, ft), h * fs, w * fs, ft, fs, tuple(patch))
