"""The pack loads the way ComfyUI loads it (its folder imported as a package under the folder's name),
never imports or installs a top-level ``nodes`` (ComfyUI has its own), and its packaging lists every
sub-package of the core."""

import json
import shutil
import subprocess
import sys
import textwrap
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# What ComfyUI's load_custom_node does with custom_nodes/comfyui-sora, with ComfyUI's own top-level
# `nodes` module already imported (here a stand-in in the working folder).
LOADER = textwrap.dedent("""
    import importlib.util, json, sys
    import nodes as comfy_nodes                      # ComfyUI's own module (a stand-in)
    root = sys.argv[1]
    spec = importlib.util.spec_from_file_location("comfyui-sora", root + "/__init__.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["comfyui-sora"] = module
    spec.loader.exec_module(module)
    import nodes
    print(json.dumps({
        "count": len(module.NODE_CLASS_MAPPINGS),
        "names": sorted(module.NODE_DISPLAY_NAME_MAPPINGS),
        "classes": sorted(module.NODE_CLASS_MAPPINGS),
        "nodes_is_comfy": nodes is comfy_nodes and getattr(nodes, "MARK", None) == "comfy",
        "pack_nodes": sorted(k for k in sys.modules if k.endswith(".nodes") or ".nodes." in k)[:3],
        "root_on_path": any(p.rstrip("/") == root.rstrip("/") for p in sys.path),
    }))
""")


def test_pack_loads_like_comfyui_without_touching_its_nodes_module(tmp_path):
    (tmp_path / "nodes.py").write_text("MARK = 'comfy'\n")
    out = subprocess.run([sys.executable, "-c", LOADER, str(ROOT)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert info["count"] >= 20 and info["names"] == info["classes"]
    assert info["nodes_is_comfy"], "the pack replaced or shadowed ComfyUI's top-level nodes module"
    assert all(k.startswith("comfyui-sora.nodes") for k in info["pack_nodes"])
    assert not info["root_on_path"]


def test_no_top_level_nodes_in_the_packaging():
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = cfg["packages"]
    assert "nodes" not in packages and not any(p.startswith("nodes.") for p in packages)
    assert cfg["package-dir"] == {"comfyui_sora": "."}
    assert "comfyui_sora.nodes" in packages
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "sora_core").rglob("__init__.py")}
    assert on_disk <= set(packages), f"sub-packages missing from pyproject: {sorted(on_disk - set(packages))}"


def _build_wheel(tmp_path: Path) -> Path:
    """A wheel of this checkout, built offline from a copy of its sources (nothing written here)."""
    src = tmp_path / "src"
    keep = ["pyproject.toml", "README.md", "requirements.txt", "__init__.py", "nodes", "headless", "sora_core", "workflows"]
    src.mkdir()
    for name in keep + ["web"]:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif path.is_file():
            shutil.copy2(path, src / name)
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation",
                          "-q", "-w", str(tmp_path / "dist")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("comfyui_sora-*.whl")
    return wheel


def test_built_wheel_has_no_top_level_nodes_and_carries_the_pack(tmp_path):
    """What ``pip install`` puts on disk: the core and the pack as ``comfyui_sora``, the default model
    and the workflows inside, and never a top-level ``nodes``."""
    with zipfile.ZipFile(_build_wheel(tmp_path)) as wheel:
        files = wheel.namelist()
        (top_file,) = [f for f in files if f.endswith(".dist-info/top_level.txt")]
        top = wheel.read(top_file).decode().split()
    assert sorted(top) == ["comfyui_sora", "sora_core"]
    assert not any(f.startswith("nodes/") or f == "nodes.py" for f in files)
    assert "comfyui_sora/nodes/__init__.py" in files and "comfyui_sora/__init__.py" in files
    for name in ("dit", "vae", "text_encoder"):
        assert f"sora_core/default_model/{name}.safetensors" in files
    shipped = {p.name for p in (ROOT / "workflows").glob("*.json")}
    assert shipped and shipped <= {Path(f).name for f in files if f.startswith("comfyui_sora/workflows/")}
    assert not any(f.startswith("checkpoints/") or "/checkpoints/" in f for f in files)


def test_every_node_is_in_the_sora_category_and_has_a_display_name():
    from comfyui_sora.headless import workflow
    pack = workflow.load_pack()
    for name, cls in pack.NODE_CLASS_MAPPINGS.items():
        assert cls.CATEGORY.startswith("Sora/"), name
        assert name in pack.NODE_DISPLAY_NAME_MAPPINGS and pack.NODE_DISPLAY_NAME_MAPPINGS[name].startswith("Sora ")
