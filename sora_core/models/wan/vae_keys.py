"""The Wan 2.1 and Wan 2.2 VAEs: recognised from a checkpoint's header, mapped onto our modules.

Layouts (the key names of the tensors):

* ``comfyui``: ComfyUI's repackaged ``models/vae/wan_2.1_vae.safetensors`` and ``wan2.2_vae.safetensors``
  keep the original Wan release's names (``comfy/ldm/wan/vae.py`` and ``vae2_2.py`` are that module
  tree): ``conv1`` / ``conv2`` (quant / post-quant), ``encoder.conv1``, ``encoder.downsamples.N``
  (2.1: one flat list of residual blocks and resamplers; 2.2: ``downsamples.S.downsamples.M`` per
  stage), ``middle.{0,1,2}``, ``head.{0,2}``, ``decoder.upsamples...``, ``residual.{0,2,3,6}``,
  ``shortcut``. ComfyUI itself tells the two apart by ``decoder.upsamples.0.upsamples.0.residual.2.weight``
  (2.2) under ``decoder.middle.0.residual.0.gamma`` (both), as ``comfy/sd.py`` does.
* ``diffusers``: ``AutoencoderKLWan`` names (``quant_conv``, ``encoder.down_blocks``, ``mid_block``,
  ``norm_out`` ...); 2.2 (``is_residual=True``) has ``encoder.down_blocks.S.resnets.M`` /
  ``.downsampler`` and ``decoder.up_blocks.S.resnets.M`` / ``.upsampler``.

Our modules carry the diffusers names (``VideoVAE`` for 2.1, ``vae22.WanVAE22`` for 2.2), so the
diffusers layout maps with the identity and the ComfyUI layout through renaming rules. The structure
(base width, stages, residual blocks per stage, temporal down-sampling, latent channels) is read
from the shapes, so scaled-down test files with the real names load the same way; every key and
shape is then checked against the module the config builds (on the meta device: nothing is
allocated) and a mismatch is one clear error naming the keys.

Latent scaling. The Wan DiT sees per-channel normalised latents ``(mu - mean) / std`` (Wan's
``scale`` in its pipelines, ComfyUI's ``latent_formats.Wan21`` / ``Wan22`` ``process_in``;
diffusers' pipelines apply ``latents_mean`` / ``latents_std`` from the VAE config). Here the
statistics are part of the VAE config (``latents_mean`` / ``latents_std``, the constants below), and
our VAE's ``encode`` returns normalised latents and ``decode`` takes them: the scaling lives in the VAE
wrapper, nowhere else.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import torch

from ...configs import VAEConfig, WanVAE22Config
from ..vae import VideoVAE, wan_original_key
from .detect import Detected, UnsupportedCheckpoint

Shapes = Mapping[str, tuple]

# comfy/latent_formats.py Wan21 (= diffusers AutoencoderKLWan defaults, Wan 2.1's vae.py)
WAN21_LATENTS_MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
                      0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
WAN21_LATENTS_STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
                     3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
# comfy/latent_formats.py Wan22 (Wan 2.2's vae2_2.py)
WAN22_LATENTS_MEAN = (-0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
                      -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
                      -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
                      -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
                      -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
                      0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667)
WAN22_LATENTS_STD = (0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
                     0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
                     0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
                     0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
                     0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
                     0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744)

# The released sizes (a file at another size still loads; detection notes the difference)
RELEASED = {"wan2.1-vae": {"base_dim": 96, "z_dim": 16}, "wan2.2-vae": {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48}}

_LIST = 5


# ---------------------------------------------------------------------------------------------
# Which VAE, which layout
# ---------------------------------------------------------------------------------------------

def _version_and_layout(shapes: Shapes) -> tuple[str, str] | None:
    """("2.1" | "2.2", "comfyui" | "diffusers") from marker keys, or None when not a Wan VAE."""
    if "decoder.middle.0.residual.0.gamma" in shapes:
        return ("2.2" if "decoder.upsamples.0.upsamples.0.residual.2.weight" in shapes else "2.1"), "comfyui"
    if "decoder.mid_block.resnets.0.norm1.gamma" in shapes and "post_quant_conv.weight" in shapes:
        residual = any(re.match(r"encoder\.down_blocks\.\d+\.resnets\.", k) for k in shapes)
        return ("2.2" if residual else "2.1"), "diffusers"
    return None


def _indices(shapes: Shapes, pattern: str) -> list[int]:
    """Sorted distinct integers captured by ``pattern`` (one group) at the start of the keys."""
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in shapes if (m := rx.match(k))})


def _need(shapes: Shapes, key: str, family: str) -> tuple:
    if key not in shapes:
        raise UnsupportedCheckpoint(f"the keys look like a {family} VAE but {key!r} is missing: "
                                    f"the file is incomplete or another model")
    return tuple(shapes[key])


def _stages_21(shapes: Shapes, layout: str, family: str) -> list[tuple[list[int], bool | None]]:
    """Encoder stages of a 2.1 file: [(residual block output widths, temporal flag of the stage's
    resampler or None for the last stage)], read from the flat ``downsamples`` / ``down_blocks`` list."""
    base, conv = (("encoder.downsamples", "residual.2") if layout == "comfyui"
                  else ("encoder.down_blocks", "conv1"))
    stages, widths = [], []
    for i in _indices(shapes, rf"{re.escape(base)}\.(\d+)\."):
        p = f"{base}.{i}."
        if p + "to_qkv.weight" in shapes:
            raise UnsupportedCheckpoint(f"{family} VAE with attention inside the encoder stages ({p}to_qkv): "
                                        f"not a released Wan VAE; supported: attn_scales = []")
        if p + f"{conv}.weight" in shapes:
            widths.append(shapes[p + f"{conv}.weight"][0])
        elif p + "resample.1.weight" in shapes:
            stages.append((widths, p + "time_conv.weight" in shapes))
            widths = []
        else:
            raise UnsupportedCheckpoint(f"{family} VAE: {p}* is neither a residual block nor a resampler")
    stages.append((widths, None))
    return stages


def _stages_22(shapes: Shapes, layout: str, family: str) -> list[tuple[list[int], bool | None]]:
    """Encoder stages of a 2.2 file (one residual down block per stage), as in ``_stages_21``."""
    base = "encoder.downsamples" if layout == "comfyui" else "encoder.down_blocks"
    stages = []
    for s in _indices(shapes, rf"{re.escape(base)}\.(\d+)\."):
        if layout == "comfyui":
            sub, conv = f"{base}.{s}.downsamples", "residual.2"
            entries = _indices(shapes, rf"{re.escape(sub)}\.(\d+)\.")
            res = [e for e in entries if f"{sub}.{e}.{conv}.weight" in shapes]
            widths = [shapes[f"{sub}.{e}.{conv}.weight"][0] for e in res]
            samplers = [f"{sub}.{e}." for e in entries if e not in res]
        else:
            sub = f"{base}.{s}.resnets"
            widths = [_need(shapes, f"{sub}.{e}.conv1.weight", family)[0]
                      for e in _indices(shapes, rf"{re.escape(sub)}\.(\d+)\.")]
            samplers = [f"{base}.{s}.downsampler."] if f"{base}.{s}.downsampler.resample.1.weight" in shapes else []
        if len(samplers) > 1:
            raise UnsupportedCheckpoint(f"{family} VAE: stage {s} has {len(samplers)} resamplers; a Wan VAE has one")
        stages.append((widths, (samplers[0] + "time_conv.weight" in shapes) if samplers else None))
    return stages


def _structure(stages, base_dim: int, family: str) -> dict:
    """dim_mult, num_res_blocks and temporal_downsample from the encoder stages."""
    counts = {len(w) for w, _ in stages}
    if len(counts) != 1 or 0 in counts:
        raise UnsupportedCheckpoint(f"{family} VAE: the encoder stages have {sorted(len(w) for w, _ in stages)} "
                                    f"residual blocks; a Wan VAE has the same number (>= 1) in every stage")
    flags = [t for _, t in stages]
    if None in flags[:-1] or flags[-1] is not None:
        raise UnsupportedCheckpoint(f"{family} VAE: every encoder stage but the last needs a resampler")
    mults = []
    for widths, _ in stages:
        if widths[-1] % base_dim:
            raise UnsupportedCheckpoint(f"{family} VAE: stage width {widths[-1]} is not a multiple of the "
                                        f"base width {base_dim}")
        mults.append(widths[-1] // base_dim)
    return {"dim_mult": tuple(mults), "num_res_blocks": counts.pop(), "temporal_downsample": tuple(flags[:-1])}


# ---------------------------------------------------------------------------------------------
# Key maps
# ---------------------------------------------------------------------------------------------

_RES_22 = [(r"\.residual\.0\.", ".norm1."), (r"\.residual\.2\.", ".conv1."), (r"\.residual\.3\.", ".norm2."),
           (r"\.residual\.6\.", ".conv2."), (r"\.shortcut\.", ".conv_shortcut.")]
_TOP_22 = [(r"^conv1\.", "quant_conv."), (r"^conv2\.", "post_quant_conv."),
           (r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."),
           (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."), (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
           (r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0."),
           (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."),
           (r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1.")]
_STAGE_22 = re.compile(r"^(encoder|decoder)\.(?:down|up)samples\.(\d+)\.(?:down|up)samples\.(\d+)\.(.*)$")


def comfy22_key(key: str) -> str:
    """Our (diffusers) name of a tensor named ``key`` in ComfyUI's / the original Wan 2.2 VAE.

    ``encoder.downsamples.S.downsamples.M`` is residual block M of down block S, or its resampler
    (``downsampler``) when it holds ``resample`` / ``time_conv``; likewise for the decoder's
    ``upsamples.S.upsamples.M`` (``resnets.M`` / ``upsampler``).
    """
    m = _STAGE_22.match(key)
    if m:
        side, stage, idx, rest = m.groups()
        if rest.startswith(("resample.", "time_conv.")):
            key = f"{side}.{'down_blocks' if side == 'encoder' else 'up_blocks'}.{stage}." \
                  f"{'downsampler' if side == 'encoder' else 'upsampler'}.{rest}"
        else:
            key = f"{side}.{'down_blocks' if side == 'encoder' else 'up_blocks'}.{stage}.resnets.{idx}.{rest}"
    for pattern, repl in _TOP_22 + _RES_22:
        key = re.sub(pattern, repl, key)
    return key


def _identity(key: str) -> str:
    return key


def key_map_for(version: str, layout: str, num_res_blocks: int = 2) -> Callable[[str], str | None]:
    """file key -> our key, for a Wan ``version`` ("2.1" | "2.2") VAE in ``layout``."""
    if layout == "diffusers":
        return _identity
    if version == "2.1":
        return lambda k: wan_original_key(k, num_res_blocks)
    return comfy22_key


# ---------------------------------------------------------------------------------------------
# Configs and modules
# ---------------------------------------------------------------------------------------------

def config_21(shapes: Shapes, layout: str) -> VAEConfig:
    """The VAEConfig of a Wan 2.1 VAE file (structure from the shapes, Wan 2.1 latent statistics)."""
    family = "Wan 2.1"
    conv_in, post = (("encoder.conv1.weight", "conv2.weight") if layout == "comfyui"
                     else ("encoder.conv_in.weight", "post_quant_conv.weight"))
    width, in_channels = _need(shapes, conv_in, family)[:2]
    z_dim = _need(shapes, post, family)[0]
    structure = _structure(_stages_21(shapes, layout, family), width, family)
    stats = {"latents_mean": WAN21_LATENTS_MEAN, "latents_std": WAN21_LATENTS_STD} if z_dim == 16 else {}
    try:
        return VAEConfig(in_channels=in_channels, base_dim=width, z_dim=z_dim, attn_scales=(), dropout=0.0,
                         chunk_frames=4, **structure, **stats)
    except ValueError as e:
        raise UnsupportedCheckpoint(f"{family} VAE with an unsupported structure: {e}") from e


def config_22(shapes: Shapes, layout: str) -> WanVAE22Config:
    """The WanVAE22Config of a Wan 2.2 VAE file (structure from the shapes, Wan 2.2 latent statistics).

    The patch size follows from the encoder's input channels (3 image channels x patch^2; 12 in the
    release), the decoder width from its first convolution (decoder_base_dim x the last multiplier)."""
    family = "Wan 2.2"
    names = (("encoder.conv1.weight", "decoder.conv1.weight", "conv2.weight") if layout == "comfyui"
             else ("encoder.conv_in.weight", "decoder.conv_in.weight", "post_quant_conv.weight"))
    width, packed = _need(shapes, names[0], family)[:2]
    dec_width = _need(shapes, names[1], family)[0]
    z_dim = _need(shapes, names[2], family)[0]
    patch = round((packed / 3) ** 0.5)
    if 3 * patch * patch != packed:
        raise UnsupportedCheckpoint(f"{family} VAE: {names[0]} takes {packed} input channels; it needs 3 x patch^2 "
                                    f"(12 in the release)")
    structure = _structure(_stages_22(shapes, layout, family), width, family)
    if dec_width % structure["dim_mult"][-1]:
        raise UnsupportedCheckpoint(f"{family} VAE: decoder width {dec_width} is not a multiple of the last "
                                    f"multiplier {structure['dim_mult'][-1]}")
    stats = {"latents_mean": WAN22_LATENTS_MEAN, "latents_std": WAN22_LATENTS_STD} if z_dim == 48 else {}
    try:
        return WanVAE22Config(in_channels=3, patch_size=patch, base_dim=width, z_dim=z_dim,
                              decoder_base_dim=dec_width // structure["dim_mult"][-1], **structure, **stats)
    except ValueError as e:
        raise UnsupportedCheckpoint(f"{family} VAE with an unsupported structure: {e}") from e


def build_vae(cfg) -> torch.nn.Module:
    """The module for a VAE config: ``VideoVAE`` (Wan 2.1 structure) or ``WanVAE22``."""
    if isinstance(cfg, VAEConfig):
        return VideoVAE(cfg)
    from .vae22 import WanVAE22
    return WanVAE22(cfg)


def check_keys(cfg, shapes: Shapes, key_map: Callable[[str], str | None], family: str) -> None:
    """Every mapped file key and shape against the module ``cfg`` builds (on the meta device);
    raises UnsupportedCheckpoint listing missing / unexpected keys and shape mismatches."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in build_vae(cfg).state_dict().items()}
    got, origin = {}, {}
    for k, shape in shapes.items():
        new = key_map(k)
        if new is not None:
            got[new], origin[new] = tuple(shape), k
    missing = sorted(set(expected) - set(got))                            # named as in our module
    unexpected = sorted(origin[k] for k in set(got) - set(expected))      # named as in the file
    wrong = sorted(f"{origin[k]} (file {got[k]}, expected {expected[k]})" for k in set(got) & set(expected)
                   if got[k] != expected[k])
    problems = [f"{len(items)} {title}: {', '.join(items[:_LIST])}" + (" ..." if len(items) > _LIST else "")
                for title, items in (("missing key(s)", missing), ("unexpected key(s)", unexpected),
                                     ("shape mismatch(es)", wrong)) if items]
    if problems:
        raise UnsupportedCheckpoint(f"the keys look like a {family} VAE (read as base_dim={cfg.base_dim}, "
                                    f"z_dim={cfg.z_dim}, dim_mult={cfg.dim_mult}) but do not fit it: "
                                    + "; ".join(problems))


def _notes(family: str, cfg, dtypes: Mapping[str, str]) -> tuple[str, ...]:
    notes = []
    stored = sorted(set(dtypes.values()))
    if stored:
        notes.append(f"stored as {', '.join(stored)}")
    released = RELEASED[family]
    if any(getattr(cfg, k) != v for k, v in released.items()):
        notes.append(f"not the released size ({', '.join(f'{k}={v}' for k, v in released.items())}): "
                     + ", ".join(f"{k}={getattr(cfg, k)}" for k in released))
    if not cfg.latents_mean:
        notes.append(f"z_dim={cfg.z_dim} has no published latent statistics: latents are not normalised")
    return tuple(notes)


def detect_vae(shapes: Shapes, dtypes: Mapping[str, str] | None = None) -> Detected | None:
    """A Wan 2.1 or 2.2 VAE from a checkpoint header -> Detected (config, layout, key map), or None
    when the keys are not a Wan VAE. Raises UnsupportedCheckpoint when they look like one but the
    structure or any shape does not fit (naming the keys)."""
    found = _version_and_layout(shapes)
    if found is None:
        return None
    version, layout = found
    family = f"wan{version}-vae"
    cfg = config_21(shapes, layout) if version == "2.1" else config_22(shapes, layout)
    key_map = key_map_for(version, layout, cfg.num_res_blocks)
    check_keys(cfg, shapes, key_map, f"Wan {version}")
    return Detected(kind="vae", family=family, cfg=cfg, layout=layout, key_map=key_map,
                    notes=_notes(family, cfg, dtypes or {}))


__all__ = ["detect_vae", "config_21", "config_22", "key_map_for", "comfy22_key", "build_vae", "check_keys",
           "WAN21_LATENTS_MEAN", "WAN21_LATENTS_STD", "WAN22_LATENTS_MEAN", "WAN22_LATENTS_STD", "RELEASED"]
