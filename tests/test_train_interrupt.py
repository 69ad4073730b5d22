"""Training runs that are stopped (signals, kill -9 mid-save) or asked for the impossible: the last
complete checkpoint survives, temp files of a killed process are removed on the next start, and bad
options are refused before any model is built."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sora_core.cli.train import main
from sora_core.media.files import temp_pattern
from sora_core.train.common import Stopper, load_checkpoint
from sora_core.train.loop import CHECKPOINT
from sora_core.train.presets import train_preset
from sora_core.train.text_trainer import TextTrainer

ROOT = Path(__file__).resolve().parents[1]
TINY = ["text", "--preset", "tiny", "--no-progress"]

# A `sora train` process whose checkpoint writer dies (SIGKILL) half-way through its first save.
DIE_IN_SAVE = """
import os, signal, sys
import sora_core.train.common as common
def dying_save(tensors, path, metadata=None):
    with open(path, "wb") as f:
        f.write(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
common.save_file = dying_save
from sora_core.cli.train import main
main(sys.argv[1:])
"""


def _temps(run: Path) -> list[str]:
    return [n for n in os.listdir(run) if temp_pattern(CHECKPOINT).match(n)]


def test_kill_during_a_checkpoint_save_keeps_the_last_one_and_resume_cleans_up(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run), "--steps", "4", "--until", "2"]) == 0
    good = load_checkpoint(run / CHECKPOINT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-c", DIE_IN_SAVE, *TINY, "--out", str(run), "--resume", "--steps", "4"],
                          capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(_temps(run)) == 1                                  # the half-written temp file is left...
    assert load_checkpoint(run / CHECKPOINT)["step"] == good["step"] == 2   # ...the checkpoint is intact
    capsys.readouterr()
    assert main([*TINY, "--out", str(run), "--resume", "--steps", "4"]) == 0
    assert "removed 1 temp file" in capsys.readouterr().err
    assert _temps(run) == [] and load_checkpoint(run / CHECKPOINT)["step"] == 4


def test_a_second_signal_stops_at_once_the_first_at_the_next_step():
    stopper = Stopper()
    try:
        assert not stopper.should_stop()
        signal.raise_signal(signal.SIGTERM)
        assert stopper.should_stop()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
    finally:
        stopper.close()


class _SignalledTrainer(TextTrainer):
    """SIGTERM arrives during the step ``signal_at`` (0-based)."""

    signal_at = 1

    def train_step(self, step):
        if step == self.signal_at:
            signal.raise_signal(signal.SIGTERM)
        return super().train_step(step)


def test_sigterm_in_training_saves_a_checkpoint_and_a_second_keeps_the_last_complete_one(tmp_path, monkeypatch):
    import sora_core.train.common as common
    preset = train_preset("text", "tiny")
    first = _SignalledTrainer(preset, tmp_path / "a", progress=False)
    summary = first.fit(steps=4)
    assert summary["stopped_early"] and load_checkpoint(tmp_path / "a" / CHECKPOINT)["step"] == 2

    real_save = common.save_file

    def save_then_signal(tensors, path, metadata=None):        # a second SIGTERM mid-save
        real_save(tensors, path, metadata=metadata)
        signal.raise_signal(signal.SIGTERM)
    monkeypatch.setattr(common, "save_file", save_then_signal)
    second = _SignalledTrainer(preset, tmp_path / "a", resume=True, progress=False)
    second.signal_at = 2
    with pytest.raises(KeyboardInterrupt):
        second.fit(steps=4)
    assert second.step == 3 and load_checkpoint(tmp_path / "a" / CHECKPOINT)["step"] == 2
    assert _temps(tmp_path / "a") == []


# ---------------------------------------------------------------------------------------------
# Refused before training
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--hours", "nan"), ("--hours", "inf"), ("--hours", "-1"),
                                           ("--hours", "1e308"), ("--threads", "-1"), ("--threads", "0"),
                                           ("--steps", "0"), ("--until", "-3"), ("--seed", "-1")])
def test_bad_numbers_are_refused_naming_the_option(tmp_path, capsys, option, value):
    assert main([*TINY, "--out", str(tmp_path / "r"), option, value]) == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_device_cuda_without_a_gpu_is_refused_before_training(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    assert main([*TINY, "--out", str(tmp_path / "r"), "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_export_into_a_folder_with_weights_fails_before_training(tmp_path, capsys):
    export = tmp_path / "export"
    export.mkdir()
    (export / "text_encoder.safetensors").write_bytes(b"earlier weights")
    assert main([*TINY, "--out", str(tmp_path / "r"), "--steps", "1", "--export", str(export)]) == 2
    err = capsys.readouterr().err
    assert str(export) in err and "text_encoder.safetensors" in err and "new folder" in err
    assert not (tmp_path / "r").exists()                      # nothing trained
    assert (export / "text_encoder.safetensors").read_bytes() == b"earlier weights"
    (export / "text_encoder.safetensors").unlink()
    (export / "vae.safetensors").write_bytes(b"other weights")    # other stages' files do not collide
    assert main([*TINY, "--out", str(tmp_path / "r"), "--steps", "1", "--export", str(export)]) == 0
    assert (export / "text_encoder.safetensors").is_file()


def test_export_and_out_must_be_usable_folders(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main([*TINY, "--out", str(tmp_path / "file" / "r"), "--steps", "1"]) == 2
    assert main([*TINY, "--out", str(tmp_path / "r"), "--steps", "1", "--export", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err.count("not a folder") == 2
    assert not (tmp_path / "r").exists()


def test_resume_below_the_finished_step_is_an_error(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run), "--steps", "4", "--until", "3"]) == 0
    log = (run / "log.jsonl").read_text()
    for args in (["--steps", "2"], ["--steps", "4", "--until", "1"]):
        capsys.readouterr()
        assert main([*TINY, "--out", str(run), "--resume", *args]) == 2
        err = capsys.readouterr().err
        assert "already finished step 3" in err and "must be > 3" in err and args[-2] in err
    assert load_checkpoint(run / CHECKPOINT)["step"] == 3 and (run / "log.jsonl").read_text() == log
    assert main([*TINY, "--out", str(run), "--resume", "--steps", "4", "--until", "3"]) == 0   # = : nothing to do
    assert "nothing to train" in capsys.readouterr().err


def test_a_damaged_checkpoint_is_reported_by_name_on_resume(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TINY, "--out", str(run), "--steps", "2", "--until", "1"]) == 0
    data = (run / CHECKPOINT).read_bytes()
    (run / CHECKPOINT).write_bytes(data[: len(data) // 2])          # a half-copied checkpoint
    assert main([*TINY, "--out", str(run), "--resume"]) == 2
    assert str(run / CHECKPOINT) in capsys.readouterr().err
    assert json.loads((run / "run.json").read_text())["stage"] == "text"


def test_latent_cache_removes_a_killed_savers_temp_and_ignores_a_damaged_file(tmp_path, capsys):
    import torch

    from sora_core.media.files import _host_tag
    from sora_core.train.latent_cache import LatentCache
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout)
    orphan = tmp_path / f".latent_cache.r0.{dead}-{_host_tag()}-abcd1234.tmp.safetensors"
    orphan.write_bytes(b"half")
    cache = LatentCache(tmp_path / "latent_cache.r0.safetensors", "vae1", save_interval_s=0.0)
    assert not orphan.exists()
    cache.get_or_encode([(0, 1)], lambda key: torch.ones(2, 1, 2, 2))
    cache.save()
    data = (tmp_path / "latent_cache.r0.safetensors").read_bytes()
    assert len(LatentCache(tmp_path / "latent_cache.r0.safetensors", "vae1")) == 1
    (tmp_path / "latent_cache.r0.safetensors").write_bytes(data[: len(data) - 8])
    assert len(LatentCache(tmp_path / "latent_cache.r0.safetensors", "vae1")) == 0
    assert "damaged cache" in capsys.readouterr().err
