"""scripts/ship_default_model.py: installs exported weights as a model folder, all or nothing."""

import importlib.util
from pathlib import Path

import pytest
import torch

from conftest import train_tiny_model
from sora_core.pipeline import SoraModel

ROOT = Path(__file__).resolve().parents[1]


def _ship():
    spec = importlib.util.spec_from_file_location("ship_default_model", ROOT / "scripts" / "ship_default_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ship")
    _, vae_path, _, dit_dir = train_tiny_model(tmp)
    _, other_path, _, _ = train_tiny_model(tmp, vae_steps=2, dit_steps=0, vae_seed=1)   # another latent space
    return tmp, vae_path, other_path, dit_dir


def test_ship_writes_a_loadable_model_with_the_chosen_guidance(exported):
    tmp, vae_path, _, dit_dir = exported
    out = tmp / "model"
    out.mkdir()
    assert _ship()(["--vae", str(vae_path), "--dit", str(dit_dir), "--out", str(out), "--cfg", "2.5",
                    "--sampler", "euler_ancestral", "--shift", "2"]) == 0
    model = SoraModel.load(out)
    assert (model.schedule.cfg, model.schedule.sampler, model.schedule.shift) == (2.5, "euler_ancestral", 2.0)
    assert model.dit.blocks[0].attn1.to_q.weight.dtype == torch.float32      # bf16 on disk, fp32 modules
    assert sorted(p.name for p in out.iterdir()) == ["dit.safetensors", "text_encoder.safetensors", "vae.safetensors"]


def test_ship_refuses_bad_input_and_leaves_the_target_alone(exported):
    tmp, vae_path, other_path, dit_dir = exported
    out = tmp / "model2"
    out.mkdir()
    (out / "dit.safetensors").write_bytes(b"previous")
    with pytest.raises(SystemExit):      # the DiT was trained on another VAE's latent space
        _ship()(["--vae", str(other_path), "--dit", str(dit_dir), "--out", str(out)])
    with pytest.raises(SystemExit):
        _ship()(["--vae", str(vae_path), "--dit", str(dit_dir), "--out", str(out), "--cfg", "0.5"])
    with pytest.raises(SystemExit):
        _ship()(["--vae", str(vae_path), "--dit", str(dit_dir), "--out", str(out), "--sampler", "ddim"])
    with pytest.raises(SystemExit):
        _ship()(["--vae", str(vae_path), "--dit", str(dit_dir), "--out", str(out), "--shift", "0"])
    with pytest.raises(SystemExit):
        _ship()(["--vae", str(vae_path), "--dit", str(tmp / "nowhere"), "--out", str(out)])
    assert sorted(p.name for p in out.iterdir()) == ["dit.safetensors"]
    assert (out / "dit.safetensors").read_bytes() == b"previous"
