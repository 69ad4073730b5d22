"""Headless execution of an API-format prompt with a pack's node classes.

What ComfyUI's ``execution.py`` does for the pack's classic nodes, minus the server: validate every
node (known class, required inputs present, linked output types match the input types, widget values
converted and within min/max / among the choices, ``VALIDATE_INPUTS``), then run the nodes needed by
the output nodes in dependency order, each once and inside ``torch.inference_mode()`` as ComfyUI
does, with a tqdm bar over the nodes. Errors name the node (id and class) and the input.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from tqdm.auto import tqdm

from .workflow import WorkflowError, combo_choices, spec_options, spec_type

HIDDEN_VALUES = ("PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID")


def _label(node_id: str, entry: dict) -> str:
    return f"node {node_id} ({entry.get('class_type')})"


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

def convert_value(value: Any, spec: Any, where: str) -> Any:
    """Convert a widget value to its input type and check bounds; raise WorkflowError naming ``where``."""
    kind, opts = spec_type(spec), spec_options(spec)
    if isinstance(value, dict) and "__value__" in value:
        value = value["__value__"]
    if kind == "COMBO":
        choices = combo_choices(spec) or []
        if value not in choices:
            shown = ", ".join(map(repr, choices[:12])) + (" ..." if len(choices) > 12 else "")
            raise WorkflowError(f"{where}: value {value!r} is not one of the allowed values: {shown}")
        return value
    try:
        if kind == "INT":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            value = int(value)
        elif kind == "FLOAT":
            if isinstance(value, bool):
                raise ValueError
            value = float(value)
        elif kind == "STRING":
            if not isinstance(value, str):
                raise ValueError
        elif kind == "BOOLEAN":
            if isinstance(value, str) and value.lower() in ("true", "false"):
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise ValueError
    except (TypeError, ValueError):
        raise WorkflowError(f"{where}: value {value!r} is not a valid {kind}") from None
    if kind in ("INT", "FLOAT"):
        if "min" in opts and value < opts["min"]:
            raise WorkflowError(f"{where}: value {value} is below the minimum {opts['min']}")
        if "max" in opts and value > opts["max"]:
            raise WorkflowError(f"{where}: value {value} is above the maximum {opts['max']}")
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
    if not isinstance(entry, dict) or "class_type" not in entry:
        raise WorkflowError(f"node {node_id}: an API entry needs 'class_type' and 'inputs', got {str(entry)[:80]}")
    kind = entry["class_type"]
    if kind not in classes:
        raise WorkflowError(f"{_label(node_id, entry)}: unknown node type {kind!r}; this pack has "
                            f"{', '.join(sorted(classes))}")
    cls, given = classes[kind], entry.get("inputs") or {}
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
    origin, slot = str(value[0]), int(value[1])
    if origin not in api:
        raise WorkflowError(f"{where}: linked to node {origin}, which is not in the workflow")
    okind = api[origin].get("class_type")
    if okind not in classes:
        raise WorkflowError(f"{where}: linked to node {origin} of unknown type {okind!r}")
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
    checked = {str(k): _check_node(str(k), v, api, classes) for k, v in api.items()}
    outputs = [k for k, c in checked.items() if getattr(c.cls, "OUTPUT_NODE", False)]
    if not outputs:
        raise WorkflowError("the workflow has no output node (a save or preview node), so nothing would run")
    return checked, outputs


def execution_order(checked: dict[str, _Checked], outputs: list[str], api: dict) -> list[str]:
    """Nodes needed by ``outputs``, dependencies first; a cycle is an error naming a node on it."""
    order, state = [], {}

    def visit(node_id: str) -> None:
        if state.get(node_id) == "done":
            return
        if state.get(node_id) == "open":
            raise WorkflowError(f"{_label(node_id, api[node_id])}: the graph has a cycle through this node")
        state[node_id] = "open"
        for origin, _ in checked[node_id].links.values():
            visit(origin)
        state[node_id] = "done"
        order.append(node_id)

    for out in outputs:
        visit(out)
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
    bar = tqdm(order, desc="workflow", unit="node", disable=not progress)
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
    bar.close()
    return {k: uis.get(k, {}) for k in outputs}
