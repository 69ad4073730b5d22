"""DiT speed: ours vs the reference ``diffusers.WanTransformer3DModel`` at the same configuration.

Prints, per token count (batch B, text length L): forward time in fp32 and in bf16 autocast, and the
time of one bf16-autocast training step (forward, MSE loss on the velocity, backward, fused AdamW
step: the same optimizer for both), for both models with random initialisation, with the ratio
reference / ours (> 1 = ours faster). The models run interleaved, best of N rounds.
It also prints both parameter counts (they must match: same structure) and the largest output
difference when ours runs with the reference's weights (a parity check of the structure).

    python benchmarks/bench_dit.py                       # preset "bench", 80 / 320 / 1280 tokens
    python benchmarks/bench_dit.py --tokens 320 --repeats 5
    python benchmarks/bench_dit.py --threads 1 --clock cpu  # steadier on a machine shared with other jobs

Models to time (``--models``, default ``ref ours``): ``ref`` diffusers' model, ``ours`` the DiT with its
fused CPU kernels, ``plain`` the same DiT on its plain reference modules (``set_kernels("plain")``),
``baseline`` the ``DiT`` of another copy of ``sora_core/models/dit.py`` given by ``--baseline`` (e.g. an
older commit's, for a before/after run in one interleaved measurement):

    git show HEAD~1:sora_core/dit.py > /tmp/dit_before.py
    python benchmarks/bench_dit.py --models ours baseline plain --baseline /tmp/dit_before.py \
        --tokens 320 --threads 1 --clock cpu --repeats 7

Ratios are printed as <model> / ours (> 1: ours faster). Needs diffusers (a benchmark-only
optional dependency) for ``ref`` and the parity line.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sora_core.configs import dit_preset  # noqa: E402
from sora_core.models.dit import DiT  # noqa: E402

# latent grids (T, H, W) giving 80 / 320 / 1280 tokens with patch 1x2x2
GRIDS = {80: (5, 8, 8), 320: (5, 16, 16), 1280: (5, 32, 32)}
MODELS = ("ref", "ours", "plain", "baseline")


# ---------------------------------------------------------------------------------------------
# Models and inputs
# ---------------------------------------------------------------------------------------------

def reference_model(cfg):
    from diffusers import WanTransformer3DModel
    return WanTransformer3DModel(
        patch_size=tuple(cfg.patch_size), num_attention_heads=cfg.num_heads, attention_head_dim=cfg.head_dim,
        in_channels=cfg.in_channels, out_channels=cfg.out_channels, text_dim=cfg.text_dim,
        freq_dim=cfg.freq_dim, ffn_dim=cfg.ffn_dim, num_layers=cfg.num_layers,
        cross_attn_norm=cfg.cross_attn_norm, eps=cfg.eps)


def baseline_class(path: str):
    """``DiT`` of another copy of sora_core/models/dit.py, imported as a module of the sora_core package (so
    its relative imports resolve to this tree's configs / patches / kernels)."""
    spec = importlib.util.spec_from_file_location("sora_core._bench_baseline_dit", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module.DiT


def build_models(cfg, names, baseline: str | None) -> dict:
    """name -> (model, is_ref), every model of ours holding the same weights."""
    torch.manual_seed(0)
    ours = DiT(cfg)
    models = {}
    for name in names:
        if name == "ref":
            models[name] = (reference_model(cfg), True)
        elif name == "ours":
            models[name] = (ours, False)
        else:
            model = DiT(cfg).set_kernels("plain") if name == "plain" else baseline_class(baseline)(cfg)
            model.load_state_dict(ours.state_dict())
            models[name] = (model, False)
    return models


def make_inputs(cfg, batch: int, grid, text_len: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cfg.in_channels, *grid, generator=g)
    t = torch.rand(batch, generator=g)
    ctx = torch.randn(batch, text_len, cfg.text_dim, generator=g)
    mask = torch.arange(text_len)[None] < torch.randint(text_len // 4, text_len + 1, (batch, 1), generator=g)
    target = torch.randn(x.shape, generator=g)
    return dict(x=x, t=t, ctx=ctx, mask=mask, target=target)


def run(model, inp: dict, is_ref: bool) -> torch.Tensor:
    if is_ref:   # the reference takes timesteps in [0, 1000] and attends to every text token
        return model(inp["x"], inp["t"] * 1000, inp["ctx"], return_dict=False)[0]
    return model(inp["x"], inp["t"], inp["ctx"], inp["mask"])


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

def timed(fns: dict, repeats: int, warmup: int = 1, clock=time.perf_counter) -> dict:
    """Best wall time in seconds of each ``fn()`` of ``fns`` over ``repeats`` rounds, the models
    interleaved round by round so that load from other processes on the (shared) machine falls on
    all of them alike; the minimum is the figure least disturbed by that load."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append(clock() - t0)
    return {name: min(ts) for name, ts in times.items()}


def forward_fn(model, inp, is_ref, bf16: bool):
    def fn():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            run(model, inp, is_ref)
    return fn


def train_step_fn(model, inp, is_ref):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)

    def fn():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            v = run(model, inp, is_ref)
        loss = torch.nn.functional.mse_loss(v.float(), inp["target"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return fn


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------

def parity(cfg, ref) -> float:
    """Largest |ours - reference| on one input with the reference's weights (all text tokens real)."""
    ours = DiT(cfg)
    ours.load_state_dict(ref.state_dict())
    inp = make_inputs(cfg, 2, GRIDS[80], 16, seed=1)
    inp["mask"] = None
    with torch.no_grad():
        return (run(ours, inp, False) - run(ref, inp, True)).abs().max().item()


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="bench")
    ap.add_argument("--tokens", type=int, nargs="+", default=[80, 320, 1280], choices=sorted(GRIDS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--text-len", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--models", nargs="+", default=["ref", "ours"], choices=MODELS,
                    help="models to time, interleaved (ratios are <model> / ours)")
    ap.add_argument("--baseline", default=None, help="another sora_core/models/dit.py, timed as model 'baseline'")
    ap.add_argument("--clock", choices=["wall", "cpu"], default="wall",
                    help="wall time, or CPU time of this process (steadier when other jobs load the machine)")
    args = ap.parse_args(argv)
    if ("baseline" in args.models) != (args.baseline is not None):
        ap.error("--baseline FILE and model 'baseline' in --models go together")
    if args.baseline is not None and not Path(args.baseline).is_file():
        ap.error(f"--baseline: no such file {args.baseline}")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = dit_preset(args.preset)
    models = build_models(cfg, args.models, args.baseline)
    print(f"preset {args.preset}: {cfg}")
    if "ref" in models:
        ref = models["ref"][0]
        n_ours, n_ref = (sum(p.numel() for p in m.parameters()) for m in (DiT(cfg), ref))
        print(f"parameters: ours {n_ours:,}  reference {n_ref:,}  ({'match' if n_ours == n_ref else 'MISMATCH'})")
        print(f"parity with reference weights (fp32): max |diff| = {parity(cfg, ref):.2e}")
    clock = time.perf_counter if args.clock == "wall" else time.process_time
    print(f"batch {args.batch}, text length {args.text_len}, threads {args.threads}, {args.clock} clock, "
          f"best of {args.repeats} interleaved rounds, load average {os.getloadavg()[0]:.1f}")
    print()
    names = list(models)
    others = [n for n in names if n != "ours"] if "ours" in models else []
    cols = [f"{n} (s)" for n in names] + [f"{n}/ours" for n in others]
    print("| tokens | grid | measure | " + " | ".join(cols) + " |")
    print("|" + "---|" * (3 + len(cols)))
    for n in args.tokens:
        inp = make_inputs(cfg, args.batch, GRIDS[n], args.text_len)
        rows = {
            "fwd fp32": {k: forward_fn(m, inp, r, False) for k, (m, r) in models.items()},
            "fwd bf16": {k: forward_fn(m, inp, r, True) for k, (m, r) in models.items()},
            "train step bf16": {k: train_step_fn(m, inp, r) for k, (m, r) in models.items()},
        }
        for measure, fns in rows.items():
            r = timed(fns, args.repeats, clock=clock)
            cells = [f"{r[k]:.3f}" for k in names] + [f"{r[k] / r['ours']:.2f}x" for k in others]
            print(f"| {n} | {'x'.join(map(str, GRIDS[n]))} | {measure} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
