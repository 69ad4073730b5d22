"""The training loop both stages share: LR schedule, backward, EMA, logging, evaluation, atomic
checkpoints, exact resume and DDP. A stage subclasses ``StageTrainer`` and defines the loss."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from .common import (EMA, DistEnv, JsonlLog, Stopper, atomic_write_text, barrier, load_checkpoint, lr_at,
                     make_optimizer, mean_across_ranks, plot_loss, remove_run_temps, save_checkpoint, set_lr)
from .presets import preset_json

CHECKPOINT = "checkpoint.safetensors"
RUN_FILES = (CHECKPOINT, "loss.png", "run.json", "log.jsonl")   # what the loop writes into a run folder


def check_export_dir(out_dir: str | Path, names, overwrite: bool = False) -> Path:
    """Check (before training, and again at export) that the folder ``out_dir`` can take the weight
    files ``names``: it is not a file and holds none of them unless ``overwrite``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"--export {out_dir}: {out} is a file, not a folder")
    existing = [n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"--export {out_dir}: the folder {out} already holds {', '.join(existing)}; "
                              f"export into a new folder, or pass --overwrite to replace them")
    return out


def check_end(run_dir: Path, done: int, steps: int | None, until: int | None, preset_steps: int,
              quiet: bool = False) -> int:
    """The step a run that finished step ``done`` trains to (``until``, capped by the schedule of
    ``steps``, default ``preset_steps``); asking for one below ``done`` is an error, not a no-op."""
    total = int(steps or preset_steps)
    end = min(int(until or total), total)
    if end == done and done and not quiet:
        print(f"the run in {run_dir} already finished step {done}: nothing to train", file=sys.stderr)
    if end >= done:
        return end
    until = until if until and until <= total else None
    asked = (f"--until {until}" if until else f"--steps {steps}" if steps
             else f"the preset's schedule of {end} steps (no --steps given)")
    raise ValueError(f"{asked}: the run in {run_dir} already finished step {done}; {'--until' if until else '--steps'} "
                     f"must be > {done} to train further (or = {done} to only export)")


class StageTrainer:
    """Base class. Subclasses set ``self.module`` (the trainable nn.Module) in ``build`` and define
    ``loss(step) -> (loss tensor, metrics)``, ``evaluate(ema_module) -> metrics``, ``configs()``
    and ``export(dir, ema_module, overwrite)``."""

    stage = "base"
    export_names: tuple[str, ...] = ()         # the files ``export`` writes into its folder

    def __init__(self, preset, run_dir: str | Path, env: DistEnv | None = None, resume: bool = False,
                 progress: bool = True):
        self.preset, self.env = preset, env or DistEnv()
        self.run_dir = Path(run_dir)
        self.progress = progress and self.env.is_main
        self.step, self.wall_time = 0, 0.0
        ckpt_path = self.run_dir / CHECKPOINT
        if self.env.is_main:            # temp files of a process killed mid-write (kill -9, power loss)
            remove_run_temps(self.run_dir, RUN_FILES)
        if ckpt_path.exists() and not resume:
            raise FileExistsError(f"{self.run_dir} already holds a run ({CHECKPOINT}); pass --resume to continue "
                                  f"it or choose a new --out directory")
        if resume and not ckpt_path.exists():
            raise FileNotFoundError(f"--resume: no {CHECKPOINT} in {self.run_dir}")
        with torch.random.fork_rng():
            torch.manual_seed(preset.seed)          # the same initial weights on every rank
            self.build()
        self.module.to(self.env.device)
        o = preset.optim
        self.optimizer = make_optimizer(self.module, o.lr, o.weight_decay, o.betas)
        self.ema = EMA(self.module, o.ema_decay)
        if resume:
            self.load_state(load_checkpoint(ckpt_path))
        self.model = (DistributedDataParallel(self.module) if self.env.distributed else self.module)
        if self.env.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self._write_run_json()
        self.log = JsonlLog(self.run_dir / "log.jsonl", resume_step=self.step if resume else None) \
            if self.env.is_main else None
        barrier(self.env)

    # -- to be defined by a stage -------------------------------------------------------------------

    def build(self) -> None:
        raise NotImplementedError

    def loss(self, step: int) -> tuple[torch.Tensor, dict]:
        raise NotImplementedError

    def evaluate(self, ema_module: nn.Module) -> dict:
        return {}

    def configs(self) -> dict:
        """{component name: config} of the trainable module (checked on resume)."""
        raise NotImplementedError

    def export(self, out_dir: str | Path, overwrite: bool = False) -> list[Path]:
        raise NotImplementedError

    # -- state --------------------------------------------------------------------------------------

    def state(self) -> dict:
        from ..configs import to_json
        return {"stage": self.stage, "step": self.step, "wall_time": self.wall_time,
                "preset": preset_json(self.preset), "configs": {k: to_json(c) for k, c in self.configs().items()},
                "data": {"seed": self.preset.seed, "next_step": self.step},
                "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "ema": self.ema.state_dict()}

    def load_state(self, state: dict) -> None:
        from ..configs import to_json
        if state.get("stage") != self.stage:
            raise ValueError(f"the checkpoint is of stage {state.get('stage')!r}, not {self.stage!r}")
        mine = {k: to_json(c) for k, c in self.configs().items()}
        if state["configs"] != mine:
            raise ValueError(f"the checkpoint's model configs differ from preset {self.preset.name!r}: "
                             f"{state['configs']} vs {mine}")
        started = state.get("data", {}).get("seed", self.preset.seed)
        if started != self.preset.seed:
            raise ValueError(f"seed {self.preset.seed} differs from the seed {started} the checkpoint's run started "
                             f"with (data order, scene pool); resume it with --seed {started}")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.ema.load_state_dict(state["ema"])
        self.step, self.wall_time = int(state["step"]), float(state["wall_time"])

    def ema_module(self) -> nn.Module:
        """A copy of the trainable module holding the EMA weights (eval mode)."""
        import copy
        m = copy.deepcopy(self.module)
        self.ema.copy_to(m)
        return m.eval()

    def save(self) -> None:
        """Checkpoint (rank 0 writes atomically; every rank waits for it)."""
        if self.env.is_main:
            save_checkpoint(self.run_dir / CHECKPOINT, self.state())
            plot_loss(self.log.read(), self.run_dir / "loss.png", keys=self.plot_keys,
                      title=f"{self.stage} {self.preset.name}")
        barrier(self.env)

    plot_keys: tuple[str, ...] = ("loss",)

    def inputs(self) -> dict:
        """Weight files the run started from (recorded in run.json); none by default."""
        return {}

    def _write_run_json(self) -> None:
        info = {"stage": self.stage, "preset": json.loads(preset_json(self.preset)),
                "inputs": self.inputs(), "world_size": self.env.world_size}
        atomic_write_text(self.run_dir / "run.json", json.dumps(info, indent=1))

    # -- the loop -----------------------------------------------------------------------------------

    def train_step(self, step: int) -> dict:
        o = self.preset.optim
        set_lr(self.optimizer, lr_at(step, o.lr, o.warmup, self.total_steps, o.min_lr_ratio))
        self.model.train()
        loss, metrics = self.loss(step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o.grad_clip:
            metrics["grad_norm"] = float(nn.utils.clip_grad_norm_(self.module.parameters(), o.grad_clip))
        self.optimizer.step()
        self.ema.update(self.module)
        return {"loss": float(loss.detach()), **metrics}

    def _stop_everywhere(self, stopper: Stopper) -> bool:
        flag = torch.tensor([1.0 if stopper.should_stop() else 0.0])
        if self.env.distributed:
            torch.distributed.all_reduce(flag)
        return bool(flag.item() > 0)

    def fit(self, steps: int | None = None, until: int | None = None, hours: float | None = None) -> dict:
        """Train to step ``until`` (default ``steps``) of a cosine schedule of ``steps`` total steps.

        Stops early (with a checkpoint) on SIGTERM/SIGINT or after ``hours``. Returns a summary.
        """
        loop = self.preset.loop
        if hours is not None and not (math.isfinite(hours) and hours > 0):
            raise ValueError(f"--hours={hours} must be a finite number > 0")
        self.total_steps = int(steps or loop.steps)
        end = check_end(self.run_dir, self.step, steps, until, loop.steps, quiet=not self.env.is_main)
        stopper = Stopper(hours)
        bar = tqdm(total=end, initial=self.step, disable=not self.progress, desc=f"train {self.stage}",
                   dynamic_ncols=True)
        acc: dict[str, list[float]] = {}
        t_last, last_logged = time.time(), self.step
        try:
            while self.step < end:
                t0 = time.time()
                metrics = self.train_step(self.step)
                self.step += 1
                self.wall_time += time.time() - t0
                for k, v in metrics.items():
                    acc.setdefault(k, []).append(v)
                bar.update(1)
                stop = self._stop_everywhere(stopper)
                if self.step % loop.log_every == 0 or self.step == end or stop:
                    rate = (self.step - last_logged) / max(1e-9, time.time() - t_last)
                    self._log({k: sum(v) / len(v) for k, v in acc.items()}, rate, bar)
                    acc, t_last, last_logged = {}, time.time(), self.step
                if loop.eval_every and self.step % loop.eval_every == 0:
                    self._evaluate()
                if self.step % loop.ckpt_every == 0 or self.step == end or stop:
                    self.save()
                if stop:
                    break
        finally:
            bar.close()
            stopper.close()
        return {"step": self.step, "wall_time": self.wall_time, "stopped_early": self.step < end}

    def _log(self, means: dict, rate: float, bar) -> None:
        means = mean_across_ranks(means, self.env)
        lr = self.optimizer.param_groups[0]["lr"]
        if self.env.is_main:
            self.log.write({"step": self.step, **{k: round(v, 6) for k, v in means.items()},
                            "lr": lr, "it_s": round(rate, 4), "wall_time": round(self.wall_time, 1)})
            bar.set_postfix(loss=f"{means['loss']:.4f}", lr=f"{lr:.2e}", it_s=f"{rate:.2f}")

    def _evaluate(self) -> None:
        if self.env.is_main:
            metrics = self.evaluate(self.ema_module())
            if metrics:
                self.log.write({"step": self.step, "eval": True, **metrics})
                tqdm.write(f"step {self.step}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()))
        barrier(self.env)
