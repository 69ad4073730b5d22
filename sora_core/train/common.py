"""What every training stage shares: distributed set-up, AdamW with warmup + cosine, EMA, bf16
autocast, atomic checkpoints (safetensors, no pickle) with exact resume, logging and the loss curve.

Exactness of ``--resume``: all randomness of step ``s`` on rank ``r`` comes from generators seeded by
``(seed, s, r)`` (see ``step_seed``), so a checkpoint only needs the model, optimizer, EMA and step;
the data order and the noise of every later step follow from them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch import nn

from ..media.files import atomic_write, remove_orphan_temps
from ..media.files import write_text as atomic_write_text


# ---------------------------------------------------------------------------------------------
# Seeds
# ---------------------------------------------------------------------------------------------

def step_seed(*keys: int) -> int:
    """A 63-bit seed mixed from integer keys, e.g. ``step_seed(seed, step, rank, stream)``."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def step_generator(*keys: int) -> torch.Generator:
    """A CPU ``torch.Generator`` seeded by ``step_seed(*keys)``."""
    return torch.Generator().manual_seed(step_seed(*keys))


# ---------------------------------------------------------------------------------------------
# Distributed (torchrun sets RANK / WORLD_SIZE / LOCAL_RANK)
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup_distributed(device: str = "auto") -> DistEnv:
    """Join the torchrun process group when launched by torchrun (gloo on CPU, nccl on GPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ValueError(f"--device {device!r} is not allowed; allowed: auto, cpu, cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: this torch build sees no CUDA GPU; use --device cpu (or auto)")
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistEnv(rank, world, local, device)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def mean_across_ranks(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Average scalar metrics over ranks (a no-op in a single process)."""
    if not env.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=env.device)
    dist.all_reduce(t)
    return {k: float(v) / env.world_size for k, v in zip(keys, t.tolist())}


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


# ---------------------------------------------------------------------------------------------
# Optimizer, learning rate, EMA, autocast
# ---------------------------------------------------------------------------------------------

def make_optimizer(module: nn.Module, lr: float, weight_decay: float,
                   betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW; matrices decay, vectors (norm gains, biases) do not. Parameter order is fixed by the module.

    The fused kernel (one pass over all tensors) when every parameter is float32 on a CPU or a CUDA
    device: on the CPU the per-tensor loop cost ~15% of a small model's step.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    fused = bool(params) and all(p.dtype == torch.float32 and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), fused=fused or None)


def lr_at(step: int, base_lr: float, warmup: int, total: int, min_ratio: float) -> float:
    """Linear warmup over ``warmup`` steps, then cosine decay to ``min_ratio * base_lr`` at ``total``."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * frac)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


class EMA:
    """Exponential moving average of a module's floating-point state (parameters and buffers).

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` so early weights are not frozen in.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = float(decay)
        self.updates = 0
        self.shadow = {k: v.detach().clone().float() for k, v in module.state_dict().items()
                       if v.is_floating_point()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].lerp_(v.detach().float(), 1.0 - d)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module`` (same structure as the tracked one)."""
        own = module.state_dict()
        for k, v in self.shadow.items():
            own[k].copy_(v.to(own[k].dtype))

    def state_dict(self) -> dict:
        return {"decay": self.decay, "updates": self.updates, "shadow": dict(self.shadow)}

    def load_state_dict(self, state: dict) -> None:
        missing = set(self.shadow) ^ set(state["shadow"])
        if missing:
            raise ValueError(f"EMA state does not match the model: differing keys {sorted(missing)[:5]}")
        self.decay, self.updates = float(state["decay"]), int(state["updates"])
        self.shadow = {k: v.float().clone() for k, v in state["shadow"].items()}


def autocast(device: str, enabled: bool):
    """bf16 autocast on CPU or CUDA when ``enabled``, else a no-op context."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# Checkpoints: nested state -> safetensors (tensors) + JSON skeleton in the metadata
# ---------------------------------------------------------------------------------------------

def _flatten(obj, tensors: dict, prefix: str):
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__t": key}
    if isinstance(obj, dict):
        return {"__d": [[k, _flatten(v, tensors, f"{prefix}.{k}")] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple": [_flatten(v, tensors, prefix) for v in obj]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, prefix) for v in obj]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"checkpoint value at {prefix!r} has unsupported type {type(obj).__name__}")


def _unflatten(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__t" in obj:
            return tensors[obj["__t"]]
        if "__d" in obj:
            return {k: _unflatten(v, tensors) for k, v in obj["__d"]}
        if "__tuple" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple"])
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write a nested state (dicts, lists, tensors, numbers, strings) atomically as safetensors
    (``files.atomic_write``: a crash mid-write leaves the previous checkpoint and at most a temp file
    that ``remove_orphan_temps`` recognises)."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _flatten(state, tensors, "")
    meta = {"sora_checkpoint": json.dumps(skeleton)}
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))


def checkpoint_step(path: str | Path) -> int:
    """The step a checkpoint was written at, read from its metadata only (no tensors)."""
    from safetensors import SafetensorError, safe_open

    from ..weights import check_safetensors
    path = check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            skeleton = json.loads((f.metadata() or {}).get("sora_checkpoint", "null"))
    except (SafetensorError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is damaged ({e}); restore a copy or start a new run") from None
    fields = dict(skeleton["__d"]) if isinstance(skeleton, dict) and "__d" in skeleton else {}
    if not isinstance(fields.get("step"), int):
        raise ValueError(f"{path} is not a training checkpoint of this project (no step in its metadata)")
    return fields["step"]


def load_checkpoint(path: str | Path) -> dict:
    """Read a state written by ``save_checkpoint``; a damaged file raises a ValueError naming it."""
    from safetensors import SafetensorError, safe_open

    from ..weights import check_safetensors
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    check_safetensors(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "sora_checkpoint" not in meta:
            raise ValueError(f"{path} is not a training checkpoint of this project (no 'sora_checkpoint' metadata)")
        return _unflatten(json.loads(meta["sora_checkpoint"]), load_file(str(path)))
    except SafetensorError as e:
        raise ValueError(f"checkpoint {path} is damaged ({e}); restore a copy or start a new run") from None


# ---------------------------------------------------------------------------------------------
# Logging, loss curve, stopping
# ---------------------------------------------------------------------------------------------

class JsonlLog:
    """Append-only JSON-lines log; on resume, lines past the resumed step are dropped."""

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        if resume_step is not None and self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines()
                    if ln.strip() and json.loads(ln).get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(ln + "\n" for ln in keep))
        elif resume_step is None and self.path.exists():
            self.path.unlink()

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()]


def plot_loss(records: list[dict], png: str | Path, keys: tuple[str, ...] = ("loss",), title: str = "") -> None:
    """Loss curves (log axis) from log records as a PNG, replaced atomically (opencv figures)."""
    import cv2

    from ..evaluation.figures import line_plot
    series = {}
    for k in keys:
        pts = [(r["step"], r[k]) for r in records if r.get(k) is not None]
        if len(pts) >= 2:
            series[k] = ([p[0] for p in pts], [p[1] for p in pts])
    if not series:
        return
    img = line_plot(series, title=title, xlabel="step", ylabel="loss", log_y=True)
    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)

    def write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), bgr):
            raise OSError(f"could not write the loss plot {png}")
    atomic_write(png, write)


def remove_run_temps(run_dir: str | Path, names) -> list[Path]:
    """Remove the temp files that a killed earlier process of this run left for ``names`` in
    ``run_dir`` (see ``files.remove_orphan_temps``), saying so on stderr."""
    removed = remove_orphan_temps(run_dir, names)
    if removed:
        import sys
        print(f"removed {len(removed)} temp file(s) an interrupted run left in {run_dir}: "
              f"{', '.join(p.name for p in removed)}", file=sys.stderr)
    return removed


class Stopper:
    """Stop at a step boundary on SIGTERM/SIGINT (after a checkpoint) or when a wall-time budget is spent.

    A second signal raises KeyboardInterrupt at once: the checkpoint being written, if any, is
    abandoned (its temp file removed) and the last complete one stays.
    """

    def __init__(self, hours: float | None = None):
        self.deadline = time.time() + hours * 3600 if hours else None
        self.signalled = False
        self._old = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:          # not the main thread
                pass

    def _handle(self, signum, frame):
        if self.signalled:
            raise KeyboardInterrupt
        self.signalled = True

    def should_stop(self) -> bool:
        return self.signalled or (self.deadline is not None and time.time() > self.deadline)

    def close(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
