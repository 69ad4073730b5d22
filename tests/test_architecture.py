"""The layers of docs/architecture.md, checked on the source: what each folder of sora_core may import,
that the core never imports ComfyUI or the pack (nor names one of its nodes), and that the node
layer never reaches into the headless runner. Imports inside functions count too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "sora_core"

# folder (or top-level module) of sora_core -> the other parts of sora_core it may import
ALLOWED = {
    "geometry": set(),
    "configs": {"geometry"},
    "media": {"geometry"},
    "world": {"geometry", "media"},
    "models": {"geometry", "configs"},
    "weights": {"configs", "media", "models"},
    "diffusion": {"geometry", "configs", "media", "models"},
    "budget": {"geometry", "configs", "weights", "models"},
    "loading": {"geometry", "configs", "weights", "models", "media", "budget"},
    "families": {"configs"},
    "components": {"configs", "weights", "loading", "models", "families"},
    "pipeline": {"geometry", "configs", "weights", "budget", "loading", "models", "diffusion", "media", "families",
                 "components"},
    "long_video": {"geometry", "configs", "media", "models", "diffusion", "pipeline", "prompts"},
    "prompts": {"geometry", "world"},
    "evaluation": {"geometry", "configs", "weights", "budget", "loading", "families", "components", "models",
                   "diffusion", "media", "pipeline", "long_video", "prompts", "world"},
    "train": {"geometry", "configs", "weights", "budget", "loading", "families", "components", "models",
              "diffusion", "media", "pipeline", "prompts", "world", "evaluation"},
    "cli": {"geometry", "configs", "weights", "budget", "loading", "families", "components", "models",
            "diffusion", "media", "pipeline", "long_video", "prompts", "world", "evaluation", "train"},
}
# never imported by the core: ComfyUI's modules and the pack itself
FOREIGN = ("comfy", "comfy_extras", "comfy_execution", "comfy_api", "folder_paths", "server", "execution",
           "nodes", "comfyui_sora", "headless", "latent_preview", "node_helpers")


def module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_init = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_init else parts), is_init


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute dotted target) of every import in the file, relative ones resolved; for
    ``from X import a`` both X and X.a are listed (a may be a submodule)."""
    name, is_init = module_name(path)
    package = name if is_init else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names]
    return found


def part_of(dotted: str) -> str | None:
    """``sora_core.diffusion.flow`` -> ``diffusion``; names that are not parts of the core -> None."""
    parts = dotted.split(".")
    if parts[0] != "sora_core" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ALLOWED else None


def core_files() -> list[Path]:
    return sorted(p for p in CORE.rglob("*.py") if "__pycache__" not in p.parts)


def violations(files, allowed=ALLOWED) -> list[str]:
    out = []
    for path in files:
        name, _ = module_name(path)
        own = part_of(name)
        for line, target in imports(path):
            if target.split(".")[0] in FOREIGN:
                out.append(f"{path.relative_to(ROOT)}:{line} imports {target} (the core never imports "
                           f"ComfyUI or the pack)")
            other = part_of(target)
            if own and other and other != own and other not in allowed[own]:
                out.append(f"{path.relative_to(ROOT)}:{line}: {own} imports {target}; {own} may import "
                           f"{sorted(allowed[own]) or 'nothing else in sora_core'}")
    return out


def test_every_part_of_the_core_is_in_the_table():
    parts = {p.stem if p.is_file() else p.name for p in CORE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert parts == set(ALLOWED), f"add to ALLOWED and docs/architecture.md: {sorted(parts ^ set(ALLOWED))}"


def test_core_imports_follow_the_layers():
    found = violations(core_files())
    assert not found, "\n".join(found)


def test_the_checker_finds_a_backward_import(tmp_path, monkeypatch):
    """A model importing the pipeline, and the core importing ComfyUI, are both reported."""
    bad = CORE / "models" / "_layering_probe.py"
    try:
        bad.write_text("from ..pipeline import generate\n\ndef f():\n    import folder_paths\n")
        found = violations([bad])
    finally:
        bad.unlink()
    assert any("models imports sora_core.pipeline" in v for v in found), found
    assert any("imports folder_paths" in v for v in found), found


NODE_NAME = re.compile(r"\bSora (Model Loader|Text Encode|Prompt Expander|Empty Latent|Sampler|VAE (Encode|Decode)|"
                       r"Image to Video|Extend (Forward|Backward)|Seamless Loop|Connect Clips|Clip Blend|"
                       r"(Load|Save|Preview) Video|Concatenate Clips|Trim Clip|Pick Frames|Resize Clip)\b")


@pytest.mark.parametrize("path", core_files(), ids=lambda p: str(p.relative_to(CORE)))
def test_core_never_names_a_node(path):
    hits = [f"{path.relative_to(ROOT)}:{i}" for i, line in enumerate(path.read_text().splitlines(), 1)
            if NODE_NAME.search(line)]
    assert not hits, f"the core names a node of the pack (errors belong in the node layer): {hits}"


def test_the_node_layer_never_imports_the_headless_runner():
    found = [f"{p.relative_to(ROOT)}:{line} imports {t}" for p in sorted((ROOT / "nodes").glob("*.py"))
             for line, t in imports(p) if t.startswith("comfyui_sora.headless") or ".headless" in t
             or t.split(".")[0] == "headless"]
    assert not found, found
