"""The web extension's server routes: plain functions of a query, registered on ComfyUI's server by
``host.register_routes`` (a no-op outside ComfyUI), so they run and are tested without it.

``GET /sora/geometry?width=&height=&frames=&batch=&model=&dtype=``: what Sora Empty Latent would make of
these widget values, before the graph is queued: the nearest valid size and frame count (with notes on
what was snapped), latent shape, token grid and count, a memory estimate (``sora_core.budget``) and a
rough time per step. Every number comes from ``sora_core.geometry`` / ``budget``; the JavaScript only
formats it. ``model`` is "default" (the shipped model) or a model folder the Sora Model Loader lists.

``GET /sora/sample?name=sora-samples/...``: the pack's sample media (listed among Sora Load Video's
choices but not in ComfyUI's input folder, so ``/view`` cannot serve them), for the inline preview.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sora_core import budget, geometry, pipeline
from . import host

ROUTE_GEOMETRY = "/sora/geometry"
ROUTE_SAMPLE = "/sora/sample"
DEFAULT = "default"
FOLDER_FILES = tuple(pipeline.MODEL_FILES[k] for k in ("dit", "vae", "text_encoder"))
DTYPE_NAMES = ("auto", "float32", "bfloat16", "float16")
TEXT_TOKENS = 77                        # text tokens assumed for the cross-attention FLOPs
# Sustained throughput assumed for the time estimate (a guess, not a measurement: the readout says so).
ASSUMED_TFLOPS = {"cpu": 0.2, "cuda": 100.0}
LIMITS = {"width": (8, 4096), "height": (8, 4096), "frames": (1, 100000), "batch": (1, 64)}


class RouteError(ValueError):
    """A bad query value; the message names the parameter and what is allowed (HTTP 400)."""


# ---------------------------------------------------------------------------------------------
# Query parsing and the model's configs
# ---------------------------------------------------------------------------------------------

def _int_param(query, name: str, default: int | None = None) -> int:
    """Query parameter ``name`` as an integer within ``LIMITS[name]``, or RouteError naming it."""
    raw = query.get(name)
    if raw in (None, ""):
        if default is None:
            raise RouteError(f"{name} is required (an integer)")
        return default
    try:
        value = int(str(raw).strip())
    except ValueError:
        raise RouteError(f"{name} must be an integer, got {raw!r}") from None
    lo, hi = LIMITS[name]
    if not lo <= value <= hi:
        raise RouteError(f"{name}={value} is out of range: allowed {lo} to {hi}")
    return value


@functools.lru_cache(maxsize=8)
def _read_spec(folder: str, stamp: float) -> pipeline.ModelSpec:
    """A model folder's configs (headers only), cached until its files change (``stamp``)."""
    return pipeline.ModelSpec.read(Path(folder))


def model_spec(name: str) -> pipeline.ModelSpec:
    """Configs of the model ``name``: "default" or a model folder from ``host.model_folders``."""
    name = (name or DEFAULT).strip()
    if name in (DEFAULT, "none"):
        folder = pipeline.default_model_dir()
    else:
        allowed = host.model_folders(FOLDER_FILES)
        if name not in allowed:
            raise RouteError(f"model {name!r} is not a model folder in the diffusion_models folder; allowed: "
                             f"{', '.join([DEFAULT] + allowed)}")
        folder = host.model_folder(name, FOLDER_FILES)
    stamp = max((folder / f).stat().st_mtime for f in FOLDER_FILES)
    return _read_spec(str(folder), stamp)


# ---------------------------------------------------------------------------------------------
# The readout
# ---------------------------------------------------------------------------------------------

def snap(spec, width: int, height: int, frames: int) -> tuple[geometry.LatentGeometry, list[dict]]:
    """The nearest valid geometry for a request on ``spec`` and one note per snapped value
    ({"field", "given", "valid", "why"})."""
    ft, fs, patch = spec.vae.temporal_factor, spec.vae.spatial_factor, tuple(spec.dit.patch_size)
    multiple = geometry.size_multiple(fs, patch[1], patch[2])
    h, w = geometry.nearest_valid_size(height, width, multiple)
    t = geometry.frames_for_temporal_patch(geometry.nearest_valid_frames(frames, ft), ft, patch[0])
    notes = []
    for field, given, valid, why in (("width", width, w, f"a multiple of {multiple}"),
                                     ("height", height, h, f"a multiple of {multiple}"),
                                     ("frames", frames, t, f"1 or 1 + {ft}k")):
        if given != valid:
            notes.append({"field": field, "given": given, "valid": valid, "why": why})
    return spec.geometry(t, h, w), notes


def step_flops(spec, tokens: int, rows: int) -> int:
    """FLOPs of one sampling step: ``rows`` DiT forwards over ``tokens`` tokens (2 per multiply-add;
    projections, feed-forward, self-attention over the tokens and cross-attention over the text)."""
    d = spec.dit
    dim = d.num_heads * d.head_dim
    n, text = tokens, TEXT_TOKENS
    linear = 2 * (6 * n * dim * dim + 2 * text * dim * dim + 2 * n * dim * d.ffn_dim)
    attention = 2 * (2 * n * n * dim + 2 * n * text * dim)
    return rows * d.num_layers * (linear + attention)


def _compute_dtype(name: str):
    if name not in DTYPE_NAMES:
        raise RouteError(f"dtype {name!r} is unknown; allowed: {', '.join(DTYPE_NAMES)}")
    return None if name == "float32" else ("bfloat16" if name == "auto" else name)


def _device_kind() -> str:
    try:
        return host.device().type
    except (RuntimeError, AttributeError):
        return "cpu"


def geometry_readout(query) -> dict:
    """The readout for Sora Empty Latent's widget values (see the module docstring); RouteError for a
    value that is not an integer in the widget's range or an unknown model / dtype."""
    width, height = _int_param(query, "width"), _int_param(query, "height")
    frames, batch = _int_param(query, "frames"), _int_param(query, "batch", 1)
    spec = model_spec(str(query.get("model") or DEFAULT))
    dtype = _compute_dtype(str(query.get("dtype") or "auto"))
    geo, notes = snap(spec, width, height, frames)
    est = budget.estimate(spec, geo, batch, dtype)
    device = _device_kind()
    flops = step_flops(spec, geo.tokens, 2 * batch)               # cfg: conditional + unconditional rows
    tflops = ASSUMED_TFLOPS.get(device, ASSUMED_TFLOPS["cpu"])
    return {
        "model": str(query.get("model") or DEFAULT),
        "family": spec.family,
        "request": {"width": width, "height": height, "frames": frames, "batch": batch},
        "valid": {"width": geo.width, "height": geo.height, "frames": geo.frames},
        "notes": notes,
        "latent_shape": list(geo.latent_shape(spec.vae.z_dim, batch)),
        "token_grid": list(geo.token_grid),
        "tokens": geo.tokens,
        "describe": geo.describe(),
        "memory": {"bytes": est.total, "text": budget.gib(est.total), "parts": est.describe()},
        "step": {"flops": flops, "seconds": flops / (tflops * 1e12), "device": device,
                 "assumed_tflops": tflops},
    }


def sample_file(query) -> Path:
    """Path of a pack sample named ``sora-samples/<file>`` (never outside the samples folder)."""
    name = str(query.get("name") or "")
    if not name.startswith(host.SAMPLES_PREFIX):
        raise RouteError(f"name must start with {host.SAMPLES_PREFIX!r}, got {name!r}")
    try:
        return host.input_path(name)
    except (ValueError, FileNotFoundError) as e:
        raise RouteError(str(e)) from None


def handle_geometry(query) -> tuple[int, dict]:
    """(HTTP status, JSON body) for ``GET /sora/geometry``: 400 with {"error"} for a bad query."""
    try:
        return 200, geometry_readout(query)
    except (RouteError, geometry.GeometryError, pipeline.ModelError, FileNotFoundError) as e:
        return 400, {"error": str(e)}


def handle_sample(query) -> tuple[int, "Path | dict"]:
    """(HTTP status, file path or JSON error body) for ``GET /sora/sample``."""
    try:
        return 200, sample_file(query)
    except RouteError as e:
        return 404, {"error": str(e)}


ROUTES = {("GET", ROUTE_GEOMETRY): handle_geometry, ("GET", ROUTE_SAMPLE): handle_sample}


def register() -> bool:
    """Add the routes to ComfyUI's server (False when not running inside ComfyUI)."""
    return host.register_routes(ROUTES)
