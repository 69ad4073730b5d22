"""Wan 2.1 / 2.2 DiT checkpoints: detection, the three file layouts, storage dtypes and parity.

Tiny random models with the real key names (dim 256 = 2 heads of 128, 2 layers, ffn 512, text_dim 64,
16 channels for 2.1 T2V, 48 for 2.2 TI2V): ComfyUI's own ``WanModel`` (comfy/ldm/wan/model.py, run in
ComfyUI's venv by tests/comfy_reference.py) draws the weights and gives its output and state dict;
diffusers' ``WanTransformer3DModel`` gets the same weights through diffusers' own key converter. The
state dict is saved as ComfyUI's single file (with and without ``model.diffusion_model.``), as the
original release (two shards + index + config.json) and as a diffusers folder (save_pretrained), and
each is loaded with ``sora_core.loading.load``.

Tolerances (max abs difference / max abs reference output), measured here (asserted in brackets):
    fp32, every layout, both kernel paths, vs ComfyUI's WanModel        3e-6 .. 6e-6   (<= 1e-4)
    fp32 vs diffusers' WanTransformer3DModel; bf16 file computed in fp32 (per-layer upcast) vs the
      reference with the bf16-rounded weights; fp8 / scaled fp8 files vs the reference with the
      dequantized weights                                              ~5e-7          (<= 1e-4)
    bf16 file under CPU bf16 autocast vs that fp32 reference: fused kernels 5.5e-3 .. 7.7e-3, plain
      3.5e-3 .. 3.7e-3 (diffusers' own bf16 autocast: 5.4e-3 .. 5.7e-3)               (<= 3e-2)
Wan 2.2 TI2V takes a timestep per token; ours takes one per latent frame: the reference is given the
per-frame times expanded to every token of the frame (first frame at t = 0, as an image condition).
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from comfy_reference import run_reference
from sora_core import loading
from sora_core.configs import DiTConfig, dit_preset
from sora_core.models.wan.detect import UnsupportedCheckpoint, detect
from sora_core.models.wan.dit_keys import detect_dit
from sora_core.weights import WeightsError

TINY = {"t2v": dict(dim=256, heads=2, layers=2, ffn=512, text_dim=64, freq_dim=256, channels=16, seed=1),
        "ti2v": dict(dim=256, heads=2, layers=2, ffn=512, text_dim=64, freq_dim=256, channels=48, seed=2)}
GRID = (3, 4, 6)                       # latent frames, height, width -> 3 x 2 x 3 tokens
TOKENS = 3 * 2 * 3

SCRIPT = """
import json
from comfy.ldm.wan.model import WanModel
import comfy.ops
for name, c in json.loads(inputs.pop("configs_json").numpy().tobytes().decode()).items():
    torch.manual_seed(c["seed"])
    m = WanModel(model_type="t2v", patch_size=(1, 2, 2), in_dim=c["channels"], dim=c["dim"], ffn_dim=c["ffn"],
                 freq_dim=c["freq_dim"], text_dim=c["text_dim"], out_dim=c["channels"], num_heads=c["heads"],
                 num_layers=c["layers"], operations=comfy.ops.disable_weight_init, dtype=torch.float32)
    with torch.no_grad():
        for k, p in m.named_parameters():
            if "modulation" in k:
                p.copy_(torch.randn_like(p) * 0.3)
            elif p.ndim > 1:
                p.copy_(torch.randn_like(p) / p[0].numel() ** 0.5)
            else:
                p.copy_(torch.randn_like(p) * 0.2 + (1.0 if "norm" in k else 0.0))
        out = m(inputs[name + ".x"], inputs[name + ".t"], inputs[name + ".ctx"])
    outputs[name + ".out"] = out
    for k, v in m.state_dict().items():
        outputs[name + ".sd." + k] = v
"""


def _inputs(name: str):
    """(x, our t, reference t (x1000, per token for TI2V), context) of one tiny config."""
    c = TINY[name]
    g = torch.Generator().manual_seed(c["seed"] + 10)
    x = torch.randn(1, c["channels"], *GRID, generator=g)
    ctx = torch.randn(1, 7, c["text_dim"], generator=g)
    if name == "ti2v":                                   # frame 0 held clean (t = 0): an image condition
        t = torch.tensor([[0.0, 0.7, 0.7]])
        t_ref = (t * 1000.0).repeat_interleave(TOKENS // GRID[0], dim=1)                 # (1, tokens)
    else:
        t = torch.tensor([0.7])
        t_ref = t * 1000.0
    return x, t, t_ref, ctx


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """{name: (comfy state dict (original names), ComfyUI's output)} for every tiny config."""
    inputs = {"configs_json": torch.frombuffer(bytearray(json.dumps(TINY).encode()), dtype=torch.uint8)}
    for name in TINY:
        x, _, t_ref, ctx = _inputs(name)
        inputs.update({name + ".x": x, name + ".t": t_ref, name + ".ctx": ctx})
    out = run_reference(SCRIPT, inputs, tmp_path_factory.mktemp("wan_ref"))
    return {name: ({k[len(name) + 4:]: v for k, v in out.items() if k.startswith(name + ".sd.")}, out[name + ".out"])
            for name in TINY}


def _diffusers(name: str, sd: dict):
    """diffusers' WanTransformer3DModel with ComfyUI's weights, through diffusers' own converter."""
    from diffusers import WanTransformer3DModel
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers
    c = TINY[name]
    model = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=c["heads"], attention_head_dim=128,
                                  in_channels=c["channels"], out_channels=c["channels"], text_dim=c["text_dim"],
                                  freq_dim=c["freq_dim"], ffn_dim=c["ffn"], num_layers=c["layers"])
    model.load_state_dict(convert_wan_transformer_to_diffusers(dict(sd)), strict=True)
    return model.eval()


def _run_diffusers(model, name: str) -> torch.Tensor:
    x, _, t_ref, ctx = _inputs(name)
    with torch.no_grad():
        return model(hidden_states=x, timestep=t_ref, encoder_hidden_states=ctx, return_dict=False)[0]


def _run_ours(model, name: str) -> torch.Tensor:
    x, t, _, ctx = _inputs(name)
    with torch.no_grad():
        return model(x, t, ctx)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).abs().max() / b.float().abs().max())


# ---------------------------------------------------------------------------------------------
# Writing the three layouts
# ---------------------------------------------------------------------------------------------

def write_comfyui(path, sd: dict, prefix: str = "") -> str:
    save_file({prefix + k: v.contiguous() for k, v in sd.items()}, str(path))
    return str(path)


def write_original(folder, sd: dict, name: str) -> str:
    """Two shards + index + the original release's config.json."""
    folder.mkdir(parents=True, exist_ok=True)
    keys = sorted(sd)
    halves = (keys[: len(keys) // 2], keys[len(keys) // 2:])
    weight_map = {}
    for i, part in enumerate(halves, 1):
        fname = f"diffusion_pytorch_model-{i:05d}-of-00002.safetensors"
        save_file({k: sd[k].contiguous() for k in part}, str(folder / fname))
        weight_map.update({k: fname for k in part})
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    c = TINY[name]
    (folder / "config.json").write_text(json.dumps({
        "_class_name": "WanModel", "dim": c["dim"], "num_heads": c["heads"], "num_layers": c["layers"],
        "ffn_dim": c["ffn"], "in_dim": c["channels"], "out_dim": c["channels"], "model_type": "t2v"}))
    return str(folder)


# ---------------------------------------------------------------------------------------------
# Parity
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(TINY))
def test_every_layout_matches_comfyui_and_diffusers(name, reference, tmp_path):
    sd, comfy_out = reference[name]
    diff_model = _diffusers(name, sd)
    diff_out = _run_diffusers(diff_model, name)
    assert _rel(diff_out, comfy_out) <= 1e-4          # the two references agree
    diff_model.save_pretrained(str(tmp_path / "diffusers"))
    paths = {"comfyui": write_comfyui(tmp_path / "wan.safetensors", sd),
             "comfyui-prefixed": write_comfyui(tmp_path / "wan_prefixed.safetensors", sd, "model.diffusion_model."),
             "original": write_original(tmp_path / "original", sd, name),
             "diffusers": str(tmp_path / "diffusers")}
    layouts = {}
    for label, path in paths.items():
        model, ck = loading.load(path, kind="dit")
        layouts[label] = ck.detected.layout
        assert ck.detected.family == ("wan2.2-ti2v" if name == "ti2v" else "wan2.1-t2v")
        assert ck.detected.cfg.num_heads == 2 and ck.detected.cfg.ffn_dim == 512
        for kernels in ("fused", "plain"):
            out = _run_ours(model.set_kernels(kernels), name)
            assert _rel(out, comfy_out) <= 1e-4, (label, kernels)
            assert _rel(out, diff_out) <= 1e-4, (label, kernels)
    assert layouts == {"comfyui": "comfyui", "comfyui-prefixed": "comfyui", "original": "original",
                       "diffusers": "diffusers"}


def test_bf16_file_keeps_its_dtype(reference, tmp_path):
    sd, _ = reference["t2v"]
    sd16 = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    model, ck = loading.load(write_comfyui(tmp_path / "wan_bf16.safetensors", sd16), kind="dit")
    stored = model.blocks[0].attn1.to_q.parametrizations.weight.original
    assert stored.dtype == torch.bfloat16 and model.blocks[0].attn1.to_q.weight.dtype == torch.float32
    ref = _run_diffusers(_diffusers("t2v", {k: v.float() for k, v in sd16.items()}), "t2v")
    assert _rel(_run_ours(model, "t2v"), ref) <= 1e-4                  # fp32 compute: exact upcast
    for kernels in ("fused", "plain"):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = _run_ours(model.set_kernels(kernels), "t2v")
        assert _rel(out, ref) <= 3e-2, kernels                          # bf16 compute (docstring)
    assert ck.storage_bytes() == sum(v.numel() * 2 for v in sd16.values())


def _fp8(sd: dict, scaled: bool) -> tuple[dict, dict]:
    """(file tensors, dequantized fp32 state dict): block linear weights in float8_e4m3fn."""
    out, deq = {}, {}
    for k, v in sd.items():
        if k.startswith("blocks.") and k.endswith(".weight") and v.ndim == 2:
            scale = (v.abs().max() / 448.0) if scaled else torch.tensor(1.0)
            q = (v / scale).to(torch.float8_e4m3fn)
            out[k], deq[k] = q, q.float() * scale
            if scaled:
                out[k[: -len("weight")] + "scale_weight"] = scale.reshape(())
                out[k[: -len("weight")] + "scale_input"] = torch.ones(())
        else:
            out[k], deq[k] = v, v
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out, deq


@pytest.mark.parametrize("scaled", [False, True])
def test_fp8_files_match_the_dequantized_reference(scaled, reference, tmp_path):
    sd, _ = reference["t2v"]
    stored, deq = _fp8(sd, scaled)
    model, ck = loading.load(write_comfyui(tmp_path / "wan_fp8.safetensors", stored, "model.diffusion_model."),
                             kind="dit")
    assert model.blocks[1].ffn.net[2].parametrizations.weight.original.dtype == torch.float8_e4m3fn
    assert any("scaled fp8" in n for n in ck.detected.notes) == scaled
    ref = _run_diffusers(_diffusers("t2v", deq), "t2v")
    for kernels in ("fused", "plain"):
        assert _rel(_run_ours(model.set_kernels(kernels), "t2v"), ref) <= 1e-4


# ---------------------------------------------------------------------------------------------
# Detection of the released sizes (headers only)
# ---------------------------------------------------------------------------------------------

def original_shapes(dim: int, layers: int, ffn: int, channels: int, text_dim: int = 4096, freq_dim: int = 256) -> dict:
    """The key names and shapes of an original-layout Wan DiT (as comfy/ldm/wan/model.py names them)."""
    s = {"patch_embedding.weight": (dim, channels, 1, 2, 2), "patch_embedding.bias": (dim,),
         "text_embedding.0.weight": (dim, text_dim), "text_embedding.0.bias": (dim,),
         "text_embedding.2.weight": (dim, dim), "text_embedding.2.bias": (dim,),
         "time_embedding.0.weight": (dim, freq_dim), "time_embedding.0.bias": (dim,),
         "time_embedding.2.weight": (dim, dim), "time_embedding.2.bias": (dim,),
         "time_projection.1.weight": (6 * dim, dim), "time_projection.1.bias": (6 * dim,),
         "head.head.weight": (channels * 4, dim), "head.head.bias": (channels * 4,), "head.modulation": (1, 2, dim)}
    for i in range(layers):
        b = f"blocks.{i}."
        for a in ("self_attn", "cross_attn"):
            for p in "qkvo":
                s[f"{b}{a}.{p}.weight"], s[f"{b}{a}.{p}.bias"] = (dim, dim), (dim,)
            s[f"{b}{a}.norm_q.weight"] = s[f"{b}{a}.norm_k.weight"] = (dim,)
        s.update({f"{b}norm3.weight": (dim,), f"{b}norm3.bias": (dim,), f"{b}ffn.0.weight": (ffn, dim),
                  f"{b}ffn.0.bias": (ffn,), f"{b}ffn.2.weight": (dim, ffn), f"{b}ffn.2.bias": (dim,),
                  f"{b}modulation": (1, 6, dim)})
    return s


@pytest.mark.parametrize("dim,layers,ffn,channels,family", [
    (1536, 30, 8960, 16, "wan2.1-t2v-1.3b"), (5120, 40, 13824, 16, "wan2.1-t2v-14b"),
    (3072, 30, 14336, 48, "wan2.2-ti2v-5b")])
def test_released_sizes_are_detected_from_headers(dim, layers, ffn, channels, family):
    shapes = original_shapes(dim, layers, ffn, channels)
    found = detect(shapes, {k: "BF16" for k in shapes}, kind="dit")
    cfg = found.cfg
    assert found.family == family and found.layout == "original"
    assert (cfg.dim, cfg.num_heads, cfg.head_dim, cfg.num_layers, cfg.ffn_dim) == (dim, dim // 128, 128, layers, ffn)
    assert (cfg.in_channels, cfg.out_channels, cfg.text_dim, cfg.freq_dim, cfg.patch_size) == (channels, channels, 4096,
                                                                                               256, (1, 2, 2))
    if family == "wan2.1-t2v-1.3b":
        assert cfg == DiTConfig(**{**dit_preset("wan2.1-1.3b").__dict__})
    with torch.device("meta"):                           # the detected config builds the module the keys need
        from sora_core.models.dit import DiT
        expected = DiT(cfg).state_dict()
    mapped = {found.key_map(k): v for k, v in shapes.items()}
    assert {k: tuple(v.shape) for k, v in expected.items()} == mapped


def test_diffusers_names_and_prefixes_detect():
    from diffusers import WanTransformer3DModel
    with torch.device("meta"):
        m = WanTransformer3DModel(num_attention_heads=2, attention_head_dim=128, in_channels=48, out_channels=48,
                                  text_dim=64, ffn_dim=512, num_layers=3)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    found = detect_dit(shapes, {})
    assert found.layout == "diffusers" and found.cfg.num_layers == 3 and found.family == "wan2.2-ti2v"
    prefixed = {"model.diffusion_model." + k: v for k, v in original_shapes(256, 2, 512, 16, 64).items()}
    prefixed["first_stage_model.encoder.conv1.weight"] = (8, 3, 3, 3, 3)
    found = detect_dit(prefixed, {})
    assert found.key_map("first_stage_model.encoder.conv1.weight") is None
    assert found.key_map("model.diffusion_model.blocks.1.norm3.bias") == "blocks.1.norm2.bias"


# ---------------------------------------------------------------------------------------------
# Refusals: one clear error each, before any tensor is read
# ---------------------------------------------------------------------------------------------

@pytest.fixture
def no_tensor_reads(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a tensor was read before the file was refused")
    monkeypatch.setattr(loading, "_read", refuse)


def _zeros(shapes: dict, dtype=torch.float32) -> dict:
    return {k: torch.zeros(v, dtype=dtype) for k, v in shapes.items()}


TINY_SHAPES = original_shapes(256, 2, 512, 16, 64)


@pytest.mark.parametrize("extra,evidence", [
    ({"img_emb.proj.0.bias": (1280,), "blocks.0.cross_attn.k_img.weight": (256, 256)}, "I2V"),
    ({"img_emb.emb_pos": (1, 514, 1280), "img_emb.proj.0.bias": (1280,)}, "FLF2V"),
    ({"vace_patch_embedding.weight": (256, 96, 1, 2, 2)}, "VACE"),
    ({"casual_audio_encoder.encoder.final_linear.weight": (4, 4)}, "S2V"),
    ({"control_adapter.conv.weight": (4, 4, 1, 1)}, "camera"),
    ({"face_adapter.fuser_blocks.0.k_norm.weight": (4,)}, "Animate"),
    ({"blocks.0.lora_down.weight": (4, 4)}, "blocks.N.lora_down"),
])
def test_unsupported_families_are_named(extra, evidence, tmp_path, no_tensor_reads):
    path = write_comfyui(tmp_path / "other.safetensors", _zeros({**TINY_SHAPES, **extra}))
    with pytest.raises(loading.UnsupportedModelFile, match=evidence) as e:
        loading.load(path, kind="dit")
    assert "supported" in str(e.value) and isinstance(e.value, WeightsError)


def test_image_concat_model_is_refused(tmp_path, no_tensor_reads):
    shapes = dict(TINY_SHAPES, **{"patch_embedding.weight": (256, 36, 1, 2, 2)})
    with pytest.raises(UnsupportedCheckpoint, match="36 input and 16 output channels"):
        loading.load(write_comfyui(tmp_path / "i2v22.safetensors", _zeros(shapes)), kind="dit")


def test_mismatched_block_names_the_tensor(tmp_path, no_tensor_reads):
    shapes = dict(TINY_SHAPES, **{"blocks.1.ffn.0.weight": (600, 256), "blocks.1.ffn.0.bias": (600,)})
    with pytest.raises(WeightsError, match=r"shape mismatch.*blocks\.1\.ffn\.0\.weight \(600, 256\).*needs \(512, 256\)"):
        loading.load(write_comfyui(tmp_path / "bad.safetensors", _zeros(shapes)), kind="dit")


def test_missing_block_tensor_is_named(tmp_path, no_tensor_reads):
    shapes = {k: v for k, v in TINY_SHAPES.items() if k != "blocks.1.self_attn.o.bias"}
    with pytest.raises(WeightsError, match=r"missing key.*blocks\.1\.attn1\.to_out\.0\.bias"):
        loading.load(write_comfyui(tmp_path / "bad.safetensors", _zeros(shapes)), kind="dit")


def test_truncated_file(tmp_path, no_tensor_reads):
    path = tmp_path / "cut.safetensors"
    write_comfyui(path, _zeros(TINY_SHAPES))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="truncated"):
        loading.load(path, kind="dit")


def test_pickles_are_never_unpickled(tmp_path, no_tensor_reads):
    pth = tmp_path / "wan.pth"
    torch.save({"a": torch.zeros(1)}, pth)
    with pytest.raises(WeightsError, match="pickle"):
        loading.load(pth, kind="dit")
    disguised = tmp_path / "wan.safetensors"
    disguised.write_bytes(pth.read_bytes())
    with pytest.raises(WeightsError, match="zip archive|pickle"):
        loading.load(disguised, kind="dit")
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "Wan2.1_VAE.pth").write_bytes(b"\x80\x02")
    with pytest.raises(WeightsError, match="pickle checkpoints.*never loaded"):
        loading.load(folder, kind="vae")


def test_vae_given_as_dit(tmp_path, no_tensor_reads):
    from diffusers import AutoencoderKLWan
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2], num_res_blocks=1, temperal_downsample=[True],
                           latents_mean=[0.0] * 4, latents_std=[1.0] * 4)
    path = write_comfyui(tmp_path / "vae.safetensors", vae.state_dict())
    with pytest.raises(UnsupportedCheckpoint, match="VAE, not a diffusion model"):
        loading.load(path, kind="dit")


def test_shard_sets_are_checked(reference, tmp_path, no_tensor_reads):
    sd, _ = reference["t2v"]
    folder = write_original(tmp_path / "orig", sd, "t2v")
    (tmp_path / "orig" / "diffusion_pytorch_model-00002-of-00002.safetensors").unlink()
    with pytest.raises(WeightsError, match="missing: diffusion_pytorch_model-00002-of-00002"):
        loading.load(folder, kind="dit")
    index = tmp_path / "orig" / "diffusion_pytorch_model.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "../elsewhere.safetensors"}}))
    with pytest.raises(WeightsError, match="outside its folder"):
        loading.load(index, kind="dit")


def test_config_json_that_disagrees_is_refused(reference, tmp_path, no_tensor_reads):
    sd, _ = reference["t2v"]
    folder = tmp_path / "orig"
    write_original(folder, sd, "t2v")
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanModel", "num_heads": 3}))
    with pytest.raises(UnsupportedCheckpoint, match="3 heads .* dim 256"):
        loading.load(folder, kind="dit")
    (folder / "config.json").write_text(json.dumps({"_class_name": "WanVACETransformer3DModel"}))
    with pytest.raises(UnsupportedCheckpoint, match="WanVACETransformer3DModel"):
        loading.load(folder, kind="dit")


def test_wan_sizes_fit_the_config_limits():
    for dim, layers, ffn in ((1536, 30, 8960), (5120, 40, 13824), (3072, 30, 14336)):
        DiTConfig(in_channels=16, out_channels=16, num_heads=dim // 128, head_dim=128, num_layers=layers,
                  ffn_dim=ffn, text_dim=4096, freq_dim=256)
