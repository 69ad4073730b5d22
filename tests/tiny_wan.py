"""Tiny random Wan 2.1 / 2.2 checkpoints with the real key names, for tests that load "real" files.

    paths = write_tiny_wan(tmp_path / "models", family="wan2.1")       # or "wan2.2-ti2v"
    paths["dit"], paths["vae"], paths["text_encoder"]                    # ComfyUI's folders and names

writes ComfyUI's single-file layout under ``models_dir``:

    diffusion_models/wan2.1_t2v_1.3B_bf16.safetensors    (wan2.2-ti2v: wan2.2_ti2v_5B_fp16.safetensors)
    vae/wan_2.1_vae.safetensors                           (wan2.2-ti2v: wan2.2_vae.safetensors)
    text_encoders/umt5_xxl_fp16.safetensors               (with the tokenizer as its spiece_model tensor)

The modules are ours at tiny Wan-shaped configs (DiT dim 128 = one head of Wan's 128, so ComfyUI's
heads = dim / 128 holds; VAEs with the released structure at small widths; umT5 at the ``tiny``
preset with a ~300-piece sentencepiece model trained here), randomly initialised from ``seed`` and
saved under the original names through the inverse of the loaders' key maps (each inverse is checked
against the forward map). ``write_tiny_pipeline`` writes the same components as a diffusers pipeline
folder (model_index.json, transformer/, vae/, text_encoder/ + tokenizer/spiece.model).
"""

from __future__ import annotations

import functools
import io
import json
import re
from pathlib import Path

import torch
from safetensors.torch import save_file

from sora_core.configs import DiTConfig, VAEConfig, WanVAE22Config, preset
from sora_core.models.dit import DiT
from sora_core.models.vae import wan_original_key
from sora_core.models.wan import dit_keys
from sora_core.models.wan.umt5 import UMT5Encoder
from sora_core.models.wan.vae_keys import build_vae, comfy22_key

UMT5 = preset("umt5", "tiny")                      # d_model 64: the DiTs' text_dim
FAMILIES = ("wan2.1", "wan2.2-ti2v")
DIT = {"wan2.1": DiTConfig(in_channels=16, out_channels=16, patch_size=(1, 2, 2), num_heads=1, head_dim=128,
                           num_layers=2, ffn_dim=256, text_dim=UMT5.d_model, freq_dim=256, eps=1e-6),
       "wan2.2-ti2v": DiTConfig(in_channels=48, out_channels=48, patch_size=(1, 2, 2), num_heads=1, head_dim=128,
                                num_layers=2, ffn_dim=256, text_dim=UMT5.d_model, freq_dim=256, eps=1e-6)}
VAE = {"wan2.1": VAEConfig(base_dim=16, z_dim=16, dim_mult=(1, 2, 4, 4), num_res_blocks=2,
                           temporal_downsample=(False, True, True)),
       "wan2.2-ti2v": WanVAE22Config(base_dim=16, decoder_base_dim=32)}
NAMES = {"wan2.1": ("wan2.1_t2v_1.3B_bf16.safetensors", "wan_2.1_vae.safetensors"),
         "wan2.2-ti2v": ("wan2.2_ti2v_5B_fp16.safetensors", "wan2.2_vae.safetensors")}
DIT_DTYPE = {"wan2.1": torch.bfloat16, "wan2.2-ti2v": torch.float16}
UMT5_NAME = "umt5_xxl_fp16.safetensors"


# ---------------------------------------------------------------------------------------------
# Random weights
# ---------------------------------------------------------------------------------------------

def _randomise(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter random (norm gains near 1, biases small, matrices ~ N(0, 1/fan_in)): a model
    whose outputs depend on every weight (the zero-initialised heads would hide errors)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(module.named_parameters()):
            if name.endswith(("gamma", "norm_q.weight", "norm_k.weight", "layer_norm.weight", "norm2.weight")):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)
            elif p.dim() == 1:
                p.copy_((torch.rand(p.shape, generator=g) - 0.5) * 0.2)
            elif name.endswith("scale_shift_table"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            else:
                p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
    return module


# ---------------------------------------------------------------------------------------------
# Inverse key maps (ours -> the original names), checked against the loaders' forward maps
# ---------------------------------------------------------------------------------------------

def _checked(ours: str, original: str, forward) -> str:
    back = forward(original)
    assert back == ours, f"inverse key map: {ours!r} -> {original!r} -> {back!r}"
    return original


def dit_original_key(ours: str) -> str:
    """Our DiT key -> the original Wan name (ComfyUI's single files)."""
    m = re.fullmatch(r"blocks\.(\d+)\.(.+)", ours)
    table, head, rest = (dit_keys._BLOCK, f"blocks.{m.group(1)}.", m.group(2)) if m else (dit_keys._TOP, "", ours)
    for old, new in table:
        if new.endswith("."):
            if (rest + ".").startswith(new):
                return _checked(ours, head + (old + (rest + ".")[len(new):]).rstrip("."), dit_keys.original_to_ours)
        elif rest == new:
            return _checked(ours, head + old, dit_keys.original_to_ours)
    return _checked(ours, ours, dit_keys.original_to_ours)


_RESIDUAL = [(".norm1.", ".residual.0."), (".conv1.", ".residual.2."), (".norm2.", ".residual.3."),
             (".conv2.", ".residual.6."), (".conv_shortcut.", ".shortcut.")]
_TOP = [(r"^quant_conv\.", "conv1."), (r"^post_quant_conv\.", "conv2."), (r"^(encoder|decoder)\.conv_in\.", r"\1.conv1."),
        (r"^(encoder|decoder)\.norm_out\.", r"\1.head.0."), (r"^(encoder|decoder)\.conv_out\.", r"\1.head.2."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.middle.0."),
        (r"^(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.middle.1."),
        (r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.middle.2.")]


def _vae_renames(key: str) -> str:
    for old, new in _RESIDUAL:
        key = key.replace(old, new)
    for pattern, repl in _TOP:
        key = re.sub(pattern, repl, key)
    return key


def vae21_original_key(ours: str, num_res_blocks: int = 2) -> str:
    """Our Wan 2.1 VAE key -> the original name (the decoder's stages are one flat ``upsamples`` list)."""
    key = re.sub(r"^encoder\.down_blocks\.", "encoder.downsamples.", ours)
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets\.(\d+)|upsamplers\.0)\.(.*)$", key)
    if m:
        per_stage = num_res_blocks + 2
        pos = int(m.group(3)) if m.group(3) is not None else num_res_blocks + 1
        key = f"decoder.upsamples.{int(m.group(1)) * per_stage + pos}.{m.group(4)}"
    return _checked(ours, _vae_renames(key), lambda k: wan_original_key(k, num_res_blocks))


def vae22_original_key(ours: str, num_res_blocks: int = 2) -> str:
    """Our Wan 2.2 VAE key -> the original name (``downsamples.S.downsamples.M`` per stage)."""
    key = ours
    m = re.match(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(resnets\.(\d+)|downsampler|upsampler)\.(.*)$", key)
    if m:
        side, way, stage, what, idx, rest = m.groups()
        if idx is None:
            idx = num_res_blocks if side == "encoder" else num_res_blocks + 1
        key = f"{side}.{way}samples.{stage}.{way}samples.{idx}.{rest}"
    return _checked(ours, _vae_renames(key), comfy22_key)


# ---------------------------------------------------------------------------------------------
# The sentencepiece tokenizer
# ---------------------------------------------------------------------------------------------

def _corpus() -> list[str]:
    colours = ["red", "green", "blue", "yellow", "white", "orange", "purple", "cyan"]
    things = ["ball", "box", "triangle", "cat", "dog", "fox", "floor", "sky"]
    verbs = ["bouncing", "moving left", "rolling", "jumps over", "pans slowly", "spins"]
    return [f"a {c} {t} {v} the {t2}, 0123456789 !?&%" for c in colours for t, t2 in zip(things, things[::-1])
            for v in verbs]


@functools.lru_cache(maxsize=1)
def spiece_bytes() -> bytes:
    """A unigram sentencepiece model (~300 pieces, T5's special ids: pad 0, eos 1, unk 2, no bos)."""
    import sentencepiece
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_corpus()), model_writer=buf, vocab_size=300, pad_id=0, eos_id=1, unk_id=2,
        bos_id=-1, model_type="unigram", character_coverage=1.0, hard_vocab_limit=False, minloglevel=2)
    return buf.getvalue()


# ---------------------------------------------------------------------------------------------
# Writers
# ---------------------------------------------------------------------------------------------

def _check_family(family: str) -> None:
    if family not in FAMILIES:
        raise ValueError(f"family={family!r}; allowed: {', '.join(FAMILIES)}")


def tiny_dit(family: str, seed: int = 0) -> DiT:
    _check_family(family)
    return _randomise(DiT(DIT[family]), seed).eval()


def tiny_vae(family: str, seed: int = 0) -> torch.nn.Module:
    _check_family(family)
    return _randomise(build_vae(VAE[family]), seed).eval()


def tiny_umt5(seed: int = 0) -> UMT5Encoder:
    return _randomise(UMT5Encoder(UMT5), seed).eval()


def write_tiny_dit(path: Path, family: str, seed: int = 0, dtype: torch.dtype | None = None) -> Path:
    """The DiT with the original key names (ComfyUI's repackaged single file) in ``dtype``."""
    dtype = dtype or DIT_DTYPE[family]
    sd = {dit_original_key(k): v.to(dtype).contiguous() for k, v in tiny_dit(family, seed).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_tiny_vae(path: Path, family: str, seed: int = 0) -> Path:
    """The VAE with the original key names (ComfyUI's ``models/vae`` files)."""
    rename = vae21_original_key if family == "wan2.1" else vae22_original_key
    sd = {rename(k): v.contiguous() for k, v in tiny_vae(family, seed).state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_tiny_umt5(path: Path, seed: int = 0, dtype: torch.dtype = torch.float16) -> Path:
    """The umT5 encoder in ComfyUI's layout (its names are ours) with the tokenizer embedded."""
    sd = {k: v.to(dtype).contiguous() for k, v in tiny_umt5(seed).state_dict().items()}
    sd["spiece_model"] = torch.frombuffer(bytearray(spiece_bytes()), dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(path))
    return path


def write_tiny_wan(models_dir, family: str = "wan2.1", seed: int = 0) -> dict[str, Path]:
    """The three files of ``family`` in ComfyUI's model folders under ``models_dir`` -> {kind: path}."""
    _check_family(family)
    models_dir = Path(models_dir)
    dit_name, vae_name = NAMES[family]
    return {"dit": write_tiny_dit(models_dir / "diffusion_models" / dit_name, family, seed),
            "vae": write_tiny_vae(models_dir / "vae" / vae_name, family, seed + 1),
            "text_encoder": write_tiny_umt5(models_dir / "text_encoders" / UMT5_NAME, seed + 2)}


def write_tiny_pipeline(folder, family: str = "wan2.1", seed: int = 0) -> Path:
    """The same components as a diffusers pipeline folder (our module names are diffusers' names;
    the text encoder has transformers' names and its tokenizer in ``tokenizer/spiece.model``)."""
    _check_family(family)
    folder = Path(folder)
    parts = {"transformer": (tiny_dit(family, seed), {"_class_name": "WanTransformer3DModel",
                                                       "num_attention_heads": 1, "attention_head_dim": 128}),
             "vae": (tiny_vae(family, seed + 1), {"_class_name": "AutoencoderKLWan"}),
             "text_encoder": (tiny_umt5(seed + 2), {"architectures": ["UMT5EncoderModel"]})}
    for name, (module, config) in parts.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        sd = {k: v.contiguous() for k, v in module.state_dict().items()}
        save_file(sd, str(folder / name / ("model.safetensors" if name == "text_encoder"
                                           else "diffusion_pytorch_model.safetensors")))
        (folder / name / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer").mkdir(exist_ok=True)
    (folder / "tokenizer" / "spiece.model").write_bytes(spiece_bytes())
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    return folder


__all__ = ["write_tiny_wan", "write_tiny_pipeline", "write_tiny_dit", "write_tiny_vae", "write_tiny_umt5",
           "tiny_dit", "tiny_vae", "tiny_umt5", "dit_original_key", "vae21_original_key", "vae22_original_key",
           "spiece_bytes", "DIT", "VAE", "UMT5", "FAMILIES", "NAMES"]
