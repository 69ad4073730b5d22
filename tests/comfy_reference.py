"""Run ComfyUI's own implementations (comfy/ldm/wan, comfy/text_encoders ...) as a reference for
parity tests, in ComfyUI's venv (torch 2.14.1 + its requirements; the project's venv has neither).

    out = run_reference(SCRIPT, {"x": x, "w.0": w}, tmp_path)      # {name: tensor}

``SCRIPT`` is Python run with the ComfyUI source tree on ``sys.path`` and ComfyUI set to the CPU; it
finds its input tensors in the dict ``inputs`` (loaded from a safetensors file) and puts its results
into the dict ``outputs`` (tensors), which come back. The source tree and the Python are found as for
the real server (tests/comfyui_server.py: SORA_COMFYUI_SRC, SORA_COMFYUI_PYTHON); ``reference_or_skip``
skips the test where they are absent, unless SORA_REQUIRE_COMFYUI=1 (CI), where it fails.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_server import ComfyUIUnavailable, _source_and_python

PRELUDE = textwrap.dedent("""
    import sys
    sys.path.insert(0, {src!r})
    import comfy.options
    comfy.options.enable_args_parsing()
    sys.argv = ["reference", "--cpu"]
    import comfy.cli_args
    import torch
    from safetensors.torch import load_file, save_file
    torch.manual_seed(0)
    inputs = load_file({inp!r})
    outputs = {{}}
""")
EPILOGUE = textwrap.dedent("""
    save_file({{k: v.detach().contiguous().cpu() for k, v in outputs.items()}}, {out!r})
""")


def reference_or_skip() -> tuple[Path, Path]:
    """(ComfyUI source tree, its Python); skips (or fails under SORA_REQUIRE_COMFYUI=1) without them."""
    try:
        return _source_and_python()
    except ComfyUIUnavailable as e:
        if os.environ.get("SORA_REQUIRE_COMFYUI", "") == "1":
            pytest.fail(f"SORA_REQUIRE_COMFYUI=1 but ComfyUI's reference code cannot run: {e}")
        pytest.skip(str(e))


def run_reference(script: str, inputs: dict[str, torch.Tensor], workdir: Path, timeout: float = 600) -> dict:
    """Run ``script`` with ComfyUI's code and ``inputs``; return its ``outputs`` (tensors)."""
    src, python = reference_or_skip()
    workdir.mkdir(parents=True, exist_ok=True)
    inp, out = workdir / "reference_in.safetensors", workdir / "reference_out.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in inputs.items()}, str(inp))
    code = PRELUDE.format(src=str(src), inp=str(inp)) + textwrap.dedent(script) + EPILOGUE.format(out=str(out))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    run = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=timeout,
                         cwd=workdir, env=env)
    if run.returncode != 0:
        raise AssertionError(f"ComfyUI reference script failed:\n{run.stderr[-4000:]}")
    return load_file(str(out))
