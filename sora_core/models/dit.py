"""The diffusion transformer (DiT) over spacetime latent patches, with the Wan 2.1 block structure.

Given noisy latents x_t = (1 - t) x0 + t noise, a flow time t in [0, 1] (one per sample, or one per
latent frame so conditioned frames can sit at t = 0) and text embeddings, it predicts the flow
velocity v = noise - x0 (the Wan convention).

Structure (every size a ``DiTConfig`` value):
    patch_embedding      Conv3d (kernel = stride = patch): latent -> one token per patch
    condition_embedder   sinusoid(1000 t) -> MLP -> temb;  SiLU -> time_proj: temb -> 6 * dim
                         (shared by all blocks);  text MLP text_dim -> dim (GELU-tanh);
                         optional (pooled_text, not in Wan) text_pool MLP: RMS-normalised mean
                         of the text tokens -> added to temb
    blocks[i]            adaLN: scale_shift_table (1, 6, dim) + time_proj -> shift/scale/gate x2
                         self-attention (q/k RMS norm across heads, 3D RoPE, SDPA)
                         cross-attention to text (no modulation, norm2 when cross_attn_norm, mask)
                         GELU-tanh feed-forward
    norm_out/proj_out    final modulated head with its own scale_shift_table (1, 2, dim)

Weight names: the module tree is that of diffusers' ``WanTransformer3DModel`` (``blocks.0.attn1.to_q``,
``blocks.0.ffn.net.0.proj``, ``condition_embedder.time_proj`` ...), so a diffusers-layout Wan 2.1
state dict loads as is.
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

Kernels: each module's ``forward`` is the plain reference math (nn.Linear, nn.RMSNorm, RoPE,
F.scaled_dot_product_attention, GELU-tanh, modulation expanded per token). The model runs the same
numbers through the fused CPU kernels of ``kernels.py`` when ``fused`` is on (the default; switch
with ``DiT(cfg, fused=False)`` or ``model.set_kernels("plain" | "fused")``): equal to rounding in
float32, several times faster in bf16 (tests/test_dit.py, docs/benchmarks_dit.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from . import kernels
from ..configs import DiTConfig
from .patches import apply_rope, rope_tables, token_grid, unpatchify

KERNELS = ("fused", "plain")


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


class _MLP(nn.Module):
    """linear_1 -> activation -> linear_2 (names of diffusers' TimestepEmbedding / text projection)."""

    def __init__(self, d_in: int, d_out: int, act: nn.Module):
        super().__init__()
        self.linear_1, self.act, self.linear_2 = nn.Linear(d_in, d_out), act, nn.Linear(d_out, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_2(self.act(self.linear_1(x)))


class ConditionEmbedder(nn.Module):
    """Time: (B, F) -> temb (B, F, dim) and modulation (B, F, 6, dim); text: (B, L, text_dim) -> (B, L, dim)."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim, self.freq_dim = cfg.dim, cfg.freq_dim
        self.time_embedder = _MLP(cfg.freq_dim, dim, nn.SiLU())
        self.act_fn = nn.SiLU()
        self.time_proj = nn.Linear(dim, 6 * dim)
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
# Attention and feed-forward
# ---------------------------------------------------------------------------------------------

class Attention(nn.Module):
    """Multi-head attention with q/k RMS norm across heads (diffusers ``WanAttention`` names)."""

    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        self.norm_q, self.norm_k = nn.RMSNorm(dim, eps=eps), nn.RMSNorm(dim, eps=eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, rope=None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Self-attention (context None, RoPE tables (cos, sin) (N, 1, d) from ``rope_tables``) or
        cross-attention to context (B, L, dim) with mask (B, 1, 1, L) bool: x (B, N, dim) -> (B, N, dim)."""
        context = x if context is None else context
        q = self.norm_q(self.to_q(x))                                                     # (B, N, H*d)
        k = self.norm_k(self.to_k(context))                                               # (B, L, H*d)
        v = self.to_v(context)                                                            # (B, L, H*d)
        q, k, v = (rearrange(z, "b n (h d) -> b n h d", h=self.heads) for z in (q, k, v))
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        q, k, v = (rearrange(z, "b n h d -> b h n d") for z in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)                   # (B, H, N, d)
        return self.to_out[0](rearrange(out, "b h n d -> b n (h d)"))


class _GeluProj(nn.Module):
    """proj -> GELU-tanh (diffusers' ``GELU`` module names)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        self.proj = nn.Linear(d_in, d_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """dim -> ffn_dim (GELU-tanh) -> dim; ``net`` indices as in diffusers (1 is a dropout slot)."""

    def __init__(self, dim: int, ffn_dim: int):
        super().__init__()
        self.net = nn.ModuleList([_GeluProj(dim, ffn_dim), nn.Identity(), nn.Linear(ffn_dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net[2](self.net[0](x))


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------

def per_token(e: torch.Tensor, tokens: int) -> torch.Tensor:
    """Per-frame modulation (B, F, k, D) -> (k, B, N, D): every token of a frame gets its frame's row."""
    return repeat(e, "b f k d -> k b (f s) d", s=tokens // e.shape[1])


class DiTBlock(nn.Module):
    """Modulated self-attention, unmodulated cross-attention, modulated feed-forward."""

    def __init__(self, cfg: DiTConfig):
        super().__init__()
        dim = cfg.dim
        self.norm1 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.attn1 = Attention(dim, cfg.num_heads, cfg.eps)
        self.attn2 = Attention(dim, cfg.num_heads, cfg.eps)
        self.norm2 = nn.LayerNorm(dim, eps=cfg.eps) if cfg.cross_attn_norm else nn.Identity()
        self.norm3 = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.ffn = FeedForward(dim, cfg.ffn_dim)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, dim) / dim ** 0.5)

    def forward(self, x, mod, ctx, ctx_mask, rope) -> torch.Tensor:
        """x (B, N, D); mod (B, F, 6, D) float32, one row per token frame; ctx (B, L, D);
        ctx_mask (B, 1, 1, L) bool or None; rope (cos, sin) (N, 1, d) -> (B, N, D)."""
        e = per_token(self.scale_shift_table + mod, x.shape[1])                          # (6, B, N, D)
        shift1, scale1, gate1, shift2, scale2, gate2 = e
        h = self.norm1(x) * (1 + scale1) + shift1
        x = x + self.attn1(h, rope=rope) * gate1
        x = x + self.attn2(self.norm2(x), context=ctx, mask=ctx_mask)
        h = self.norm3(x) * (1 + scale2) + shift2
        return x + self.ffn(h) * gate2


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

    def __init__(self, cfg: DiTConfig, fused: bool = True):
        super().__init__()
        self.cfg = cfg
        dim, patch = cfg.dim, tuple(cfg.patch_size)
        self.patch_embedding = nn.Conv3d(cfg.in_channels, dim, kernel_size=patch, stride=patch)
        self.condition_embedder = ConditionEmbedder(cfg)
        self.blocks = nn.ModuleList([DiTBlock(cfg) for _ in range(cfg.num_layers)])
        self.norm_out = nn.LayerNorm(dim, eps=cfg.eps, elementwise_affine=False)
        self.proj_out = nn.Linear(dim, cfg.out_channels * math.prod(patch))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)
        self.fused = bool(fused)
        self._rope_cache: dict = {}
        self.reset_parameters()

    def set_kernels(self, kernels_name: str) -> "DiT":
        """Run the fused CPU kernels of ``kernels.py`` ("fused", the default) or the modules' plain
        reference ``forward`` ("plain"); the parameters are the same. Returns the model."""
        if kernels_name not in KERNELS:
            raise ValueError(f"DiT kernels must be one of {list(KERNELS)}, got {kernels_name!r}")
        self.fused = kernels_name == "fused"
        return self

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
        grid = token_grid(tuple(x.shape), patch)                                        # (F, H', W')
        tf = self._frame_times(torch.as_tensor(t, dtype=torch.float32, device=x.device),
                               x.shape[0], x.shape[2])                                    # (B, F)
        pooled = pooled_text(context, context_mask, c.eps) if c.pooled_text else None
        temb, mod = self.condition_embedder.time(tf, pooled)                           # (B, F, D), (B, F, 6, D)
        mask = None if context_mask is None else rearrange(context_mask, "b l -> b 1 1 l")
        rope = self._rope(grid, x.device)                                               # (N, 1, d) x2
        if self.fused:                                                                  # kernels.py
            out = kernels.dit_tokens(self, x, context, temb, mod, mask, rope)         # (B, N, C_out*p)
        else:
            out = self._tokens(x, context, temb, mod, mask, rope)
        return unpatchify(out, grid, patch, c.out_channels, layout="c_last").float()

    def _tokens(self, x, context, temb, mod, mask, rope) -> torch.Tensor:
        """The trunk with plain modules: x (B, C, T, H, W), context (B, L, text_dim), temb (B, F, D),
        mod (B, F, 6, D), mask (B, 1, 1, L) -> head output tokens (B, N, C_out*pt*ph*pw)."""
        h = rearrange(self.patch_embedding(x), "b d f h w -> b (f h w) d")              # (B, N, D)
        ctx = self.condition_embedder.text_embedder(context)                           # (B, L, D)
        for block in self.blocks:
            h = block(h, mod, ctx, mask, rope)
        shift, scale = per_token(self.scale_shift_table + temb[:, :, None], h.shape[1])  # (B, N, D) x2
        return self.proj_out(self.norm_out(h) * (1 + scale) + shift)


__all__ = ["DiT", "DiTBlock", "KERNELS", "pooled_text", "Attention", "FeedForward", "ConditionEmbedder", "timestep_sinusoid"]
