"""Wan's text encoder for the pipeline: umT5 tokenizer + umT5 encoder behind the ``TextEncoder`` interface.

``encode(prompts) -> (emb (B, 512, d_model) float32, mask (B, 512) bool)``, Wan's convention: the full
512-token context, the hidden states of each prompt's tokens (EOS included), zeros beyond them (Wan's DiT
attends to the whole 512, padding included, so the zeros matter; ``mask`` tells which are real).
The encoder runs only over the longest prompt of the batch: padded keys are masked out and the relative
position bias depends on distances only, so the real tokens' states are those of a full 512 run.

Devices: the encoder computes where its weights are (``encoder_device``, e.g. the CPU while the DiT is on a
GPU); ``encode(..., device=)`` or ``output_device`` says where the result goes (default: the encoder's
device). ``release()`` drops the weights once the prompts are encoded (the tokenizer stays); encoding after
that raises a clear error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from ..text import check_texts
from .tokenizer import UMT5Tokenizer, find_tokenizer
from .umt5 import UMT5Encoder, detect_umt5, umt5_from_state


class UMT5TextEncoder(nn.Module):
    """Tokenizer + ``UMT5Encoder``; ``cfg`` is the encoder's ``UMT5Config``, ``out_dim`` its d_model."""

    def __init__(self, tokenizer: UMT5Tokenizer, encoder: UMT5Encoder,
                 output_device: torch.device | str | None = None):
        super().__init__()
        cfg = encoder.cfg
        if (tokenizer.pad_id, tokenizer.eos_id) != (cfg.pad_id, cfg.eos_id):
            raise ValueError(f"the tokenizer ({tokenizer.source}) has pad / eos ids {tokenizer.pad_id} / "
                             f"{tokenizer.eos_id}, the umT5 encoder expects {cfg.pad_id} / {cfg.eos_id}")
        if tokenizer.vocab_size is not None and tokenizer.vocab_size > cfg.vocab_size:
            raise ValueError(f"the tokenizer ({tokenizer.source}) has {tokenizer.vocab_size} tokens, more than "
                             f"the encoder's vocab_size {cfg.vocab_size}: they do not belong together")
        self.tokenizer, self.encoder, self.cfg, self.out_dim = tokenizer, encoder, cfg, cfg.d_model
        self.output_device = output_device

    @property
    def released(self) -> bool:
        return self.encoder is None

    @property
    def encoder_device(self) -> torch.device:
        if self.encoder is None:
            raise RuntimeError("the umT5 text encoder was released (release()): load it again to encode prompts")
        return self.encoder.device

    def release(self) -> None:
        """Drop the encoder's weights (memory is freed once nothing else holds them)."""
        self.encoder = None

    @torch.no_grad()
    def encode(self, texts: list[str], length: int | None = None,
               device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """B prompts -> (emb (B, L, d_model) float32, mask (B, L) bool), L = ``length`` or cfg.max_len (512).
        A prompt longer than that is cut (PromptTruncatedWarning)."""
        texts = check_texts(texts)
        run_on = self.encoder_device
        ids, mask = self.tokenizer(texts, self.cfg.max_len, length)
        n = int(mask.sum(dim=1).max())                                   # longest prompt, EOS included
        hidden = self.encoder(ids[:, :n].to(run_on), mask[:, :n].to(run_on))   # (B, n, D)
        emb = torch.zeros(*ids.shape, self.out_dim, dtype=torch.float32, device=run_on)
        emb[:, :n] = hidden.float()
        out = device if device is not None else self.output_device if self.output_device is not None else run_on
        return emb.to(out), mask.to(out)


def umt5_text_encoder(state: Mapping[str, torch.Tensor], shapes_source: str | Path,
                      tokenizer: UMT5Tokenizer | None = None, device: torch.device | str | None = None,
                      compute_dtype: torch.dtype = torch.float32, **kw) -> UMT5TextEncoder:
    """A ``UMT5TextEncoder`` from a loaded state dict (any supported layout; tensors kept in their dtype)
    and the path it came from (for the tokenizer search and messages). ``tokenizer`` defaults to
    ``find_tokenizer(shapes_source)``; found before the encoder is built."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    dtypes = {k: str(v.dtype) for k, v in state.items()}
    found = detect_umt5(shapes, dtypes)
    if found is None:
        raise ValueError(f"{str(shapes_source)!r} is not a umT5 text encoder (no {'encoder.block.0'} keys)")
    tok = tokenizer if tokenizer is not None else find_tokenizer(shapes_source)
    enc = umt5_from_state(found.cfg, state, found.key_map, device, compute_dtype, source=str(shapes_source))
    return UMT5TextEncoder(tok, enc, **kw)


__all__ = ["UMT5TextEncoder", "umt5_text_encoder"]
