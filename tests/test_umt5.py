"""umT5 text encoder (Wan's): parity with ComfyUI's own T5 (comfy/text_encoders/t5.py, run in ComfyUI's venv
through tests/comfy_reference.py) and transformers' UMT5EncoderModel, on tiny random configs with the real
key names, saved in each layout and loaded from disk; the tokenizer against transformers' T5 tokenizer on a
sentencepiece model trained here; Wan's 512-token padding / masking / truncation convention; clear errors.

Figures (tiny config d_model 64, 2 layers, 4 heads of 16, d_ff 128, weights ~ N(0, 1/fan_in); CPU; outputs
of scale ~5): fp32 max abs diff 3e-6 against ComfyUI, 2e-6 against transformers; our bf16 compute against
fp32 transformers 0.095 (1.9e-2 of the scale; asserted <= 5e-2); fp16 storage (fp32 compute) against the
fp32 file 7e-3 (the weights' fp16 rounding); scaled fp8 storage against ComfyUI's own scaled-fp8 path 4e-6.
A prompt encoded alone or in a batch with a longer one: identical (max diff 0 to 2e-6).
"""

from __future__ import annotations

import io
import warnings

import pytest
import torch
from safetensors.torch import save_file

from comfy_reference import run_reference
from sora_core import loading
from sora_core.configs import preset
from sora_core.models.text import PromptTruncatedWarning, TextEncoder
from sora_core.models.wan.detect import UnsupportedCheckpoint, detect
from sora_core.models.wan.text_encoder import UMT5TextEncoder
from sora_core.models.wan.tokenizer import TokenizerNotFound, UMT5Tokenizer, clean_text, find_tokenizer
from sora_core.models.wan.umt5 import detect_umt5
from sora_core.weights import read_header

CFG = preset("umt5", "tiny")
LINEARS = ("q", "k", "v", "o", "wi_0", "wi_1", "wo")
PROMPTS = ["a red ball bouncing on a green floor",
           "一只红色的球在绿色的地板上弹跳",
           "빨간 공이 튀어 오른다 and un café très élégant",
           " ".join(["the quick brown fox jumps over the lazy dog"] * 12),
           ""]


def close(ours: torch.Tensor, ref: torch.Tensor, tol: float = 1e-4) -> float:
    """Max abs difference, asserted <= tol relative to the reference's scale."""
    diff = float((ours.float() - ref.float()).abs().max())
    assert diff <= tol * max(1.0, float(ref.abs().max())), diff
    return diff


def shapes_of(path) -> tuple[dict, dict]:
    header = {k: v for k, v in read_header(path).items() if k != "__metadata__"}
    return {k: tuple(v["shape"]) for k, v in header.items()}, {k: v["dtype"] for k, v in header.items()}


# ---------------------------------------------------------------------------------------------
# Fixtures: a tiny sentencepiece model, ComfyUI's reference, files in each layout
# ---------------------------------------------------------------------------------------------

def _corpus() -> list[str]:
    colours = ["red", "green", "blue", "yellow", "white", "orange", "purple", "cyan", "rouge", "grün", "红色", "초록"]
    things = ["ball", "box", "triangle", "cat", "dog", "fox", "café", "Würfel", "球", "공", "floor", "sky"]
    verbs = ["bouncing", "moving left", "rolling", "jumps over", "saute sur", "弹跳", "튀어 오른다", "pans slowly"]
    return [f"a {c} {t} {v} the {t2}, très élégant; 0123456789 !?&%"
            for c in colours for t, t2 in zip(things, things[::-1]) for v in verbs]


@pytest.fixture(scope="module")
def spiece() -> bytes:
    """A unigram sentencepiece model of ~300 pieces with T5's special ids (pad 0, eos 1, unk 2, no bos)."""
    sentencepiece = pytest.importorskip("sentencepiece")
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=300, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return buf.getvalue()


REFERENCE = """
import json
import comfy.sd1_clip, comfy.text_encoders.t5, comfy.text_encoders.wan, comfy.utils
CONFIG = {config!r}
PROMPTS = {prompts!r}
def clip(model_options={{}}):
    return comfy.sd1_clip.SDClipModel(textmodel_json_config=dict(CONFIG), dtype=torch.float32,
        special_tokens={{"end": 1, "pad": 0}}, model_class=comfy.text_encoders.t5.T5,
        enable_attention_masks=True, zero_out_masked=True, model_options=model_options)
model = clip()
g = torch.Generator().manual_seed(0)
with torch.no_grad():
    for name, p in model.transformer.named_parameters():
        if "layer_norm" in name:
            p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
        elif name.endswith("relative_attention_bias.weight") or name == "shared.weight":
            p.copy_(torch.randn(p.shape, generator=g))
        else:
            p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
for k, v in model.transformer.state_dict().items():
    outputs["sd." + k] = v
tok = comfy.text_encoders.wan.UMT5XXlTokenizer(tokenizer_data={{"spiece_model": inputs["spiece_model"]}})
rows = []
for i, p in enumerate(PROMPTS):
    ids = [t[0] for t in tok.tokenize_with_weights(p)[0]]
    outputs["ids.%d" % i] = torch.tensor(ids)
    rows.append(ids)
outputs["z"] = model(rows)[0]
# ComfyUI's *_fp8_e4m3fn_scaled layout: fp8 linear weights, a float32 scale_weight each, the scaled_fp8
# marker; then ComfyUI's own scaled-fp8 path on it (convert_old_quants + mixed precision ops)
sd8 = {{"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}}
for k, v in model.transformer.state_dict().items():
    if k.rsplit(".", 2)[-2] in {linears!r} and k.endswith(".weight"):
        scale = v.abs().max().float() / 448
        sd8[k] = (v / scale).to(torch.float8_e4m3fn)
        sd8[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
    else:
        sd8[k] = v
for k, v in sd8.items():
    outputs["sd8." + k] = v.clone()
sd8, _ = comfy.utils.convert_old_quants(dict(sd8), "", metadata={{}})
model8 = clip({{"quantization_metadata": {{"mixed_ops": True}}}})
missing, unexpected = model8.load_sd(sd8)
assert not missing and not [k for k in unexpected if not k.endswith("comfy_quant")], (missing, unexpected)
outputs["z8"] = model8(rows)[0]
"""


@pytest.fixture(scope="module")
def comfy(spiece, tmp_path_factory):
    """ComfyUI's T5 at the tiny umT5 config: its state dict (ComfyUI's key names), its tokenizer's ids
    and its encodings (fp32 and scaled fp8), plus those files written in ComfyUI's layout."""
    tmp = tmp_path_factory.mktemp("comfy")
    config = {"d_ff": CFG.d_ff, "d_kv": CFG.d_kv, "d_model": CFG.d_model, "num_heads": CFG.num_heads,
              "num_layers": CFG.num_layers, "vocab_size": CFG.vocab_size, "dense_act_fn": "gelu_pytorch_tanh",
              "is_gated_act": True, "model_type": "umt5"}
    spiece_t = torch.frombuffer(bytearray(spiece), dtype=torch.uint8)
    out = run_reference(REFERENCE.format(config=config, prompts=PROMPTS, linears=LINEARS),
                        {"spiece_model": spiece_t}, tmp)
    sd = {k[3:]: v for k, v in out.items() if k.startswith("sd.")}
    sd8 = {k[4:]: v for k, v in out.items() if k.startswith("sd8.")}
    files = {"fp32": tmp / "umt5_tiny_fp32.safetensors", "fp16": tmp / "umt5_tiny_fp16.safetensors",
             "fp8": tmp / "umt5_tiny_fp8_e4m3fn_scaled.safetensors"}
    save_file({**sd, "spiece_model": spiece_t}, str(files["fp32"]))
    save_file({**{k: v.half() for k, v in sd.items()}, "spiece_model": spiece_t}, str(files["fp16"]))
    save_file({**sd8, "spiece_model": spiece_t}, str(files["fp8"]))
    ids = [out[f"ids.{i}"] for i in range(len(PROMPTS))]
    return {"sd": sd, "ids": ids, "z": out["z"], "z8": out["z8"], "files": files}


def text_encoder(path, **kw) -> UMT5TextEncoder:
    """The way the pipeline builds it: tokenizer found first (cheap), then the weights through the loader."""
    tok = find_tokenizer(path)
    encoder, ck = loading.load(path, "text_encoder")
    assert ck.detected.kind == "text_encoder"
    return UMT5TextEncoder(tok, encoder, **kw)


# ---------------------------------------------------------------------------------------------
# Parity: ComfyUI's layout and implementation
# ---------------------------------------------------------------------------------------------

def test_comfyui_file_detected_from_its_header(comfy):
    found = detect_umt5(*shapes_of(comfy["files"]["fp32"]))
    assert found.kind == "text_encoder" and found.layout == "comfyui" and found.cfg == CFG
    assert found.family == "umt5" and any("embedded" in n for n in found.notes)
    assert found.key_map("spiece_model") is None
    assert detect(*shapes_of(comfy["files"]["fp32"])).cfg == CFG   # detect() reaches detect_umt5


def test_matches_comfyui_tokens_and_encoding(comfy):
    te = text_encoder(comfy["files"]["fp32"])
    assert isinstance(te, TextEncoder) and te.out_dim == CFG.d_model
    emb, mask = te.encode(PROMPTS)
    assert emb.shape == (len(PROMPTS), 512, CFG.d_model) and emb.dtype == torch.float32
    for i, ids in enumerate(comfy["ids"]):                     # ComfyUI: EOS appended, pad 0 to 512
        ours, _ = te.tokenizer([PROMPTS[i]])
        assert ours[0].tolist() == ids.tolist()
        n = int((ids != 0).sum())                              # real tokens, EOS included
        assert mask[i].tolist() == [True] * n + [False] * (512 - n)
    close(emb, comfy["z"])                                     # padding zeroed in both
    assert not emb[~mask].any()


def test_fp16_storage_is_kept(comfy):
    te = text_encoder(comfy["files"]["fp16"])
    q = te.encoder.encoder.block[0].layer[0].SelfAttention.q
    assert q.weight.dtype == torch.float16 and te.encoder.shared.weight.dtype == torch.float16
    emb, _ = te.encode(PROMPTS[:2])
    close(emb, comfy["z"][:2], tol=1e-2)                       # fp16 rounding of the weights only


def test_scaled_fp8_matches_comfyui(comfy):
    found = detect_umt5(*shapes_of(comfy["files"]["fp8"]))
    assert any("scaled fp8" in n for n in found.notes) and found.key_map("scaled_fp8") is None
    te = text_encoder(comfy["files"]["fp8"])
    q = te.encoder.encoder.block[1].layer[0].SelfAttention.q
    assert q.weight.dtype == torch.float8_e4m3fn and q.scale_weight is not None
    emb, _ = te.encode(PROMPTS)
    close(emb, comfy["z8"])
    assert float((emb - comfy["z"]).abs().max()) > 1e-4        # the fp8 rounding is really there


# ---------------------------------------------------------------------------------------------
# Parity: transformers' UMT5EncoderModel and its layout
# ---------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hf_folder(spiece, tmp_path_factory):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hc = transformers.UMT5Config(vocab_size=CFG.vocab_size, d_model=CFG.d_model, num_layers=CFG.num_layers,
                                 num_heads=CFG.num_heads, d_kv=CFG.d_kv, d_ff=CFG.d_ff, feed_forward_proj="gated-gelu",
                                 relative_attention_num_buckets=32, relative_attention_max_distance=128)
    model = transformers.UMT5EncoderModel(hc).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():                # as in the ComfyUI reference
            if "layer_norm" in name:
                p.normal_(1.0, 0.2)
            else:
                p.normal_(0.0, 1.0 if p.ndim == 1 or "embed" in name or "shared" in name or "relative" in name
                          else p.shape[1] ** -0.5)
    folder = tmp_path_factory.mktemp("hf") / "text_encoder"
    model.save_pretrained(folder)
    (folder.parent / "tokenizer").mkdir()
    (folder.parent / "tokenizer" / "spiece.model").write_bytes(spiece)   # diffusers: tokenizer/ beside
    return folder, model


def test_matches_transformers(hf_folder):
    folder, model = hf_folder
    te = text_encoder(folder)
    assert loading.inspect(folder, "text_encoder").detected.layout == "diffusers"
    emb, mask = te.encode(PROMPTS)
    ids, _ = te.tokenizer(PROMPTS)
    with torch.no_grad():
        ref = model(input_ids=ids, attention_mask=mask.long()).last_hidden_state * mask[..., None]
    close(emb, ref)
    te.encoder.compute_dtype = torch.bfloat16                  # bf16 compute: documented, loosely bounded
    emb16, _ = te.encode(PROMPTS)
    print("bf16 compute vs fp32 transformers: max abs diff", close(emb16, ref, tol=5e-2))


def test_batching_and_padding_do_not_change_a_prompt(hf_folder):
    te = text_encoder(hf_folder[0])
    both, mask = te.encode(PROMPTS[:2])
    for i in range(2):
        alone, _ = te.encode([PROMPTS[i]])
        close(both[i], alone[0], tol=1e-5)
    assert not both[~mask].any() and mask.sum(1).tolist() == [len(te.tokenizer.ids(p)) for p in PROMPTS[:2]]


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------

TOKENIZER_PROMPTS = PROMPTS + ["a   red\tball\n\n bouncing  ", "café &amp; naïve 🎈 Ωμέγα", "x" * 300,
                               "Die Straße 0123456789 !?&%"]


def test_tokenizer_sources_agree_with_transformers(spiece, tmp_path):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("google.protobuf")
    (tmp_path / "spiece.model").write_bytes(spiece)
    ref = transformers.T5Tokenizer.from_pretrained(tmp_path, extra_ids=0)
    fast = transformers.T5TokenizerFast.from_pretrained(tmp_path, extra_ids=0)
    fast.save_pretrained(tmp_path / "json")                    # tokenizer.json
    assert (tmp_path / "json" / "tokenizer.json").is_file()
    save_file({"spiece_model": torch.frombuffer(bytearray(spiece), dtype=torch.uint8)},
              str(tmp_path / "embedded.safetensors"))
    sources = [find_tokenizer(tmp_path / "embedded.safetensors"), UMT5Tokenizer.from_file(tmp_path / "spiece.model"),
               UMT5Tokenizer.from_file(tmp_path / "json" / "tokenizer.json")]
    for text in TOKENIZER_PROMPTS:
        want = ref(clean_text(text)).input_ids                 # T5: EOS appended, no BOS
        assert fast(clean_text(text)).input_ids == want
        for tok in sources:
            assert tok.ids(text) == want, (tok.source, text)


def test_long_prompt_is_cut_with_a_warning(spiece):
    tok = UMT5Tokenizer.from_spiece_bytes(spiece)
    long = " ".join(["a red ball bouncing on the green floor"] * 80)
    assert len(tok.ids(long)) > 512
    with pytest.warns(PromptTruncatedWarning, match="reads at most 512"):
        ids, mask = tok([long, "a red ball"])
    assert ids.shape == (2, 512) and bool(mask[0].all()) and ids[0, -1] == tok.eos_id
    assert ids[0, :511].tolist() == tok.ids(long)[:511]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tok(["a red ball"])                                    # a short prompt warns nothing


# ---------------------------------------------------------------------------------------------
# Errors and lifetime
# ---------------------------------------------------------------------------------------------

def test_missing_tokenizer_says_where_it_looked(comfy, tmp_path):
    path = tmp_path / "umt5_no_tokenizer.safetensors"
    save_file(comfy["sd"], str(path))
    with pytest.raises(TokenizerNotFound, match="no 'spiece_model' tensor") as e:
        find_tokenizer(path)
    assert str(tmp_path / "tokenizer") in str(e.value) and "spiece.model" in str(e.value)


def test_other_components_are_not_text_encoders():
    dit = {"patch_embedding.weight": (1536, 16, 1, 2, 2), "blocks.0.self_attn.q.weight": (1536, 1536),
           "text_embedding.0.weight": (1536, 4096), "head.head.weight": (64, 1536)}
    vae = {"encoder.conv1.weight": (96, 3, 3, 3, 3), "decoder.conv1.weight": (384, 16, 3, 3, 3),
           "conv1.weight": (32, 32, 1, 1, 1)}
    for shapes in (dit, vae):
        assert detect_umt5(shapes, {}) is None
        with pytest.raises(UnsupportedCheckpoint):
            detect(shapes, kind="text_encoder")


def test_t5_relatives_are_refused_by_name(comfy):
    sd = comfy["sd"]
    v11 = {k: tuple(v.shape) for k, v in sd.items() if "block.1.layer.0.SelfAttention.relative_attention_bias" not in k}
    with pytest.raises(UnsupportedCheckpoint, match="T5 v1.1"):
        detect_umt5(v11, {})
    cut = {k: tuple(v.shape) for k, v in sd.items() if "block.1.layer.1" not in k}
    with pytest.raises(UnsupportedCheckpoint, match="missing"):
        detect_umt5(cut, {})


def test_release_frees_the_encoder(comfy):
    te = text_encoder(comfy["files"]["fp32"], output_device="cpu")
    te.encode(["a red ball"])
    te.release()
    assert te.released
    with pytest.raises(RuntimeError, match="released"):
        te.encode(["a red ball"])


def test_released_size_header_is_umt5_xxl():
    """The header of ComfyUI's umt5_xxl_fp16.safetensors (shapes from the module at the XXL preset on the
    meta device, fp16, the embedded tokenizer) detects as umT5-XXL at the released sizes."""
    from sora_core.models.wan.umt5 import UMT5Encoder
    xxl = preset("umt5", "umt5-xxl")
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in UMT5Encoder(xxl).state_dict().items()}
    shapes["spiece_model"] = (4548313,)
    found = detect_umt5(shapes, {k: "U8" if k == "spiece_model" else "F16" for k in shapes})
    assert found.family == "umt5-xxl" and found.cfg == xxl and found.layout == "comfyui"
    assert shapes["shared.weight"] == (256384, 4096) and xxl.num_layers == 24
    assert any("F16" in n for n in found.notes)
