"""The diffusion transformer (DiT) over spacetime latent patches, with the Wan 2.1 block structure.

Given noisy latents x_t = (1 - t) x0 + t noise, a flow time t in [0, 1] (one per sample, or one per
latent frame so conditioned frames can sit at t = 0) and text embeddings, it predicts the flow
velocity v = noise - x0 (the Wan convention).

Structure (every size a ``DiTConfig`` value):
    patch_embedding      Conv3d weights (kernel = stride = patch), applied as a linear map on
                         patchified tokens (same numbers, cheaper on CPU)
    condition_embedder   sinusoid(1000 t) -> MLP -> temb;  SiLU -> time_proj: temb -> 6 * dim
                         (shared by all blocks);  text MLP text_dim -> dim (GELU-tanh);
                         optional (pooled_text, not in Wan) text_pool MLP: RMS-normalised mean
                         of the text tokens -> added to temb
    blocks[i]            adaLN: scale_shift_table (1, 6, dim) + time_proj -> shift/scale/gate x2
                         self-attention (fused qkv, q/k RMS norm across heads, 3D RoPE, SDPA)
                         cross-attention to text (no modulation, norm2 when cross_attn_norm, mask)
                         GELU-tanh feed-forward
    norm_out/proj_out    final modulated head with its own scale_shift_table (1, 2, dim)

Weight names: the module tree is that of diffusers' ``WanTransformer3DModel`` (``blocks.0.attn1.to_q``,
``blocks.0.ffn.net.0.proj``, ``condition_embedder.time_proj`` ...), so a diffusers-layout Wan 2.1
state dict loads as is (q, k and v stay separate parameters and are concatenated at run time).
The original Wan 2.1 checkpoint layout maps by renaming keys only:
    self_attn.{q,k,v,o,norm_q,norm_k}  -> attn1.{to_q,to_k,to_v,to_out.0,norm_q,norm_k}
    cross_attn.{...}                   -> attn2.{...}
    norm3 (cross-attention norm)       -> norm2
    ffn.0 / ffn.2                      -> ffn.net.0.proj / ffn.net.2
    modulation                         -> scale_shift_table
    text_embedding.0 / .2              -> condition_embedder.text_embedder.linear_1 / linear_2
    time_embedding.0 / .2              -> condition_embedder.time_embedder.linear_1 / linear_2
    time_projection.1                  -> condition_embedder.time_proj
    head.head / head.modulation        -> proj_out / scale_shift_table

Speed on the CPU (same numbers as diffusers' model, measured by ``benchmarks/bench_dit.py``): bias
adds outside bf16 GEMMs (oneDNN fused linears in bf16 inference), one fused q/k/v GEMM, q/k RMS
norm and interleaved RoPE in four passes with real cos/sin tables cached per grid, modulation
broadcast per frame instead of expanded per token, erf GELU in bf16 (within bf16 rounding of the
tanh form), and math attention for bf16 training (torch's CPU flash backward is slow).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from .configs import DiTConfig
from .patches import patchify, rope_tables, swap_pairs, token_grid, unpatchify


# ---------------------------------------------------------------------------------------------
# Embeddings
# ---------------------------------------------------------------------------------------------

def timestep_sinusoid(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """(...,) flow times -> (..., dim) [cos | sin] features of ``scale * t`` (Wan / diffusers order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = (t.float() * scale)[..., None] * freqs                                  # (..., half)
    emb = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return F.pad(emb, (0, dim % 2))


class Linear(nn.Linear):
    """nn.Linear (same parameters) computed by ``linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.weight, self.bias)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """x (..., in) -> (..., out), optionally followed by ``gelu_tanh``.

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


class _MLP(nn.Module):
    """linear_1 -> activation -> linear_2 (names of diffusers' TimestepEmbedding / text projection)."""

    def __init__(self, d_in: int, d_out: int, act: nn.Module):
        super().__init__()
        self.linear_1, self.act, self.linear_2 = Linear(d_in, d_out), act, Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Time: (B, F) -> temb (B, F, dim) and modulation (B, F, 6, dim); text: (B, L, text_dim) -> (B, L, dim)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, self.freq_dim = cfg.dim, cfg.freq_dim
        self.time_embedder = _MLP(cfg.freq_dim, dim, nn.SiLU())
        self.act_fn = nn.SiLU()
        self.time_proj = Linear(dim, 6 * dim)
        self.text_embedder = _MLP(cfg.text_dim, dim, nn.GELU(approximate="tanh"))
        self.text_pool = _MLP(cfg.text_dim, dim, nn.SiLU()) if cfg.pooled_text else None

    def time(self, t: torch.Tensor, pooled: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """t (B, F) [+ pooled text (B, text_dim)] -> temb (B, F, dim), modulation (B, F, 6, dim); in float32."""
        with torch.autocast(t.device.type, enabled=False):
            temb = self.time_embedder(timestep_sinusoid(t, self.freq_dim))
            if self.text_pool is not None:
                if pooled is None:
                    raise ValueError("this DiT has a pooled-text path (pooled_text=True): pass the pooled text")
                temb = temb + self.text_pool(pooled.float())[:, None]
            mod = self.time_proj(self.act_fn(temb))
        return temb, rearrange(mod, "b f (six d) -> b f six d", six=6)


# ---------------------------------------------------------------------------------------------
# Attention kernel
# ---------------------------------------------------------------------------------------------

_MATH_MAX_SCORES = 1 << 24   # B*H*N*L above this: the flash kernel (memory linear in N) even in training


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """SDPA: q (B, H, N, d), k/v (B, H, L, d), mask (B, 1, 1, L) bool (True = attend) -> (B, H, N, d).

    torch's CPU flash-attention backward runs 3-8x slower than its forward, so bf16/fp16 training on
    the CPU takes plain math attention (two GEMMs and a softmax that keeps its probabilities) while
    the score matrix is small enough (a 320-token training step gets ~20% faster). Larger score
    matrices (where a blockwise recomputing backward measured no faster than torch's), inference and
    float32 use torch's SDPA."""
    cpu = q.device.type == "cpu"
    dt = torch.get_autocast_dtype("cpu") if cpu and torch.is_autocast_enabled("cpu") else q.dtype
    small = q.shape[0] * q.shape[1] * q.shape[2] * k.shape[2] <= _MATH_MAX_SCORES
    if cpu and small and dt in (torch.bfloat16, torch.float16) and torch.is_grad_enabled() and q.requires_grad:
        with torch.autocast("cpu", enabled=False):
            q, k, v = q.to(dt), k.to(dt), v.to(dt)
            s = (q * q.shape[-1] ** -0.5) @ k.transpose(-1, -2)                          # (B, H, N, L)
            if mask is not None:
                s = s.masked_fill(~mask, float("-inf"))
            return torch.softmax(s, dim=-1) @ v        # softmax accumulates in float32 internally
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


# ---------------------------------------------------------------------------------------------
# Attention and feed-forward
# ---------------------------------------------------------------------------------------------

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


def _inv_rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    """(..., D) -> (..., 1) float32 inverse root mean square, accumulated in float32."""
    return _InvRMS.apply(x, eps)


class Attention(nn.Module):
    """Multi-head attention with q/k RMS norm across heads (diffusers ``WanAttention`` names)."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = Linear(dim, dim), Linear(dim, dim), Linear(dim, dim)
        self.to_out = nn.ModuleList([Linear(dim, dim)])
        self.norm_q, self.norm_k = nn.RMSNorm(dim, eps=eps), nn.RMSNorm(dim, eps=eps)

    def _fused(self, *lins: nn.Linear) -> tuple[torch.Tensor, torch.Tensor]:
        """One (weight, bias) for several projections, cast to the compute dtype before the concat."""
        w = lins[0].weight
        dt = torch.get_autocast_dtype(w.device.type) if torch.is_autocast_enabled(w.device.type) else w.dtype
        return torch.cat([m.weight.to(dt) for m in lins]), torch.cat([m.bias.to(dt) for m in lins])

    def _attend(self, q, k, v, mask=None) -> torch.Tensor:
        """q (B, N, H, d), k/v (B, L, H, d) -> (B, N, H*d)."""
        out = attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), mask)    # (B, H, N, d)
        return self.to_out[0](rearrange(out, "b h n d -> b n (h d)"))

    def self_attention(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        """x (B, N, dim), rope tables (N, 1, d) from ``rope_tables`` -> (B, N, dim).

        RMS norm and RoPE of q and k in one go: the norm weights w are folded into the RoPE tables,
        w * rope(x) = x * (w cos) + swap(x) * (swap(w) sin), and the per-token 1 / rms factor
        commutes with the rotation, so it is applied last."""
        qkv = linear(x, *self._fused(self.to_q, self.to_k, self.to_v))                 # (B, N, 3 dim)
        qkv = rearrange(qkv, "b n (three h d) -> b n three h d", three=3, h=self.heads)
        qk = qkv[:, :, :2]                                                               # (B, N, 2, H, d)
        inv = _inv_rms(rearrange(qk, "b n two h d -> b n two (h d)"), self.norm_q.eps)  # (B, N, 2, 1)
        w = rearrange(torch.stack([self.norm_q.weight, self.norm_k.weight]), "two (h d) -> two h d",
                      h=self.heads)                                                      # (2, H, d)
        cos_w, sin_w = (cos[:, None] * w).to(qk.dtype), (sin[:, None] * swap_pairs(w)).to(qk.dtype)
        qk = torch.addcmul(qk * cos_w, swap_pairs(qk), sin_w) * inv[..., None].to(qk.dtype)
        q, k = qk.unbind(2)                                                              # (B, N, H, d)
        return self._attend(q, k, qkv[:, :, 2])

    def cross_attention(self, x: torch.Tensor, ctx: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, N, dim), ctx (B, L, dim), mask (B, 1, 1, L) bool or None -> (B, N, dim).

        Both RMS-norm weights act channel-wise inside the q.k dot products, so they are applied
        together on the (short) text side: q.k = (q / rms_q) . (k w_q w_k / rms_k)."""
        q = self.to_q(x)                                                                 # (B, N, dim)
        q = q * _inv_rms(q, self.norm_q.eps).to(q.dtype)
        k, v = linear(ctx, *self._fused(self.to_k, self.to_v)).chunk(2, dim=-1)        # (B, L, dim) x2
        k = k * (_inv_rms(k, self.norm_k.eps) * (self.norm_q.weight * self.norm_k.weight)).to(k.dtype)
        q, k, v = (rearrange(z, "b n (h d) -> b n h d", h=self.heads) for z in (q, k, v))
        return self._attend(q, k, v, mask)


class _GeluProj(nn.Module):
    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.proj = Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return linear(x, self.proj.weight, self.proj.bias, gelu=True)


class FeedForward(nn.Module):
    """dim -> ffn_dim (GELU-tanh) -> dim; ``net`` indices as in diffusers (1 is a dropout slot)."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.net = nn.ModuleList([_GeluProj(dim, ffn_dim), nn.Identity(), Linear(ffn_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------

def _frames(x: torch.Tensor, f: int) -> torch.Tensor:
    """(B, N, D) -> (B, F, N/F, D) view, so per-frame modulation (B, F, 1, D) broadcasts."""
    return rearrange(x, "b (f s) d -> b f s d", f=f)


def _modulate(x4: torch.Tensor, shift: torch.Tensor, scale1: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm (no affine) then x * scale1 + shift; x4 (B, F, S, D), shift/scale1 (B, F, 1, D)."""
    return torch.addcmul(shift, F.layer_norm(x4, x4.shape[-1:], eps=eps), scale1)


class DiTBlock(nn.Module):
    """Modulated self-attention, unmodulated cross-attention, modulated feed-forward."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, self.eps = cfg.dim, cfg.eps
        self.attn1 = Attention(dim, cfg.num_heads, cfg.eps)
        self.attn2 = Attention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.eps) if cfg.cross_attn_norm else nn.Identity()
        self.ffn = FeedForward(dim, cfg.ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x, mod, ctx, ctx_mask, rope) -> torch.Tensor:
        """x (B, N, D); mod (B, F, 6, D) float32; ctx (B, L, D); rope (cos, sin) (N, 1, d) -> (B, N, D)."""
        e = rearrange(self.scale_shift_table + mod, "b f six d -> six b f 1 d")        # float32
        shift1, scale1, gate1, shift2, scale2, gate2 = ((c + 1 if i in (1, 4) else c).to(x.dtype)
                                                        for i, c in enumerate(e))
        f = mod.shape[1]
        h = _modulate(_frames(x, f), shift1, scale1, self.eps)
        a = self.attn1.self_attention(rearrange(h, "b f s d -> b (f s) d"), *rope)
        x = rearrange(torch.addcmul(_frames(x, f), _frames(a, f), gate1), "b f s d -> b (f s) d")
        x = x + self.attn2.cross_attention(self.norm2(x), ctx, ctx_mask)
        h = _modulate(_frames(x, f), shift2, scale2, self.eps)
        y = self.ffn(rearrange(h, "b f s d -> b (f s) d"))
        return rearrange(torch.addcmul(_frames(x, f), _frames(y, f), gate2), "b f s d -> b (f s) d")


# ---------------------------------------------------------------------------------------------
# The model
# ---------------------------------------------------------------------------------------------

def pooled_text(context: torch.Tensor, mask: torch.Tensor | None, eps: float = 1e-6) -> torch.Tensor:
    """RMS-normalised mean of the real text tokens: (B, L, C) [+ mask (B, L)] -> (B, C), float32.

    Normalised so the pooled path does not depend on the text encoder's output scale."""
    ctx = context.float()
    if mask is None:
        mean = ctx.mean(1)
    else:
        w = mask.to(ctx.dtype)[..., None]
        mean = (ctx * w).sum(1) / w.sum(1).clamp_min(1.0)
    return mean * torch.rsqrt(mean.pow(2).mean(-1, keepdim=True) + eps)


class DiT(nn.Module):
    """Diffusion transformer: noisy latents + flow time + text -> flow velocity v = noise - x0."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        self.cfg = cfg
        dim, patch = cfg.dim, tuple(cfg.patch_size)
        self.patch_embedding = nn.Conv3d(cfg.in_channels, dim, kernel_size=patch, stride=patch)
        self.condition_embedder = ConditionEmbedder(cfg)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.num_layers)])
        self.proj_out = Linear(dim, cfg.out_channels * math.prod(patch))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)
        self._rope_cache: dict = {}
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Wan's initialisation: xavier linears, zero biases, N(0, 0.02) embedders, zero output head."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.xavier_uniform_(self.patch_embedding.weight.view(self.cfg.dim, -1))
        nn.init.zeros_(self.patch_embedding.bias)
        for m in (self.condition_embedder.time_embedder, self.condition_embedder.text_embedder):
            nn.init.normal_(m.linear_1.weight, std=0.02)
            nn.init.normal_(m.linear_2.weight, std=0.02)
        if self.condition_embedder.text_pool is not None:          # the pooled path starts closed
            nn.init.zeros_(self.condition_embedder.text_pool.linear_2.weight)
        nn.init.zeros_(self.proj_out.weight)

    # -- inputs -----------------------------------------------------------------------------
    def _rope(self, grid, device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (grid, str(device))
        if key not in self._rope_cache:
            if len(self._rope_cache) > 16:
                self._rope_cache.clear()
            self._rope_cache[key] = rope_tables(grid, self.cfg.head_dim, self.cfg.rope_theta, device)
        return self._rope_cache[key]

    def _frame_times(self, t: torch.Tensor, batch: int, t_lat: int) -> torch.Tensor:
        """t (B,) or (B, T_lat) -> (B, F) with F = 1 or T_lat / pt (one time per token frame)."""
        if t.ndim == 0:
            t = t.expand(batch)
        if t.ndim == 1 and t.shape[0] == batch:
            return t[:, None]
        if t.ndim != 2 or t.shape != (batch, t_lat):
            raise ValueError(f"t must have shape (B,) = ({batch},) or (B, T_lat) = ({batch}, {t_lat}), "
                             f"got {tuple(t.shape)}")
        pt = self.cfg.patch_size[0]
        t = rearrange(t, "b (f pt) -> b f pt", pt=pt)
        if pt > 1 and not torch.equal(t, t[..., :1].expand_as(t)):
            raise ValueError(f"per-frame t must be equal within each temporal patch of {pt} latent frames")
        return t[..., 0]

    def _check(self, x, context, context_mask) -> None:
        c = self.cfg
        if x.ndim != 5 or x.shape[1] != c.in_channels:
            raise ValueError(f"x must have shape (B, {c.in_channels}, T, H, W), got {tuple(x.shape)}")
        if context.ndim != 3 or context.shape[0] != x.shape[0] or context.shape[2] != c.text_dim:
            raise ValueError(f"context must have shape (B={x.shape[0]}, L, {c.text_dim}), got {tuple(context.shape)}")
        if context_mask is not None and (context_mask.shape != context.shape[:2] or context_mask.dtype != torch.bool):
            raise ValueError(f"context_mask must be bool of shape {tuple(context.shape[:2])}, got "
                             f"{context_mask.dtype} {tuple(context_mask.shape)}")

    # -- forward ----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                context_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C_in, T, H, W), t (B,) or (B, T) in [0, 1], context (B, L, text_dim),
        context_mask (B, L) bool (True = real token) -> v (B, C_out, T, H, W)."""
        self._check(x, context, context_mask)
        c, patch = self.cfg, tuple(self.cfg.patch_size)
        grid = token_grid(tuple(x.shape), patch)
        tf = self._frame_times(torch.as_tensor(t, dtype=torch.float32, device=x.device),
                               x.shape[0], x.shape[2])                                    # (B, F)
        pooled = pooled_text(context, context_mask, c.eps) if c.pooled_text else None
        temb, mod = self.condition_embedder.time(tf, pooled)                           # (B, F, D), (B, F, 6, D)

        w = self.patch_embedding.weight
        h = linear(patchify(x, patch), w.view(w.shape[0], -1), self.patch_embedding.bias)    # (B, N, D)
        ctx = self.condition_embedder.text_embedder(context)                           # (B, L, D)
        mask = None if context_mask is None else rearrange(context_mask, "b l -> b 1 1 l")
        rope = self._rope(grid, x.device)
        for block in self.blocks:
            h = block(h, mod, ctx, mask, rope)

        e = rearrange(self.scale_shift_table, "1 two d -> two 1 1 1 d") + rearrange(temb, "b f d -> b f 1 d")
        h = _modulate(_frames(h, tf.shape[1]), e[0].to(h.dtype), (1 + e[1]).to(h.dtype), c.eps)
        out = self.proj_out(rearrange(h, "b f s d -> b (f s) d"))                     # (B, N, C*p)
        return unpatchify(out, grid, patch, c.out_channels, layout="c_last").float()


__all__ = ["DiT", "DiTBlock", "pooled_text", "Attention", "FeedForward", "ConditionEmbedder", "timestep_sinusoid"]
