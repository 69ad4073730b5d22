"""umT5's tokenizer, from the sentencepiece model embedded in ComfyUI's umT5 files or a file beside the weights.

Where it is looked for (``find_tokenizer``), in order:
1. the ``spiece_model`` tensor of ComfyUI's ``umt5_xxl_*.safetensors`` (uint8 bytes of a sentencepiece model);
2. beside the weights: ``spiece.model`` (the ``sentencepiece`` package, a runtime dependency) or
   ``tokenizer.json`` (the ``tokenizers`` package, which ComfyUI and transformers install; not required
   otherwise), in the weights' folder, its ``tokenizer/`` sub-folder, a sibling ``tokenizer/`` folder (the
   diffusers layout: ``text_encoder/`` beside ``tokenizer/``) and ``google/umt5-xxl/`` (Wan's release).

Wan's convention (``wan/modules/t5.py``, ``HuggingfaceTokenizer(seq_len=512, clean='whitespace')``): the text
is cleaned (HTML entities unescaped, runs of whitespace made one space, ends stripped), tokenized without
BOS, EOS appended, cut to 512 tokens with the EOS kept last, padded with the pad id to 512; the mask marks
the real tokens (EOS included).
"""

from __future__ import annotations

import html
import os
import re
import warnings
from pathlib import Path
from typing import Callable

import torch

from ..text import PromptTruncatedWarning, check_texts

SPIECE_KEY = "spiece_model"
BESIDE = ("spiece.model", "tokenizer.json")
SUBFOLDERS = (".", "tokenizer", "../tokenizer", "google/umt5-xxl")


class TokenizerNotFound(FileNotFoundError):
    """No umT5 tokenizer in the weights nor beside them (the message lists where it was looked for)."""


def clean_text(text: str) -> str:
    """Wan's 'whitespace' cleaning: HTML entities unescaped (twice), whitespace runs -> one space, stripped."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text))).strip()


class UMT5Tokenizer:
    """Prompts -> (ids (B, L) long, mask (B, L) bool) with Wan's EOS / padding / truncation convention.

    ``encode_fn(text) -> list[int]`` tokenizes without special tokens; ``pad_id`` / ``eos_id`` are the
    model's (umT5: 0 and 1); ``source`` names where the tokenizer came from (for messages)."""

    def __init__(self, encode_fn: Callable[[str], list[int]], pad_id: int, eos_id: int, source: str,
                 decode_fn: Callable[[list[int]], str] | None = None, vocab_size: int | None = None):
        self._encode, self._decode = encode_fn, decode_fn
        self.pad_id, self.eos_id, self.source, self.vocab_size = pad_id, eos_id, source, vocab_size

    # -- construction -----------------------------------------------------------------------------

    @classmethod
    def from_spiece_bytes(cls, data: bytes, source: str = "the embedded spiece_model") -> "UMT5Tokenizer":
        """From the bytes of a sentencepiece model (ComfyUI's ``spiece_model`` tensor, a spiece.model)."""
        import sentencepiece
        sp = sentencepiece.SentencePieceProcessor()
        try:
            sp.LoadFromSerializedProto(bytes(data))
        except (RuntimeError, OSError, TypeError) as e:
            raise ValueError(f"{source} is not a sentencepiece model: {e}") from e
        pad, eos = sp.pad_id(), sp.eos_id()
        if pad < 0 or eos < 0:
            raise ValueError(f"{source} has no {'pad' if pad < 0 else 'eos'} token: not a (u)mT5 tokenizer")
        return cls(lambda t: sp.encode(t, out_type=int), pad, eos, source, lambda ids: sp.decode(ids),
                   sp.get_piece_size())

    @classmethod
    def from_tokenizer_json(cls, path: str | Path) -> "UMT5Tokenizer":
        """From a Hugging Face ``tokenizer.json`` (needs the ``tokenizers`` package)."""
        try:
            from tokenizers import Tokenizer
        except ImportError as e:
            raise TokenizerNotFound(f"{str(path)!r} needs the 'tokenizers' package (pip install tokenizers), "
                                    f"or put the spiece.model beside it") from e
        tok = Tokenizer.from_file(str(path))
        pad, eos = tok.token_to_id("<pad>"), tok.token_to_id("</s>")
        if pad is None or eos is None:
            raise ValueError(f"{str(path)!r} has no <pad> / </s> token: not a (u)mT5 tokenizer")
        return cls(lambda t: tok.encode(t, add_special_tokens=False).ids, pad, eos, str(path),
                   lambda ids: tok.decode(ids), tok.get_vocab_size())

    @classmethod
    def from_file(cls, path: str | Path) -> "UMT5Tokenizer":
        """From a ``*.model`` sentencepiece file or a ``tokenizer.json``."""
        path = Path(path)
        if path.suffix == ".json":
            return cls.from_tokenizer_json(path)
        return cls.from_spiece_bytes(path.read_bytes(), str(path))

    # -- tokenizing ------------------------------------------------------------------------------

    def ids(self, text: str) -> list[int]:
        """Token ids of the cleaned ``text``, EOS appended, not cut."""
        return [*self._encode(clean_text(text)), self.eos_id]

    def __call__(self, texts: list[str], max_len: int = 512, length: int | None = None,
                 warn: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """B prompts -> ids (B, L) long, mask (B, L) bool (CPU); L = ``length`` or ``max_len``.
        A prompt longer than ``max_len`` tokens (EOS included) is cut with a PromptTruncatedWarning."""
        rows = [self.ids(t) for t in check_texts(texts)]
        n = max_len if length is None else length
        if not 1 <= n <= max_len:
            raise ValueError(f"length must be in [1, {max_len}], got {length}")
        ids = torch.full((len(rows), n), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), n), dtype=torch.bool)
        for i, r in enumerate(rows):
            if len(r) > n:
                if warn:
                    warnings.warn(self._overflow(r, n), PromptTruncatedWarning, stacklevel=2)
                r = [*r[: n - 1], self.eos_id]
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = True
        return ids, mask

    def _overflow(self, row: list[int], n: int) -> str:
        kept = self._decode(row[max(0, n - 9): n - 1]) if self._decode else ""
        return (f"the prompt is {len(row)} umT5 tokens long (EOS included) but the text encoder reads at "
                f"most {n}: it is cut" + (f" after {kept[-40:]!r}" if kept else ""))


# ---------------------------------------------------------------------------------------------
# Finding it
# ---------------------------------------------------------------------------------------------

def read_embedded_spiece(path: str | Path) -> bytes | None:
    """The bytes of the ``spiece_model`` tensor of a safetensors file, or None when it has none."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        if SPIECE_KEY not in f.keys():
            return None
        return f.get_tensor(SPIECE_KEY).to(torch.uint8).numpy().tobytes()


def tokenizer_places(weights: str | Path) -> list[Path]:
    """The files looked at beside ``weights`` (a file or a folder), in order."""
    weights = Path(weights)
    base = weights if weights.is_dir() else weights.parent
    return [Path(os.path.normpath(base / sub / name)) for sub in SUBFOLDERS for name in BESIDE]


def find_tokenizer(weights: str | Path) -> UMT5Tokenizer:
    """The umT5 tokenizer for the weights at ``weights`` (a .safetensors file, or a folder of them):
    the embedded ``spiece_model`` first, then ``tokenizer_places``. Raises TokenizerNotFound listing
    where it looked."""
    weights = Path(weights)
    files = sorted(weights.glob("*.safetensors")) if weights.is_dir() else [weights]
    for f in files:
        data = read_embedded_spiece(f)
        if data is not None:
            return UMT5Tokenizer.from_spiece_bytes(data, f"the spiece_model tensor of {str(f)!r}")
    places = tokenizer_places(weights)
    for p in places:
        if p.is_file():
            return UMT5Tokenizer.from_file(p)
    looked = ", ".join(f"{p.parent}{os.sep}{{{','.join(BESIDE)}}}" for p in places[::len(BESIDE)])
    raise TokenizerNotFound(
        f"no umT5 tokenizer for {str(weights)!r}: the file has no {SPIECE_KEY!r} tensor (ComfyUI's "
        f"umt5_xxl_*.safetensors embed it) and none of {looked} exists. Put the umT5 tokenizer's spiece.model "
        f"(or tokenizer.json) beside the weights, or use ComfyUI's umt5_xxl_fp16.safetensors")


__all__ = ["UMT5Tokenizer", "TokenizerNotFound", "find_tokenizer", "read_embedded_spiece", "tokenizer_places",
           "clean_text", "SPIECE_KEY"]
