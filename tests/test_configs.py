"""Configs: presets, JSON round trip (as stored in safetensors metadata) and clear errors."""

import pytest

from sora_core import configs
from sora_core.configs import ConfigError, DiTConfig, VAEConfig


@pytest.mark.parametrize("kind", ["vae", "dit", "text_encoder", "schedule"])
def test_every_preset_round_trips_through_json(kind):
    for name in configs.preset_names(kind):
        cfg = configs.preset(kind, name)
        back = configs.from_json(configs.to_json(cfg), kind=kind)
        assert back == cfg and type(back) is type(cfg)


def test_vae_factors_follow_the_structure():
    assert configs.vae_preset("default").spatial_factor == 4
    assert configs.vae_preset("default").temporal_factor == 4
    assert configs.vae_preset("bench").spatial_factor == 8
    assert configs.vae_preset("wan2.1").temporal_factor == 4


def test_configs_are_frozen():
    cfg = DiTConfig()
    with pytest.raises(Exception):
        cfg.num_layers = 3


def test_errors_name_the_problem():
    with pytest.raises(ConfigError, match="unknown dit preset 'huge'"):
        configs.dit_preset("huge")
    with pytest.raises(ConfigError, match="expected a vae config"):
        configs.from_json(configs.to_json(DiTConfig()), kind="vae")
    with pytest.raises(ConfigError, match="no field"):
        configs.from_dict(DiTConfig, {"depth": 3})
    with pytest.raises(ConfigError, match="malformed"):
        configs.from_json("{not json")
    with pytest.raises(ConfigError, match="temporal_downsample"):
        VAEConfig(dim_mult=(1, 2, 4), temporal_downsample=(True,))
    with pytest.raises(ConfigError, match="latents_mean"):
        VAEConfig(z_dim=4, latents_mean=(0.0, 0.0))
    with pytest.raises(ConfigError, match="no field"):
        configs.replace(DiTConfig(), layers=2)
