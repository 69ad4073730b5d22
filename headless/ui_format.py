"""UI-format workflows -> the API format of ``POST /prompt`` (what the frontend's ``graphToPrompt`` does).

Widget values are matched to the node's widget inputs in ``INPUT_TYPES`` order (required, then
optional), skipping the extra value of a ``control_after_generate`` widget; links through Reroute
nodes, from PrimitiveNodes (their value) and through bypassed nodes are resolved; muted nodes and
notes are dropped. A malformed workflow (ids that are not integers, ``inputs`` that are not a list,
the same node id twice, links to missing nodes) is a WorkflowError naming the node or link.
"""

from __future__ import annotations

import re
from typing import Any

from .workflow import CONTROL_VALUES, MODE_BYPASS, MODE_NEVER, VIRTUAL_TYPES, WorkflowError, check_depth, has_control_widget, is_ui_format, is_widget, ordered_inputs, short, spec_options, spec_type


def _plain(value: Any, limit: int = 60) -> str:
    """A node id or type name for messages: strings and numbers as they are (cut), else ``short``."""
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        return text[:limit] + ("..." if len(text) > limit else "")
    return short(value, limit)


def _node_label(node: dict) -> str:
    return f"node {_plain(node.get('id'))} ({_plain(node.get('type'))})"


def _as_int(value: Any, what: str) -> int:
    """An integer id or slot: an int, an integral float or a string of digits; else WorkflowError."""
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value.strip()):
        return int(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise WorkflowError(f"{what} must be an integer, got {short(value)}")


def node_id_of(value: Any, what: str) -> str:
    """A node id as the API format keys it: integers (also ``1.0``) as digits, strings as they are."""
    if isinstance(value, str) and value:
        return value
    return str(_as_int(value, what))


def _parse_link(i: int, link: Any) -> tuple[int, tuple]:
    """(link id, (origin id, origin slot, target id, target slot, type)) of ``links[i]``."""
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    if isinstance(link, dict):
        if any(k not in link for k in keys[:5]):
            raise WorkflowError(f"links[{i}] lacks one of {keys[:5]}: {short(link)}")
        link = [link.get(k, "*") for k in keys]
    if not isinstance(link, (list, tuple)) or len(link) < 5:
        raise WorkflowError(f"links[{i}] must be [id, origin_id, origin_slot, target_id, target_slot, "
                            f"type], got {short(link)}")
    where = f"links[{i}]"
    slots = [_as_int(link[k], f"{where} {keys[k]}") for k in (2, 4)]
    if min(slots) < 0:
        raise WorkflowError(f"{where}: slots must be 0 or more, got {slots}")
    ltype = link[5] if len(link) > 5 else "*"
    return _as_int(link[0], f"{where} id"), (node_id_of(link[1], f"{where} origin_id"), slots[0],
                                             node_id_of(link[3], f"{where} target_id"), slots[1],
                                             ltype if isinstance(ltype, str) else "*")


def _parse_links(workflow: dict) -> dict[int, tuple]:
    """link id -> (origin id, origin slot, target id, target slot, type), from arrays or objects."""
    raw = workflow.get("links") or []
    if not isinstance(raw, list):
        raise WorkflowError(f"'links' must be a list, got {short(raw)}")
    links = {}
    for i, link in enumerate(raw):
        link_id, parsed = _parse_link(i, link)
        if link_id in links:
            raise WorkflowError(f"links[{i}]: link id {link_id} is used twice")
        links[link_id] = parsed
    return links


def _node_inputs(node: dict) -> list[dict]:
    """A node's ``inputs``: a list of ``{"name", "link", ...}`` objects; else WorkflowError."""
    inputs = node.get("inputs") or []
    if not isinstance(inputs, list):
        raise WorkflowError(f"{_node_label(node)}: 'inputs' must be a list, got {short(inputs)}")
    for i, inp in enumerate(inputs):
        if not isinstance(inp, dict) or not isinstance(inp.get("name", ""), str):
            raise WorkflowError(f"{_node_label(node)}: inputs[{i}] must be an object with a 'name' string, "
                                f"got {short(inp)}")
    return inputs


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
        control = values[i] if i < len(values) and isinstance(values[i], str) else None
        if has_control_widget(name, spec) and control in CONTROL_VALUES:
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

    def resolve(self, link: Any, where: str, depth: int = 0) -> tuple[str, Any] | None:
        """('link', [origin, slot]) or ('value', v), or None when the source is muted."""
        if depth > 64:
            raise WorkflowError(f"{where}: the link chain loops (through Reroute or bypassed nodes)")
        link_id = _as_int(link, f"{where}: its link id")
        if link_id not in self.links:
            raise WorkflowError(f"{where}: link {link_id} is not in the workflow's links")
        origin_id, slot, _, _, ltype = self.links[link_id]
        origin = self.nodes.get(origin_id)
        if origin is None:
            raise WorkflowError(f"{where}: link {link_id} comes from node {origin_id}, which is not in the workflow")
        kind, mode = origin.get("type"), origin.get("mode", 0)
        if kind == "PrimitiveNode":
            values = origin.get("widgets_values")
            if not values or not isinstance(values, list):
                raise WorkflowError(f"{where}: the PrimitiveNode {origin_id} feeding it has no value")
            return "value", values[0]
        if kind == "Reroute" or mode == MODE_BYPASS:
            upstream = self._pass_through(origin, slot, ltype)
            return None if upstream is None else self.resolve(upstream, where, depth + 1)
        if mode == MODE_NEVER:
            return None
        return "link", [origin_id, slot]

    @staticmethod
    def _pass_through(node: dict, slot: int, ltype: str) -> Any:
        """The input link a Reroute / bypassed node passes to its output ``slot``."""
        inputs = _node_inputs(node)
        if node.get("type") == "Reroute":
            return inputs[0].get("link") if inputs else None
        same_slot = inputs[slot] if slot < len(inputs) else None
        if same_slot and same_slot.get("type") == ltype and same_slot.get("link") is not None:
            return same_slot["link"]
        for inp in inputs:
            if inp.get("type") == ltype and inp.get("link") is not None:
                return inp["link"]
        return None


def _index_nodes(workflow_ui: dict) -> dict[str, dict]:
    """``{node id: node}`` of a UI workflow; every node needs an id (unique) and a type name."""
    nodes = {}
    for i, node in enumerate(workflow_ui["nodes"]):
        if not isinstance(node, dict) or "id" not in node or not isinstance(node.get("type"), str):
            raise WorkflowError(f"nodes[{i}]: every node needs an 'id' and a 'type' string, got {short(node)}")
        nid = node_id_of(node["id"], f"nodes[{i}] ({_plain(node['type'])}) id")
        if nid in nodes:
            raise WorkflowError(f"nodes[{i}] ({_plain(node['type'])}): node id {nid} is used twice (also by "
                                f"{_node_label(nodes[nid])}); every node needs its own id")
        nodes[nid] = node
    return nodes


def _subgraph_ids(workflow_ui: dict) -> set:
    """The ids of the subgraph definitions a workflow carries (nodes of these types are subgraphs)."""
    definitions = workflow_ui.get("definitions") or {}
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    return {s.get("id") for s in subgraphs or [] if isinstance(s, dict) and isinstance(s.get("id"), str)}


def _api_node(nid: str, node: dict, info: dict, resolver: _Resolver) -> dict:
    """The API entry of one (known, active) UI node: widget values, then its resolved links."""
    inputs = {k: ({"__value__": v} if isinstance(v, list) else v)
              for k, v in widget_inputs(node, info).items()}
    for inp in _node_inputs(node):
        if inp.get("link") is None:
            continue
        where = f"{_node_label(node)} input {short(inp.get('name'))}"
        if "name" not in inp:
            raise WorkflowError(f"{where}: a linked input needs a 'name'")
        found = resolver.resolve(inp["link"], where)
        if found is None:
            inputs.pop(inp["name"], None)
        else:
            inputs[inp["name"]] = found[1]
    title = node.get("title") or info.get("display_name") or node["type"]
    return {"inputs": inputs, "class_type": node["type"], "_meta": {"title": title}}


def ui_to_api(workflow_ui: dict, object_info: dict) -> dict:
    """Convert a UI-format workflow to the API format of ``POST /prompt``.

    ``object_info`` is ``object_info_from_classes(...)`` or a server's ``GET /object_info``.
    Raises WorkflowError naming the node for unknown node types, malformed nodes and broken links.
    """
    if not is_ui_format(workflow_ui):
        raise WorkflowError("not a UI-format workflow: it needs a 'nodes' list and a 'links' list")
    check_depth(workflow_ui, "the workflow")
    subgraphs = _subgraph_ids(workflow_ui)
    nodes = _index_nodes(workflow_ui)
    resolver = _Resolver(nodes, _parse_links(workflow_ui))
    api = {}
    for nid, node in nodes.items():
        kind = node["type"]
        if kind in VIRTUAL_TYPES or node.get("mode", 0) in (MODE_NEVER, MODE_BYPASS):
            continue
        if kind in subgraphs:
            raise WorkflowError(f"{_node_label(node)} is a subgraph; unpack it in ComfyUI before running headless")
        if kind not in object_info:
            raise WorkflowError(f"{_node_label(node)}: unknown node type {short(kind)} (not in this pack or "
                                f"server); known types include {', '.join(sorted(object_info)[:8])} ...")
        api[nid] = _api_node(nid, node, object_info[kind], resolver)
    for entry in api.values():                          # drop links to nodes that were removed
        for k, v in list(entry["inputs"].items()):
            if isinstance(v, list) and len(v) == 2 and str(v[0]) not in api:
                del entry["inputs"][k]
    return api
