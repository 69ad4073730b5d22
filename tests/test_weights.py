"""Weight files: round trip with the config in the metadata, atomic writes, and the documented errors."""

import os
import pickle

import pytest
import torch
from safetensors.torch import save_file

from sora_core import weights
from sora_core.configs import dit_preset, replace, to_json
from sora_core.weights import WeightsError, load_component, read_config, read_metadata, save_component


class StandIn(torch.nn.Module):
    """A small module built from a DiTConfig (registered in place of the DiT for these tests)."""

    def __init__(self, cfg):
        super().__init__()
        self.embed = torch.nn.Linear(cfg.in_channels, cfg.dim)
        self.blocks = torch.nn.ModuleList(torch.nn.Linear(cfg.dim, cfg.dim) for _ in range(cfg.num_layers))
        self.register_buffer("scale", torch.ones(cfg.dim))


@pytest.fixture(autouse=True)
def _stand_in(monkeypatch):
    monkeypatch.setitem(weights.REGISTRY, "dit", StandIn)


@pytest.fixture
def cfg():
    return dit_preset("tiny")


def _module(cfg, seed=0):
    torch.manual_seed(seed)
    return StandIn(cfg)


def test_round_trip(tmp_path, cfg):
    m = _module(cfg)
    path = save_component(tmp_path / "dit.safetensors", m, cfg, {"note": "hello"})
    loaded, got = load_component(path, kind="dit")
    assert isinstance(loaded, StandIn) and got == cfg and not loaded.training
    for k, v in m.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    meta = read_metadata(path)
    assert meta["note"] == "hello" and meta["sora.config"] == to_json(cfg)
    assert read_config(path) == cfg
    assert sorted(os.listdir(tmp_path)) == ["dit.safetensors"]     # no temp file left behind
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask              # a normal file, not mkstemp's 0600


def test_bf16_storage_loads_into_float32_modules(tmp_path, cfg):
    m = _module(cfg)
    path = save_component(tmp_path / "half.safetensors", m, cfg, dtype=torch.bfloat16)
    full = save_component(tmp_path / "full.safetensors", m, cfg)
    assert path.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_component(path, kind="dit")
    for k, v in m.state_dict().items():
        got = loaded.state_dict()[k]
        assert got.dtype == torch.float32 and torch.equal(got, v.to(torch.bfloat16).float())
    with pytest.raises(WeightsError, match="floating-point"):
        save_component(tmp_path / "int.safetensors", m, cfg, dtype=torch.int8)


def test_shared_tensors_are_saved(tmp_path, cfg):
    m = _module(cfg)
    m.blocks[1].weight = m.blocks[0].weight                        # tied weights share storage
    loaded, _ = load_component(save_component(tmp_path / "t.safetensors", m, cfg))
    assert torch.equal(loaded.blocks[1].weight, m.blocks[0].weight)


def test_atomic_write_keeps_old_file(tmp_path, cfg, monkeypatch):
    path = save_component(tmp_path / "dit.safetensors", _module(cfg, 0), cfg)
    before = path.read_bytes()

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise OSError("disk full")
    monkeypatch.setattr(weights, "save_file", crash)
    with pytest.raises(OSError, match="disk full"):
        save_component(path, _module(cfg, 1), cfg)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == ["dit.safetensors"]


def _write_pickle(p):
    with open(p, "wb") as f:
        pickle.dump({"w": [1, 2, 3]}, f)


@pytest.mark.parametrize("name,writer,match", [
    ("model.pt", lambda p: torch.save({"w": torch.zeros(2)}, p), "zip archive"),
    ("model.safetensors", lambda p: torch.save({"w": torch.zeros(2)}, p), "zip archive"),
    ("model.ckpt", _write_pickle, "pickle"),
    ("model.safetensors", lambda p: p.write_bytes(os.urandom(64)), "not a safetensors file"),
    ("model.safetensors", lambda p: p.write_bytes(b""), "not a safetensors file"),
])
def test_refuses_non_safetensors(tmp_path, name, writer, match):
    p = tmp_path / name
    writer(p)
    with pytest.raises(WeightsError, match=match) as e:
        load_component(p)
    assert str(p) in str(e.value) and "safetensors" in str(e.value)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        load_component(tmp_path / "nope.safetensors")


def test_wrong_keys_listed_with_counts(tmp_path, cfg):
    m = _module(cfg)
    sd = {k: v for k, v in m.state_dict().items() if not k.startswith("blocks.1")}
    sd.update({f"extra.{i}": torch.zeros(1) for i in range(7)})
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path), metadata={"sora.config": to_json(cfg)})
    with pytest.raises(WeightsError) as e:
        load_component(path)
    msg = str(e.value)
    assert "2 missing key(s): blocks.1.bias, blocks.1.weight" in msg
    assert "7 unexpected key(s): extra.0" in msg and "and 2 more" in msg


def test_shape_mismatch(tmp_path, cfg):
    bigger = replace(cfg, num_heads=4)
    path = save_component(tmp_path / "x.safetensors", _module(bigger), cfg)     # tensors of another size
    with pytest.raises(WeightsError, match=r"shape mismatch\(es\): .*embed.bias \(file \(64,\), model \(32,\)\)"):
        load_component(path)


def test_kind_and_missing_config(tmp_path, cfg):
    path = save_component(tmp_path / "d.safetensors", _module(cfg), cfg)
    with pytest.raises(WeightsError, match="expected a vae config"):
        load_component(path, kind="vae")
    bare = tmp_path / "bare.safetensors"
    save_file(dict(_module(cfg).state_dict()), str(bare))
    with pytest.raises(WeightsError, match="no 'sora.config' metadata"):
        load_component(bare)
    module, _ = load_component(bare, cfg=cfg)          # an explicit config loads files without one
    assert isinstance(module, StandIn)


def test_key_map_prefix_and_callable(tmp_path, cfg):
    m = _module(cfg)
    foreign = {"model." + k.replace("blocks.", "layers."): v for k, v in m.state_dict().items()}
    foreign["model.unused"] = torch.zeros(3)
    path = tmp_path / "foreign.safetensors"
    save_file(foreign, str(path))
    with pytest.raises(WeightsError, match="missing key"):
        load_component(path, cfg=cfg)
    # prefix renames (longest prefix first); a callable may drop keys by returning None
    mapped = {"model.layers.": "blocks.", "model.": ""}
    with pytest.raises(WeightsError, match="1 unexpected key.*unused"):
        load_component(path, cfg=cfg, key_map=mapped)
    rename = lambda k: None if k.endswith("unused") else weights._rename(mapped)(k)
    loaded, _ = load_component(path, cfg=cfg, key_map=rename)
    assert torch.equal(loaded.blocks[0].weight, m.blocks[0].weight)


def test_save_rejects_bad_inputs(tmp_path, cfg):
    with pytest.raises(WeightsError, match=r"\.safetensors"):
        save_component(tmp_path / "x.pt", _module(cfg), cfg)
    with pytest.raises(WeightsError, match="str to str"):
        save_component(tmp_path / "x.safetensors", _module(cfg), cfg, {"step": 3})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind,cls_path", [("vae", ("sora_core.models.vae", "VideoVAE")), ("dit", ("sora_core.models.dit", "DiT"))])
def test_real_components_round_trip(tmp_path, monkeypatch, kind, cls_path):
    """The registered classes themselves (tiny presets) through save + load."""
    from sora_core.configs import preset
    monkeypatch.setitem(weights.REGISTRY, kind, cls_path)
    cfg = preset(kind, "tiny")
    torch.manual_seed(0)
    module = weights.build_module(cfg)
    loaded, got = load_component(save_component(tmp_path / f"{kind}.safetensors", module, cfg), kind=kind)
    assert type(loaded).__name__ == cls_path[1] and got == cfg
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in module.state_dict().items())


# ---------------------------------------------------------------------------------------------
# Truncated and corrupt files (a half-downloaded model, a damaged checkpoint)
# ---------------------------------------------------------------------------------------------

def _header_len(path) -> int:
    import struct
    return struct.unpack("<Q", path.read_bytes()[:8])[0]


@pytest.fixture
def saved(tmp_path, cfg):
    return save_component(tmp_path / "dit.safetensors", _module(cfg), cfg)


@pytest.mark.parametrize("cut", ["in_length", "in_header", "after_header", "mid_data", "last_byte"])
def test_truncated_file_is_reported(saved, cut):
    data = saved.read_bytes()
    n = _header_len(saved)
    at = {"in_length": 5, "in_header": 8 + n // 2, "after_header": 8 + n, "mid_data": (8 + n + len(data)) // 2,
          "last_byte": len(data) - 1}[cut]
    saved.write_bytes(data[:at])
    for read in (load_component, read_config, read_metadata, weights.check_safetensors):
        with pytest.raises(WeightsError) as e:
            read(saved)
        msg = str(e.value)
        assert str(saved) in msg
        if cut != "in_length":
            assert "truncated" in msg and "partial download" in msg, msg
    if cut in ("mid_data", "last_byte", "after_header"):
        assert f"the file holds {len(data) - 8 - n - (len(data) - at):,}" in msg


def test_truncation_message_gives_sizes(saved):
    data = saved.read_bytes()
    n = _header_len(saved)
    saved.write_bytes(data[:8 + n + 10])
    with pytest.raises(WeightsError, match=rf"says {len(data) - 8 - n:,} bytes of tensor data, the file holds 10 "):
        load_component(saved)


def _rewrite_header(path, edit):
    """Replace the JSON header of ``path`` by ``edit(header)`` (padded to keep the length field honest)."""
    import json
    import struct
    data = path.read_bytes()
    n = _header_len(path)
    header = json.loads(data[8:8 + n])
    edit(header)                                                  # in place
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + n:])


def _first(header):
    return sorted(k for k in header if k != "__metadata__")[0]


@pytest.mark.parametrize("edit,match", [
    (lambda h: h[_first(h)].update(dtype="F17"), "dtype 'F17'; allowed: BOOL"),
    (lambda h: h[_first(h)].update(shape=[-1, 2]), r"shape \[-1, 2\]; expected a list of non-negative"),
    (lambda h: h[_first(h)].update(shape="32"), "shape '32'"),
    (lambda h: h[_first(h)].update(data_offsets=[0]), r"data_offsets \[0\]"),
    (lambda h: h[_first(h)].update(data_offsets=[8, 4]), r"data_offsets \[8, 4\]"),
    (lambda h: h[_first(h)].update(shape=h[_first(h)]["shape"] + [2]), "needs"),
    (lambda h: h[_first(h)].update(dtype="F16"), "needs"),
    (lambda h: h[_first(h)].update(data_offsets=[o + 4 for o in h[_first(h)]["data_offsets"]]), "spans|gap|overlaps"),
    (lambda h: h.update(extra={"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}), "overlaps"),
    (lambda h: h[_first(h)].pop("dtype"), "expected keys dtype, shape, data_offsets"),
    (lambda h: h.update(__metadata__={"a": 1}), "__metadata__"),
])
def test_corrupt_header_is_reported(saved, edit, match):
    _rewrite_header(saved, edit)
    with pytest.raises(WeightsError, match=match) as e:
        load_component(saved)
    assert str(saved) in str(e.value) and "corrupt" in str(e.value)


def test_flipped_header_bytes_and_extra_bytes(saved):
    data = bytearray(saved.read_bytes())
    n = _header_len(saved)
    for i in (8, 8 + n // 3, 8 + n - 1):                      # JSON no longer parses
        bad = data.copy()
        bad[i] ^= 0xFF
        saved.write_bytes(bytes(bad))
        with pytest.raises(WeightsError, match="not a safetensors file|corrupt") as e:
            load_component(saved)
        assert str(saved) in str(e.value)
    bad = data.copy()
    bad[0:8] = (n + 1000).to_bytes(8, "little")                 # header length past the end of the header
    saved.write_bytes(bytes(bad))
    with pytest.raises(WeightsError, match=str(saved)):
        load_component(saved)
    saved.write_bytes(bytes(data) + b"\0" * 16)                  # bytes after the tensor data
    with pytest.raises(WeightsError, match="16 bytes follow"):
        load_component(saved)


def test_parameter_count_from_header(saved, cfg):
    assert weights.parameter_count(saved) == sum(v.numel() for v in _module(cfg).state_dict().values())


def test_integer_tensors_in_place_of_weights_are_refused(tmp_path, cfg):
    sd = {k: (v * 100).to(torch.int32) if k.startswith("blocks.0") else v for k, v in _module(cfg).state_dict().items()}
    path = tmp_path / "ints.safetensors"
    save_file(sd, str(path), metadata={"sora.config": to_json(cfg)})
    with pytest.raises(WeightsError, match=r"wrong kind of dtype: 2 tensor\(s\): blocks.0.bias \(file torch.int32, "
                                           r"model torch.float32\)"):
        load_component(path)
