"""Fused CPU kernels of the DiT: the same numbers as the plain modules of ``dit.py``, computed faster.

``DiT(cfg, fused=True)`` (the default; ``model.set_kernels("plain")`` turns it off) runs its token
trunk through ``dit_tokens`` below instead of the modules' own ``forward``. Every function reads the
parameters of the plain modules (no parameter of its own), so the state dict is the same either way,
and in float32 the two paths agree to rounding (tests/test_dit.py checks forward and gradients).

Interface:
    dit_tokens(model, x, context, temb, mod, mask, rope)   the whole trunk: patches -> blocks -> head
    block_forward(block, x, mod, ctx, mask, rope)           one ``DiTBlock``
    linear(x, weight, bias, gelu=False)                     bias outside bf16 GEMMs / oneDNN fused
    attention(q, k, v, mask, max_scores=MATH_MAX_SCORES)    SDPA, math attention for bf16 training
    inv_rms(x, eps)                                         1 / rms with a one-pass backward

Where the time goes on the CPU (measured by ``benchmarks/bench_dit.py``, see docs/benchmarks_dit.md):
bias adds outside bf16 GEMMs (oneDNN fused linears in bf16 inference), one fused q/k/v GEMM (the
three weights concatenated per call), q/k RMS norm and interleaved RoPE in four passes with the norm
weights folded into the cos/sin tables, modulation broadcast per frame instead of expanded per token,
erf GELU in bf16 (within bf16 rounding of the tanh form), and math attention for bf16 training
(torch's CPU flash backward is slow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange

from .patches import patchify, swap_pairs

MATH_MAX_SCORES = 1 << 24   # B*H*N*L above this: the flash kernel (memory linear in N) even in training


# ---------------------------------------------------------------------------------------------
# Linear, GELU, RMS
# ---------------------------------------------------------------------------------------------

def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """x (..., in) -> (..., out) = F.linear(x, weight, bias), optionally followed by GELU-tanh.

    On the CPU a bf16 GEMM with a fused bias (addmm) runs several times slower than the GEMM alone
    plus one add, so in reduced precision the bias is added separately; in bf16 inference oneDNN's
    linear with the bias (and GELU) fused into the GEMM is faster still."""
    if _onednn_inference(x):
        dt = torch.bfloat16
        return torch.ops.mkldnn._linear_pointwise(x.to(dt), weight.to(dt), bias.to(dt),
                                                  "gelu" if gelu else "none", [], "none")
    if x.dtype == torch.float32 and not torch.is_autocast_enabled(x.device.type):
        y = F.linear(x, weight, bias)
    else:
        y = F.linear(x, weight)
        y = y.add_(bias.to(y.dtype))   # same dtype: a mixed-dtype in-place add is ~10x slower
    return gelu_tanh(y) if gelu else y


def _onednn_inference(x: torch.Tensor) -> bool:
    bf16 = x.dtype == torch.bfloat16 or (torch.is_autocast_enabled("cpu")
                                         and torch.get_autocast_dtype("cpu") == torch.bfloat16)
    return (bf16 and x.device.type == "cpu" and not torch.is_grad_enabled()
            and torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"))


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GELU with the tanh approximation (Wan's activation). In bf16/fp16 it is evaluated as the exact
    (erf) GELU: the two differ by < 5e-4 everywhere, below half a bf16 step for |y| > 0.25, and
    torch's CPU kernel for the erf form is ~4x faster than the tanh one in bf16."""
    if x.dtype in (torch.bfloat16, torch.float16):
        return F.gelu(x)
    return F.gelu(x, approximate="tanh")


class _InvRMS(torch.autograd.Function):
    """(..., D) -> (..., 1) float32 1 / sqrt(mean(x^2) + eps): one pass each way (the autograd of
    ``vector_norm`` takes four float32 passes backward)."""

    @staticmethod
    def forward(ctx, x, eps):
        acc = torch.promote_types(x.dtype, torch.float32)
        ms = torch.linalg.vector_norm(x, dim=-1, keepdim=True, dtype=acc).square_() / x.shape[-1]
        inv = torch.rsqrt(ms + eps)
        ctx.save_for_backward(x, inv)
        return inv

    @staticmethod
    def backward(ctx, grad):
        x, inv = ctx.saved_tensors                      # d inv / dx = -inv^3 x / D
        return x * (grad * inv.pow(3) / -x.shape[-1]).to(x.dtype), None


def inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(..., D) -> (..., 1) float32 inverse root mean square, accumulated in float32."""
    return _InvRMS.apply(x, eps)


# ---------------------------------------------------------------------------------------------
# Attention
# ---------------------------------------------------------------------------------------------

def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              max_scores: int = MATH_MAX_SCORES) -> torch.Tensor:
    """SDPA: q (B, H, N, d), k/v (B, H, L, d), mask (B, 1, 1, L) bool (True = attend) -> (B, H, N, d).

    torch's CPU flash-attention backward runs 3-8x slower than its forward, so bf16/fp16 training on
    the CPU takes plain math attention (two GEMMs and a softmax that keeps its probabilities) while
    the score matrix B*H*N*L is at most ``max_scores`` (a 320-token training step gets ~20% faster).
    Larger score matrices (where a blockwise recomputing backward measured no faster than torch's),
    inference and float32 use torch's SDPA."""
    cpu = q.device.type == "cpu"
    dt = torch.get_autocast_dtype("cpu") if cpu and torch.is_autocast_enabled("cpu") else q.dtype
    small = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] <= max_scores
    if cpu and small and dt in (torch.bfloat16, torch.float16) and torch.is_grad_enabled() and q.requires_grad:
        with torch.autocast("cpu", enabled=False):
            q, k, v = q.to(dt), k.to(dt), v.to(dt)
            s = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)                          # (B, H, N, L)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            return torch.softmax(s, dim=-1) @ v        # softmax accumulates in float32 internally
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _concat(*lins) -> tuple[torch.Tensor, torch.Tensor]:
    """One (weight, bias) for several nn.Linear, cast to the compute dtype before the concat."""
    w = lins[0].weight
    dt = torch.get_autocast_dtype(w.device.type) if torch.is_autocast_enabled(w.device.type) else w.dtype
    return torch.cat([m.weight.to(dt) for m in lins]), torch.cat([m.bias.to(dt) for m in lins])


def _attend(attn, q, k, v, mask=None) -> torch.Tensor:
    """q (B, N, H, d), k/v (B, L, H, d) -> to_out(attention) (B, N, H*d)."""
    out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)        # (B, H, N, d)
    out = rearrange(out, "b h n d -> b n (h d)")
    return linear(out, attn.to_out[0].weight, attn.to_out[0].bias)


def self_attention(attn, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """``attn(x, rope=(cos, sin))`` of a dit ``Attention``: x (B, N, dim), tables (N, 1, d) -> (B, N, dim).

    RMS norm and RoPE of q and k in one go: the norm weights w are folded into the RoPE tables,
    w * rope(x) = x * (w cos) + swap(x) * (swap(w) sin), and the per-token 1 / rms factor
    commutes with the rotation, so it is applied last."""
    qkv = linear(x, *_concat(attn.to_q, attn.to_k, attn.to_v))                       # (B, N, 3 dim)
    qkv = rearrange(qkv, "b n (three h d) -> b n three h d", three=3, h=attn.heads)
    qk = qkv[:, :, :2]                                                                   # (B, N, 2, H, d)
    inv = inv_rms(rearrange(qk, "b n two h d -> b n two (h d)"), attn.norm_q.eps)      # (B, N, 2, 1)
    w = rearrange(torch.stack([attn.norm_q.weight, attn.norm_k.weight]), "two (h d) -> two h d",
                  h=attn.heads)                                                          # (2, H, d)
    cos_w, sin_w = (cos[:, None] * w).to(qk.dtype), (sin[:, None] * swap_pairs(w)).to(qk.dtype)
    qk = torch.addcmul(qk * cos_w, swap_pairs(qk), sin_w) * inv[..., None].to(qk.dtype)
    q, k = qk.unbind(2)                                                                  # (B, N, H, d)
    return _attend(attn, q, k, qkv[:, :, 2])


def cross_attention(attn, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """``attn(x, ctx, mask=mask)``: x (B, N, dim), ctx (B, L, dim), mask (B, 1, 1, L) -> (B, N, dim).

    Both RMS-norm weights act channel-wise inside the q.k dot products, so they are applied
    together on the (short) text side: q.k = (q / rms_q) . (k w_q w_k / rms_k)."""
    q = linear(x, attn.to_q.weight, attn.to_q.bias)                                     # (B, N, dim)
    q = q * inv_rms(q, attn.norm_q.eps).to(q.dtype)
    k, v = linear(ctx, *_concat(attn.to_k, attn.to_v)).chunk(2, dim=-1)               # (B, L, dim) x2
    k = k * (inv_rms(k, attn.norm_k.eps) * (attn.norm_q.weight * attn.norm_k.weight)).to(k.dtype)
    q, k, v = (rearrange(z, "b n (h d) -> b n h d", h=attn.heads) for z in (q, k, v))
    return _attend(attn, q, k, v, mask)


# ---------------------------------------------------------------------------------------------
# Blocks and the trunk
# ---------------------------------------------------------------------------------------------

def _frames(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B, N, D) -> (B, F, N/F, D) view, so per-frame modulation (B, F, 1, D) broadcasts."""
    return rearrange(x, "b (f s) d -> b f s d", f=f)


def _modulate(x4: torch.Tensor, shift: torch.Tensor, scale1: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm (no affine) then x * scale1 + shift; x4 (B, F, S, D), shift/scale1 (B, F, 1, D)."""
    return torch.addcmul(shift, F.layer_norm(x4, x4.shape[-1:], eps=eps), scale1)


def _ffn(ffn, x: torch.Tensor) -> torch.Tensor:
    """``ffn(x)``: dim -> ffn_dim (GELU-tanh, fused into the GEMM in bf16 inference) -> dim."""
    up, down = ffn.net[0].proj, ffn.net[2]
    return linear(linear(x, up.weight, up.bias, gelu=True), down.weight, down.bias)


def block_forward(block, x: torch.Tensor, mod: torch.Tensor, ctx: torch.Tensor,
                  ctx_mask: torch.Tensor | None, rope) -> torch.Tensor:
    """``block(x, mod, ctx, ctx_mask, rope)`` of a ``DiTBlock`` with the modulation broadcast per frame:
    x (B, N, D), mod (B, F, 6, D) float32, ctx (B, L, D), rope (cos, sin) (N, 1, d) -> (B, N, D)."""
    e = rearrange(block.scale_shift_table + mod, "b f six d -> six b f 1 d")          # float32
    shift1, scale1, gate1, shift2, scale2, gate2 = ((c + 1 if i in (1, 4) else c).to(x.dtype)
                                                    for i, c in enumerate(e))
    f = mod.shape[1]
    h = _modulate(_frames(x, f), shift1, scale1, block.norm1.eps)
    a = self_attention(block.attn1, rearrange(h, "b f s d -> b (f s) d"), *rope)
    x = rearrange(torch.addcmul(_frames(x, f), _frames(a, f), gate1), "b f s d -> b (f s) d")
    x = x + cross_attention(block.attn2, block.norm2(x), ctx, ctx_mask)
    h = _modulate(_frames(x, f), shift2, scale2, block.norm3.eps)
    y = _ffn(block.ffn, rearrange(h, "b f s d -> b (f s) d"))
    return rearrange(torch.addcmul(_frames(x, f), _frames(y, f), gate2), "b f s d -> b (f s) d")


def dit_tokens(model, x: torch.Tensor, context: torch.Tensor, temb: torch.Tensor, mod: torch.Tensor,
               mask: torch.Tensor | None, rope) -> torch.Tensor:
    """The fused form of ``DiT._tokens``: latent x (B, C, T, H, W), text (B, L, text_dim), temb
    (B, F, D), mod (B, F, 6, D), mask (B, 1, 1, L) -> head output tokens (B, N, C_out*pt*ph*pw).

    The patch embedding (a Conv3d with kernel = stride = patch) runs as a linear map on patchified
    tokens (same numbers, cheaper on the CPU)."""
    w, b = model.patch_embedding.weight, model.patch_embedding.bias
    h = linear(patchify(x, tuple(model.cfg.patch_size)), w.view(w.shape[0], -1), b)    # (B, N, D)
    te = model.condition_embedder.text_embedder
    ctx = linear(te.act(linear(context, te.linear_1.weight, te.linear_1.bias)),
                 te.linear_2.weight, te.linear_2.bias)                                   # (B, L, D)
    for block in model.blocks:
        h = block_forward(block, h, mod, ctx, mask, rope)
    e = rearrange(model.scale_shift_table, "1 two d -> two 1 1 1 d") + rearrange(temb, "b f d -> b f 1 d")
    h = _modulate(_frames(h, temb.shape[1]), e[0].to(h.dtype), (1 + e[1]).to(h.dtype), model.norm_out.eps)
    h = rearrange(h, "b f s d -> b (f s) d")
    return linear(h, model.proj_out.weight, model.proj_out.bias)


__all__ = ["dit_tokens", "block_forward", "linear", "attention", "inv_rms", "gelu_tanh",
           "self_attention", "cross_attention", "MATH_MAX_SCORES"]
