"""Contract of every node class in the classic ComfyUI form: INPUT_TYPES well formed with a tooltip
on every input, defaults within min/max and among the choices, RETURN_TYPES / RETURN_NAMES /
OUTPUT_TOOLTIPS consistent, FUNCTION a method taking exactly the declared inputs.
(Running every node and checking its outputs against RETURN_TYPES: tests/test_nodes_run.py.)"""

import inspect

import pytest

from comfyui_sora.headless import workflow

PACK = workflow.load_pack()
NAMES = sorted(PACK.NODE_CLASS_MAPPINGS)
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}
HIDDEN_KINDS = {"PROMPT", "EXTRA_PNGINFO", "UNIQUE_ID"}


def specs(cls):
    types = cls.INPUT_TYPES()
    assert isinstance(types, dict) and set(types) <= {"required", "optional", "hidden"}, types.keys()
    return types


@pytest.mark.parametrize("name", NAMES)
def test_input_types_are_well_formed_with_tooltips_and_bounded_defaults(name):
    cls = PACK.NODE_CLASS_MAPPINGS[name]
    types = specs(cls)
    assert types.get("required"), f"{name} has no required inputs"
    for section in ("required", "optional"):
        for inp, spec in (types.get(section) or {}).items():
            where = f"{name}.{inp}"
            assert isinstance(spec, tuple) and 1 <= len(spec) <= 2, where
            kind, opts = spec[0], (spec[1] if len(spec) == 2 else {})
            assert isinstance(opts, dict) and opts.get("tooltip"), f"{where} has no tooltip"
            if isinstance(kind, list):
                assert kind and all(isinstance(c, str) for c in kind), where
                assert opts.get("default", kind[0]) in kind, f"{where} default not among the choices"
                continue
            assert isinstance(kind, str) and kind == kind.upper(), where
            if kind in ("INT", "FLOAT"):
                lo, hi, default = opts["min"], opts["max"], opts["default"]
                assert lo <= default <= hi, f"{where} default {default} outside [{lo}, {hi}]"
                assert isinstance(default, int if kind == "INT" else (int, float)), where
                assert opts.get("step", 1) > 0, where
            elif kind in WIDGETS:
                assert "default" in opts, f"{where} widget has no default"
    for inp, kind in (types.get("hidden") or {}).items():
        assert kind in HIDDEN_KINDS, f"{name}.{inp}"


@pytest.mark.parametrize("name", NAMES)
def test_outputs_and_function_are_consistent(name):
    cls = PACK.NODE_CLASS_MAPPINGS[name]
    returns = cls.RETURN_TYPES
    assert isinstance(returns, tuple) and all(isinstance(t, str) and t == t.upper() for t in returns), name
    for attr in ("RETURN_NAMES", "OUTPUT_TOOLTIPS"):
        if hasattr(cls, attr):
            assert len(getattr(cls, attr)) == len(returns), f"{name}.{attr}"
    if returns:
        assert hasattr(cls, "RETURN_NAMES") and hasattr(cls, "OUTPUT_TOOLTIPS"), name
    assert returns or getattr(cls, "OUTPUT_NODE", False), f"{name} has no outputs and is not an output node"
    assert isinstance(cls.DESCRIPTION, str) and len(cls.DESCRIPTION) > 20, name
    fn = getattr(cls(), cls.FUNCTION)
    params = inspect.signature(fn).parameters
    types = specs(cls)
    declared = [n for s in ("required", "optional", "hidden") for n in (types.get(s) or {})]
    assert set(params) == set(declared), f"{name}.{cls.FUNCTION} takes {list(params)}, declares {declared}"
    for inp in types.get("required", {}):
        assert params[inp].default is inspect.Parameter.empty, f"{name}: required {inp} has a default"
    for inp in list(types.get("optional") or {}) + list(types.get("hidden") or {}):
        assert params[inp].default is not inspect.Parameter.empty, f"{name}: optional {inp} needs a default"


def test_seed_inputs_have_control_after_generate():
    seeds = [(n, cls) for n, cls in PACK.NODE_CLASS_MAPPINGS.items() if "seed" in specs(cls).get("required", {})]
    assert {n for n, _ in seeds} >= {"SoraSampler", "SoraPromptExpand"}
    for name, cls in seeds:
        kind, opts = cls.INPUT_TYPES()["required"]["seed"]
        assert kind == "INT" and opts.get("control_after_generate") is True, name


def test_custom_types_connect_within_the_pack():
    """Every custom type some node takes is produced by some node (and vice versa)."""
    produced = {t for cls in PACK.NODE_CLASS_MAPPINGS.values() for t in cls.RETURN_TYPES}
    taken = {s[0] for cls in PACK.NODE_CLASS_MAPPINGS.values() for sec in ("required", "optional")
             for s in (cls.INPUT_TYPES().get(sec) or {}).values() if isinstance(s[0], str)}
    custom = {t for t in produced | taken if t.startswith("SORA_")}
    assert custom == {"SORA_MODEL", "SORA_CONDITIONING", "SORA_FRAME_CONDITIONS"}
    assert custom <= produced and custom <= taken
