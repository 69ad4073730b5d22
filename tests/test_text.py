"""Byte-level text encoder: any UTF-8, the empty prompt, truncation, padding invariance."""

import pytest
import torch

from sora_core.configs import replace, text_encoder_preset
from sora_core.models.text import BOS, BYTE_OFFSET, EOS, PAD, ByteTextEncoder, TextEncoder, decode_ids


@pytest.fixture
def encoder():
    torch.manual_seed(0)
    return ByteTextEncoder(text_encoder_preset("tiny")).eval()


def test_tokenize_bytes_bos_eos_and_padding(encoder):
    ids, mask = encoder.tokenize(["ab", ""])
    assert ids[0].tolist() == [BOS, BYTE_OFFSET + ord("a"), BYTE_OFFSET + ord("b"), EOS]
    assert ids[1].tolist() == [BOS, EOS, PAD, PAD]
    assert mask.tolist() == [[True] * 4, [True, True, False, False]]


@pytest.mark.parametrize("text", ["a red ball bouncing", "빨간 공이 튄다", "émoji 🎈 ∑ 中文", "\x00\n\t"])
def test_any_utf8_round_trips(encoder, text):
    ids, mask = encoder.tokenize([text])
    assert decode_ids(ids[0][mask[0]]) == text
    emb, m = encoder.encode([text])
    assert emb.shape == (1, ids.shape[1], encoder.out_dim) and torch.isfinite(emb).all()


def test_truncation_keeps_bos_eos_and_whole_characters(encoder):
    max_len = encoder.cfg.max_len
    ids, _ = encoder.tokenize(["x" * 1000])
    assert ids.shape == (1, max_len) and ids[0, 0] == BOS and ids[0, -1] == EOS
    # a 3-byte character cut by the limit is dropped whole, never half-decoded
    text = "a" + "가" * max_len
    ids, mask = encoder.tokenize([text])
    decoded = decode_ids(ids[0][mask[0]])
    assert ids.shape[1] <= max_len and text.startswith(decoded) and "\ufffd" not in decoded


@pytest.mark.parametrize("train_mode", [False, True])
def test_empty_prompt_is_finite_in_both_modes(encoder, train_mode):
    """Eval mode under no_grad takes torch's fused encoder fast path (the known all-masked NaN trap)."""
    encoder.train(train_mode)
    with torch.no_grad():
        emb, mask = encoder.encode([""])
        emb2, mask2 = encoder.encode(["", "a much longer prompt than the empty one"])
    assert mask.tolist() == [[True, True]]
    assert torch.isfinite(emb).all() and torch.isfinite(emb2).all()
    assert (emb2[0, 2:] == 0).all()          # padded positions are zero, not garbage


def test_batch_padding_invariance(encoder):
    with torch.no_grad():
        alone, m1 = encoder.encode(["a ball"])
        batched, m2 = encoder.encode(["a ball", "three squares moving left on a gradient"])
        fixed, _ = encoder.encode(["a ball"], length=40)
    n = m1.shape[1]
    assert m2[0, :n].all() and not m2[0, n:].any()
    torch.testing.assert_close(batched[0, :n], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fixed[0, :n], alone[0], atol=1e-5, rtol=1e-5)


def test_gradients_reach_embeddings():
    torch.manual_seed(0)
    enc = ByteTextEncoder(text_encoder_preset("tiny"))
    emb, mask = enc.encode(["hello", ""])
    emb.square().sum().backward()
    assert enc.token_embedding.weight.grad.abs().sum() > 0
    assert enc.position_embedding.weight.grad.abs().sum() > 0


def test_bad_inputs_are_named(encoder):
    with pytest.raises(TypeError, match="list of str"):
        encoder.encode("a single string")
    with pytest.raises(TypeError, match="list of str"):
        encoder.encode(["ok", 3])
    with pytest.raises(ValueError, match="at least one"):
        encoder.encode([])
    with pytest.raises(ValueError, match="length"):
        encoder.tokenize(["abc"], length=2)
    with pytest.raises(ValueError, match="vocab_size"):
        ByteTextEncoder(replace(text_encoder_preset("tiny"), vocab_size=100))


def test_satisfies_the_protocol(encoder):
    assert isinstance(encoder, TextEncoder)


def test_cut_prompt_warns_with_its_length_and_the_limit(encoder):
    import warnings

    from sora_core.models.text import PromptTruncatedWarning, prompt_overflow
    long = "a red ball bouncing " * 5                                       # 100 bytes; max_len 64 keeps 62
    with pytest.warns(PromptTruncatedWarning, match="the prompt is 100 bytes long but the text encoder reads "
                                                    "at most 62 .64 tokens with BOS and EOS.: it is cut after"):
        encoder.encode([long, ""])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.encode(["x" * 62])                                           # exactly fits: no warning
        encoder.tokenize([long])                                             # training captions: silent
    assert prompt_overflow("x" * 62, 64) is None and "63 bytes" in prompt_overflow("x" * 63, 64)
