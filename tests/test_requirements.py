"""The dependency lists: requirements.txt (read by ComfyUI's installers) equals pyproject.toml's, and
both carry the lower bounds the code needs."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_requirements_txt_equals_the_pyproject_dependencies():
    lines = [ln.strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines == _pyproject()["dependencies"]


def test_lower_bounds_the_code_needs():
    deps = dict(re.match(r"^([A-Za-z0-9_.-]+)(.*)$", d).groups() for d in _pyproject()["dependencies"])
    assert deps["torch"] == ">=2.4"                       # fused AdamW on the CPU (train/common.py)
    assert deps["kornia"] == ">=0.6"                      # kornia.metrics
    assert "cv2.imreadanimation" in (ROOT / "sora_core" / "media" / "video_io.py").read_text()
    assert deps["opencv-python"] == ">=4.11"              # ... which OpenCV added in 4.11
    assert "hypothesis" in _pyproject()["optional-dependencies"]["test"]
