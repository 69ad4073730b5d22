"""Property-based tests over every node of the pack through the headless executor.

For each node class: an API prompt with the node's link inputs fed by a stand-in source and its
widget values fuzzed (ints at and past their bounds, NaN / inf floats, long and unicode strings,
choices that do not exist, wrong types, inputs left out) goes through ``validate_prompt``; then, for
every node but the model loader, the prompt runs on tiny inputs (a tiny random model, 5 frames of
32x32) with values drawn from the valid range, sizes kept small.

Allowed outcomes: success, or a WorkflowError naming the node and (for bad values) the input; a
node that fails while running must fail with one of the project's errors (ValueError subclasses),
reported by the executor with the node's name. Hypothesis prints the failing example and a
``@reproduce_failure`` blob (tests/conftest.py).
"""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sora_core import configs, weights
from comfyui_sora.headless import executor, workflow
from comfyui_sora.headless.workflow import WorkflowError

PACK = workflow.load_pack()
NODES = PACK.NODE_CLASS_MAPPINGS
HOST = PACK.nodes.host
SPECS = {name: [(sec, n, s) for sec, n, s in workflow.ordered_inputs(workflow.node_info(name, cls))]
         for name, cls in NODES.items()}
LINK_TYPES = sorted({workflow.spec_type(s) for specs in SPECS.values() for _, _, s in specs
                     if not workflow.is_widget(s)})
SMALL_INTS = {"width": (8, 48), "height": (8, 48), "frames": (1, 9), "batch_size": (1, 2), "steps": (1, 2),
              "tile_size": (0, 64), "frame_load_cap": (1, 9), "skip_first_frames": (0, 12),
              "select_every_nth": (1, 4), "overlap": (0, 12), "skip_start": (0, 12), "skip_end": (0, 12),
              "latent_frames": (1, 8)}
SMALL_FLOATS = {"seconds": (0.0, 2.0)}
VAE_NODES = {"SoraVAEDecode", "SoraVAEEncode", "SoraClipBlend", "SoraSeamlessLoop", "SoraImageToVideo",
             "SoraConnectClips", "SoraExtendForward", "SoraExtendBackward"}


def source_class(values: dict):
    """A node giving one output of every link type the pack's inputs take (``values[type]`` when run)."""
    class Source:
        RETURN_TYPES = tuple(LINK_TYPES)
        FUNCTION = "give"

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {}}

        def give(self):
            return tuple(values[t] for t in LINK_TYPES)
    return Source


class Sink:
    """An output node taking anything, so the node under test runs."""
    RETURN_TYPES = ()
    FUNCTION = "take"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("*",)}}

    def take(self, value):
        return {"ui": {}}


# ---------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------

NASTY = st.one_of(st.none(), st.just([]), st.just({}), st.just(["404", 0]), st.just(["src", 99]),
                  st.sampled_from([math.nan, math.inf, -math.inf, 1e308, 2 ** 64, -(2 ** 63) - 1, True]),
                  st.text(max_size=20), st.lists(st.integers(), max_size=3))


def hostile_value(spec):
    """Values at and past a widget's limits, of the wrong type, or not among its choices."""
    kind, opts = workflow.spec_type(spec), workflow.spec_options(spec)
    if kind == "INT":
        lo, hi = opts.get("min", -(2 ** 63)), opts.get("max", 2 ** 63 - 1)
        edges = st.sampled_from([lo, hi, lo - 1, hi + 1, lo + 0.5, float(hi), str(lo), str(hi + 1)])
        return st.one_of(st.integers(lo, hi), edges, st.integers(), NASTY)
    if kind == "FLOAT":
        lo, hi = opts.get("min", -1e300), opts.get("max", 1e300)
        edges = st.sampled_from([lo, hi, math.nextafter(lo, -math.inf), math.nextafter(hi, math.inf),
                                 "nan", "inf", "-inf", str(hi), "1e999"])
        return st.one_of(st.floats(lo, hi), edges, st.floats(), NASTY)
    if kind == "STRING":
        return st.one_of(st.text(), st.text(min_size=2000, max_size=4000), st.text(st.characters(codec="utf-8")),
                         st.sampled_from(["", "\n", "\x00", "../../etc/passwd", "/abs", "a\u202eb"]), NASTY)
    if kind == "BOOLEAN":
        return st.one_of(st.booleans(), st.sampled_from(["true", "FALSE", "yes", 0, 1]), NASTY)
    choices = workflow.combo_choices(spec) or [""]
    return st.one_of(st.sampled_from(choices), st.sampled_from([c.upper() for c in choices if isinstance(c, str)]
                                                               or [""]), st.text(max_size=10), NASTY)


def valid_value(name, spec):
    """Values a user may give, from the widget's range (sizes and counts kept small to run fast)."""
    kind, opts = workflow.spec_type(spec), workflow.spec_options(spec)
    if kind == "INT":
        lo, hi = SMALL_INTS.get(name, (opts.get("min", 0), opts.get("max", 2 ** 31)))
        return st.one_of(st.integers(lo, hi), st.sampled_from([lo, hi]))
    if kind == "FLOAT":
        lo, hi = SMALL_FLOATS.get(name, (opts.get("min", -1e6), opts.get("max", 1e6)))
        return st.one_of(st.floats(lo, hi), st.sampled_from([lo, hi]))
    if kind == "STRING":
        return st.one_of(st.text(max_size=80), st.sampled_from(["", " ", "a/b", "..", "sora/clip", "0,1,-1",
                                                                "0:3", "-1", "99", "a\u202eb", "\n"]))
    if kind == "BOOLEAN":
        return st.booleans()
    return st.sampled_from(workflow.combo_choices(spec))


def prompt_for(name: str, draw, value_of, source: str = "src") -> dict:
    """An API prompt: the source, the node ``n`` under test (values from ``value_of``), a sink."""
    inputs = {}
    for section, input_name, spec in SPECS[name]:
        if section == "optional" and draw(st.booleans()):
            continue
        if workflow.is_widget(spec):
            inputs[input_name] = draw(value_of(input_name, spec))
        else:
            inputs[input_name] = [source, LINK_TYPES.index(workflow.spec_type(spec))]
    api = {"src": {"class_type": "Source", "inputs": {}}, "n": {"class_type": name, "inputs": inputs}}
    if NODES[name].RETURN_TYPES:
        api["sink"] = {"class_type": "Sink", "inputs": {"value": ["n", draw(st.integers(0, len(NODES[name].RETURN_TYPES) - 1))]}}
    return api


def assert_named(error: WorkflowError, name: str) -> None:
    """A validation error names node n and one of its inputs; a run error names the node and comes
    from one of the project's errors (ValueError subclasses), not from a bug."""
    text = str(error)
    assert f"node n ({name})" in text, text
    cause = error.__cause__
    if cause is None:
        assert "input '" in text or "the graph has a cycle" in text, text
    else:
        assert isinstance(cause, ValueError) and not isinstance(cause, UnicodeError), \
            f"{name} raised {type(cause).__name__}: {cause}"


# ---------------------------------------------------------------------------------------------
# Validation of hostile values
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(NODES))
@settings(max_examples=60)
@given(data=st.data())
def test_hostile_widget_values_are_refused_naming_node_and_input(name, data):
    api = prompt_for(name, data.draw, lambda n, spec: st.one_of(hostile_value(spec), valid_value(n, spec)))
    if data.draw(st.booleans()):                          # leave a required input out
        required = [n for sec, n, _ in SPECS[name] if sec == "required"]
        if required:
            api["n"]["inputs"].pop(data.draw(st.sampled_from(required)), None)
    classes = {**NODES, "Source": source_class({}), "Sink": Sink}
    try:
        executor.validate_prompt(api, classes)
    except WorkflowError as e:
        assert_named(e, name)


# ---------------------------------------------------------------------------------------------
# Running every node on tiny inputs
# ---------------------------------------------------------------------------------------------

class ComfyVAEStandIn:
    """What the native-latent nodes read of ComfyUI's VAE (comfy.sd.VAE): a causal 4x4x4 layout with 4
    channels; ``encode`` takes IMAGE frames (1 + 4k of them) to (1, 4, 1 + k, H/4, W/4)."""
    latent_dim, latent_channels, downscale_index_formula = 3, 4, (4, 4, 4)

    def encode(self, images):
        from sora_core.geometry import latent_frames
        latent_frames(images.shape[0], 4)
        x = torch.nn.functional.avg_pool2d(images[::4].movedim(-1, 1), 4)
        return torch.cat([x, x.mean(1, keepdim=True)], dim=1).movedim(0, 1)[None]


@pytest.fixture(scope="module")
def tiny_values(tmp_path_factory):
    """One value of every link type: a tiny random model (saved and loaded by the loader node), its
    conditioning, 5 frames of 32x32, a latent of that size, and an image-to-video condition."""
    from sora_core.models.dit import DiT
    from sora_core.models.text import ByteTextEncoder
    from sora_core.models.vae import VideoVAE
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("fuzz_model")
    for kind, module in {"vae": VideoVAE(configs.vae_preset("tiny4")), "dit": DiT(configs.dit_preset("tiny")),
                         "text_encoder": ByteTextEncoder(configs.text_encoder_preset("tiny"))}.items():
        weights.save_component(folder / f"{kind}.safetensors", module, module.cfg)
    HOST.configure(output=tmp_path_factory.mktemp("fuzz_out"), temp=tmp_path_factory.mktemp("fuzz_temp"),
                   progress=False)

    def run(node, **kwargs):
        cls = NODES[node]
        return getattr(cls(), cls.FUNCTION)(**kwargs)
    (model,) = run("SoraModelLoader", dit="default", vae="default", text_encoder="default", dtype="float32",
                   model_dir=str(folder))
    image = torch.rand(5, 32, 32, 3, generator=torch.Generator().manual_seed(0))
    values = {"SORA_MODEL": model, "IMAGE": image, "LATENT": {"samples": torch.zeros(1, 4, 2, 8, 8)},
              "VAE": ComfyVAEStandIn(),
              "SORA_CONDITIONING": run("SoraTextEncode", model=model, positive="a red ball", negative="")[0],
              "SORA_FRAME_CONDITIONS": run("SoraImageToVideo", model=model, image=image[:1], position="start",
                                           strength=1.0)[0]}
    assert set(values) == set(LINK_TYPES)
    return values


def run_fuzzed(name: str, draw, values: dict) -> None:
    """Run node ``name`` on ``values`` with widget values drawn from their valid ranges."""
    api = prompt_for(name, draw, valid_value)
    classes = {**NODES, "Source": source_class(values), "Sink": Sink}
    try:
        executor.execute(api, classes, progress=False)
    except WorkflowError as e:
        assert_named(e, name)


@pytest.mark.parametrize("name", sorted(set(NODES) - VAE_NODES - {"SoraModelLoader"}))
@settings(max_examples=20)
@given(data=st.data())
def test_every_node_runs_on_tiny_inputs_or_fails_naming_itself(name, data, tiny_values):
    run_fuzzed(name, data.draw, tiny_values)


@pytest.mark.parametrize("name", sorted(VAE_NODES))
@settings(max_examples=6)
@given(data=st.data())
def test_every_vae_node_runs_on_tiny_inputs_or_fails_naming_itself(name, data, tiny_values):
    """The nodes that encode or decode with the VAE: fewer cases, each takes longer."""
    run_fuzzed(name, data.draw, tiny_values)
