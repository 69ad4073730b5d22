"""Workflows: loading the node pack the way ComfyUI does, ``/object_info``, and UI -> API conversion.

ComfyUI knows a graph in two forms:
- the **UI format** the frontend saves and users share: ``{"nodes": [{"id", "type", "widgets_values",
  "inputs": [{"name", "type", "link"}], "outputs", "mode", ...}], "links": [[id, origin_id,
  origin_slot, target_id, target_slot, type], ...], "version": ...}``;
- the **API format** ``POST /prompt`` takes: ``{"<node id>": {"class_type": ..., "inputs": {name:
  value or [origin id, origin slot]}}}``.

``ui_to_api`` does what the frontend's ``graphToPrompt`` does: widget values are matched to the
node's widget inputs in ``INPUT_TYPES`` order (required, then optional), skipping the extra value of
a ``control_after_generate`` widget; links through Reroute nodes, from PrimitiveNodes (their value)
and through bypassed nodes are resolved; muted nodes and notes are dropped.

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
    """Import the node pack as a package named ``name`` from its folder's ``__init__.py``.

    Like ComfyUI: an import spec on the folder, never the folder on ``sys.path`` (which would expose
    the pack's ``nodes`` package as a top-level ``nodes`` and shadow ComfyUI's own). Without a folder,
    falls back to the installed ``comfyui_sora`` package. Loading twice returns the loaded module.
    """
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
# UI -> API
# ---------------------------------------------------------------------------------------------

def is_ui_format(data: Any) -> bool:
    return isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data


def is_api_format(data: Any) -> bool:
    return (isinstance(data, dict) and bool(data)
            and all(isinstance(v, dict) and "class_type" in v for v in data.values()))


def _node_label(node: dict) -> str:
    return f"node {node.get('id')} ({node.get('type')})"


def _parse_links(workflow: dict) -> dict[int, tuple]:
    """link id -> (origin id, origin slot, target id, target slot, type), from arrays or objects."""
    links = {}
    for i, link in enumerate(workflow.get("links") or []):
        if isinstance(link, dict):
            keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
            if any(k not in link for k in keys[:5]):
                raise WorkflowError(f"links[{i}] lacks one of {keys[:5]}: {link}")
            link = [link[k] for k in keys]
        if not isinstance(link, (list, tuple)) or len(link) < 5:
            raise WorkflowError(f"links[{i}] must be [id, origin_id, origin_slot, target_id, target_slot, "
                                f"type], got {link!r}")
        links[int(link[0])] = (str(link[1]), int(link[2]), str(link[3]), int(link[4]),
                               link[5] if len(link) > 5 else "*")
    return links


def widget_inputs(node: dict, info: dict) -> dict[str, Any]:
    """Map ``node["widgets_values"]`` onto the node's widget inputs, by order (or by name for a dict)."""
    values = node.get("widgets_values")
    widgets = [(name, spec) for _, name, spec in ordered_inputs(info) if is_widget(spec)]
    if values is None:
        return {}
    if isinstance(values, dict):
        return {name: values[name] for name, _ in widgets if name in values}
    if not isinstance(values, list):
        raise WorkflowError(f"{_node_label(node)}: widgets_values must be a list, got {type(values).__name__}")
    out, i = {}, 0
    for name, spec in widgets:
        if i >= len(values):
            break
        out[name] = values[i]
        i += 1
        if has_control_widget(name, spec) and i < len(values) and values[i] in CONTROL_VALUES:
            i += 1
            if spec_type(spec) == "COMBO" and i < len(values) and isinstance(values[i], str):
                i += 1                                      # the combo control's filter widget
        elif spec_type(spec) == "COMBO" and any(k.endswith("upload") for k in spec_options(spec)):
            i += 1 if i < len(values) and isinstance(values[i], str) else 0   # the upload button
    return out


class _Resolver:
    """Follows links through Reroute, PrimitiveNode and bypassed nodes to a source."""

    def __init__(self, nodes: dict[str, dict], links: dict[int, tuple]):
        self.nodes, self.links = nodes, links

    def resolve(self, link_id: int, where: str, depth: int = 0) -> tuple[str, Any] | None:
        """('link', [origin, slot]) or ('value', v), or None when the source is muted."""
        if depth > 64:
            raise WorkflowError(f"{where}: the link chain loops (through Reroute or bypassed nodes)")
        if link_id not in self.links:
            raise WorkflowError(f"{where}: link {link_id} is not in the workflow's links")
        origin_id, slot, _, _, ltype = self.links[link_id]
        origin = self.nodes.get(origin_id)
        if origin is None:
            raise WorkflowError(f"{where}: link {link_id} comes from node {origin_id}, which is not in the workflow")
        kind, mode = origin.get("type"), origin.get("mode", 0)
        if kind == "PrimitiveNode":
            values = origin.get("widgets_values") or []
            if not values:
                raise WorkflowError(f"{where}: the PrimitiveNode {origin_id} feeding it has no value")
            return "value", values[0]
        if kind == "Reroute" or mode == MODE_BYPASS:
            upstream = self._pass_through(origin, slot, ltype)
            return None if upstream is None else self.resolve(upstream, where, depth + 1)
        if mode == MODE_NEVER:
            return None
        return "link", [origin_id, slot]

    def _pass_through(self, node: dict, slot: int, ltype: str) -> int | None:
        """The input link a Reroute / bypassed node passes to its output ``slot``."""
        inputs = node.get("inputs") or []
        if node.get("type") == "Reroute":
            return inputs[0].get("link") if inputs else None
        same_slot = inputs[slot] if slot < len(inputs) else None
        if same_slot and same_slot.get("type") == ltype and same_slot.get("link") is not None:
            return same_slot["link"]
        for inp in inputs:
            if inp.get("type") == ltype and inp.get("link") is not None:
                return inp["link"]
        return None


def ui_to_api(workflow_ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to the API format of ``POST /prompt``.

    ``object_info`` is ``object_info_from_classes(...)`` or a server's ``GET /object_info``.
    Raises WorkflowError naming the node for unknown node types and broken links.
    """
    if not is_ui_format(workflow_ui):
        raise WorkflowError("not a UI-format workflow: it needs a 'nodes' list and a 'links' list")
    subgraphs = {s.get("id") for s in (workflow_ui.get("definitions") or {}).get("subgraphs", [])}
    nodes = {}
    for node in workflow_ui["nodes"]:
        if not isinstance(node, dict) or "id" not in node or "type" not in node:
            raise WorkflowError(f"every node needs an 'id' and a 'type', got {str(node)[:80]}")
        nodes[str(node["id"])] = node
    resolver = _Resolver(nodes, _parse_links(workflow_ui))
    api = {}
    for nid, node in nodes.items():
        kind = node["type"]
        if kind in VIRTUAL_TYPES or node.get("mode", 0) in (MODE_NEVER, MODE_BYPASS):
            continue
        if kind in subgraphs:
            raise WorkflowError(f"{_node_label(node)} is a subgraph; unpack it in ComfyUI before running headless")
        if kind not in object_info:
            raise WorkflowError(f"{_node_label(node)}: unknown node type {kind!r} (not in this pack or "
                                f"server); known types include {', '.join(sorted(object_info)[:8])} ...")
        info = object_info[kind]
        inputs = {k: ({"__value__": v} if isinstance(v, list) else v)
                  for k, v in widget_inputs(node, info).items()}
        for inp in node.get("inputs") or []:
            if inp.get("link") is None:
                continue
            where = f"{_node_label(node)} input {inp.get('name')!r}"
            found = resolver.resolve(int(inp["link"]), where)
            if found is None:
                inputs.pop(inp["name"], None)
            else:
                inputs[inp["name"]] = found[1]
        title = node.get("title") or info.get("display_name") or kind
        api[nid] = {"inputs": inputs, "class_type": kind, "_meta": {"title": title}}
    for entry in api.values():                          # drop links to nodes that were removed
        for k, v in list(entry["inputs"].items()):
            if isinstance(v, list) and len(v) == 2 and str(v[0]) not in api:
                del entry["inputs"][k]
    return api


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


def read_workflow(path: str | Path) -> dict:
    """Parse a workflow JSON file (UI or API format), or the workflow embedded in a saved mp4;
    errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"workflow file {path} does not exist")
    try:
        text = (_embedded_workflow(path) if path.suffix.lower() in VIDEO_WITH_METADATA
                else path.read_text(encoding="utf-8"))
        data = json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise WorkflowError(f"{path} is not valid JSON: {e}") from e
    if isinstance(data, dict) and is_api_format(data.get("prompt")):
        data = data["prompt"]                    # a saved POST /prompt body
    if not (is_ui_format(data) or is_api_format(data)):
        raise WorkflowError(f"{path} is neither a UI-format workflow (nodes + links) nor an API-format "
                            "prompt ({id: {class_type, inputs}})")
    return data


def to_api(data: dict, object_info: dict) -> dict:
    """API format of a parsed workflow, converting it when it is in the UI format."""
    return ui_to_api(data, object_info) if is_ui_format(data) else json.loads(json.dumps(data))


def parse_override(text: str) -> tuple[str, str, Any]:
    """``'NODE_ID.input=value'`` -> (node id, input, value); the value is JSON when it parses."""
    target, eq, raw = text.partition("=")
    node, dot, name = target.rpartition(".")
    if not eq or not dot or not node or not name:
        raise WorkflowError(f"--set {text!r} must look like NODE_ID.input=value (e.g. 3.steps=4)")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return node.strip(), name.strip(), value


def apply_overrides(api: dict, overrides: list[str], object_info: dict | None = None) -> dict:
    """Set inputs of an API prompt from ``NODE_ID.input=value`` strings (node id or exact title).

    With ``object_info``, an input name the node does not have is an error listing the ones it has.
    """
    for text in overrides or []:
        node, name, value = parse_override(text)
        if node not in api:
            titled = [k for k, v in api.items() if v.get("_meta", {}).get("title") == node]
            if len(titled) != 1:
                raise WorkflowError(f"--set {text!r}: no node with id or unique title {node!r}; "
                                    f"node ids: {', '.join(sorted(api, key=_id_key))}")
            node = titled[0]
        info = (object_info or {}).get(api[node].get("class_type"))
        if info is not None:
            names = [n for _, n, _ in ordered_inputs(info)]
            if name not in names:
                raise WorkflowError(f"--set {text!r}: node {node} ({api[node]['class_type']}) has no input "
                                    f"{name!r}; its inputs: {', '.join(names)}")
        api[node]["inputs"][name] = value
    return api


def _id_key(node_id: str) -> tuple:
    return (0, int(node_id), "") if node_id.isdigit() else (1, 0, node_id)
