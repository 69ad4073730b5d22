"""Text encoders: the interface every encoder follows, and the byte-level encoder of the default model.

``encode(list[str]) -> (emb (B, L, out_dim), mask (B, L) bool)`` is the whole contract between a text
encoder and the rest of the system (the DiT's cross-attention reads ``emb`` and ignores tokens where
``mask`` is False). A future umT5 encoder for Wan checkpoints implements the same ``TextEncoder``
protocol.

``ByteTextEncoder`` needs no vocabulary file: the UTF-8 bytes of the prompt are the tokens, so any
language, emoji or symbol works. Token ids: 0 = pad, 1 = bos, 2 = eos, 3 + byte value. The BOS token
is always present and never masked, so even the empty prompt (the unconditional branch of CFG) has
one real key and attention never sees an all-masked row (which gives NaN).
"""

from __future__ import annotations

import warnings
from typing import Protocol, runtime_checkable

import torch
from einops import rearrange
from torch import nn

from ..configs import ConfigError, TextEncoderConfig

PAD, BOS, EOS, BYTE_OFFSET = 0, 1, 2, 3


class PromptTruncatedWarning(UserWarning):
    """A prompt longer than the text encoder reads: the end of it is cut off."""


# ---------------------------------------------------------------------------------------------
# Interface
# ---------------------------------------------------------------------------------------------

@runtime_checkable
class TextEncoder(Protocol):
    """What the pipeline needs from any text encoder."""
    out_dim: int

    def encode(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """list of B prompts -> (emb (B, L, out_dim) float, mask (B, L) bool, True = real token)."""
        ...


def check_texts(texts) -> list[str]:
    """Return ``texts`` as a list of str or raise a TypeError naming what was given."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of str, got a single str; wrap one prompt in a list: [prompt]")
    if not isinstance(texts, (list, tuple)) or not all(isinstance(t, str) for t in texts):
        raise TypeError(f"texts must be a list of str, got {type(texts).__name__} "
                        f"{[type(t).__name__ for t in texts] if isinstance(texts, (list, tuple)) else ''}")
    if not texts:
        raise ValueError("texts must hold at least one prompt (use [''] for the unconditional prompt)")
    return list(texts)


# ---------------------------------------------------------------------------------------------
# Byte tokenizer
# ---------------------------------------------------------------------------------------------

def byte_ids(text: str, max_len: int) -> list[int]:
    """[BOS, 3 + byte ..., EOS] for one text, truncated to ``max_len`` ids at a character boundary."""
    if max_len < 2:
        raise ValueError(f"max_len must be >= 2 (BOS and EOS), got {max_len}")
    data = text.encode("utf-8")[: max_len - 2]
    data = data.decode("utf-8", errors="ignore").encode("utf-8")   # drop a cut multi-byte character
    return [BOS, *(BYTE_OFFSET + b for b in data), EOS]


def prompt_overflow(text: str, max_len: int) -> str | None:
    """None when ``text`` fits a byte encoder of ``max_len`` tokens, else a message giving the prompt's
    length, the limit and where the cut falls (for warnings before and during encoding)."""
    size, limit = len(text.encode("utf-8")), max_len - 2
    if size <= limit:
        return None
    kept = text.encode("utf-8")[:limit].decode("utf-8", errors="ignore")
    return (f"the prompt is {size} bytes long but the text encoder reads at most {limit} "
            f"({max_len} tokens with BOS and EOS): it is cut after {kept[-30:]!r}")


def decode_ids(ids) -> str:
    """Inverse of ``byte_ids`` (special tokens dropped)."""
    return bytes(int(i) - BYTE_OFFSET for i in ids if int(i) >= BYTE_OFFSET).decode("utf-8", errors="replace")


# ---------------------------------------------------------------------------------------------
# Encoder
# ---------------------------------------------------------------------------------------------

class ByteTextEncoder(nn.Module):
    """Byte tokens + learned positions -> pre-norm transformer encoder -> LayerNorm -> linear to out_dim."""

    def __init__(self, cfg: TextEncoderConfig):
        super().__init__()
        if cfg.vocab_size < BYTE_OFFSET + 256:
            raise ConfigError(f"TextEncoderConfig.vocab_size must be >= {BYTE_OFFSET + 256}, got {cfg.vocab_size}")
        if cfg.dim % cfg.num_heads:
            raise ConfigError(f"TextEncoderConfig.dim={cfg.dim} must be divisible by num_heads={cfg.num_heads}")
        self.cfg, self.out_dim = cfg, cfg.out_dim
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=PAD)
        self.position_embedding = nn.Embedding(cfg.max_len, cfg.dim)
        layer = nn.TransformerEncoderLayer(cfg.dim, cfg.num_heads, cfg.ffn_dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, cfg.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(cfg.dim)
        self.proj = nn.Linear(cfg.dim, cfg.out_dim)
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        nn.init.normal_(self.position_embedding.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.proj.weight.device

    def tokenize(self, texts: list[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """list of B texts -> ids (B, L) long, mask (B, L) bool on the CPU.

        L is the longest tokenized text (at most ``max_len``), or ``length`` when given (pads to it;
        handy to stack conditional and unconditional batches)."""
        rows = [byte_ids(t, self.cfg.max_len) for t in check_texts(texts)]
        n = max(len(r) for r in rows)
        if length is not None:
            if not n <= length <= self.cfg.max_len:
                raise ValueError(f"length must be in [{n}, {self.cfg.max_len}] for these texts, got {length}")
            n = length
        ids = torch.full((len(rows), n), PAD, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, ids != PAD

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """ids (B, L) long, mask (B, L) bool -> emb (B, L, out_dim); padded positions are zero."""
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(f"ids and mask must both be (B, L), got {tuple(ids.shape)} and {tuple(mask.shape)}")
        if ids.shape[1] > self.cfg.max_len:
            raise ValueError(f"sequence length {ids.shape[1]} exceeds max_len={self.cfg.max_len}")
        if not bool(mask[:, 0].all()):
            raise ValueError("mask must keep the first (BOS) token of every row real")
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.token_embedding(ids) + self.position_embedding(pos)                    # (B, L, dim)
        x = self.encoder(x, src_key_padding_mask=~mask)
        emb = self.proj(self.norm(x))                                                  # (B, L, out_dim)
        # where, not multiply: padded rows of torch's fast path may hold anything, even NaN
        return torch.where(rearrange(mask, "b l -> b l 1"), emb, torch.zeros((), dtype=emb.dtype, device=emb.device))

    def encode(self, texts: list[str], length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """list of B texts -> (emb (B, L, out_dim), mask (B, L) bool), on the module's device.
        A text longer than ``max_len`` tokens is cut, with a ``PromptTruncatedWarning``."""
        for t in check_texts(texts):
            message = prompt_overflow(t, self.cfg.max_len)
            if message is not None:
                warnings.warn(message, PromptTruncatedWarning, stacklevel=2)
        ids, mask = self.tokenize(texts, length)
        ids, mask = ids.to(self.device), mask.to(self.device)
        return self(ids, mask), mask


__all__ = ["TextEncoder", "ByteTextEncoder", "PromptTruncatedWarning", "byte_ids", "decode_ids", "check_texts",
           "prompt_overflow", "PAD", "BOS", "EOS", "BYTE_OFFSET"]
