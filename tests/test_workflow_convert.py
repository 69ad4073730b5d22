"""UI -> API conversion, /object_info, overrides and the headless executor on small stand-in nodes.

The stand-ins are plain classes in ComfyUI's classic form, so these tests pin the conversion rules
(widget order, control_after_generate, links through Reroute / PrimitiveNode / bypassed nodes,
muted nodes) independently of the pack's own nodes.
"""

import copy
import json

import pytest

from comfyui_sora.headless.run import apply_sets

from comfyui_sora.headless import executor, workflow
from comfyui_sora.headless.workflow import WorkflowError


class MakeNumber:
    CATEGORY = "test"
    DESCRIPTION = "A number from a seed."
    RETURN_TYPES = ("NUM",)
    RETURN_NAMES = ("number",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "seed": ("INT", {"default": 0, "min": 0, "max": 100, "control_after_generate": True}),
            "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0}),
            "mode": (["add", "mul"], {"default": "add"}),
        }}

    def run(self, seed, scale, mode):
        return (seed + scale if mode == "add" else seed * scale,)


class Combine:
    CATEGORY = "test"
    RETURN_TYPES = ("NUM",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"a": ("NUM",), "offset": ("INT", {"default": 0, "min": -5, "max": 5})},
                "optional": {"b": ("NUM",), "label": ("STRING", {"default": "x", "multiline": True})}}

    def run(self, a, offset, b=0.0, label="x"):
        return (a + b + offset,)


class Show:
    CATEGORY = "test"
    RETURN_TYPES = ()
    FUNCTION = "run"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("NUM",)}, "hidden": {"node": "UNIQUE_ID"}}

    def run(self, value, node=None):
        return {"ui": {"value": [value], "node": [node]}}


CLASSES = {"MakeNumber": MakeNumber, "Combine": Combine, "Show": Show}
INFO = workflow.object_info_from_classes(CLASSES, {"MakeNumber": "Make number"})


def ui_graph():
    """MakeNumber(1) -> Reroute(2) -> Combine(3).a ; PrimitiveNode(4) -> Combine.offset ; Combine -> Show(5)."""
    return {
        "last_node_id": 6, "last_link_id": 5, "version": 0.4,
        "nodes": [
            {"id": 1, "type": "MakeNumber", "mode": 0, "widgets_values": [7, "randomize", 2.0, "mul"],
             "outputs": [{"name": "number", "type": "NUM", "links": [1]}]},
            {"id": 2, "type": "Reroute", "mode": 0, "inputs": [{"name": "", "type": "*", "link": 1}],
             "outputs": [{"name": "", "type": "NUM", "links": [2]}]},
            {"id": 3, "type": "Combine", "mode": 0, "widgets_values": [0, "hello"],
             "inputs": [{"name": "a", "type": "NUM", "link": 2},
                        {"name": "offset", "type": "INT", "widget": {"name": "offset"}, "link": 3}],
             "outputs": [{"name": "NUM", "type": "NUM", "links": [4]}]},
            {"id": 4, "type": "PrimitiveNode", "mode": 0, "widgets_values": [3, "fixed"],
             "outputs": [{"name": "INT", "type": "INT", "widget": {"name": "offset"}, "links": [3]}]},
            {"id": 5, "type": "Show", "mode": 0, "inputs": [{"name": "value", "type": "NUM", "link": 4}]},
            {"id": 6, "type": "Note", "mode": 0, "widgets_values": ["a note"]},
        ],
        "links": [[1, 1, 0, 2, 0, "NUM"], [2, 2, 0, 3, 0, "NUM"], [3, 4, 0, 3, 1, "INT"],
                  [4, 3, 0, 5, 0, "NUM"]],
    }


# ---------------------------------------------------------------------------------------------
# object_info
# ---------------------------------------------------------------------------------------------

def test_object_info_has_the_server_keys_and_is_json():
    info = INFO["MakeNumber"]
    assert info["input_order"] == {"required": ["seed", "scale", "mode"]}
    assert info["output"] == ["NUM"] and info["output_name"] == ["number"]
    assert info["output_is_list"] == [False]
    assert info["display_name"] == "Make number" and INFO["Combine"]["display_name"] == "Combine"
    assert info["output_node"] is False and INFO["Show"]["output_node"] is True
    assert info["input"]["required"]["mode"][0] == ["add", "mul"]
    assert json.loads(json.dumps(INFO)) == INFO


# ---------------------------------------------------------------------------------------------
# UI -> API
# ---------------------------------------------------------------------------------------------

def test_ui_to_api_maps_widgets_controls_reroutes_and_primitives():
    api = workflow.ui_to_api(ui_graph(), INFO)
    assert set(api) == {"1", "3", "5"}                       # virtual nodes dropped
    assert api["1"]["inputs"] == {"seed": 7, "scale": 2.0, "mode": "mul"}   # control value skipped
    assert api["3"]["inputs"]["a"] == ["1", 0]               # through the reroute
    assert api["3"]["inputs"]["offset"] == 3                 # the primitive's value wins over the widget
    assert api["3"]["inputs"]["label"] == "hello"
    assert api["5"]["inputs"] == {"value": ["3", 0]}
    assert api["1"]["_meta"]["title"] == "Make number"


def test_ui_to_api_accepts_link_objects_and_seed_without_control_value():
    ui = ui_graph()
    keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
    ui["links"] = [dict(zip(keys, link)) for link in ui["links"]]
    ui["nodes"][0]["widgets_values"] = [7, 2.0, "mul"]      # saved without the control widget
    api = workflow.ui_to_api(ui, INFO)
    assert api["1"]["inputs"] == {"seed": 7, "scale": 2.0, "mode": "mul"}
    assert api["3"]["inputs"]["a"] == ["1", 0]


def test_bypassed_node_passes_its_input_through_and_muted_node_is_dropped():
    ui = ui_graph()
    ui["nodes"][2]["mode"] = 4                               # bypass Combine: Show reads MakeNumber
    api = workflow.ui_to_api(ui, INFO)
    assert "3" not in api and api["5"]["inputs"]["value"] == ["1", 0]
    ui["nodes"][2]["mode"] = 2                               # mute Combine: Show loses its input
    api = workflow.ui_to_api(ui, INFO)
    assert "3" not in api and "value" not in api["5"]["inputs"]
    with pytest.raises(WorkflowError, match=r"node 5 \(Show\) input 'value'.*missing"):
        executor.validate_prompt(api, CLASSES)


def test_unknown_node_type_and_missing_link_are_named():
    ui = ui_graph()
    ui["nodes"][0]["type"] = "NoSuchNode"
    with pytest.raises(WorkflowError, match=r"node 1 \(NoSuchNode\).*unknown node type"):
        workflow.ui_to_api(ui, INFO)
    ui = ui_graph()
    ui["links"] = [link for link in ui["links"] if link[0] != 4]
    with pytest.raises(WorkflowError, match=r"node 5 \(Show\) input 'value'.*link 4"):
        workflow.ui_to_api(ui, INFO)


def test_not_a_workflow_is_rejected(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(WorkflowError, match="not valid JSON"):
        workflow.read_workflow(bad)
    bad.write_text(json.dumps({"hello": 1}))
    with pytest.raises(WorkflowError, match="neither a UI-format"):
        workflow.read_workflow(bad)
    body = tmp_path / "body.json"                 # a POST /prompt body is read as its prompt
    api = workflow.ui_to_api(ui_graph(), INFO)
    body.write_text(json.dumps({"prompt": api, "client_id": "x"}))
    assert workflow.read_workflow(body) == api


# ---------------------------------------------------------------------------------------------
# Overrides and execution
# ---------------------------------------------------------------------------------------------

def test_overrides_by_id_and_title_and_bad_names():
    api = workflow.ui_to_api(ui_graph(), INFO)
    apply_sets(api, ["1.seed=9", "Make number.mode=add", "3.label=123"], INFO)
    assert api["1"]["inputs"]["seed"] == 9 and api["1"]["inputs"]["mode"] == "add"
    assert api["3"]["inputs"]["label"] == "123"          # a STRING input keeps the text (no JSON guess)
    with pytest.raises(WorkflowError, match="NODE_ID.input=value"):
        apply_sets(api, ["seed9"], INFO)
    with pytest.raises(WorkflowError, match=r"no input 'sead'.*seed, scale, mode"):
        apply_sets(api, ["1.sead=3"], INFO)
    with pytest.raises(WorkflowError, match="no node with id or unique title '42'"):
        apply_sets(api, ["42.seed=3"], INFO)
    with pytest.raises(WorkflowError, match="expects an integer"):
        apply_sets(api, ['1.seed=["2",0]'], INFO)        # never a link by its look


def test_execute_runs_the_graph_and_returns_output_ui():
    api = workflow.ui_to_api(ui_graph(), INFO)
    seen = []
    out = executor.execute(api, CLASSES, progress=False, on_node=lambda k, e: seen.append(k))
    assert seen == ["1", "3", "5"]
    assert out == {"5": {"value": [7 * 2.0 + 0 + 3], "node": ["5"]}}


@pytest.mark.parametrize("change, message", [
    (("1", "seed", 101), r"node 1 \(MakeNumber\) input 'seed'.*above the maximum 100"),
    (("1", "mode", "div"), r"input 'mode'.*'div' is not one of the allowed values: 'add', 'mul'"),
    (("1", "scale", "big"), r"input 'scale'.*not a valid FLOAT"),
    (("3", "a", ["9", 0]), r"node 3 \(Combine\) input 'a'.*node 9, which is not in the workflow"),
    (("3", "a", ["1", 2]), r"input 'a'.*output 2 of node 1 \(MakeNumber\), which has 1 outputs"),
    (("3", "offset", ["1", 0]), r"input 'offset'.*expects INT.*gives NUM"),
])
def test_bad_values_and_links_are_named(change, message):
    api = workflow.ui_to_api(ui_graph(), INFO)
    node, name, value = change
    api[node]["inputs"][name] = value
    with pytest.raises(WorkflowError, match=message):
        executor.execute(api, CLASSES, progress=False)


def test_string_numbers_are_converted_and_cycles_and_no_outputs_rejected():
    api = workflow.ui_to_api(ui_graph(), INFO)
    api["1"]["inputs"]["seed"] = "4"
    assert executor.execute(api, CLASSES, progress=False)["5"]["value"] == [4 * 2.0 + 3]
    cyc = copy.deepcopy(api)
    cyc["3"]["inputs"]["b"] = ["3", 0]
    with pytest.raises(WorkflowError, match="cycle"):
        executor.execute(cyc, CLASSES, progress=False)
    del api["5"]
    with pytest.raises(WorkflowError, match="no output node"):
        executor.execute(api, CLASSES, progress=False)


def test_node_failure_is_wrapped_with_the_node_name():
    class Boom(Show):
        def run(self, value, node=None):
            raise RuntimeError("kaput")
    api = workflow.ui_to_api(ui_graph(), INFO)
    with pytest.raises(WorkflowError, match=r"node 5 \(Show\) failed: RuntimeError: kaput"):
        executor.execute(api, {**CLASSES, "Show": Boom}, progress=False)


# ---------------------------------------------------------------------------------------------
# Malformed workflows (issue 20): every one a WorkflowError naming the node, link or file
# ---------------------------------------------------------------------------------------------

def nested(depth: int) -> list:
    """``[[[...]]]`` ``depth`` levels deep, built without recursion."""
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    return value


@pytest.mark.parametrize("edit, message", [
    (lambda ui: ui["links"][0].__setitem__(0, "one"), r"links\[0\] id must be an integer, got 'one'"),
    (lambda ui: ui["links"][0].__setitem__(2, None), r"links\[0\] origin_slot must be an integer, got None"),
    (lambda ui: ui["links"][0].__setitem__(1, [1]), r"links\[0\] origin_id must be an integer"),
    (lambda ui: ui["links"][1].__setitem__(4, -1), r"links\[1\]: slots must be 0 or more"),
    (lambda ui: ui["links"].append(list(ui["links"][0])), r"links\[4\]: link id 1 is used twice"),
    (lambda ui: ui["nodes"][2].__setitem__("inputs", {"a": 2}), r"node 3 \(Combine\): 'inputs' must be a list"),
    (lambda ui: ui["nodes"][2]["inputs"].__setitem__(0, "a"), r"node 3 \(Combine\): inputs\[0\] must be an object"),
    (lambda ui: ui["nodes"][2]["inputs"][0].__setitem__("link", {"id": 2}),
     r"node 3 \(Combine\) input 'a': its link id must be an integer"),
    (lambda ui: ui["nodes"][1].__setitem__("inputs", 5), r"node 2 \(Reroute\): 'inputs' must be a list"),
    (lambda ui: ui["nodes"][3].__setitem__("widgets_values", {"v": 3}), r"PrimitiveNode 4 feeding it has no value"),
    (lambda ui: ui["nodes"][0].__setitem__("type", ["MakeNumber"]), r"nodes\[0\]: every node needs an 'id' and a 'type'"),
    (lambda ui: ui["nodes"][4].__setitem__("id", 3), r"nodes\[4\] \(Show\): node id 3 is used twice \(also by node 3 \(Combine\)\)"),
    (lambda ui: ui.__setitem__("links", {"1": [1, 1, 0, 2, 0]}), r"'links' must be a list"),
])
def test_malformed_ui_workflows_are_named(edit, message):
    ui = ui_graph()
    edit(ui)
    with pytest.raises(WorkflowError, match=message):
        workflow.ui_to_api(ui, INFO)


def test_unhashable_control_value_and_float_ids_convert():
    ui = ui_graph()
    ui["nodes"][0]["widgets_values"] = [7, ["x"], 2.0, "mul"]   # not a control value: the next widget's
    assert workflow.ui_to_api(ui, INFO)["1"]["inputs"]["scale"] == {"__value__": ["x"]}
    ui = ui_graph()
    for node in ui["nodes"]:
        node["id"] = float(node["id"])                       # 1.0 is node 1, as links name it
    assert workflow.ui_to_api(ui, INFO)["3"]["inputs"]["a"] == ["1", 0]


def test_deep_nesting_is_refused_without_recursion(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(WorkflowError, match="nested more than 64 levels"):
        workflow.read_workflow(deep)
    ui = ui_graph()
    ui["nodes"][0]["widgets_values"][0] = nested(100_000)
    deep.write_text(json.dumps(ui_graph()).replace('"a note"', "[" * 100 + "]" * 100))
    with pytest.raises(WorkflowError, match="nested more than 64 levels"):
        workflow.read_workflow(deep)
    with pytest.raises(WorkflowError, match="the workflow is nested more than 64 levels"):
        workflow.to_api(ui, INFO)
    api = workflow.ui_to_api(ui_graph(), INFO)
    api["3"]["inputs"]["label"] = nested(100_000)
    with pytest.raises(WorkflowError, match="the prompt is nested more than 64 levels"):
        executor.validate_prompt(api, CLASSES)


def test_duplicate_api_node_ids_and_folders_are_named(tmp_path):
    api = workflow.ui_to_api(ui_graph(), INFO)
    text = json.dumps(api)
    dup = tmp_path / "dup.json"
    dup.write_text(text[:-1] + ', "1": ' + json.dumps(api["5"]) + "}")
    with pytest.raises(WorkflowError, match=r"dup.json: node id '1' is used twice \(by 'MakeNumber' and 'Show'\)"):
        workflow.read_workflow(dup)
    with pytest.raises(WorkflowError, match=r"workflow .* is a folder; give a workflow .json file"):
        workflow.read_workflow(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        workflow.read_workflow(tmp_path / "none.json")


@pytest.mark.parametrize("node, name, value, message", [
    ("1", "scale", float("nan"), r"node 1 \(MakeNumber\) input 'scale': value nan is not a finite number"),
    ("1", "scale", float("inf"), r"input 'scale': value inf is not a finite number"),
    ("1", "scale", "-Infinity", r"input 'scale': value -inf is not a finite number"),
    ("1", "scale", 1e308, r"input 'scale': value 1e\+308 is above the maximum 10.0"),
    ("1", "scale", 10 ** 400, r"input 'scale': value 1000.* is not a valid FLOAT"),
    ("1", "seed", float("inf"), r"input 'seed': value inf is not a valid INT"),
    ("1", "seed", 10 ** 30, r"input 'seed': value 10+ is above the maximum 100"),
    ("1", "mode", ["add"], r"input 'mode': value a list of 1 items is not one of the allowed values"),
    ("3", "a", 5, r"node 3 \(Combine\) input 'a': expects a link from an output giving NUM, got the value 5"),
    ("3", "label", nested(50), r"node 3 \(Combine\) input 'label': value a list of 1 items is not a valid STRING"),
])
def test_non_finite_and_out_of_range_values_are_named(node, name, value, message):
    api = workflow.ui_to_api(ui_graph(), INFO)
    api[node]["inputs"][name] = value
    with pytest.raises(WorkflowError, match=message):
        executor.validate_prompt(api, CLASSES)


def test_override_nan_is_refused_naming_the_option():
    api = workflow.ui_to_api(ui_graph(), INFO)
    with pytest.raises(WorkflowError, match=r"--set 1.scale=NaN \(node 1 \(MakeNumber\) input 'scale'\): 'NaN' is not allowed; it expects a finite number"):
        apply_sets(api, ["1.scale=NaN"], INFO)


def test_bad_api_entries_are_named():
    api = workflow.ui_to_api(ui_graph(), INFO)
    for entry, message in [({"class_type": ["MakeNumber"], "inputs": {}}, r"node 1: an API entry needs a 'class_type' string"),
                           ({"class_type": "MakeNumber", "inputs": [7]}, r"node 1 \(MakeNumber\): 'inputs' must be an object")]:
        with pytest.raises(WorkflowError, match=message):
            executor.validate_prompt({**api, "1": entry}, CLASSES)


def test_long_chains_run_without_recursion():
    api = {"0": {"class_type": "MakeNumber", "inputs": {"seed": 1, "scale": 0.0, "mode": "add"}}}
    for i in range(1, 3000):
        api[str(i)] = {"class_type": "Combine", "inputs": {"a": [str(i - 1), 0], "offset": 1}}
    api["end"] = {"class_type": "Show", "inputs": {"value": ["2999", 0]}}
    assert executor.execute(api, CLASSES, progress=False)["end"]["value"] == [1 + 2999]


# ---------------------------------------------------------------------------------------------
# Save prefixes (sora_core.media.outputs): file names stay inside the output folder and printable
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("prefix, message", [
    ("sora/clip\nrm -rf", r"control or invisible characters \(U\+000A\)"),
    ("clip\r", r"U\+000D"), ("a\x00b", r"U\+0000"), ("clip\u202egpj.mp4", r"U\+202E"),
    ("clip\u2028x", r"U\+2028"), ("bad\ud800", r"U\+D800"),
    ("x" * 201, "longer than 200 bytes"), ("/".join(["ab"] * 400), "longer than 1024 bytes"),
    ("..\\..\\escape", "points outside the output folder"), ("sora/../../x", "points outside"),
    ("C:\\x", "not absolute"), (5, "must be a string"),
])
def test_save_prefixes_that_would_escape_or_break_names_are_refused(tmp_path, prefix, message):
    from sora_core.media import outputs
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(outputs.OutputPathError, match=message):
        outputs.numbered_output(out, prefix, ".mp4")
    assert not any(tmp_path.rglob("*x*")) and list(out.iterdir()) == []


def test_save_prefix_with_unicode_and_subfolders_is_kept(tmp_path):
    from sora_core.media import outputs
    path = outputs.numbered_output(tmp_path, " sora\\vidéo 鳥 ", ".mp4")
    assert path == tmp_path.resolve() / "sora" / "vidéo 鳥_00001.mp4"
