"""Shared test fixtures: seeded CPU generators and tiny configs."""

import pytest
import torch


@pytest.fixture
def generator():
    """A seeded CPU generator (every test that draws noise takes one)."""
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def _threads():
    """Tests run on a shared 2-core machine: keep torch to the cores it has."""
    torch.set_num_threads(2)
    yield


@pytest.fixture
def one_thread():
    """Training steps are many small ops: on a busy 2-core machine one thread avoids OpenMP stalls."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_sora_model(schedule, defaults, *, random_head: bool = False, seed: int = 0):
    """A tiny random default-family SoraModel. ``random_head``: the DiT's zero-initialised output
    projection drawn at random (std 0.2, the DiT built first) so the model predicts something."""
    from sora_core.configs import dit_preset, text_encoder_preset, vae_preset
    from sora_core.models.dit import DiT
    from sora_core.models.text import ByteTextEncoder
    from sora_core.models.vae import VideoVAE
    from sora_core.pipeline import SoraModel
    torch.manual_seed(seed)
    if random_head:
        dit = DiT(dit_preset("tiny"))
        torch.nn.init.normal_(dit.proj_out.weight, std=0.2)
        return SoraModel(VideoVAE(vae_preset("tiny")), ByteTextEncoder(text_encoder_preset("tiny")), dit,
                         schedule, defaults)
    return SoraModel(VideoVAE(vae_preset("tiny")), ByteTextEncoder(text_encoder_preset("tiny")),
                     DiT(dit_preset("tiny")), schedule, defaults)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    """A tiny random default-family model saved to a folder (1 step, no guidance, 5 frames of 24x24):
    checks the plumbing of generation and evaluation, not quality."""
    from sora_core.configs import ScheduleConfig
    from sora_core.pipeline import GenerationDefaults
    folder = tmp_path_factory.mktemp("model")
    tiny_sora_model(ScheduleConfig(steps=1, cfg=1.0), GenerationDefaults(frames=5, height=24, width=24, fps=8.0)).save(folder)
    return folder


def train_tiny_model(tmp, vae_steps: int = 1, dit_steps: int = 1, vae_seed: int = 0):
    """Train and export a tiny VAE, then a tiny DiT on its latents, under ``tmp``:
    (vae run, vae file, dit run, folder with dit.safetensors and text_encoder.safetensors)."""
    import dataclasses

    from sora_core.train.dit_trainer import DiTTrainer
    from sora_core.train.presets import train_preset
    from sora_core.train.vae_trainer import VAETrainer
    vae_run = VAETrainer(dataclasses.replace(train_preset("vae", "tiny"), seed=vae_seed), tmp / f"vae{vae_seed}",
                         progress=False)
    vae_run.fit(steps=vae_steps)
    (vae_path,) = vae_run.export(tmp / f"vae{vae_seed}_out")
    if not dit_steps:
        return vae_run, vae_path, None, None
    dit_run = DiTTrainer(train_preset("dit", "tiny"), tmp / "dit", progress=False, vae_path=str(vae_path))
    dit_run.fit(steps=dit_steps)
    dit_run.export(tmp / "dit_out")
    return vae_run, vae_path, dit_run, tmp / "dit_out"


@pytest.fixture(scope="session")
def comfyui_server():
    """A real ComfyUI with this pack in custom_nodes (tests/comfyui_server.py): the one at
    SORA_COMFYUI_URL, or one started from ../shared/comfyui for the session. Skips when neither is
    available, unless SORA_REQUIRE_COMFYUI=1 (CI), where it fails."""
    import os

    from comfyui_server import ComfyUIUnavailable, find_or_start
    try:
        server = find_or_start()
    except ComfyUIUnavailable as e:
        if os.environ.get("SORA_REQUIRE_COMFYUI", "") == "1":
            pytest.fail(f"SORA_REQUIRE_COMFYUI=1 but no real ComfyUI: {e}")
        pytest.skip(str(e))
    yield server
    server.stop()


# Property-based tests (tests/test_fuzz_*.py): no deadline on a shared machine, the reproduce blob
# printed on failure (``@reproduce_failure``), no example database written into the tree.
try:
    from hypothesis import HealthCheck, settings
except ImportError:                                  # hypothesis is only needed by the fuzz tests
    pass
else:
    settings.register_profile("sora", deadline=None, print_blob=True, database=None, derandomize=False,
                              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile("sora")
