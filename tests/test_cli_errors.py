"""The command line's shared checks (numbers, devices, output folders) in every subcommand, and SIGTERM:
stopped like Ctrl-C, exit code 143, no temp file left behind."""

import math
import os
import signal
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest
import torch

from comfyui_sora.headless.cli import main
from conftest import tiny_sora_model
from sora_core.cli import CLIError, EXIT_TERMINATED, check_device, check_range, check_writable_folder, sigterm_as_interrupt

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "text_to_video.json"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from sora_core.configs import ScheduleConfig
    from sora_core.pipeline import GenerationDefaults
    folder = tmp_path_factory.mktemp("model")
    tiny_sora_model(ScheduleConfig(steps=2, cfg=2.0), GenerationDefaults(frames=5, height=16, width=16, fps=8.0)).save(folder)
    return folder


# ---------------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("value,match", [(math.nan, r"must be a finite number in \[0, 100\], got --cfg=nan"),
                                         (math.inf, "must be a finite number in"),
                                         (-1.0, "must be >= 0"), (101.0, "must be <= 100")])
def test_check_range_names_the_option(value, match):
    with pytest.raises(CLIError, match=f"--cfg {match}"):
        check_range("cfg", value, 0.0, 100.0)
    check_range("cfg", None, 0.0, 100.0)
    check_range("cfg", 100.0, 0.0, 100.0)
    with pytest.raises(CLIError, match=r"--shift must be > 0 \(allowed: \(0, 100\]\)"):
        check_range("shift", 0.0, 0.0, 100.0, lo_open=True)


def test_check_device_lists_what_exists():
    check_device("cpu")
    check_device("auto", extra=("auto",))
    expected = "cpu" if not torch.cuda.is_available() else "cuda:0"
    for bad in ("bogus", "cuda:99", "cpu:x"):
        with pytest.raises(CLIError, match=f"--device {bad!r} is not available here.*available: .*{expected}"):
            check_device(bad)


def test_check_writable_folder(tmp_path):
    check_writable_folder(tmp_path / "not" / "yet", "out")        # made later, under a writable folder
    assert list(tmp_path.iterdir()) == []                       # the probe is gone
    (tmp_path / "file").write_text("x")
    with pytest.raises(CLIError, match="--out: .*file is a file, not a folder"):
        check_writable_folder(tmp_path / "file" / "sub", "out")
    with pytest.raises(CLIError, match="--out: cannot write into the folder /proc"):
        check_writable_folder("/proc/sub", "out")


# ---------------------------------------------------------------------------------------------
# sora eval and sora run
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra,match", [
    (["--cfg", "nan"], "--cfg must be a finite number"),
    (["--shift", "inf"], "--shift must be a finite number"),
    (["--strengths", "0.5,nan"], "--strengths: 'nan' is not a number in (0, 1]"),
    (["--device", "bogus"], "--device 'bogus' is not available here"),
    (["--out", "/proc/report"], "--out: cannot write into the folder /proc"),
])
def test_eval_refuses_before_loading(tmp_path, model_dir, capsys, extra, match):
    argv = ["eval", "--generate", "--prompt-set", "world-single", "--count", "1", "--model", str(model_dir),
            "--out", str(tmp_path / "report"), *extra]
    assert main(argv) == 2
    assert match in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_eval_names_a_file_given_as_model(tmp_path, capsys):
    argv = ["eval", "--generate", "--prompt-set", "world-single", "--model", str(WORKFLOW),
            "--out", str(tmp_path / "r")]
    assert main(argv) == 2 and "is a file; --model takes a model folder" in capsys.readouterr().err


def test_run_refuses_unwritable_out_and_names_folders(tmp_path, capsys):
    assert main(["run", str(WORKFLOW), "--out", "/proc/outputs", "--quiet"]) == 2
    assert "--out: cannot write into the folder /proc" in capsys.readouterr().err
    assert main(["run", str(tmp_path), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "is a folder; give a workflow .json file" in capsys.readouterr().err
    assert main(["run", str(WORKFLOW), "--model", str(WORKFLOW), "--out", str(tmp_path / "o")]) == 2
    assert "is a file; --model takes a model folder" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# SIGTERM
# ---------------------------------------------------------------------------------------------

def test_sigterm_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is not before
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(10 ** 6):                           # the handler runs between bytecodes
                pass
    assert signal.getsignal(signal.SIGTERM) is before


def test_main_exits_143_on_sigterm(monkeypatch, capsys):
    def stopped(args):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(10 ** 6):
            pass
        raise AssertionError("SIGTERM did not interrupt")
    parser = types.SimpleNamespace(parse_args=lambda argv: types.SimpleNamespace(command="generate", func=stopped))
    monkeypatch.setattr("sora_core.cli.build_parser", lambda extra=(): parser)
    assert main([]) == EXIT_TERMINATED == 143
    assert "stopped by SIGTERM" in capsys.readouterr().err


CHILD = textwrap.dedent("""
    import sys, time
    import sora_core.media.video_io as video_io
    from comfyui_sora.headless.cli import main

    def slow_encode(tmp, *args, **kwargs):          # the temp file exists; SIGTERM arrives mid-write
        tmp.write_bytes(b"half a video")
        print("writing", flush=True)
        time.sleep(600)

    video_io._encode = slow_encode
    sys.exit(main(["generate", "a ball", "--out", sys.argv[1], "--model", sys.argv[2], "--seed", "0",
                   "--no-progress"]))
""")


def test_sigterm_during_generate_leaves_no_temp_file(tmp_path, model_dir):
    out = tmp_path / "out"
    out.mkdir()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(out / "clip.mp4"), str(model_dir)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
        (tmp,) = out.iterdir()
        assert tmp.name.startswith(".clip.") and ".tmp" in tmp.name
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 143, err
    assert "stopped by SIGTERM" in err
    assert list(out.iterdir()) == []
