"""Model families: the sampling schedule, output defaults and conventions each family was trained with.

One table (``FAMILIES``), one row per family, each labelled with where its numbers come from:

=================  =========  ======  ===  =====  ===  =====  ==========  =========
family             size       frames  fps  steps  cfg  shift  conditions  text mask
=================  =========  ======  ===  =====  ===  =====  ==========  =========
sora (default)     64x64      17      8    20     5.0  3.0    timestep    yes
wan2.1-t2v         832x480    81      16   50     5.0  5.0    replace     no
wan2.1-t2v-14b     1280x720   81      16   50     5.0  5.0    replace     no
wan2.2-ti2v        1280x704   121     24   50     5.0  5.0    timestep    no
=================  =========  ======  ===  =====  ===  =====  ==========  =========

``conditions`` is how frame conditions (image-to-video, extend, loop ...) are held by default:
``timestep`` gives conditioned frames their own (lower) time, which only models trained with per-frame
or per-token times understand (the default model; Wan 2.2 TI2V 5B, trained with clean first-frame
tokens at t = 0); ``replace`` re-noises the clean frames to the current level at every step, for models
trained without such masks (Wan 2.1 T2V). ``text mask``: whether the DiT's cross-attention masks the
padding of the text context. Wan does not: its umT5 context is padded to 512 tokens with zeros and the
DiT attends to all of them (Wan's ``WanModel.forward`` pads each context to ``text_len`` with zeros and
passes no mask; ComfyUI does the same), so for Wan ``encode_text`` returns an all-True mask.
The sampler is Euler for every family (Wan's own scripts use UniPC or DPM++ at the same shift).
``world_prompts``: the family was trained on the procedural world's captions (the default model), so
a prompt is expanded into that caption style before it is encoded (``prompts.expand``), as the Sora
report expands every short prompt; Wan models read free text and are given the prompt as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .configs import ScheduleConfig


@dataclass(frozen=True)
class GenerationDefaults:
    """Default output size of a model (stored as ``sora.defaults`` in a Sora DiT file)."""
    frames: int = 17
    height: int = 64
    width: int = 64
    fps: float = 8.0


@dataclass(frozen=True)
class Family:
    """What a model family was trained with (see the module table). ``source`` says where from."""
    name: str
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    defaults: GenerationDefaults = field(default_factory=GenerationDefaults)
    condition_mode: str = "timestep"
    text_mask: bool = True
    source: str = ""
    # trained on the procedural world's captions: prompts are expanded into them by default
    world_prompts: bool = False


_WAN21 = ("Wan-Video/Wan2.1 generate.py and wan/configs (t2v: 50 steps, guide scale 5.0, shift 5.0, 81 frames; "
          "shared config sample_fps 16; 832*480 for the 1.3B, 1280*720 for the 14B)")
_WAN22 = ("Wan-Video/Wan2.2 wan/configs/wan_ti2v_5B.py (sample_steps 50, sample_guide_scale 5.0, sample_shift 5.0, "
          "frame_num 121, sample_fps 24) and its README (--size 1280*704)")

FAMILIES: dict[str, Family] = {
    "sora": Family("sora", ScheduleConfig(), GenerationDefaults(), "timestep", True,
                   "the pack's default model (its DiT file's sora.schedule / sora.defaults override these)",
                   world_prompts=True),
    "wan2.1-t2v": Family("wan2.1-t2v", ScheduleConfig(shift=5.0, steps=50, cfg=5.0, sampler="euler"),
                         GenerationDefaults(frames=81, height=480, width=832, fps=16.0), "replace", False, _WAN21),
    "wan2.1-t2v-14b": Family("wan2.1-t2v-14b", ScheduleConfig(shift=5.0, steps=50, cfg=5.0, sampler="euler"),
                             GenerationDefaults(frames=81, height=720, width=1280, fps=16.0), "replace", False,
                             _WAN21),
    "wan2.2-ti2v": Family("wan2.2-ti2v", ScheduleConfig(shift=5.0, steps=50, cfg=5.0, sampler="euler"),
                          GenerationDefaults(frames=121, height=704, width=1280, fps=24.0), "timestep", False,
                          _WAN22),
}

# the DiT families models/wan/dit_keys.py detects -> a row of the table
_DIT_FAMILIES = {"wan2.1-t2v-1.3b": "wan2.1-t2v", "wan2.1-t2v": "wan2.1-t2v", "wan2.1-t2v-14b": "wan2.1-t2v-14b",
                 "wan2.2-ti2v-5b": "wan2.2-ti2v", "wan2.2-ti2v": "wan2.2-ti2v"}
# the VAE family each DiT family was trained with
VAE_OF = {"wan2.1-t2v": "wan2.1-vae", "wan2.1-t2v-14b": "wan2.1-vae", "wan2.2-ti2v": "wan2.2-vae"}


def family(name: str) -> Family:
    """The row of ``name`` (a table name or a detected DiT family such as ``wan2.1-t2v-1.3b``)."""
    key = _DIT_FAMILIES.get(name, name)
    if key not in FAMILIES:
        raise ValueError(f"model family {name!r} is unknown; known: {', '.join(FAMILIES)}")
    return FAMILIES[key]


__all__ = ["Family", "FAMILIES", "GenerationDefaults", "VAE_OF", "family"]
