"""Where does a model lose a box's corners? Render world clips of one box, encode them, re-noise the
latents to a given sigma, sample back to sigma 0 with the box's short caption (SDEdit) and measure
how much of its bounding box the object fills (a rendered box: 1.0, a ball: 0.79; the captioner
reads a box from 0.89 up).

    python scripts/shape_probe.py                              # the shipped model
    python scripts/shape_probe.py --model runs/cand --sigmas 0.15,0.35,0.56,0.75
    python scripts/shape_probe.py --prompt-shape ball          # the same boxes, prompted as balls

Prints, per clip and on average: the fill of the render, of the VAE round trip, and of the
re-sampled clip from each sigma. The fill is the median over frames of the largest object
component's area over its bounding box (object pixels: brightest channel >= the world's object
level; components cut by the frame border are skipped).
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from sora_core.diffusion.flow import sigma_schedule
from sora_core.pipeline import SoraModel, decode_latents, encode_video, generate
from sora_core.media.video_io import frames_to_tensor, tensor_to_frames
from sora_core.world.captions import short_caption
from sora_core.world.metrics import object_masks
from sora_core.world.render import render
from sora_core.world.scene import sample_scene


def fill(frames: np.ndarray) -> float:
    """Median over frames of the largest object component's area over its bounding box."""
    values = []
    for m in object_masks(frames):
        n, _, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8))
        if n < 2:
            continue
        x, y, w, h, a = stats[1 + stats[1:, 4].argmax()]
        if x == 0 or y == 0 or x + w >= m.shape[1] or y + h >= m.shape[0] or a < 12:
            continue
        values.append(a / (w * h))
    return float(np.median(values)) if values else float("nan")


def denoise_for_sigma(sigma: float, shift: float) -> float:
    """The SDEdit strength whose first (shifted) sigma is ``sigma``: the inverse of the resolution shift."""
    return sigma / (shift - (shift - 1.0) * sigma)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    ap.add_argument("--sigmas", default="0.15,0.35,0.56,0.75,0.875,0.96", help="start sigmas of the re-sampling")
    ap.add_argument("--clips", type=int, default=10, help="box clips (64x64, 17 frames)")
    ap.add_argument("--prompt-shape", default="box", help="shape word of the prompt (box, ball, triangle)")
    ap.add_argument("--seed", type=int, default=1000, help="first scene seed")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = SoraModel.load(args.model) if args.model else SoraModel.default()
    sigmas = [float(s) for s in args.sigmas.split(",")]
    shift = model.schedule.shift
    specs, s = [], args.seed
    while len(specs) < args.clips:
        spec = sample_scene(s, width=64, height=64, frames=17, fps=8.0, n_objects=1)
        s += 1
        if spec.objects[0].shape == "square":
            specs.append(spec)
    rows = []
    for spec in specs:
        frames = render(spec)
        prompt = short_caption(spec).replace("box", args.prompt_shape)
        z = encode_video(model, frames_to_tensor(frames)[None])
        row = [fill(frames), fill(tensor_to_frames(decode_latents(model, z, torch.bfloat16)[0]))]
        for sigma in sigmas:
            d = denoise_for_sigma(sigma, shift)
            assert abs(float(sigma_schedule(model.schedule.steps, shift, d)[0]) - sigma) < 1e-4
            row.append(fill(tensor_to_frames(generate(model, prompt, init_latent=z, denoise=d, seed=0).video)))
        rows.append(row)
        print(f"{prompt:50s} " + " ".join(f"{v:.3f}" for v in row))
    mean = np.nanmean(np.array(rows), axis=0)
    head = ["render", "vae"] + [f"s={v:g}" for v in sigmas]
    print("mean fill: " + ", ".join(f"{h} {v:.3f}" for h, v in zip(head, mean)))


if __name__ == "__main__":
    main()
