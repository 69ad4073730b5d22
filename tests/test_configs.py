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


# ---------------------------------------------------------------------------------------------
# Types and ranges, checked at construction (so before any module is built)
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("changes,match", [
    ({"num_layers": 100000}, r"DiTConfig.num_layers=100000 is out of range: allowed 1 .. 1000"),
    ({"num_layers": "8"}, r"DiTConfig.num_layers='8' must be an integer"),
    ({"num_layers": 8.0}, r"DiTConfig.num_layers=8.0 must be an integer"),
    ({"num_heads": 0}, r"DiTConfig.num_heads=0 is out of range: allowed 1 .. 1024"),
    ({"patch_size": (1, 0, 2)}, r"DiTConfig.patch_size\[1\]=0 is out of range"),
    ({"patch_size": (1, 2)}, r"DiTConfig.patch_size=\(1, 2\) must be a list of exactly 3 values"),
    ({"head_dim": 31}, r"DiTConfig.head_dim: 31 must be even"),
    ({"head_dim": 4}, r"DiTConfig.head_dim=4 is out of range: allowed 6"),
    ({"num_heads": 1024, "head_dim": 128}, r"num_heads \* head_dim = 131072 exceeds 65536"),
    ({"eps": float("nan")}, r"DiTConfig.eps=nan must be a number \(finite\)"),
    ({"rope_theta": float("inf")}, r"DiTConfig.rope_theta=inf"),
    ({"pooled_text": 1}, r"DiTConfig.pooled_text=1 must be true or false"),
    ({"in_channels": True}, r"DiTConfig.in_channels=True must be an integer"),
])
def test_dit_config_fields_are_checked(changes, match):
    with pytest.raises(ConfigError, match=match):
        configs.replace(configs.dit_preset("tiny"), **changes)


@pytest.mark.parametrize("cls,changes,match", [
    (VAEConfig, {"z_dim": 0}, r"VAEConfig.z_dim=0 is out of range"),
    (VAEConfig, {"dim_mult": (1, 2, 0), "temporal_downsample": (True, True)}, r"VAEConfig.dim_mult\[2\]=0"),
    (VAEConfig, {"dim_mult": (), "temporal_downsample": ()}, r"VAEConfig.dim_mult: needs at least one"),
    (VAEConfig, {"base_dim": 4096, "dim_mult": (1, 32), "temporal_downsample": (True,)}, "exceeds 65536"),
    (VAEConfig, {"dropout": 1.0}, r"VAEConfig.dropout=1.0 is out of range"),
    (VAEConfig, {"z_dim": 2, "latents_std": (1.0, 0.0)}, r"VAEConfig.latents_std\[1\]=0.0 is out of range"),
    (VAEConfig, {"temporal_downsample": (1, 1)}, r"temporal_downsample\[0\]=1 must be true or false"),
    (configs.TextEncoderConfig, {"dim": 30, "num_heads": 4}, r"TextEncoderConfig.dim: 30 must be divisible by num_heads=4"),
    (configs.TextEncoderConfig, {"vocab_size": 100}, r"TextEncoderConfig.vocab_size=100 is out of range"),
    (configs.ScheduleConfig, {"steps": 0}, r"ScheduleConfig.steps=0 is out of range"),
    (configs.ScheduleConfig, {"shift": float("nan")}, r"ScheduleConfig.shift=nan must be a number"),
    (configs.ScheduleConfig, {"sampler": ""}, r"ScheduleConfig.sampler='' must be a non-empty string"),
])
def test_other_config_fields_are_checked(cls, changes, match):
    with pytest.raises(ConfigError, match=match):
        cls(**changes)


def test_stored_json_is_checked_before_anything_is_built():
    text = configs.to_json(configs.dit_preset("tiny")).replace('"num_layers": 2', '"num_layers": 100000')
    with pytest.raises(ConfigError, match="num_layers=100000"):
        configs.from_json(text)
    text = configs.to_json(configs.dit_preset("tiny")).replace('"num_heads": 2', '"num_heads": "2"')
    with pytest.raises(ConfigError, match="num_heads='2' must be an integer"):
        configs.from_json(text)
    with pytest.raises(ConfigError, match="'config' must be an object"):
        configs.from_json('{"kind": "dit", "config": [1, 2]}')


def test_real_sizes_are_admitted():
    """Wan 2.1 14B / 1.3B DiTs, the umT5-sized text features and the 16 / 48-channel Wan VAEs."""
    big = DiTConfig(in_channels=16, out_channels=16, num_heads=40, head_dim=128, num_layers=40, ffn_dim=13824,
                    text_dim=4096, freq_dim=256)
    assert big.dim == 5120
    assert configs.dit_preset("wan2.1-1.3b").dim == 1536
    VAEConfig(base_dim=160, z_dim=48, dim_mult=(1, 2, 4, 4), temporal_downsample=(False, True, True), in_channels=12)
    assert configs.vae_preset("wan2.1").z_dim == 16
    configs.TextEncoderConfig(dim=4096, num_layers=24, num_heads=64, ffn_dim=10240, max_len=512, out_dim=4096,
                              vocab_size=256384)
