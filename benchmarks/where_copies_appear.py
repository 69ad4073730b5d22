"""Where in sampling, and where in the clip, an unasked copy of the asked object appears.

For each single-object prompt, the video is generated with the model's defaults while the sampler's
x0 prediction (``denoised``) of every step is decoded and read by the analytic captioner. For every
clip that ends with more than one object the script prints the first step (and its noise level) from
which the prediction's object count is the final one (for failing and for one-object clips: when
the outcome is settled), and the first frame of the final clip with more than one whole detection.
Then, with ``--variants``, the same prompts again under other sampling settings, to compare
one-object counts: ``shift=S``, ``cfg=C``, ``steps=N``, ``sampler=NAME``, ``cfg_high=C@S`` (guidance scale C where the
noise level is above S, the default below), ``negative=dup`` (the asked object said twice as the
negative prompt), ``auto=DIR@W`` (guidance by a weaker model: ``W (x0_c - x0_weak_c)`` added, the weak
DiT from model folder DIR, e.g. an earlier checkpoint) or ``base`` (the defaults), separated by ``;``.

    python benchmarks/where_copies_appear.py --count 40 --seed 21
    python benchmarks/where_copies_appear.py --count 60 --seed 21 --no-trace --variants "base;shift=6;cfg_high=8@0.7"
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import sora_core  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))


def _count(frames: np.ndarray, fps: float) -> int:
    from sora_core.world.captioner import analyze
    return analyze(frames, fps).most_at_once()


def trace(model, prompt: str, seed: int) -> dict:
    """Objects seen in the x0 prediction of every step and in the final clip, per frame."""
    from sora_core.media.video_io import tensor_to_frames
    from sora_core.pipeline import decode_latents, generate
    from sora_core.world.captioner import analyze
    preds = []

    def keep(info):
        preds.append((float(torch.as_tensor(info["sigma"]).max()), info["denoised"].detach().clone()))
    result = generate(model, prompt, seed=seed, callback=keep)
    fps = model.defaults.fps
    counts = []
    for sigma, x0 in preds:
        counts.append((sigma, _count(tensor_to_frames(decode_latents(model, x0)[0]), fps)))
    final = tensor_to_frames(result.video)
    a = analyze(final, fps)
    per_frame = [sum(not d.partial for d in dets) for dets in a.detections]
    return {"steps": counts, "final": a.most_at_once(), "per_frame": per_frame}


def settled(counts: list[tuple[float, int]], final: int) -> int:
    """The first step index from which every prediction holds the final count."""
    i = len(counts)
    while i > 0 and counts[i - 1][1] == final:
        i -= 1
    return i


def high_noise_cfg(scale_high: float, above: float):
    """A cfg_denoiser using guidance scale ``scale_high`` where the (largest per-frame) noise level is
    above ``above`` and the run's scale below."""
    from sora_core.diffusion import flow
    plain = flow.cfg_denoiser

    def cfg_denoiser(denoiser, cond, uncond, scale, batched=True):
        low, high = plain(denoiser, cond, uncond, scale, batched), plain(denoiser, cond, uncond, scale_high, batched)

        def d(x, sigma):
            return high(x, sigma) if float(torch.as_tensor(sigma).max()) > above else low(x, sigma)
        return d
    return cfg_denoiser


def auto_guided_cfg(weak_dir: str, weight: float):
    """A cfg_denoiser that adds ``weight (x0_c - x0_weak_c)`` to classifier-free guidance, where
    x0_weak_c is the conditional prediction of a weaker model (another DiT of the same model folder
    layout, e.g. an earlier checkpoint): guidance by a bad version of the model itself."""
    from sora_core.diffusion import flow
    from sora_core.pipeline import SoraModel
    weak_dit = SoraModel.open(weak_dir).dit

    def cfg_denoiser(denoiser, cond, uncond, scale, batched=True):
        flow.check_cfg(scale)
        weak = flow.FlowDenoiser(weak_dit, denoiser.autocast_dtype)

        def d(x, sigma):
            x0_c, x0_u = denoiser(x, sigma, cond), denoiser(x, sigma, uncond)
            return x0_u + scale * (x0_c - x0_u) + weight * (x0_c - weak(x, sigma, cond))
        return d
    return cfg_denoiser


def parse_variant(text: str) -> tuple[dict, object]:
    """"shift=6" -> ({"shift": 6.0}, None); "cfg_high=8@0.7" -> ({}, a patched cfg_denoiser)."""
    kwargs, patch = {}, None
    for part in filter(None, (t.strip() for t in text.split(","))):
        if part == "base":
            continue
        key, value = part.split("=")
        if key == "cfg_high":
            c, above = value.split("@")
            patch = high_noise_cfg(float(c), float(above))
        elif key == "auto":
            weak, w = value.split("@")
            patch = auto_guided_cfg(weak, float(w))
        elif key == "negative" and value == "dup":
            kwargs["negative"] = "dup"
        elif key == "sampler":
            kwargs[key] = value
        elif key in ("shift", "cfg"):
            kwargs[key] = float(value)
        elif key == "steps":
            kwargs[key] = int(value)
        else:
            raise SystemExit(f"--variants: unknown setting {key!r} (shift, cfg, steps, sampler, cfg_high, "
                             "negative=dup, auto=DIR@W)")
    return kwargs, patch


def duplicated_caption(prompt: str) -> str:
    """The prompt's objects, each said twice ("a red ball moving left and a red ball moving left"): a
    negative prompt that steers guidance away from a copy of the asked object."""
    from sora_core.world import vocab as V
    from sora_core.world.captions import join_list
    from sora_core.world.prompt_parse import parse_prompt
    phrases = []
    for o in parse_prompt(prompt).objects:
        words = " ".join(w for w in (o.size, o.colour, V.SHAPE_NOUN.get(o.shape, o.shape)) if w)
        phrases += [f"a {words} {V.MOTION_PHRASE.get(o.motion, '')}".strip()] * 2
    return join_list(phrases)


def one_object_rate(model, entries, seed: int, kwargs: dict, expand: bool = False) -> dict[str, float]:
    """Means over the entries of the one-object count (objects at once), the tracked identities,
    colour, shape and motion. ``expand``: generate from the expanded caption (the prompt is scored)."""
    from sora_core.evaluation.evaluate import prompt_for_model, score_clip
    from sora_core.media.video_io import tensor_to_frames
    from sora_core.pipeline import generate
    names = ("count", "tracks", "colour", "shape", "motion")
    got: dict[str, list] = {k: [] for k in names}
    kwargs = dict(kwargs)
    dup = kwargs.pop("negative", None) == "dup"
    d = model.defaults
    for e in entries:
        prompt = prompt_for_model(e.prompt, seed, expand, d.width, d.height, d.frames, d.fps, e.line)
        negative = duplicated_caption(e.prompt) if dup else ""
        frames = tensor_to_frames(generate(model, prompt, negative, seed=seed, **kwargs).video)
        m = score_clip(frames, d.fps, e, "x").metrics
        for k in names:
            got[k].append(m[k])
    return {k: float(np.mean(v)) for k, v in got.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=40)
    p.add_argument("--seed", type=int, default=21, help="seed of the world-single prompt sample")
    p.add_argument("--noise-seed", type=int, default=0)
    p.add_argument("--model", default=None)
    p.add_argument("--variants", default="", help='sampling settings to compare, e.g. "base;shift=6;cfg_high=8@0.7"')
    p.add_argument("--no-trace", action="store_true", help="skip the per-step trace")
    p.add_argument("--prompt-set", default="world-single", choices=("world-single", "paraphrase"))
    p.add_argument("--expand", action="store_true", help="variants generate from the expanded captions")
    args = p.parse_args(argv)
    from sora_core.evaluation.evaluate import model_prompt_set
    from sora_core.pipeline import SoraModel
    torch.set_grad_enabled(False)
    model = SoraModel.open(args.model) if args.model else SoraModel.default()
    entries = model_prompt_set(model, args.prompt_set, args.count, args.seed)
    if not args.no_trace:
        rows = {True: [], False: []}        # failing (more than one object) or not: settled step, sigma
        frames_at = []
        for e in entries:
            t = trace(model, e.prompt, args.noise_seed)
            i = settled(t["steps"], t["final"])
            sigma = t["steps"][min(i, len(t["steps"]) - 1)][0]
            rows[t["final"] > 1].append((i, sigma))
            if t["final"] > 1:
                frames_at.append(next((k for k, n in enumerate(t["per_frame"]) if n > 1), None))
                print(f"{e.prompt!r}: {t['final']} objects, the count settled from step {i} (sigma {sigma:.3f}); "
                      f"per step {[n for _, n in t['steps']]}; first frame with two whole objects: "
                      f"{frames_at[-1]}", flush=True)
        for failing, name in ((True, "with unasked objects"), (False, "with one object")):
            r = rows[failing]
            if r:
                print(f"{len(r)} clips {name}: count settled from step {np.median([a for a, _ in r]):.0f} of 20 "
                      f"(median; sigma {np.median([b for _, b in r]):.3f})")
        seen = [f for f in frames_at if f is not None]
        print(f"first frame holding two whole objects, in the clips with unasked objects: "
              f"{sum(f == 0 for f in seen)} at frame 0, {sum(f > 0 for f in seen)} later, "
              f"{len(frames_at) - len(seen)} never (the copy only partly in view or merged)")
    from sora_core import pipeline as pipeline_mod
    for text in filter(None, (v.strip() for v in args.variants.split(";"))):
        kwargs, patch = parse_variant(text)
        real = pipeline_mod.cfg_denoiser
        if patch is not None:
            pipeline_mod.cfg_denoiser = patch
        t0 = time.perf_counter()
        try:
            r = one_object_rate(model, entries, args.noise_seed, kwargs, args.expand)
        finally:
            pipeline_mod.cfg_denoiser = real
        print(f"{text}: one object {r['count']:.0%} (identities {r['tracks']:.0%}), colour {r['colour']:.0%}, "
              f"shape {r['shape']:.0%}, motion {r['motion']:.0%} "
              f"({len(entries)} prompts, {time.perf_counter() - t0:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
