"""Time ``generate`` for the README's default clip, stage by stage (text, sampling, decode).

    python benchmarks/bench_generate.py                      # shipped default model (or random default presets)
    python benchmarks/bench_generate.py --model DIR --steps 20 --frames 17 --height 64 --width 64

Prints wall and CPU seconds for fp32 and bf16 autocast, and the load average (the machine is shared:
figures taken under load are slower than the hardware allows).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sora_core.configs import ScheduleConfig, dit_preset, text_encoder_preset, vae_preset  # noqa: E402
from sora_core.pipeline import (GenerationDefaults, ModelMissingError, SoraModel, decode_latents,  # noqa: E402
                                encode_prompts, make_noise_grid, sample_latents)
from sora_core.diffusion.flow import sigma_schedule  # noqa: E402


def load_model(folder: str | None) -> tuple[SoraModel, str]:
    if folder:
        return SoraModel.load(folder), folder
    try:
        return SoraModel.default(), "shipped default model"
    except ModelMissingError:
        from sora_core.models.dit import DiT
        from sora_core.models.text import ByteTextEncoder
        from sora_core.models.vae import VideoVAE
        torch.manual_seed(0)
        model = SoraModel(VideoVAE(vae_preset("default")), ByteTextEncoder(text_encoder_preset("default")),
                          DiT(dit_preset("default")), ScheduleConfig(), GenerationDefaults())
        return model, "random weights, default presets (no shipped model yet)"


class Clock:
    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run_once(model: SoraModel, args, dtype) -> dict:
    geometry = model.geometry(args.frames, args.height, args.width)
    steps, cfg = args.steps or model.schedule.steps, model.schedule.cfg if args.cfg is None else args.cfg
    with Clock() as t_text:
        cond, uncond = encode_prompts(model, "a red ball bouncing on a blue background", "", cfg)
    noise = make_noise_grid(model, geometry, torch.Generator().manual_seed(0))
    with Clock() as t_sample:
        z = sample_latents(model, noise, cond, uncond, sigmas=sigma_schedule(steps, model.schedule.shift), cfg=cfg,
                           sampler=model.schedule.sampler, autocast_dtype=dtype)
    with Clock() as t_decode:
        decode_latents(model, z, dtype)
    return {"text": t_text, "sample": t_sample, "decode": t_decode, "steps": steps, "cfg": cfg,
            "tokens": geometry.tokens}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None)
    p.add_argument("--frames", type=int, default=17)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--cfg", type=float, default=None)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    model, origin = load_model(args.model)
    print(f"model: {origin}; {args.frames}x{args.height}x{args.width}; threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f}")
    for name, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        run_once(model, argparse.Namespace(**{**vars(args), "steps": 1}), dtype)      # warm-up
        r = run_once(model, args, dtype)
        total = sum(r[k].wall for k in ("text", "sample", "decode"))
        print(f"{name}: total {total:.2f} s = text {r['text'].wall:.2f} + sampling {r['sample'].wall:.2f} "
              f"({r['steps']} steps, cfg {r['cfg']:g}, {r['tokens']} tokens, "
              f"{r['sample'].wall / r['steps']:.3f} s/step) + decode {r['decode'].wall:.2f} s; "
              f"cpu {r['sample'].cpu + r['decode'].cpu + r['text'].cpu:.2f} s")
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
