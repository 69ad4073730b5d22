"""umT5 encoder (Wan's text encoder, umT5-XXL) on our own modules, and its detection from a file header.

Structure (T5 v1.1 encoder, as transformers' ``UMT5EncoderModel`` and ComfyUI's ``comfy/text_encoders/t5.py``):
shared token embedding -> ``num_layers`` blocks of [RMS norm -> self-attention with a relative position
bias of the block's own (umT5: every block has one; T5 only the first) and no 1/sqrt(d) scaling ->
residual; RMS norm -> gated GELU-tanh feed-forward (wi_0, wi_1, wo) -> residual] -> final RMS norm.
RMS norms have a weight, no bias and no mean subtraction; no linear layer has a bias.

Module and key names are the checkpoints' own (``shared.weight``, ``encoder.block.N.layer.0.SelfAttention.q
.weight``, ``encoder.block.N.layer.1.DenseReluDense.wi_0.weight``, ``encoder.final_layer_norm.weight``), so
ComfyUI's files and transformers' load with at most a prefix stripped.

Weights stay in their storage dtype (fp32 / bf16 / fp16 / fp8 e4m3fn) and are upcast per layer to the
compute dtype at each call (``compute_dtype``: float32 by default; bf16 on a GPU). ComfyUI's ``*_scaled``
fp8 files carry a ``<layer>.scale_weight`` per linear layer (weight = stored * scale); the layer adopts it
when the state dict has one. This small local mechanism keeps the encoder independent of the loader.
"""

from __future__ import annotations

import math
import re
from typing import Mapping

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ...configs import UMT5Config, preset
from .detect import Detected, UnsupportedCheckpoint

FP8 = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))


# ---------------------------------------------------------------------------------------------
# Layers with weights kept in their storage dtype
# ---------------------------------------------------------------------------------------------

class _Stored(nn.Module):
    """A module with one ``weight`` kept in the dtype it was loaded in (and an optional fp8
    ``scale_weight``); ``stored_weight(dtype)`` gives it upcast for one computation."""

    def _init_weight(self, shape: tuple[int, ...], dtype, device) -> None:
        self.weight = nn.Parameter(torch.empty(shape, dtype=dtype, device=device), requires_grad=False)
        self.register_buffer("scale_weight", None)

    def stored_weight(self, dtype: torch.dtype) -> torch.Tensor:
        w = self.weight.to(dtype)
        return w if self.scale_weight is None else w * self.scale_weight.to(dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Adopt the file's dtype for ``weight`` and its ``scale_weight`` if it has one, so a plain
        ``load_state_dict`` keeps the storage dtype (no fp32 copy of an fp16 / fp8 file)."""
        w = state_dict.get(prefix + "weight")
        if isinstance(w, torch.Tensor) and w.dtype != self.weight.dtype and w.shape == self.weight.shape:
            self.weight = nn.Parameter(torch.empty(w.shape, dtype=w.dtype, device=self.weight.device),
                                       requires_grad=False)
        s = state_dict.get(prefix + "scale_weight")
        if isinstance(s, torch.Tensor) and self.scale_weight is None:
            self.scale_weight = torch.empty(s.shape, dtype=torch.float32, device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class StoredLinear(_Stored):
    """Linear layer without bias: (..., in) -> (..., out), weight upcast to the input's dtype."""

    def __init__(self, in_features: int, out_features: int, dtype=None, device=None):
        super().__init__()
        self._init_weight((out_features, in_features), dtype, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.stored_weight(x.dtype))


class StoredEmbedding(_Stored):
    """Embedding table: ids (...) long -> (..., dim) in ``dtype``; only the looked-up rows are upcast."""

    def __init__(self, num: int, dim: int, dtype=None, device=None):
        super().__init__()
        self._init_weight((num, dim), dtype, device)

    def forward(self, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        x = F.embedding(ids, self.weight).to(dtype)
        if self.scale_weight is not None:
            x = x * self.scale_weight.to(dtype)
        # an fp8 table cast from fp16 may hold NaN where a value was out of range (as ComfyUI does)
        return torch.nan_to_num(x) if self.weight.dtype in FP8 else x


class T5LayerNorm(_Stored):
    """RMS norm with a weight, no bias, no mean subtraction; statistics in float32."""

    def __init__(self, dim: int, eps: float, dtype=None, device=None):
        super().__init__()
        self._init_weight((dim,), dtype, device)
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.stored_weight(x.dtype)


# ---------------------------------------------------------------------------------------------
# Blocks (names as in the checkpoints)
# ---------------------------------------------------------------------------------------------

def relative_position_bucket(rel: torch.Tensor, num_buckets: int, max_distance: int) -> torch.Tensor:
    """Bidirectional T5 buckets of ``rel`` = key position - query position (long) -> bucket ids.
    Half the buckets per direction; of those, half exact, half logarithmic up to ``max_distance``."""
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    large = max_exact + (torch.log(rel.float() / max_exact) / math.log(max_distance / max_exact)
                         * (half - max_exact)).long()
    large = large.clamp(max=half - 1)
    return buckets + torch.where(rel < max_exact, rel, large)


class T5Attention(nn.Module):
    """Self-attention without 1/sqrt(d) scaling, with this block's own relative position bias."""

    def __init__(self, cfg: UMT5Config, dtype=None, device=None):
        super().__init__()
        d, inner = cfg.d_model, cfg.inner_dim
        self.q, self.k = StoredLinear(d, inner, dtype, device), StoredLinear(d, inner, dtype, device)
        self.v, self.o = StoredLinear(d, inner, dtype, device), StoredLinear(inner, d, dtype, device)
        self.relative_attention_bias = StoredEmbedding(cfg.num_buckets, cfg.num_heads, dtype, device)
        self.num_heads = cfg.num_heads

    def forward(self, x: torch.Tensor, buckets: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor:
        """x (B, L, D), buckets (L, L) long, key_mask (B, 1, 1, L) additive -> (B, L, D)."""
        q, k, v = (rearrange(f(x), "b l (h d) -> b h l d", h=self.num_heads) for f in (self.q, self.k, self.v))
        bias = rearrange(self.relative_attention_bias(buckets, x.dtype), "q k h -> 1 h q k")
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias + key_mask, scale=1.0)
        return self.o(rearrange(out, "b h l d -> b l (h d)"))


class T5LayerSelfAttention(nn.Module):
    def __init__(self, cfg: UMT5Config, dtype=None, device=None):
        super().__init__()
        self.SelfAttention = T5Attention(cfg, dtype, device)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.eps, dtype, device)

    def forward(self, x, buckets, key_mask):
        return x + self.SelfAttention(self.layer_norm(x), buckets, key_mask)


class T5DenseGatedActDense(nn.Module):
    """Gated GELU-tanh feed-forward: wo(gelu_tanh(wi_0 x) * wi_1 x)."""

    def __init__(self, cfg: UMT5Config, dtype=None, device=None):
        super().__init__()
        self.wi_0 = StoredLinear(cfg.d_model, cfg.d_ff, dtype, device)
        self.wi_1 = StoredLinear(cfg.d_model, cfg.d_ff, dtype, device)
        self.wo = StoredLinear(cfg.d_ff, cfg.d_model, dtype, device)

    def forward(self, x):
        return self.wo(F.gelu(self.wi_0(x), approximate="tanh") * self.wi_1(x))


class T5LayerFF(nn.Module):
    def __init__(self, cfg: UMT5Config, dtype=None, device=None):
        super().__init__()
        self.DenseReluDense = T5DenseGatedActDense(cfg, dtype, device)
        self.layer_norm = T5LayerNorm(cfg.d_model, cfg.eps, dtype, device)

    def forward(self, x):
        return x + self.DenseReluDense(self.layer_norm(x))


class T5Block(nn.Module):
    def __init__(self, cfg: UMT5Config, dtype=None, device=None):
        super().__init__()
        self.layer = nn.ModuleList([T5LayerSelfAttention(cfg, dtype, device), T5LayerFF(cfg, dtype, device)])

    def forward(self, x, buckets, key_mask):
        x = self.layer[1](self.layer[0](x, buckets, key_mask))
        if x.dtype == torch.float16:        # as transformers: keep fp16 activations finite
            big = torch.finfo(torch.float16).max - 1000
            x = x.clamp(-big, big)
        return x


class T5Stack(nn.Module):
    def __init__(self, cfg: UMT5Config, dtype=None, device=None):
        super().__init__()
        self.block = nn.ModuleList([T5Block(cfg, dtype, device) for _ in range(cfg.num_layers)])
        self.final_layer_norm = T5LayerNorm(cfg.d_model, cfg.eps, dtype, device)


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------

class UMT5Encoder(nn.Module):
    """ids (B, L) long, mask (B, L) bool -> last hidden states (B, L, d_model), zero where mask is False.

    ``dtype`` is the storage dtype of a freshly built module (loading adopts the file's);
    ``compute_dtype`` the dtype activations are computed in (weights are upcast per layer)."""

    keeps_storage_dtype = True          # sora_core.loading: the layers upcast themselves (and adopt fp8 scales)

    def __init__(self, cfg: UMT5Config, dtype=None, device=None, compute_dtype: torch.dtype = torch.float32):
        super().__init__()
        self.cfg, self.compute_dtype = cfg, compute_dtype
        self.shared = StoredEmbedding(cfg.vocab_size, cfg.d_model, dtype, device)
        self.encoder = T5Stack(cfg, dtype, device)

    @property
    def device(self) -> torch.device:
        return self.shared.weight.device

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"ids and mask must both be (B, L), got {tuple(ids.shape)} and {tuple(mask.shape)}")
        if not bool(mask.any(dim=1).all()):
            raise ValueError("every row of mask needs at least one real token (the EOS)")
        L, dt = ids.shape[1], self.compute_dtype
        pos = torch.arange(L, device=ids.device)
        buckets = relative_position_bucket(pos[None, :] - pos[:, None], self.cfg.num_buckets, self.cfg.max_distance)
        key_mask = torch.zeros(mask.shape, dtype=dt, device=ids.device).masked_fill(~mask, float("-inf"))
        key_mask = rearrange(key_mask, "b l -> b 1 1 l")
        x = self.shared(ids, dt)                                                        # (B, L, D)
        for block in self.encoder.block:
            x = block(x, buckets, key_mask)
        x = self.encoder.final_layer_norm(x)
        return torch.where(rearrange(mask, "b l -> b l 1"), x, torch.zeros((), dtype=x.dtype, device=x.device))


def build_umt5(cfg: UMT5Config) -> UMT5Encoder:
    """The encoder for ``cfg`` (the builder ``sora_core.loading`` calls, on the meta device; loading with
    ``assign=True`` then keeps every tensor in the dtype it is stored in)."""
    return UMT5Encoder(cfg)


def umt5_from_state(cfg: UMT5Config, state: Mapping[str, torch.Tensor], key_map=None, device=None,
                    compute_dtype: torch.dtype = torch.float32, source: str = "the text encoder file") -> UMT5Encoder:
    """An encoder holding the tensors of an in-memory state dict as they are (storage dtype kept, no fp32
    copy): built on the meta device, then assigned. ``key_map`` (file key -> our key, None = ignored)
    comes from ``detect_umt5``. Raises UnsupportedCheckpoint naming missing, unexpected or misshapen keys.
    (Files on disk load through ``sora_core.loading.load(path, "text_encoder")``.)"""
    mapped = {}
    for k, v in state.items():
        ours = key_map(k) if key_map is not None else k
        if ours is not None:
            mapped[ours] = v.to(device) if device is not None else v
    with torch.device("meta"):
        model = UMT5Encoder(cfg, compute_dtype=compute_dtype)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    expected.update({k: tuple(mapped[k].shape) for k in mapped if k.endswith(".scale_weight")
                     and k[: -len("scale_weight")] + "weight" in expected})
    missing = sorted(set(expected) - set(mapped))
    unexpected = sorted(set(mapped) - set(expected))
    wrong = sorted(f"{k} {tuple(mapped[k].shape)} (expected {s})" for k, s in expected.items()
                   if k in mapped and tuple(mapped[k].shape) != s)
    if missing or unexpected or wrong:
        parts = [f"{len(x)} {t}: {', '.join(x[:4])}{' ...' if len(x) > 4 else ''}"
                 for t, x in (("missing", missing), ("unexpected", unexpected), ("with the wrong shape", wrong)) if x]
        raise UnsupportedCheckpoint(f"{source} does not fit a umT5 encoder of {cfg}: keys " + "; ".join(parts))
    model.load_state_dict(mapped, assign=True)
    return model.requires_grad_(False).eval()


# ---------------------------------------------------------------------------------------------
# Detection from a header (ComfyUI's umt5_xxl_*.safetensors, transformers' UMT5EncoderModel)
# ---------------------------------------------------------------------------------------------

Q_KEY = "encoder.block.0.layer.0.SelfAttention.q.weight"
_BLOCK = re.compile(r"encoder\.block\.(\d+)\.")
IGNORED = ("spiece_model", "scaled_fp8")            # tokenizer bytes, ComfyUI's scaled-fp8 marker
# fp8 matmul input scales (unused: we compute in float), per-layer format records of ComfyUI's newer files
IGNORED_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")


def _prefix(shapes) -> str | None:
    hits = [k[: -len(Q_KEY)] for k in shapes if k.endswith(Q_KEY)]
    return hits[0] if len(hits) == 1 else None


def _config_from(shapes, p: str) -> UMT5Config:
    """Sizes read off the shapes (prefix ``p`` included in the keys)."""
    emb = shapes.get(p + "shared.weight") or shapes.get(p + "encoder.embed_tokens.weight")
    if emb is None:
        raise UnsupportedCheckpoint("a T5-style encoder without its token embedding (no shared.weight "
                                    "nor encoder.embed_tokens.weight): an incomplete umT5 file")
    bias = shapes[p + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    layers = 1 + max(int(m.group(1)) for k in shapes if (m := _BLOCK.match(k[len(p):])) and k.startswith(p))
    inner, heads = shapes[p + Q_KEY][0], bias[1]
    return UMT5Config(vocab_size=emb[0], d_model=emb[1], num_layers=layers, num_heads=heads,
                      d_kv=inner // heads, d_ff=shapes[p + "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"][0],
                      num_buckets=bias[0])


def _refuse_relatives(shapes, p: str) -> None:
    """T5 relatives this encoder does not load: one clear error each."""
    if p + "encoder.block.0.layer.1.DenseReluDense.wi.weight" in shapes:
        raise UnsupportedCheckpoint("keys encoder.block.N.layer.1.DenseReluDense.wi.weight: an original T5 "
                                    "(v1.0, ungated feed-forward) encoder, not umT5-XXL (Wan's text encoder, "
                                    "e.g. models/text_encoders/umt5_xxl_fp16.safetensors)")
    if p + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight" not in shapes:
        raise UnsupportedCheckpoint("encoder.block.0 has no relative_attention_bias: not a umT5 encoder")
    if p + "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight" not in shapes \
            and p + "encoder.block.1.layer.0.SelfAttention.q.weight" in shapes:
        raise UnsupportedCheckpoint("a relative position bias in encoder.block.0 only: a T5 v1.1 encoder "
                                    "(e.g. t5xxl for Flux / SD3), not umT5-XXL (Wan's text encoder, "
                                    "e.g. models/text_encoders/umt5_xxl_fp16.safetensors)")


def _key_map(shapes, p: str):
    has_shared = p + "shared.weight" in shapes

    def key_map(k: str) -> str | None:
        if not k.startswith(p):
            return None
        k = k[len(p):]
        if k in IGNORED or k.endswith(IGNORED_SUFFIXES) or k.startswith(("decoder.", "lm_head.")):
            return None
        if k.endswith(".weight_scale"):            # ComfyUI's newer quantized files name the scale so
            return k[: -len("weight_scale")] + "scale_weight"
        if k == "encoder.embed_tokens.weight":
            return None if has_shared else "shared.weight"
        return k
    return key_map


def detect_umt5(shapes: Mapping[str, tuple], dtypes: Mapping[str, str]) -> Detected | None:
    """A umT5 encoder's header -> Detected(kind "text_encoder"), None for other components;
    UnsupportedCheckpoint for T5 relatives and files whose keys or shapes do not fit."""
    p = _prefix(shapes)
    if p is None:
        return None
    _refuse_relatives(shapes, p)
    cfg = _config_from(shapes, p)
    key_map = _key_map(shapes, p)
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in UMT5Encoder(cfg).state_dict().items()}
    got = {key_map(k): tuple(s) for k, s in shapes.items() if key_map(k) is not None}
    bad_scales = sorted(k for k, s in got.items() if k.endswith(".scale_weight") and math.prod(s) != 1)
    got = {k: s for k, s in got.items() if not k.endswith(".scale_weight")}
    missing = sorted(set(expected) - set(got))
    wrong = sorted(k for k in expected if k in got and got[k] != expected[k])
    if missing or wrong or bad_scales:
        raise UnsupportedCheckpoint(
            f"a umT5 encoder ({cfg.num_layers} layers, d_model {cfg.d_model}) whose keys do not fit: "
            f"{len(missing)} missing ({', '.join(missing[:3])}), {len(wrong)} with the wrong shape "
            f"({', '.join(wrong[:3])}), {len(bad_scales)} fp8 scales that are not one number per layer "
            f"({', '.join(bad_scales[:3])}); a truncated or edited file?")
    xxl = preset("umt5", "umt5-xxl")
    stored = sorted({dtypes.get(k, "?") for k in shapes if key_map(k) == Q_KEY or
                     (key_map(k) or "").endswith(("wi_0.weight", "o.weight"))})
    notes = [f"linear weights stored as {'/'.join(stored)} (upcast per layer for compute)"]
    scales = sum(1 for k in shapes if k.endswith((".scale_weight", ".weight_scale")))
    if scales:
        notes.append(f"scaled fp8: {scales} scale_weight keys")
    notes.append("tokenizer embedded (spiece_model)" if p + "spiece_model" in shapes
                 else "no embedded tokenizer: spiece.model or tokenizer.json beside the weights")
    layout = "comfyui" if (p + "spiece_model" in shapes or p + "scaled_fp8" in shapes or scales) else "diffusers"
    return Detected(kind="text_encoder", family="umt5-xxl" if cfg == xxl else "umt5", cfg=cfg, layout=layout,
                    key_map=key_map, notes=tuple(notes))


__all__ = ["UMT5Encoder", "StoredLinear", "StoredEmbedding", "T5LayerNorm", "build_umt5", "umt5_from_state",
           "detect_umt5",
           "relative_position_bucket"]
