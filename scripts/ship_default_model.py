"""Install trained weights as the pack's shipped default model (``sora_core/default_model/``).

    python scripts/ship_default_model.py --vae runs/vae/export/vae.safetensors --dit runs/dit/export

The VAE is stored in float32 (its decoder sets the output quality); the DiT and the text encoder in
bfloat16 (half the size; loading copies them into float32 modules). Refuses a DiT trained on another
VAE's latent space, and a total over the size budget. Each file is written atomically; the previous
files are replaced only once all three new ones load.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sora_core.train.shared import encoder_id  # noqa: E402
from sora_core.configs import from_json, to_json  # noqa: E402
from sora_core.pipeline import SCHEDULE_KEY  # noqa: E402
from sora_core.diffusion.samplers import SAMPLERS  # noqa: E402
from sora_core.weights import load_component, read_metadata, save_component  # noqa: E402

BUDGET_MB = 50.0
KEEP = ("train_stage", "train_preset", "train_steps", "eval_psnr", "encoder_id", "vae_id")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="exported vae.safetensors")
    p.add_argument("--dit", required=True, help="folder with the exported dit.safetensors and text_encoder.safetensors")
    p.add_argument("--out", default=str(ROOT / "sora_core" / "default_model"), help="target folder")
    p.add_argument("--cfg", type=float, default=None,
                   help="default guidance scale shipped in the DiT's sampling schedule (default: the training "
                        "preset's); choose it on prompts the evaluation does not use")
    p.add_argument("--sampler", default=None, choices=sorted(SAMPLERS),
                   help="default sampler shipped in the schedule (default: the training preset's)")
    p.add_argument("--shift", type=float, default=None,
                   help="default resolution shift of the sigma schedule (default: the training preset's)")
    args = p.parse_args(argv)
    if args.cfg is not None and not 1.0 <= args.cfg <= 30.0:
        p.error(f"--cfg={args.cfg} must be in [1, 30]")
    if args.shift is not None and not 0.1 <= args.shift <= 20.0:
        p.error(f"--shift={args.shift} must be in [0.1, 20]")
    chosen = {k: v for k, v in (("cfg", args.cfg), ("sampler", args.sampler), ("shift", args.shift)) if v is not None}

    vae_path, dit_dir, out = Path(args.vae), Path(args.dit), Path(args.out)
    sources = {"vae": vae_path, "dit": dit_dir / "dit.safetensors", "text_encoder": dit_dir / "text_encoder.safetensors"}
    missing = [str(s) for s in sources.values() if not s.is_file()]
    if missing:
        p.error(f"missing weight files: {', '.join(missing)}")
    vae, vae_cfg = load_component(sources["vae"], kind="vae")
    dit_meta = read_metadata(sources["dit"])
    if dit_meta.get("vae_id") != encoder_id(vae):
        p.error(f"{sources['dit']} was trained on the latent space of VAE encoder {dit_meta.get('vae_id')}, "
                f"but {vae_path} has encoder {encoder_id(vae)}")

    staged = out / ".staging"
    written = []
    for kind, dtype in (("vae", None), ("dit", torch.bfloat16), ("text_encoder", torch.bfloat16)):
        module, cfg = (vae, vae_cfg) if kind == "vae" else load_component(sources[kind], kind=kind)
        src_meta = read_metadata(sources[kind])
        # provenance and the sampling metadata (sora.schedule, ...); save_component writes config and format
        meta = {k: v for k, v in src_meta.items()
                if k in KEEP or k.startswith("sora.") and k not in ("sora.config", "sora.format")}
        if kind == "dit" and chosen:
            schedule = dataclasses.replace(from_json(meta[SCHEDULE_KEY]), **chosen)
            meta[SCHEDULE_KEY] = to_json(schedule)
        written.append(save_component(staged / f"{kind}.safetensors", module, cfg, metadata=meta, dtype=dtype))
    total = sum(f.stat().st_size for f in written) / 2 ** 20
    if total > BUDGET_MB:
        for f in written:
            f.unlink()
        staged.rmdir()
        p.error(f"the three files take {total:.1f} MB, over the {BUDGET_MB:.0f} MB budget")
    for f in written:                                   # every staged file must load before any is replaced
        load_component(f)
    for f in written:
        f.replace(out / f.name)
    staged.rmdir()
    for f in written:
        print(f"{out / f.name}: {(out / f.name).stat().st_size / 2 ** 20:.1f} MB")
    print(f"total {total:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
