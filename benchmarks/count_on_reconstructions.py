"""The object count and shape on the VAE's own reconstructions of world clips: what they can read at best.

Each scene of a prompt set is rendered (the ground truth), encoded and decoded by the model's VAE,
and both are read by the analytic captioner. A DiT that produced exactly the latent of a real clip
would be scored like the reconstruction, so its "exactly the asked objects" rate is the ceiling of
the text-to-video count. Printed per kind (ground truth / reconstruction): right, too few, too many,
counted two ways: every detection an object (the count before shades were merged) and objects as
``perception.objects_in_frame`` groups them (touching detections in neighbouring palette colours are
one object in two shades). Then, for one-object scenes, the shape read right per size and shape.

    python benchmarks/count_on_reconstructions.py --prompt-set world-single --count 200 --seed 57
    python benchmarks/count_on_reconstructions.py --prompt-set world --count 200 --seed 57
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
try:
    import sora_core  # noqa: F401
except ImportError:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt-set", default="world-single", choices=("world-single", "world"))
    p.add_argument("--count", type=int, default=200)
    p.add_argument("--seed", type=int, default=57)
    p.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    args = p.parse_args(argv)
    from sora_core.evaluation.evaluate import model_prompt_set
    from sora_core.media.video_io import frames_to_tensor, tensor_to_frames
    from sora_core.pipeline import SoraModel, decode_latents, encode_video
    from sora_core.world import metrics as M
    from sora_core.world.captioner import analyze, at_once
    from sora_core.world.perception import objects_in_frame
    from sora_core.world.render import render
    torch.set_grad_enabled(False)
    model = SoraModel.open(args.model) if args.model else SoraModel.default()
    d = model.defaults
    entries = model_prompt_set(model, args.prompt_set, args.count, args.seed)
    tally = {(k, w): [0, 0, 0] for k in ("ground truth", "reconstruction") for w in ("detections", "objects")}
    shapes = {}                                    # (size, shape) -> [scenes, right on truth, right on recon]
    t0 = time.perf_counter()
    for e in entries:
        truth = render(e.spec)
        recon = tensor_to_frames(decode_latents(model, encode_video(model, frames_to_tensor(truth)[None]))[0])
        want = len(e.spec.objects)
        row = shapes.setdefault((e.spec.objects[0].size, e.spec.objects[0].shape), [0, 0, 0]) if want == 1 else None
        if row is not None:
            row[0] += 1
        for i, (kind, frames) in enumerate((("ground truth", truth), ("reconstruction", recon))):
            a = analyze(frames, d.fps)
            if row is not None:
                row[1 + i] += M.prompt_adherence(a, e.spec).get("shape") == 1.0
            for way, per_frame in (("detections", [len(x) for x in a.detections]),
                                   ("objects", [objects_in_frame(x) for x in a.detections])):
                got = at_once(per_frame)
                tally[kind, way][0 if got == want else (1 if got < want else 2)] += 1
    print(f"{args.prompt_set} --seed {args.seed}, {len(entries)} scenes ({time.perf_counter() - t0:.0f} s)")
    print("| clips | counted as | right | too few | too many |")
    print("| --- | --- | --- | --- | --- |")
    for (kind, way), (right, few, many) in tally.items():
        n = len(entries)
        print(f"| {kind} | {way} | {right / n:.1%} | {few / n:.1%} | {many / n:.1%} |")
    if shapes:
        print("\n| one object | scenes | shape right, ground truth | shape right, reconstruction |")
        print("| --- | --- | --- | --- |")
        for (size, shape), (n, gt, rec) in sorted(shapes.items()):
            print(f"| {size} {shape} | {n} | {gt / n:.1%} | {rec / n:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
