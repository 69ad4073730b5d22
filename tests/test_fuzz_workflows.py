"""Property-based tests over workflow JSON: the real files in workflows/, mutated at random (keys and
nodes deleted, values swapped for other types, huge and non-finite numbers, unicode, links to missing
nodes and slots, wrong slot indices, cycles), through ``to_api`` / ``ui_to_api`` and the executor's
``validate_prompt`` and ``execution_order``.

The only outcomes allowed: success, or a WorkflowError whose message says where (a node, a link, a
node list entry, the workflow or the prompt). Anything else (TypeError, KeyError, RecursionError ...)
is a bug. Hypothesis prints the failing example and a ``@reproduce_failure`` blob (tests/conftest.py).
"""

import copy
import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from comfyui_sora.headless import executor, workflow
from comfyui_sora.headless.workflow import WorkflowError

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted(p for p in (ROOT / "workflows").glob("*.json") if not p.name.startswith("native_"))  # ComfyUI-only
PACK = workflow.load_pack()
CLASSES = PACK.NODE_CLASS_MAPPINGS
INFO = workflow.object_info_from_classes(CLASSES, PACK.NODE_DISPLAY_NAME_MAPPINGS)
UI = {p.stem: json.loads(p.read_text()) for p in FILES}
API = {name: workflow.ui_to_api(ui, INFO) for name, ui in UI.items()}
WHERE = re.compile(r"node |links\[|nodes\[|'links'|the prompt|the workflow|not a UI-format|input '")

# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(), st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
    st.sampled_from([0, -1, 1, 2 ** 31, 2 ** 63, 2 ** 64, -(2 ** 63) - 1, 10 ** 30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 5e-324, 0.5, -0.0]))
TEXT = st.one_of(st.text(max_size=40), st.text(alphabet=st.characters(codec="utf-8"), max_size=10),
                 st.sampled_from(["", "\n", "\x00", "..", "../../x", "\u202e", "1", "-1", "1.5", "NaN",
                                  "default", "euler", "Reroute", "PrimitiveNode"]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(TEXT, inner, max_size=3)),
                      max_leaves=8)


def paths(data) -> list[tuple]:
    """Every path (a tuple of keys / indexes) to a value inside ``data``, walked without recursion."""
    out, stack = [], [((), data)]
    while stack:
        path, value = stack.pop()
        out.append(path)
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        stack.extend((path + (k,), v) for k, v in items)
    return out


def parent_of(data, path: tuple):
    for key in path[:-1]:
        data = data[key]
    return data


def swap_type(value):
    """The same content in another JSON type."""
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    if isinstance(value, dict):
        return list(value.values())
    if isinstance(value, str):
        return [value]
    return str(value)


def mutate(data, draw) -> None:
    """One random edit of ``data`` in place: delete, replace, swap type, re-link or nest."""
    targets = [p for p in paths(data) if p]
    if not targets:
        return
    path = draw(st.sampled_from(targets))
    parent, key = parent_of(data, path), path[-1]
    action = draw(st.sampled_from(["delete", "replace", "swap", "nest", "relink"]))
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = draw(VALUES)
    elif action == "swap":
        parent[key] = swap_type(parent[key])
    elif action == "nest":
        parent[key] = [[[[parent[key]]]]]
    else:                                       # a link to another (maybe missing) node / slot
        nodes = list(data) if isinstance(data, dict) and "nodes" not in data else [n.get("id") for n in
                                                                                    data.get("nodes", [])
                                                                                    if isinstance(n, dict)]
        origin = draw(st.one_of(st.sampled_from(nodes or [0]), st.sampled_from(["999", 999, -1])))
        parent[key] = [origin, draw(st.sampled_from([0, 1, 5, -1, 2 ** 40]))]


def check_outcome(run) -> object:
    """``run()``'s result, or None when it raised a WorkflowError that says where; other errors fail."""
    try:
        return run()
    except WorkflowError as e:
        assert WHERE.search(str(e)), f"the error does not say where: {e}"
        return None


def through_executor(data) -> None:
    """to_api, then validate_prompt and execution_order (what ``sora run`` does before any node runs)."""
    api = check_outcome(lambda: workflow.to_api(data, INFO))
    if api is None:
        return
    checked = check_outcome(lambda: executor.validate_prompt(api, CLASSES))
    if checked is not None:
        check_outcome(lambda: executor.execution_order(checked[0], checked[1], api))


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

@settings(max_examples=400)
@given(name=st.sampled_from(sorted(UI)), edits=st.integers(1, 4), data=st.data())
def test_mutated_ui_workflows_convert_or_fail_with_a_named_error(name, edits, data):
    ui = copy.deepcopy(UI[name])
    for _ in range(edits):
        mutate(ui, data.draw)
    through_executor(ui)
    text = json.dumps(ui)                      # the same through the file parser (NaN / Infinity allowed)
    parsed = check_outcome(lambda: workflow.parse_workflow_text(text, "fuzz.json"))
    if parsed is not None and isinstance(parsed, dict):
        through_executor(parsed)


@settings(max_examples=400)
@given(name=st.sampled_from(sorted(API)), edits=st.integers(1, 4), data=st.data())
def test_mutated_api_prompts_validate_or_fail_with_a_named_error(name, edits, data):
    api = copy.deepcopy(API[name])
    for _ in range(edits):
        mutate(api, data.draw)
    through_executor(api)


@settings(max_examples=200)
@given(name=st.sampled_from(sorted(API)), data=st.data())
def test_links_to_missing_nodes_wrong_slots_and_cycles_are_named(name, data):
    """Every link input of a valid prompt pointed somewhere else: another node (maybe downstream, so a
    cycle), a missing node, a slot out of range."""
    api = copy.deepcopy(API[name])
    linked = [(nid, k) for nid, e in api.items() for k, v in e["inputs"].items() if isinstance(v, list)]
    for nid, key in data.draw(st.lists(st.sampled_from(linked), min_size=1, max_size=3)):
        origin = data.draw(st.one_of(st.sampled_from(sorted(api)), st.just("404")))
        api[nid]["inputs"][key] = [origin, data.draw(st.integers(-2, 7))]
    through_executor(api)


def test_deep_self_referencing_and_huge_workflows_are_refused():
    """Edge cases beside the random ones: a cycle in the Python objects, nesting at the limit + 1."""
    loop: list = []
    loop.append(loop)
    with pytest.raises(WorkflowError, match="nested more than"):
        workflow.to_api({"1": {"class_type": "SoraSaveVideo", "inputs": {"images": loop}}}, INFO)
    ui = copy.deepcopy(UI["text_to_video"])
    value: list = []
    for _ in range(workflow.MAX_DEPTH):
        value = [value]
    ui["extra"] = value
    with pytest.raises(WorkflowError, match="the workflow is nested more than"):
        workflow.to_api(ui, INFO)
