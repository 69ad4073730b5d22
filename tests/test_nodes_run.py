"""Every model node run on tiny inputs with a tiny random model (saved to disk and loaded through the
loader node): outputs match RETURN_TYPES, seeds reproduce, conditions pin frames, previews and
interrupts reach the host, bad inputs are named."""

import types

import pytest
import torch

from sora_core.diffusion import conditions
from sora_core import configs, pipeline, weights
from comfyui_sora.nodes import graph_ops
from comfyui_sora.headless import workflow
from sora_core.geometry import GeometryError

PACK = workflow.load_pack()
HOST = PACK.nodes.host
H = W = 32


def run(name, **kwargs):
    cls = PACK.NODE_CLASS_MAPPINGS[name]
    out = getattr(cls(), cls.FUNCTION)(**kwargs)
    result = out["result"] if isinstance(out, dict) else out
    assert isinstance(result, tuple) and len(result) == len(cls.RETURN_TYPES), name
    for value, kind in zip(result, cls.RETURN_TYPES):
        check_type(value, kind, name)
    return result


def check_type(value, kind, where):
    if kind == "IMAGE":
        assert value.ndim == 4 and value.shape[-1] == 3 and value.dtype == torch.float32, where
        assert 0 <= value.min() and value.max() <= 1, where
    elif kind == "LATENT":
        assert isinstance(value, dict) and value["samples"].ndim == 5, where
    else:
        expected = {"INT": int, "FLOAT": float, "STRING": str, "SORA_MODEL": graph_ops.LoadedModel,
                    "SORA_CONDITIONING": graph_ops.PromptConditioning, "SORA_FRAME_CONDITIONS": tuple}[kind]
        assert isinstance(value, expected), (where, kind, type(value))
        if kind == "SORA_FRAME_CONDITIONS":
            assert value and all(isinstance(c, conditions.FrameCondition) for c in value), where


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from sora_core.models.dit import DiT
    from sora_core.models.text import ByteTextEncoder
    from sora_core.models.vae import VideoVAE
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    parts = {"vae": VideoVAE(configs.vae_preset("tiny4")), "dit": DiT(configs.dit_preset("tiny")),
             "text_encoder": ByteTextEncoder(configs.text_encoder_preset("tiny"))}
    with torch.no_grad():                       # a non-zero head, so the DiT's output depends on its input
        parts["dit"].proj_out.weight.normal_(0, 0.02)
    sub = {"dit": "diffusion_models", "vae": "vae", "text_encoder": "text_encoders"}
    for kind, module in parts.items():
        weights.save_component(folder / f"{kind}.safetensors", module, module.cfg)
        weights.save_component(folder / sub[kind] / f"tiny_{kind}.safetensors", module, module.cfg)
    return folder


@pytest.fixture(scope="module")
def model(model_dir):
    (handle,) = run("SoraModelLoader", dit="default", vae="default", text_encoder="default", dtype="float32",
                    model_dir=str(model_dir))
    return handle


@pytest.fixture(scope="module")
def prompt(model):
    return run("SoraTextEncode", model=model, positive="a red ball moving right", negative="")[0]


def clip(frames, h=H, w=W, seed=0):
    return torch.rand(frames, h, w, 3, generator=torch.Generator().manual_seed(seed))


def test_loader_takes_files_from_the_model_folders(model_dir, model):
    HOST.configure(models=model_dir)
    names = PACK.NODE_CLASS_MAPPINGS["SoraModelLoader"].INPUT_TYPES()["required"]["dit"][0]
    assert names == ["default", "tiny_dit.safetensors"]
    (loaded,) = run("SoraModelLoader", dit="tiny_dit.safetensors", vae="tiny_vae.safetensors",
                    text_encoder="tiny_text_encoder.safetensors", dtype="bfloat16")
    assert loaded.dtype == torch.bfloat16 and loaded.vae_dtype == torch.bfloat16
    assert model.dtype is None and loaded.rgb_map.shape == (configs.vae_preset("tiny4").z_dim + 1, 3)
    with pytest.raises(FileNotFoundError, match="gone.safetensors"):
        run("SoraModelLoader", dit="gone.safetensors", vae="default", text_encoder="default", dtype="auto")


def test_empty_latent_snaps_sizes_and_describes_the_grid(model):
    latent, grid, fps, w, h, frames = run("SoraEmptyLatent", model=model, width=30, height=33, frames=8,
                                          aspect="custom", seconds=0.0, fps=8.0, batch_size=2)
    assert (w, h, frames) == (32, 32, 9) and latent["samples"].shape == (2, 4, 3, 8, 8)
    assert "tokens" in grid and "30x33 -> 32x32" in grid and "frames 8 -> 9" in grid
    latent, grid, _, w, h, frames = run("SoraEmptyLatent", model=model, width=64, height=64, frames=1,
                                        aspect="wide", seconds=1.0, fps=8.0, batch_size=1)
    assert w > h and frames == 9 and latent["samples"].shape[-2:] == (h // 4, w // 4)


def test_sampler_reproduces_seeds_and_pins_conditions(model, prompt):
    (latent, *_rest) = run("SoraEmptyLatent", model=model, width=W, height=H, frames=5, aspect="custom",
                           seconds=0.0, fps=8.0, batch_size=1)
    args = dict(model=model, conditioning=prompt, latent=latent, steps=2, cfg=2.0, sampler_name="euler",
                shift=3.0, denoise=1.0)
    a, b, c = (run("SoraSampler", seed=s, **args)[0]["samples"] for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.allclose(a, c)
    own_cfg = model.model.schedule.cfg                  # cfg 0 on the widget: the model's own
    assert own_cfg not in (0.0, 1.0, 2.0)
    by_zero, by_own, off = (run("SoraSampler", seed=1, **{**args, "cfg": g})[0]["samples"] for g in (0.0, own_cfg, 1.0))
    assert torch.equal(by_zero, by_own) and not torch.allclose(by_zero, off) and not torch.allclose(by_zero, a)
    image = clip(1)
    (conds,) = run("SoraImageToVideo", model=model, image=image, position="start", strength=1.0)
    pinned = run("SoraSampler", seed=3, frame_conditions=conds, **args)[0]["samples"]
    assert torch.allclose(pinned[:, :, :1], conds[0].latents, atol=1e-5)
    assert not torch.allclose(pinned[:, :, 1:], torch.zeros_like(pinned[:, :, 1:]))
    sdedit = run("SoraSampler", seed=3, **{**args, "latent": {"samples": pinned}, "denoise": 0.3})[0]["samples"]
    assert (sdedit - pinned).abs().mean() < (a - pinned).abs().mean()


def test_vae_nodes_round_trip_and_fit_frames(model):
    (latent,) = run("SoraVAEEncode", model=model, images=clip(7), fit_frames="trim")
    assert latent["samples"].shape == (1, 4, 2, 8, 8)
    assert run("SoraVAEEncode", model=model, images=clip(7), fit_frames="pad")[0]["samples"].shape[2] == 3
    with pytest.raises(GeometryError, match="7 frames"):
        run("SoraVAEEncode", model=model, images=clip(7), fit_frames="error")
    (images,) = run("SoraVAEDecode", model=model, latent=latent, tile_size=0)
    assert images.shape == (5, H, W, 3)
    with pytest.raises(ValueError, match=r"latent must be a Sora video latent \(B, 4, T, H, W\)"):
        run("SoraVAEDecode", model=model, latent={"samples": torch.zeros(1, 4, 8, 8)}, tile_size=0)


def test_condition_nodes_chain_and_report_overlaps(model):
    video, other = clip(9, seed=1), clip(9, seed=2)
    fwd, overlap_f = run("SoraExtendForward", model=model, video=video, latent_frames=2, strength=1.0)
    back, overlap_b = run("SoraExtendBackward", model=model, video=video, latent_frames=1, strength=0.8,
                          previous=fwd)
    assert (overlap_f, overlap_b) == (5, 4) and len(back) == 2 and back[0] is fwd[0]
    assert back[1].position == -1 and back[1].strength == pytest.approx(0.8)
    loop, drop_end, drop_start = run("SoraSeamlessLoop", model=model, image=clip(1), strength=1.0)
    assert (drop_start, drop_end) == (1, 3) and [c.position for c in loop] == [0, -1]
    conn, a, b = run("SoraConnectClips", model=model, first=video, second=other, latent_frames=1, strength=1.0)
    assert (a, b) == (1, 4) and len(conn) == 2
    (blend,) = run("SoraClipBlend", model=model, first=video, second=other, curve="linear", start=0.0, end=1.0,
                   strength=0.9, transition_strength=0.4)
    assert [c.position for c in blend] == [0, 1, 2]
    assert [c.strength for c in blend] == pytest.approx([0.9, 0.4, 0.9])


def test_text_nodes(model):
    (expanded,) = run("SoraPromptExpand", text="a red ball bouncing", seed=4)
    assert "red" in expanded and "ball" in expanded and len(expanded) > len("a red ball bouncing")
    (cond,) = run("SoraTextEncode", model=model, positive=expanded, negative="blurry")
    assert cond.cond.context.shape[-1] == configs.text_encoder_preset("tiny").out_dim
    assert cond.cond.context.shape == cond.uncond.context.shape


class FakeBar:
    def __init__(self, total):
        self.calls = []

    def update_absolute(self, value, total, preview=None):
        self.calls.append((value, total, preview))


def test_sampler_reports_previews_to_comfyui_and_stops_on_interrupt(model, prompt, monkeypatch):
    bars = []
    monkeypatch.setattr(HOST, "_comfy_utils", types.SimpleNamespace(ProgressBar=lambda n: bars.append(FakeBar(n)) or bars[-1]))
    monkeypatch.setattr(HOST, "_preview_settings", lambda: (True, 256))
    interrupts = {"n": 0}

    def throw():
        interrupts["n"] += 1
        if interrupts["n"] > 1:
            raise InterruptedError("cancelled")
    monkeypatch.setattr(HOST, "_mm", types.SimpleNamespace(throw_exception_if_processing_interrupted=throw))
    latent = {"samples": torch.zeros(1, 4, 2, 8, 8)}
    with pytest.raises(InterruptedError):
        run("SoraSampler", model=model, conditioning=prompt, latent=latent, seed=0, steps=3, cfg=1.0,
            sampler_name="euler", shift=1.0, denoise=1.0)
    value, total, (fmt, image, size) = bars[0].calls[0]
    assert (value, total, fmt, size) == (1, 3, "JPEG", 256) and image.size == (W, H)
    assert len(bars[0].calls) == 1                          # stopped at the second step


def test_pipeline_default_model_missing_is_explained(monkeypatch, tmp_path):
    monkeypatch.setattr(pipeline, "DEFAULT_MODEL_DIR", tmp_path / "none")
    with pytest.raises(pipeline.ModelMissingError, match="default model is missing"):
        run("SoraModelLoader", dit="default", vae="default", text_encoder="default", dtype="auto")
