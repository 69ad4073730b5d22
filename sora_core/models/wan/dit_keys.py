"""The Wan 2.1 / 2.2 diffusion transformer: family detection from a checkpoint's keys and shapes, and
the key-name map onto ``sora_core.models.dit.DiT`` (diffusers module names).

Layouts (all read by ``detect_dit`` from the header alone):
    original names   ComfyUI's repackaged single files (``wan2.1_t2v_1.3B_bf16.safetensors``, fp16,
                     fp8_e4m3fn, ``*_scaled`` fp8 with ``*.scale_weight`` keys and a ``scaled_fp8``
                     marker; ComfyUI's newer ``*.weight_scale`` / ``*.comfy_quant`` form too) and the
                     original release (``diffusion_pytorch_model[-0000N-of-0000M].safetensors``),
                     optionally under ComfyUI's ``model.diffusion_model.`` prefix (as ComfyUI's own
                     loader, comfy/sd.py, strips it)
    diffusers names  ``WanTransformer3DModel`` folders: our own module names, no renaming

The config comes from the shapes as in ComfyUI's comfy/model_detection.py: dim and in_channels and the
patch from ``patch_embedding.weight`` (dim, C_in, pt, ph, pw), out_channels from the head, ffn_dim from
block 0, num_layers from the block count, num_heads = dim / 128 (Wan's head size; a diffusers
config.json may say otherwise and the loader then takes its values), text_dim and freq_dim from the
text and time embedders, cross_attn_norm from the presence of the cross-attention norm.

Families: Wan 2.1 T2V 1.3B (dim 1536, 30 layers, 16 channels), 14B (dim 5120, 40 layers, 16 channels;
the Wan 2.2 T2V A14B high- and low-noise experts have the same shapes), Wan 2.2 TI2V 5B (dim 3072, 30
layers, 48 channels). Other sizes of the same structure load as ``wan2.1-t2v`` / ``wan2.2-ti2v``
(e.g. the tiny test models). I2V / FLF2V (``img_emb``), VACE, camera / control adapters, S2V / HuMo
audio, Animate, reference-conv and image-concat models raise ``UnsupportedCheckpoint`` naming the keys.

Timesteps: Wan 2.2 TI2V 5B was trained with a timestep per token (conditioned first-frame tokens at
t = 0). Our DiT takes one time per sample (B,) or per latent frame (B, T_lat); every token of a frame
shares its frame's time, which is all the frame conditions need (a condition covers whole latent
frames). That equals the reference given the same times expanded per token (tests/test_wan_dit.py).
"""

from __future__ import annotations

import re

from ...configs import ConfigError, DiTConfig
from .detect import Detected, UnsupportedCheckpoint

PREFIX = "model.diffusion_model."
HEAD_DIM = 128                         # Wan's attention head size (ComfyUI: num_heads = dim // 128)

# (dim, num_layers, channels) -> family
KNOWN_SIZES = {(1536, 30, 16): "wan2.1-t2v-1.3b", (5120, 40, 16): "wan2.1-t2v-14b",
               (3072, 30, 48): "wan2.2-ti2v-5b"}

# original top-level names -> ours (prefix renames)
_TOP = (("text_embedding.0.", "condition_embedder.text_embedder.linear_1."),
        ("text_embedding.2.", "condition_embedder.text_embedder.linear_2."),
        ("time_embedding.0.", "condition_embedder.time_embedder.linear_1."),
        ("time_embedding.2.", "condition_embedder.time_embedder.linear_2."),
        ("time_projection.1.", "condition_embedder.time_proj."),
        ("head.head.", "proj_out."), ("head.modulation", "scale_shift_table"),
        ("patch_embedding.", "patch_embedding."))
# original names inside a block -> ours
_ATTN = {"q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out.0", "norm_q": "norm_q", "norm_k": "norm_k"}
_BLOCK = tuple([(f"self_attn.{a}.", f"attn1.{b}.") for a, b in _ATTN.items()]
               + [(f"cross_attn.{a}.", f"attn2.{b}.") for a, b in _ATTN.items()]
               + [("norm3.", "norm2."), ("ffn.0.", "ffn.net.0.proj."), ("ffn.2.", "ffn.net.2."),
                  ("modulation", "scale_shift_table")])
_BLOCK_RE = re.compile(r"blocks\.(\d+)\.(.+)")

# quantisation side keys: scales are kept (as <layer>.scale_weight), the rest is dropped
SCALE_SUFFIXES = (".scale_weight", ".weight_scale")
DROPPED_SUFFIXES = (".scale_input", ".input_scale", ".comfy_quant")
MARKERS = ("scaled_fp8",)

# evidence of the families we recognise but do not load: (key fragment, what it is)
UNSUPPORTED = (
    ("vace_", "vace_* keys: a Wan VACE model (video editing with control inputs)"),
    ("control_adapter.", "control_adapter.* keys: a Wan Fun camera-control model"),
    ("casual_audio_encoder.", "casual_audio_encoder.* keys: a Wan S2V (speech-to-video) model"),
    ("audio_injector.", "audio_injector.* keys: a Wan S2V (speech-to-video) model"),
    ("audio_proj.", "audio_proj.* keys: a HuMo (audio-conditioned) model"),
    ("face_adapter.", "face_adapter.* keys: a Wan Animate model"),
    ("motion_encoder.", "motion_encoder.* keys: a Wan Animate model"),
    ("pose_patch_embedding.", "pose_patch_embedding.* keys: a Wan Animate model"),
    ("ref_conv.", "ref_conv.* keys: a Wan Fun reference-image model"),
    ("img_emb.emb_pos", "img_emb.emb_pos: a Wan FLF2V (first-last-frame-to-video) model"),
    ("image_embedder.pos_embed", "condition_embedder.image_embedder.pos_embed: a Wan FLF2V model"),
    ("img_emb.", "img_emb.* keys: a Wan I2V model (CLIP image conditioning)"),
    ("image_embedder.", "condition_embedder.image_embedder.* keys: a Wan I2V model (CLIP image conditioning)"),
    ("cross_attn.k_img.", "cross_attn.k_img keys: a Wan I2V model (image cross-attention)"),
    ("attn2.add_k_proj.", "attn2.add_k_proj keys: a Wan I2V model (image cross-attention)"),
)

# modules a plain T2V / TI2V model has (original and diffusers names)
_ORIG_TOP = {"patch_embedding", "text_embedding", "time_embedding", "time_projection", "blocks", "head"}
_DIFF_TOP = {"patch_embedding", "condition_embedder", "blocks", "norm_out", "proj_out", "scale_shift_table"}
_ORIG_IN_BLOCK = {"self_attn", "cross_attn", "norm1", "norm2", "norm3", "ffn", "modulation"}
_DIFF_IN_BLOCK = {"attn1", "attn2", "norm1", "norm2", "norm3", "ffn", "scale_shift_table"}

SUPPORTED_DIT = ("Wan 2.1 T2V 1.3B / 14B, Wan 2.2 T2V A14B (either expert) and Wan 2.2 TI2V 5B, in ComfyUI's "
                 "single files (bf16, fp16, fp8_e4m3fn, scaled fp8), the original release or diffusers' layout")


# ---------------------------------------------------------------------------------------------
# Key maps
# ---------------------------------------------------------------------------------------------

def _leaf(key: str) -> tuple[str, str | None]:
    """Normalise the quantisation side keys: (key with '.scale_weight' for any scale, or None = drop)."""
    if key in MARKERS or key.endswith(DROPPED_SUFFIXES):
        return key, None
    for s in SCALE_SUFFIXES:
        if key.endswith(s):
            return key[: -len(s)], ".scale_weight"
    return key, ""


def original_to_ours(key: str) -> str | None:
    """One original-layout key (no prefix) -> our key; quantisation markers -> None; a key we do not
    know is returned unchanged (the loader then names it as unexpected)."""
    base, suffix = _leaf(key)
    if suffix is None:
        return None
    m = _BLOCK_RE.fullmatch(base)
    table, head, rest = (_BLOCK, f"blocks.{m.group(1)}.", m.group(2)) if m else (_TOP, "", base)
    dotted = rest + "."                          # "cross_attn.k" (a scale's layer) matches "cross_attn.k."
    for old, new in table:
        if not old.endswith("."):
            if rest == old:
                return head + new + suffix
        elif dotted.startswith(old):
            return (head + new + dotted[len(old):]).rstrip(".") + suffix
    return base + suffix


def diffusers_to_ours(key: str) -> str | None:
    """Diffusers names are ours; only quantisation side keys are normalised or dropped."""
    base, suffix = _leaf(key)
    return None if suffix is None else base + suffix


def make_key_map(prefix: str, names: str):
    """file key -> our key for a file of ``names`` ("original" | "diffusers") under ``prefix``;
    keys outside a non-empty prefix (a full checkpoint's other parts) are ignored."""
    inner = original_to_ours if names == "original" else diffusers_to_ours

    def key_map(key: str) -> str | None:
        if prefix:
            if not key.startswith(prefix):
                return None
            key = key[len(prefix):]
        return inner(key)
    key_map.prefix, key_map.names = prefix, names      # for messages and tests
    return key_map


# ---------------------------------------------------------------------------------------------
# Detection
# ---------------------------------------------------------------------------------------------

def _strip(shapes, dtypes) -> tuple[str, dict, dict]:
    """(prefix, shapes and dtypes with the prefix removed, other keys dropped)."""
    n = sum(k.startswith(PREFIX) for k in shapes)
    if n > 5:                                   # ComfyUI's rule (model_detection.unet_prefix_from_state_dict)
        keep = {k: k[len(PREFIX):] for k in shapes if k.startswith(PREFIX)}
        return PREFIX, {v: tuple(shapes[k]) for k, v in keep.items()}, {v: dtypes.get(k, "") for k, v in keep.items()}
    return "", {k: tuple(v) for k, v in shapes.items()}, dict(dtypes)


def _names(shapes) -> str | None:
    """'original' | 'diffusers' | None (not a Wan DiT)."""
    if "head.modulation" in shapes and "patch_embedding.weight" in shapes:
        return "original"
    if {"condition_embedder.time_proj.weight", "scale_shift_table", "patch_embedding.weight"} <= set(shapes):
        return "diffusers"
    return None


def _refuse_relatives(shapes, names: str) -> None:
    """UnsupportedCheckpoint for a Wan relative (I2V, VACE, S2V ...) or unknown extra modules."""
    keys = sorted(shapes)
    for fragment, what in UNSUPPORTED:
        hits = [k for k in keys if k.startswith(fragment) or f".{fragment}" in k]
        if hits:
            raise UnsupportedCheckpoint(f"{what} (e.g. {hits[0]!r}); supported: {SUPPORTED_DIT}")
    top, inner = (_ORIG_TOP, _ORIG_IN_BLOCK) if names == "original" else (_DIFF_TOP, _DIFF_IN_BLOCK)
    extra = sorted({k.split(".")[0] for k in keys if _leaf(k)[1] is not None} - top)
    extra += sorted({f"blocks.N.{m.group(2).split('.')[0]}" for m in map(_BLOCK_RE.fullmatch, keys)
                     if m and _leaf(m.group(2))[1] is not None} - {f"blocks.N.{n}" for n in inner})
    if extra:
        raise UnsupportedCheckpoint(f"a Wan diffusion model with extra modules not in Wan T2V / TI2V "
                                    f"({', '.join(extra[:6])}): a fine-tune or adapter this pack does not "
                                    f"run; supported: {SUPPORTED_DIT}")


def _shape(shapes, key: str, ndim: int) -> tuple:
    s = shapes.get(key)
    if s is None or len(s) != ndim:
        raise UnsupportedCheckpoint(f"a Wan diffusion model without a usable {key!r} (shape {s}); "
                                    f"the file is incomplete or not a Wan model")
    return s


def _block_count(shapes) -> int:
    ids = {int(m.group(1)) for m in map(_BLOCK_RE.fullmatch, shapes) if m}
    if not ids:
        raise UnsupportedCheckpoint("a Wan diffusion model without blocks.* keys: the file is incomplete")
    return max(ids) + 1                         # a missing block shows up as missing keys at load


def config_from_shapes(shapes, names: str) -> DiTConfig:
    """The DiTConfig of a Wan DiT's (prefix-free) shapes."""
    o = names == "original"
    dim, c_in, *patch = _shape(shapes, "patch_embedding.weight", 5)
    head_w = _shape(shapes, "head.head.weight" if o else "proj_out.weight", 2)
    ffn = _shape(shapes, "blocks.0.ffn.0.weight" if o else "blocks.0.ffn.net.0.proj.weight", 2)[0]
    text_dim = _shape(shapes, "text_embedding.0.weight" if o else "condition_embedder.text_embedder.linear_1.weight", 2)[1]
    freq_dim = _shape(shapes, "time_embedding.0.weight" if o else "condition_embedder.time_embedder.linear_1.weight", 2)[1]
    pt, ph, pw = patch
    if head_w[0] % (pt * ph * pw):
        raise UnsupportedCheckpoint(f"head output {head_w[0]} is not a multiple of the patch volume {pt * ph * pw}")
    if dim % HEAD_DIM:
        raise UnsupportedCheckpoint(f"model dim {dim} (patch_embedding.weight) is not a multiple of Wan's head size "
                                    f"{HEAD_DIM}; supported: {SUPPORTED_DIT}")
    norm = "blocks.0.norm3.weight" if o else "blocks.0.norm2.weight"
    try:
        return DiTConfig(in_channels=c_in, out_channels=head_w[0] // (pt * ph * pw), patch_size=(pt, ph, pw),
                         num_heads=dim // HEAD_DIM, head_dim=HEAD_DIM, num_layers=_block_count(shapes),
                         ffn_dim=ffn, text_dim=text_dim, freq_dim=freq_dim, eps=1e-6,
                         cross_attn_norm=norm in shapes, rope_theta=10000.0)
    except ConfigError as e:
        raise UnsupportedCheckpoint(f"a Wan diffusion model with sizes this pack cannot build: {e}") from e


def family_of(cfg: DiTConfig) -> tuple[str, tuple[str, ...]]:
    """(family, notes) of a Wan DiT config."""
    known = KNOWN_SIZES.get((cfg.dim, cfg.num_layers, cfg.out_channels))
    notes = []
    if known == "wan2.1-t2v-14b":
        notes.append("the Wan 2.2 T2V A14B high- and low-noise experts have these shapes too")
    if known is None:
        known = "wan2.2-ti2v" if cfg.out_channels == 48 else "wan2.1-t2v"
        notes.append(f"not a released size (dim {cfg.dim}, {cfg.num_layers} layers, {cfg.out_channels} channels)")
    if known.startswith("wan2.2-ti2v"):
        notes.append("trained with per-token timesteps: frame conditions can hold frames at t = 0")
    return known, tuple(notes)


def _dtype_note(dtypes) -> str:
    counts: dict[str, int] = {}
    for d in dtypes.values():
        counts[d] = counts.get(d, 0) + 1
    return "stored as " + ", ".join(f"{d} ({n} tensors)" for d, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def detect_dit(shapes, dtypes) -> Detected | None:
    """A Wan 2.1 / 2.2 T2V or TI2V DiT -> Detected; another Wan DiT family -> UnsupportedCheckpoint;
    anything else -> None."""
    prefix, inner, inner_dtypes = _strip(shapes, dtypes)
    names = _names(inner)
    if names is None:
        return None
    _refuse_relatives(inner, names)
    cfg = config_from_shapes(inner, names)
    if cfg.in_channels != cfg.out_channels:
        raise UnsupportedCheckpoint(
            f"a Wan diffusion model with {cfg.in_channels} input and {cfg.out_channels} output channels "
            f"(patch_embedding.weight): an image-conditioned model (Wan 2.2 I2V A14B, Fun InP / Control) that "
            f"takes image latents beside the noise; supported: {SUPPORTED_DIT}")
    family, notes = family_of(cfg)
    notes += (_dtype_note(inner_dtypes),)
    if any(_leaf(k)[1] == ".scale_weight" for k in inner):
        notes += ("scaled fp8: weights are multiplied by their scale_weight at compute",)
    if prefix:
        notes += (f"keys under {prefix!r}; other keys are ignored",)
    return Detected(kind="dit", family=family, cfg=cfg, layout="original" if names == "original" else "diffusers",
                    key_map=make_key_map(prefix, names), notes=notes)


def refine_with_config(det: Detected, config: dict) -> Detected:
    """Take the head count of a model folder's config.json (diffusers: num_attention_heads and
    attention_head_dim; the original release: num_heads) instead of dim / 128, after checking that
    the config describes the same model as the shapes; UnsupportedCheckpoint when it does not."""
    cls = config.get("_class_name")
    if isinstance(cls, str) and cls not in ("WanTransformer3DModel", "WanModel"):
        raise UnsupportedCheckpoint(f"config.json names {cls!r}: not a Wan T2V / TI2V transformer; "
                                    f"supported: {SUPPORTED_DIT}")
    cfg = det.cfg
    heads, head_dim = config.get("num_attention_heads", config.get("num_heads")), config.get("attention_head_dim")
    if head_dim is None and isinstance(heads, int) and heads > 0:
        head_dim = cfg.dim // heads if cfg.dim % heads == 0 else None
    if heads is None:
        return det
    if not (type(heads) is int and type(head_dim) is int and heads * head_dim == cfg.dim):
        raise UnsupportedCheckpoint(f"config.json gives {heads} heads of {head_dim} but the weights have dim "
                                    f"{cfg.dim}: the config does not belong to these weights")
    if (heads, head_dim) == (cfg.num_heads, cfg.head_dim):
        return det
    try:
        new = DiTConfig(**{**cfg.__dict__, "num_heads": heads, "head_dim": head_dim})
    except ConfigError as e:
        raise UnsupportedCheckpoint(f"config.json's heads cannot be built: {e}") from e
    return Detected(det.kind, det.family, new, det.layout, det.key_map,
                    det.notes + (f"{heads} heads of {head_dim} (config.json)",))


__all__ = ["detect_dit", "refine_with_config", "config_from_shapes", "family_of", "make_key_map", "original_to_ours",
           "diffusers_to_ours", "KNOWN_SIZES", "SUPPORTED_DIT", "PREFIX", "HEAD_DIM"]
