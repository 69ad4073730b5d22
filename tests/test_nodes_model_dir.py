"""Sora Model Loader.model_dir: in ComfyUI a choice among the model folders under diffusion_models,
confined to them (no absolute paths, no '..', no symlink leading out); headless a free path (sora run
--model) or such a folder name. Workflows saved with model_dir "" keep loading."""

import os
from pathlib import Path

import pytest
import torch

from sora_core import configs
from comfyui_sora.headless import workflow
from sora_core.models.dit import DiT
from sora_core.pipeline import SoraModel
from sora_core.models.text import ByteTextEncoder
from sora_core.models.vae import VideoVAE

PACK = workflow.load_pack()
HOST = PACK.nodes.host
LOADER = PACK.NODE_CLASS_MAPPINGS["SoraModelLoader"]


class FakeFolders:
    """The parts of ComfyUI's ``folder_paths`` the host uses, over one models folder."""

    def __init__(self, models: Path):
        self.models = models

    def get_folder_paths(self, kind):
        return [str(self.models / kind)]

    def get_filename_list(self, kind):
        root = self.models / kind
        return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root, followlinks=True)
                      for f in fs)

    def get_full_path(self, kind, name):
        path = self.models / kind / name
        return str(path) if path.is_file() else None


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """models/diffusion_models with a good model folder, one lacking its VAE, one symlinked from outside."""
    torch.manual_seed(0)
    base = tmp_path_factory.mktemp("comfy")
    model = SoraModel(VideoVAE(configs.vae_preset("tiny")), ByteTextEncoder(configs.text_encoder_preset("tiny")),
                      DiT(configs.dit_preset("tiny")))
    root = base / "models" / "diffusion_models"
    model.save(root / "runs" / "good")
    model.save(root / "partial")
    (root / "partial" / "vae.safetensors").unlink()
    model.save(base / "outside")
    (root / "escape").symlink_to(base / "outside", target_is_directory=True)
    return base


@pytest.fixture
def comfyui(monkeypatch, models):
    monkeypatch.setattr(HOST, "_folders", FakeFolders(models / "models"))
    return models


def test_comfyui_offers_only_model_folders(comfyui):
    assert HOST.in_comfyui()
    choices, opts = LOADER.INPUT_TYPES()["optional"]["model_dir"]
    assert choices == ["none", "runs/good"] and opts["default"] == "none"


@pytest.mark.parametrize("value,match", [
    ("/etc", "no absolute paths"),
    (str(Path(__file__).parent), "no absolute paths"),
    ("../comfy", r"no absolute paths, no '\.\.'"),
    ("runs/../runs/good", r"no '\.\.'"),
    ("escape", "leads outside the diffusion_models model folder"),
    ("partial", "lacks vae.safetensors"),
    ("nothere", "is not a model folder"),
])
def test_comfyui_refuses_other_paths_before_reading(comfyui, value, match, monkeypatch):
    msg = LOADER.VALIDATE_INPUTS(model_dir=value)
    assert isinstance(msg, str) and value in msg and __import__("re").search(match, msg), msg
    monkeypatch.setattr(SoraModel, "load", classmethod(lambda *a, **k: pytest.fail("read a model")))
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        LOADER().load("default", "default", "default", "float32", model_dir=value)


def test_comfyui_loads_a_listed_folder_and_keeps_old_workflows(comfyui):
    for old in ("", "none", "  "):
        assert LOADER.VALIDATE_INPUTS(model_dir=old) is True
    assert LOADER.VALIDATE_INPUTS(model_dir="runs/good") is True
    (handle,) = LOADER().load("default", "default", "default", "float32", model_dir="runs/good")
    assert handle.name == "good" and handle.model.spec.dit == configs.dit_preset("tiny")


def test_headless_keeps_free_paths_and_folder_names(models, monkeypatch):
    monkeypatch.setattr(HOST, "_folders", None)
    monkeypatch.setattr(HOST._headless, "models", models / "models")
    assert LOADER.INPUT_TYPES()["optional"]["model_dir"][0] == "STRING"
    assert LOADER.VALIDATE_INPUTS(model_dir=str(models / "outside")) is True
    (a,) = LOADER().load("default", "default", "default", "float32", model_dir=str(models / "outside"))
    (b,) = LOADER().load("default", "default", "default", "float32", model_dir="runs/good")
    assert a.name == "outside" and b.name == "good"
