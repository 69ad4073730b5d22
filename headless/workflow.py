"""Workflows: loading the node pack the way ComfyUI does, ``/object_info``, and UI -> API conversion.

ComfyUI knows a graph in two forms:
- the **UI format** the frontend saves and users share: ``{"nodes": [{"id", "type", "widgets_values",
  "inputs": [{"name", "type", "link"}], "outputs", "mode", ...}], "links": [[id, origin_id,
  origin_slot, target_id, target_slot, type], ...], "version": ...}``;
- the **API format** ``POST /prompt`` takes: ``{"<node id>": {"class_type": ..., "inputs": {name:
  value or [origin id, origin slot]}}}``.

``ui_to_api`` (in ``ui_format``, re-exported here) does what the frontend's ``graphToPrompt`` does.
Workflow files are read with their nesting bounded (``MAX_DEPTH``) and duplicate node ids refused.

This module never imports ComfyUI: the pack is loaded from its folder by an import spec, exactly as
ComfyUI's ``load_custom_node`` does, under a package name of our choice.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Mapping


class WorkflowError(ValueError):
    """A workflow that cannot be converted, validated or run; the message names the node and input."""


PACK_NAME = "comfyui_sora"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}
VIRTUAL_TYPES = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}
MODE_NEVER, MODE_BYPASS = 2, 4
MAX_DEPTH = 64                  # JSON nesting a workflow may have (the frontend's files have < 10)


def short(value: Any, limit: int = 60) -> str:
    """A bounded repr for error messages: strings and numbers shown (cut), containers by type and size."""
    if value is None or isinstance(value, (bool, int, float)):
        text = repr(value)
    elif isinstance(value, str):
        text = repr(value[:limit]) + ("..." if len(value) > limit else "")
    elif isinstance(value, (list, tuple, dict)):
        text = f"a {type(value).__name__} of {len(value)} items"
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 2 * limit else text[:2 * limit] + "..."


def check_depth(data: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` (walked without recursion, so any depth is safe)."""
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            items = value.values()
        elif isinstance(value, (list, tuple)):
            items = value
        else:
            continue
        if depth > limit:
            raise WorkflowError(f"{where} is nested more than {limit} levels deep; a workflow never is")
        stack.extend((v, depth + 1) for v in items)


# ---------------------------------------------------------------------------------------------
# Loading the pack (as ComfyUI's load_custom_node does)
# ---------------------------------------------------------------------------------------------

def find_pack_dir() -> Path | None:
    """The pack folder of a source checkout (the folder holding ``__init__.py``, ``nodes/`` and
    ``sora_core/``), or None when ``sora_core`` is installed without it."""
    root = Path(__file__).resolve().parent.parent
    if (root / "__init__.py").is_file() and (root / "nodes" / "__init__.py").is_file():
        return root
    return None


def load_pack(pack_dir: str | Path | None = None, name: str = PACK_NAME) -> ModuleType:
    """Import the node pack as a package named ``name`` from its folder's ``__init__.py``, and read
    its node mappings at once, as ComfyUI does (the pack imports its node modules on that first read).

    Like ComfyUI: an import spec on the folder, never the folder on ``sys.path`` (which would expose
    the pack's ``nodes`` package as a top-level ``nodes`` and shadow ComfyUI's own). Without a folder,
    falls back to the installed ``comfyui_sora`` package. Loading twice returns the loaded module.
    """
    module = _import_pack(pack_dir, name)
    module.NODE_CLASS_MAPPINGS          # noqa: B018 - imports the node modules (``module.nodes``)
    return module


def _import_pack(pack_dir: str | Path | None, name: str) -> ModuleType:
    if name in sys.modules and pack_dir is None:
        return sys.modules[name]
    folder = Path(pack_dir) if pack_dir is not None else find_pack_dir()
    if folder is None:
        try:
            return importlib.import_module(PACK_NAME)
        except ImportError as e:
            raise WorkflowError(
                "the node pack was not found: no pack folder beside sora_core and no installed "
                f"'{PACK_NAME}' package ({e})") from e
    init = folder / "__init__.py"
    if not init.is_file():
        raise WorkflowError(f"{folder} is not a node pack folder: it has no __init__.py")
    loaded = sys.modules.get(name)
    if loaded is not None and Path(getattr(loaded, "__file__", "")).resolve() == init.resolve():
        return loaded
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[str(folder)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


# ---------------------------------------------------------------------------------------------
# /object_info
# ---------------------------------------------------------------------------------------------

def _jsonable(value: Any) -> Any:
    """Tuples -> lists, recursively (what JSON serialisation of the server's answer produces)."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def node_info(name: str, cls: type, display_name: str | None = None) -> dict:
    """One entry of ComfyUI's ``GET /object_info`` for a node class (same keys, JSON-ready)."""
    inputs = cls.INPUT_TYPES()
    returns = tuple(cls.RETURN_TYPES)
    info = {
        "input": _jsonable(inputs),
        "input_order": {section: list(spec) for section, spec in inputs.items()},
        "output": list(returns),
        "output_is_list": list(getattr(cls, "OUTPUT_IS_LIST", [False] * len(returns))),
        "output_name": list(getattr(cls, "RETURN_NAMES", returns)),
        "name": name,
        "display_name": display_name or name,
        "description": getattr(cls, "DESCRIPTION", ""),
        "python_module": getattr(cls, "RELATIVE_PYTHON_MODULE", f"custom_nodes.{PACK_NAME}"),
        "category": getattr(cls, "CATEGORY", "sd"),
        "output_node": bool(getattr(cls, "OUTPUT_NODE", False)),
    }
    if hasattr(cls, "OUTPUT_TOOLTIPS"):
        info["output_tooltips"] = list(cls.OUTPUT_TOOLTIPS)
    return info


def object_info_from_classes(mappings: Mapping[str, type],
                             display_names: Mapping[str, str] | None = None) -> dict:
    """``{class name: node_info}`` for every class, in the format of ComfyUI's ``GET /object_info``."""
    names = display_names or {}
    return {name: node_info(name, cls, names.get(name)) for name, cls in mappings.items()}


# ---------------------------------------------------------------------------------------------
# Input specs
# ---------------------------------------------------------------------------------------------

def spec_type(spec: Any) -> str:
    """The type name of an input spec: 'INT', 'IMAGE', ... or 'COMBO' for a list of choices."""
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    return "COMBO" if isinstance(kind, (list, tuple)) else str(kind)


def spec_options(spec: Any) -> dict:
    """The options dict of an input spec (``{}`` when there is none)."""
    if isinstance(spec, (list, tuple)) and len(spec) > 1 and isinstance(spec[1], dict):
        return spec[1]
    return {}


def combo_choices(spec: Any) -> list | None:
    """The allowed values of a COMBO input (old list form or new ``["COMBO", {"options"}]``)."""
    kind = spec[0] if isinstance(spec, (list, tuple)) and spec else spec
    if isinstance(kind, (list, tuple)):
        return list(kind)
    if kind == "COMBO":
        return list(spec_options(spec).get("options", []))
    return None


def is_widget(spec: Any) -> bool:
    """True when the frontend shows this input as a widget (a value stored in widgets_values)."""
    return spec_type(spec) in WIDGET_TYPES and not spec_options(spec).get("forceInput", False)


def has_control_widget(name: str, spec: Any) -> bool:
    """True when the frontend adds a control_after_generate widget after this one."""
    opts = spec_options(spec)
    if "control_after_generate" in opts:
        return bool(opts["control_after_generate"])
    return spec_type(spec) == "INT" and name in ("seed", "noise_seed")


def ordered_inputs(info: dict) -> list[tuple[str, str, Any]]:
    """[(section, name, spec)] in ``input_order`` (required, then optional; hidden left out)."""
    out = []
    for section in ("required", "optional"):
        specs = info["input"].get(section, {}) or {}
        for name in info.get("input_order", {}).get(section, list(specs)):
            out.append((section, name, specs[name]))
    return out


# ---------------------------------------------------------------------------------------------
# UI and API formats
# ---------------------------------------------------------------------------------------------

def is_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_format(data: Any) -> bool:
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and "class_type" in v for v in data.values()))


# ---------------------------------------------------------------------------------------------
# Files and overrides
# ---------------------------------------------------------------------------------------------

VIDEO_WITH_METADATA = (".mp4", ".mov", ".m4v", ".mkv", ".webm")


def _embedded_workflow(path: Path) -> str:
    """The workflow (else the prompt) JSON a saved video carries in its metadata tags."""
    import av
    try:
        with av.open(str(path)) as container:
            tags = dict(container.metadata)
    except av.error.FFmpegError as e:
        raise WorkflowError(f"{path} is not a readable video: {e}") from e
    text = tags.get("workflow") or tags.get("prompt")
    if not text:
        raise WorkflowError(f"{path} carries no workflow (only videos saved by ComfyUI / Sora Save Video do)")
    return text


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict:
    """A JSON object; the same key twice for an API node (``{"class_type": ...}``) is an error, since
    ``json`` would keep only the last of the two nodes."""
    out = {}
    for key, value in pairs:
        if key in out and isinstance(value, dict) and "class_type" in value:
            raise WorkflowError(f"node id {key!r} is used twice (by {short(out[key].get('class_type'))} "
                                f"and {short(value.get('class_type'))}); every node needs its own id")
        out[key] = value
    return out


def parse_workflow_text(text: str, where: str) -> Any:
    """Parse workflow JSON text: errors (bad JSON, duplicate node ids, nesting deeper than
    ``MAX_DEPTH``) name ``where``."""
    try:
        data = json.loads(text, object_pairs_hook=_object_pairs)
    except json.JSONDecodeError as e:
        raise WorkflowError(f"{where} is not valid JSON: {e}") from e
    except RecursionError:
        raise WorkflowError(f"{where} is nested more than {MAX_DEPTH} levels deep; a workflow never is") from None
    except WorkflowError as e:
        raise WorkflowError(f"{where}: {e}") from None
    check_depth(data, where)
    return data


def read_workflow(path: str | Path) -> dict:
    """Parse a workflow JSON file (UI or API format), or the workflow embedded in a saved mp4;
    errors name the file and the problem."""
    path = Path(path)
    if path.is_dir():
        raise WorkflowError(f"workflow {path} is a folder; give a workflow .json file (or a saved .mp4)")
    if not path.is_file():
        raise FileNotFoundError(f"workflow file {path} does not exist")
    try:
        text = (_embedded_workflow(path) if path.suffix.lower() in VIDEO_WITH_METADATA
                else path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise WorkflowError(f"{path} is not valid JSON: {e}") from e
    data = parse_workflow_text(text, str(path))
    if isinstance(data, dict) and is_api_format(data.get("prompt")):
        data = data["prompt"]                    # a saved POST /prompt body
    if not (is_ui_format(data) or is_api_format(data)):
        raise WorkflowError(f"{path} is neither a UI-format workflow (nodes + links) nor an API-format "
                            "prompt ({id: {class_type, inputs}})")
    return data


def ui_to_api(workflow_ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to the API format of ``POST /prompt`` (see ``ui_format.ui_to_api``)."""
    from .ui_format import ui_to_api as convert
    return convert(workflow_ui, object_info)


def to_api(data: dict, object_info: dict) -> dict:
    """API format of a parsed workflow, converting it when it is in the UI format."""
    check_depth(data, "the workflow")
    return ui_to_api(data, object_info) if is_ui_format(data) else json.loads(json.dumps(data))
