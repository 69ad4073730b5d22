"""Memory budget of a request: estimate before allocating, refuse what cannot fit.

One estimator for the command line, the nodes and the loaders. From a ``LatentGeometry``, the batch
size, the model's configs and the compute dtype it adds up the peak memory of a request:

- weights: the parameters of the three modules (float32, as ``load_component`` builds them), counted
  on the meta device from the configs (nothing is allocated); for checkpoints read in their storage
  dtype (Wan: bf16 / fp16 / fp8) the bytes as stored, from the headers (``loading.Checkpoint.storage_bytes``,
  passed as ``weight_bytes``). With block offload the DiT blocks and the text encoder sit in host
  memory and the device holds about two blocks' worth of the DiT (the streamed block and the rest);
- latents: the latent, the noise and the sampler's working copies, (B, C, T_lat, H_lat, W_lat) float32;
- one DiT step: the residual stream, q / k / v, the feed-forward hidden layer and the cross-attention
  scores over the text tokens for ``2B`` rows (CFG runs the conditional and unconditional passes as
  one batch). Self-attention runs in torch's fused SDPA kernels, whose memory grows with the token
  count, not its square;
- decoding: the VAE decoder's widest activation for one causal chunk, plus the decoded video
  (float32 pixels, the IMAGE copy and the uint8 frames of the writer).

The sampling and decoding phases do not overlap, so the peak is weights + latents + the larger of
the two. Available memory comes from ``/proc/meminfo`` (MemAvailable) on Linux or
``torch.cuda.mem_get_info`` on CUDA; when neither is known the check is skipped.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field

import torch

from .geometry import LatentGeometry

FLOAT = 4                          # bytes of a float32
LATENT_COPIES = 6                  # latent, noise, x, denoised and two sampler buffers


class BudgetError(ValueError):
    """A request whose estimated memory exceeds what the machine has available."""


# ---------------------------------------------------------------------------------------------
# Available memory
# ---------------------------------------------------------------------------------------------

def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Free bytes on ``device`` (CUDA: free device memory; otherwise the host's available RAM), or
    None when it cannot be known."""
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        return int(torch.cuda.mem_get_info(device)[0])
    return _meminfo_available()


# ---------------------------------------------------------------------------------------------
# Estimate
# ---------------------------------------------------------------------------------------------

def gib(n: int) -> str:
    """Bytes as a short human figure."""
    return f"{n / 2 ** 30:,.1f} GiB" if n >= 2 ** 30 else f"{n / 2 ** 20:,.1f} MiB"


@dataclass(frozen=True)
class Estimate:
    """Peak bytes of one request: ``device`` parts live on the compute device, ``host`` parts in RAM."""
    device: dict[str, int] = field(default_factory=dict)
    host: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.device.values()) + sum(self.host.values())

    def describe(self) -> str:
        parts = {**self.device, **self.host}
        return ", ".join(f"{k} {gib(v)}" for k, v in parts.items() if v)


@functools.lru_cache(maxsize=32)
def parameter_count(cfg) -> int:
    """Parameters of the module built for ``cfg`` (counted on the meta device: nothing is allocated)."""
    from .weights import build_module
    with torch.device("meta"):
        module = build_module(cfg)
    return sum(p.numel() for p in module.state_dict().values())


def _dit_step(spec, tokens: int, rows: int, dtype: torch.dtype | None) -> int:
    """Bytes of one DiT forward over ``rows`` sequences of ``tokens`` tokens."""
    d = spec.dit
    act = torch.finfo(dtype).bits // 8 if dtype is not None else FLOAT
    stream = rows * tokens * d.dim * FLOAT * 3                         # x, the modulated input, the update
    qkv = rows * tokens * d.dim * act * 5                              # q, k, v, attention out, projection
    ffn = rows * tokens * d.ffn_dim * act * 2                          # hidden layer and its GELU
    cross = rows * d.num_heads * tokens * spec.text_encoder.max_len * FLOAT   # masked scores (B, H, N, L)
    rope = tokens * d.head_dim * 2 * FLOAT
    return stream + qkv + ffn + cross + rope


def _vae_decode(spec, geo: LatentGeometry, batch: int) -> int:
    """Bytes of the decoder's widest stage for one causal chunk (ft pixel frames)."""
    v = spec.vae
    n = len(v.dim_mult)
    base = max(v.base_dim, getattr(v, "decoder_base_dim", v.base_dim))     # Wan 2.2: a wider decoder
    # stage i works at 1 / 2**i of the size with up to base * dim_mult[i + 1] channels (the decoder
    # halves the channels only after upsampling)
    widest = max(base * v.dim_mult[min(i + 1, n - 1)] * (geo.height * geo.width // 4 ** i) for i in range(n))
    return batch * widest * (v.temporal_factor + 2) * FLOAT * 4       # x, residual, norm, conv out (+ cache)


def _weights(spec, weight_bytes, offload: bool) -> tuple[dict[str, int], dict[str, int]]:
    """(device parts, host parts) of the weights: float32 from the configs, or ``weight_bytes``
    {kind: bytes as stored}; with ``offload`` the DiT blocks and the text encoder are in host memory."""
    if weight_bytes is None:
        weight_bytes = {k: FLOAT * parameter_count(getattr(spec, k)) for k in ("vae", "text_encoder", "dit")}
    dit, vae, te = (int(weight_bytes.get(k, 0)) for k in ("dit", "vae", "text_encoder"))
    if not offload:
        return {"weights": dit + vae + te}, {}
    streamed = min(dit, 2 * dit // max(1, spec.dit.num_layers))
    return {"weights": streamed + vae}, {"offloaded weights": dit + te}


def estimate(spec, geo: LatentGeometry, batch: int = 1, dtype: torch.dtype | str | None = None, *,
             weights: bool = True, sampling: bool = True, decode: bool = True,
             weight_bytes: dict[str, int] | None = None, offload: bool = False) -> Estimate:
    """Peak memory of a request on ``spec`` (a ``pipeline.ModelSpec``) at ``geo`` x ``batch``.

    ``weights``: count the modules (False when they are loaded already); ``sampling`` / ``decode``:
    which phases the request runs; ``dtype``: the DiT's autocast dtype (None = float32; a name such
    as "bfloat16" also works); ``weight_bytes``: {kind: bytes as stored} (default: float32 from the
    configs); ``offload``: DiT blocks and text encoder in host memory.
    """
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else dtype
    dev: dict[str, int] = {}
    host: dict[str, int] = {}
    if weights:
        dev, host = _weights(spec, weight_bytes, offload)
    latent = batch * spec.vae.z_dim * geo.latent_frames * geo.latent_size[0] * geo.latent_size[1] * FLOAT
    dev["latents"] = latent * (LATENT_COPIES if sampling else 2)
    step = _dit_step(spec, geo.tokens, 2 * batch, dtype) if sampling else 0
    dec = _vae_decode(spec, geo, batch) if decode else 0
    pixels = batch * geo.frames * geo.height * geo.width * 3
    video = pixels * (2 * FLOAT + 1) if decode else 0                 # float video, IMAGE copy, uint8 frames
    if step >= dec:
        dev["sampling step"] = step
    else:
        dev["decoding"] = dec
    host["decoded video"] = video
    return Estimate(dev, host)


# ---------------------------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------------------------

def check_fits(est: Estimate, device: torch.device | str, what: str) -> Estimate:
    """Raise BudgetError when ``est`` exceeds the available memory (device parts against the device,
    host parts against RAM; both against RAM on the CPU). ``what`` names the request."""
    device = torch.device(device)
    pools = ([(device, sum(est.device.values())), (torch.device("cpu"), sum(est.host.values()))]
             if device.type == "cuda" else [(torch.device("cpu"), est.total)])
    for dev, need in pools:
        have = available_memory(dev)
        if have is not None and need > have:
            where = "GPU memory" if dev.type == "cuda" else "memory"
            raise BudgetError(f"{what} needs about {gib(need)} ({est.describe()}) but {dev} has {gib(have)} of "
                              f"{where} available: make it smaller (fewer frames, a smaller size, a smaller "
                              f"batch) or free memory")
    return est


def check_request(spec, geo: LatentGeometry, batch: int = 1, device: torch.device | str = "cpu",
                  dtype: torch.dtype | str | None = None, what: str | None = None, **phases) -> Estimate:
    """``estimate`` then ``check_fits``; ``what`` defaults to a description of the grid."""
    label = what or f"the request {geo.frames} frames x {geo.width}x{geo.height}" + (
        f" x batch {batch}" if batch > 1 else "")
    return check_fits(estimate(spec, geo, batch, dtype, **phases), device, label)


def check_bytes(need: int, what: str, device: torch.device | str = "cpu") -> None:
    """Raise BudgetError when ``need`` bytes for ``what`` exceed the available memory of ``device``."""
    have = available_memory(device)
    if have is not None and need > have:
        raise BudgetError(f"{what} needs about {gib(need)} but {torch.device(device)} has {gib(have)} of memory "
                          f"available")


__all__ = ["BudgetError", "Estimate", "available_memory", "parameter_count", "estimate", "check_fits",
           "check_request", "check_bytes", "gib"]
