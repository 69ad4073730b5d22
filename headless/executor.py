"""Headless execution of an API-format prompt with a pack's node classes.

What ComfyUI's ``execution.py`` does for the pack's classic nodes, minus the server: validate every
node (known class, required inputs present, linked output types match the input types, widget values
converted and within min/max / among the choices, ``VALIDATE_INPUTS``), then run the nodes needed by
the output nodes in dependency order, each once and inside ``torch.inference_mode()`` as ComfyUI
does, with a tqdm bar over the nodes. Errors name the node (id and class) and the input.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tqdm.auto import tqdm

from .workflow import WIDGET_TYPES, WorkflowError, check_depth, combo_choices, short, spec_options, spec_type

HIDDEN_VALUES = ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID")
INT_RANGE = (-(2 ** 63), 2 ** 64 - 1)           # an INT without its own min / max stays in 64 bits


def _label(node_id: str, entry: dict) -> str:
    kind = entry.get("class_type") if isinstance(entry, dict) else None
    return f"node {str(node_id)[:60]} ({kind[:60] if isinstance(kind, str) else short(kind)})"


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def types_match(output_type: str, input_type: str) -> bool:
    """ComfyUI's rule: equal, either is '*', or the input accepts one of a comma-separated list."""
    if output_type == "*" or input_type == "*" or output_type == input_type:
        return True
    return bool(set(str(output_type).split(",")) & set(str(input_type).split(",")))


# ---------------------------------------------------------------------------------------------
# Values
# ---------------------------------------------------------------------------------------------

def _to_type(value: Any, kind: str) -> Any:
    """``value`` as a ``kind`` widget value (INT, FLOAT, STRING, BOOLEAN); ValueError when it is not one."""
    if kind == "INT":
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError
        return int(value)
    if kind == "FLOAT":
        if isinstance(value, bool):
            raise ValueError
        return float(value)
    if kind == "STRING" and not isinstance(value, str):
        raise ValueError
    if kind == "BOOLEAN":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            value = value.lower() == "true"
        if not isinstance(value, bool):
            raise ValueError
    return value


def _check_range(value: float, kind: str, opts: dict, where: str) -> None:
    """A finite number within the widget's min / max (64-bit for an INT without bounds)."""
    if kind == "FLOAT" and not math.isfinite(value):
        raise WorkflowError(f"{where}: value {value} is not a finite number; give a number "
                            f"from {opts.get('min', '-inf')} to {opts.get('max', 'inf')}")
    low = opts.get("min", INT_RANGE[0] if kind == "INT" else None)
    high = opts.get("max", INT_RANGE[1] if kind == "INT" else None)
    if low is not None and value < low:
        raise WorkflowError(f"{where}: value {value} is below the minimum {low}")
    if high is not None and value > high:
        raise WorkflowError(f"{where}: value {value} is above the maximum {high}")


def convert_value(value: Any, spec: Any, where: str) -> Any:
    """Convert a widget value to its input type and check it (finite, within min / max, among the
    choices); raise WorkflowError naming ``where`` (the node and input)."""
    kind, opts = spec_type(spec), spec_options(spec)
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if kind == "COMBO":
        choices = combo_choices(spec) or []
        if not isinstance(value, (str, int, float)) or value not in choices:
            shown = ", ".join(map(repr, choices[:12])) + (" ..." if len(choices) > 12 else "")
            raise WorkflowError(f"{where}: value {short(value)} is not one of the allowed values: {shown}")
        return value
    if kind not in WIDGET_TYPES:
        if kind == "*":
            return value
        raise WorkflowError(f"{where}: expects a link from an output giving {kind}, got the value {short(value)}")
    try:
        value = _to_type(value, kind)
    except (TypeError, ValueError, OverflowError):
        raise WorkflowError(f"{where}: value {short(value)} is not a valid {kind}") from None
    if kind in ("INT", "FLOAT"):
        _check_range(value, kind, opts, where)
    return value


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

@dataclass
class _Checked:
    """A validated node: its class, constant inputs (converted) and links."""
    cls: type
    values: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)       # input name -> (origin id, slot)


def _check_node(node_id: str, entry: dict, api: dict, classes: Mapping[str, type]) -> _Checked:
    if not isinstance(entry, dict) or not isinstance(entry.get("class_type"), str):
        raise WorkflowError(f"node {node_id}: an API entry needs a 'class_type' string and 'inputs', "
                            f"got {short(entry)}")
    kind = entry["class_type"]
    if kind not in classes:
        raise WorkflowError(f"{_label(node_id, entry)}: unknown node type {short(kind)}; this pack has "
                            f"{', '.join(sorted(classes))}")
    cls, given = classes[kind], entry.get("inputs") or {}
    if not isinstance(given, dict):
        raise WorkflowError(f"{_label(node_id, entry)}: 'inputs' must be an object of input names, got {short(given)}")
    if getattr(cls, "INPUT_IS_LIST", False) or any(getattr(cls, "OUTPUT_IS_LIST", ())):
        raise WorkflowError(f"{_label(node_id, entry)} takes or gives lists of values, which the headless "
                            "runner does not support; run this workflow in ComfyUI")
    spec_all = cls.INPUT_TYPES()
    checked = _Checked(cls)
    for section in ("required", "optional"):
        for name, spec in (spec_all.get(section) or {}).items():
            where = f"{_label(node_id, entry)} input {name!r}"
            if name not in given:
                if section == "required":
                    raise WorkflowError(f"{where}: required input is missing (not linked and no value)")
                continue
            value = given[name]
            if _is_link(value):
                checked.links[name] = _check_link(value, spec, where, api, classes)
            else:
                checked.values[name] = convert_value(value, spec, where)
    _call_validate_inputs(node_id, entry, checked)
    return checked


def _check_link(value: list, spec: Any, where: str, api: dict, classes: Mapping[str, type]) -> tuple[str, int]:
    origin, slot = value[0] if isinstance(value[0], str) else short(value[0]), int(value[1])
    if origin not in api:
        raise WorkflowError(f"{where}: linked to node {origin[:60]}, which is not in the workflow")
    okind = api[origin].get("class_type") if isinstance(api[origin], dict) else None
    if not isinstance(okind, str) or okind not in classes:
        raise WorkflowError(f"{where}: linked to node {origin} of unknown type {short(okind)}")
    returns = classes[okind].RETURN_TYPES
    if not 0 <= slot < len(returns):
        raise WorkflowError(f"{where}: linked to output {slot} of node {origin} ({okind}), which has "
                            f"{len(returns)} outputs")
    want = spec_type(spec)
    if not types_match(returns[slot], want):
        raise WorkflowError(f"{where}: expects {want} but is linked to output {slot} of node {origin} "
                            f"({okind}), which gives {returns[slot]}")
    return origin, slot


def _call_validate_inputs(node_id: str, entry: dict, checked: _Checked) -> None:
    fn = getattr(checked.cls, "VALIDATE_INPUTS", None)
    if fn is None:
        return
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs = dict(checked.values)
    else:
        kwargs = {k: v for k, v in checked.values.items() if k in params}
    result = fn(**kwargs)
    if result is not True:
        raise WorkflowError(f"{_label(node_id, entry)}: {result}")


def validate_prompt(api: dict, classes: Mapping[str, type]) -> tuple[dict[str, _Checked], list[str]]:
    """Check every node; return (checked nodes, output node ids). Raises WorkflowError on the first error."""
    if not isinstance(api, dict) or not api:
        raise WorkflowError("the prompt is empty: it needs at least one node")
    check_depth(api, "the prompt")
    checked = {str(k): _check_node(str(k), v, api, classes) for k, v in api.items()}
    outputs = [k for k, c in checked.items() if getattr(c.cls, "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("the workflow has no output node (a save or preview node), so nothing would run")
    return checked, outputs


def execution_order(checked: dict[str, _Checked], outputs: list[str], api: dict) -> list[str]:
    """Nodes needed by ``outputs``, dependencies first; a cycle is an error naming a node on it.
    Walked with an explicit stack, so a chain of any length is fine."""
    order, state = [], {}
    for root in outputs:
        if state.get(root) == "done":
            continue
        state[root] = "open"
        stack = [(root, iter(checked[root].links.values()))]
        while stack:
            node_id, pending = stack[-1]
            for origin, _ in pending:
                if state.get(origin) == "open":
                    raise WorkflowError(f"{_label(origin, api[origin])}: the graph has a cycle through this node")
                if state.get(origin) != "done":
                    state[origin] = "open"
                    stack.append((origin, iter(checked[origin].links.values())))
                    break
            else:
                stack.pop()
                state[node_id] = "done"
                order.append(node_id)
    return order


# ---------------------------------------------------------------------------------------------
# Execution
# ---------------------------------------------------------------------------------------------

def _inference_mode():
    """``torch.inference_mode()`` when torch is importable (ComfyUI runs nodes inside it)."""
    try:
        import torch
    except ImportError:
        import contextlib
        return contextlib.nullcontext()
    return torch.inference_mode()


def _hidden_inputs(cls: type, node_id: str, api: dict, extra_pnginfo: dict | None) -> dict:
    hidden = (cls.INPUT_TYPES().get("hidden") or {})
    source = {"PROMPT": api, "EXTRA_PNGINFO": extra_pnginfo, "UNIQUE_ID": node_id}
    return {name: source[kind] for name, kind in hidden.items() if kind in source}


def _run_node(node_id: str, entry: dict, checked: _Checked, results: dict, api: dict,
              extra_pnginfo: dict | None) -> tuple[tuple, dict | None]:
    kwargs = dict(checked.values)
    for name, (origin, slot) in checked.links.items():
        kwargs[name] = results[origin][slot]
    kwargs.update(_hidden_inputs(checked.cls, node_id, api, extra_pnginfo))
    obj = checked.cls()
    with _inference_mode():                      # as ComfyUI's execution runs every node
        out = getattr(obj, checked.cls.FUNCTION)(**kwargs)
    ui = None
    if isinstance(out, dict):
        ui, out = out.get("ui"), out.get("result", ())
    out = tuple(out or ())
    returns = checked.cls.RETURN_TYPES
    if len(out) != len(returns):
        raise WorkflowError(f"{_label(node_id, entry)} returned {len(out)} values but declares "
                            f"{len(returns)} outputs {tuple(returns)}")
    return out, ui


def execute(api: dict, classes: Mapping[str, type], extra_pnginfo: dict | None = None,
            progress: bool = True, on_node: Callable[[str, dict], None] | None = None) -> dict[str, dict]:
    """Validate and run an API prompt; return ``{output node id: ui dict}`` of the output nodes.

    ``on_node(node_id, entry)`` is called before each node runs. Exceptions raised by a node are
    re-raised as WorkflowError naming the node (KeyboardInterrupt passes through).
    """
    checked, outputs = validate_prompt(api, classes)
    order = execution_order(checked, outputs, api)
    results: dict[str, tuple] = {}
    uis: dict[str, dict] = {}
    with tqdm(order, desc="workflow", unit="node", disable=not progress) as bar:   # closed on errors too
        for node_id in bar:
            entry = api[node_id]
            bar.set_postfix_str(f"{node_id} {entry['class_type']}")
            if on_node is not None:
                on_node(node_id, entry)
            try:
                results[node_id], ui = _run_node(node_id, entry, checked[node_id], results, api, extra_pnginfo)
            except WorkflowError:
                raise
            except Exception as e:
                raise WorkflowError(f"{_label(node_id, entry)} failed: {type(e).__name__}: {e}") from e
            if ui is not None:
                uis[node_id] = ui
    return {k: uis.get(k, {}) for k in outputs}
