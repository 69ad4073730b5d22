"""Training pieces: buckets, deterministic data, the latent cache, condition masks, flow-matching
loss pieces, object masks, checkpoints, the learning-rate schedule and EMA."""

import os

import numpy as np
import pytest
import torch

from sora_core.geometry import GeometryError
from sora_core.train.buckets import BucketTable
from sora_core.train.common import EMA, load_checkpoint, lr_at, save_checkpoint
from sora_core.train.data import WorldClips, scene_spec
from sora_core.train.dit_trainer import condition_mask, condition_masks, masked_mse, object_latent_mask, sample_t
from sora_core.train.presets import train_preset
from sora_core.train.shared import flow_pair, parse_bucket
from sora_core.world.scene import sample_scene


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# Buckets and data
# ---------------------------------------------------------------------------------------------

def test_bucket_table_shares_and_validation():
    table = BucketTable.from_dict({"64x64": {1: (0.2, 8), 17: (0.8, 2)}, "48x80": {9: (1.0, 4)}})
    assert [b.name for b in table] == ["64x64x1", "64x64x17", "48x80x9"]
    assert [b.aspect for b in table] == ["square", "square", "wide"]
    rng = np.random.default_rng(0)
    counts = {b.name: 0 for b in table}
    for _ in range(4000):
        counts[table.pick(rng).name] += 1
    assert abs(counts["64x64x1"] / 4000 - 0.1) < 0.03 and abs(counts["48x80x9"] / 4000 - 0.5) < 0.03
    rows = table.describe(ft=4, fs=4, patch=(1, 2, 2))
    assert rows[1]["tokens"] == 5 * 8 * 8 and rows[1]["batch_tokens"] == 2 * 320
    table.validate(4, 4, (1, 2, 2))
    with pytest.raises(GeometryError, match="64x64x16"):
        BucketTable.from_dict({"64x64": {16: (1.0, 2)}}).validate(4, 4)
    with pytest.raises(ValueError, match="keep_prob"):
        BucketTable.from_dict({"64x64": {1: (0.0, 2)}})
    with pytest.raises(ValueError, match="HxW"):
        BucketTable.from_dict({"64-64": {1: (1.0, 2)}})


def test_world_clips_are_a_function_of_the_step():
    table = BucketTable.from_dict(train_preset("dit", "tiny").buckets)
    r0 = WorldClips(table, seed=3, rank=0, world_size=2)
    r1 = WorldClips(table, seed=3, rank=1, world_size=2)
    a, b = r0.batch_at(5), r0.batch_at(5)
    assert torch.equal(a.video, b.video) and a.captions == b.captions
    assert a.video.shape == (a.bucket.batch_size, 3, a.bucket.frames, a.bucket.height, a.bucket.width)
    assert a.video.min() >= -1 and a.video.max() <= 1
    other = r1.batch_at(5)
    assert other.bucket == a.bucket and other.scene_seeds != a.scene_seeds      # same bucket, other scenes
    assert len({r0.batch_at(s).scene_seeds[0] for s in range(6)}) == 6
    # a chosen object mix: only the object count's distribution changes; the default keeps the scenes
    single = WorldClips(table, seed=3, object_probs=(1, 0, 0))
    assert all(len(single.batch_at(s, render_video=False).captions) for s in range(3))
    bucket = parse_bucket("64x64x9")
    assert {len(scene_spec(s, bucket, 8.0, (1, 0, 0)).objects) for s in range(40)} == {1}
    assert {len(scene_spec(s, bucket, 8.0, (0, 0, 1)).objects) for s in range(40)} == {3}
    assert len({len(scene_spec(s, bucket, 8.0).objects) for s in range(40)}) == 3
    assert scene_spec(7, bucket, 8.0) == sample_scene(7, bucket.width, bucket.height, bucket.frames, 8.0)
    for bad in [(1, 0), (-1, 1, 1), (0, 0, 0)]:
        with pytest.raises(ValueError, match="object_probs"):
            WorldClips(table, seed=3, object_probs=bad)
    # a chosen shape mix: each object's shape drawn with the weights; without it the scenes stay
    spec = [scene_spec(s, bucket, 8.0, (0.6, 0.25, 0.15), (0, 1, 0)) for s in range(40)]
    assert {o.shape for sp in spec for o in sp.objects} == {"square"}
    mixed = [o.shape for s in range(300) for o in scene_spec(s, bucket, 8.0, (1, 0, 0), (1, 2, 1)).objects]
    assert 0.4 < mixed.count("square") / len(mixed) < 0.6 and {"circle", "triangle"} <= set(mixed)
    assert scene_spec(7, bucket, 8.0, (1, 1, 1)) == scene_spec(7, bucket, 8.0, (1, 1, 1), None)
    # a chosen size mix, alone or with the shapes; drawn sizes that cannot be placed fall back to the world's
    small = [o for s in range(40) for o in scene_spec(s, bucket, 8.0, (1, 1, 1), None, (1, 0)).objects]
    assert {o.size for o in small} == {"small"} and len({o.shape for o in small}) == 3
    large = [scene_spec(s, bucket, 8.0, (0, 0, 1), (0, 1, 0), (0, 1)) for s in (*range(20), 99)]
    assert all(len(sp.objects) == 3 and {o.shape for o in sp.objects} == {"square"} for sp in large)
    assert all(o.size == "large" for sp in large[:20] for o in sp.objects)
    assert any(o.size == "small" for o in large[-1].objects)      # scene 99: three large do not fit
    sized = [o.size for s in range(300) for o in scene_spec(s, bucket, 8.0, (1, 0, 0), (1, 2, 1), (2, 1)).objects]
    assert 0.58 < sized.count("small") / len(sized) < 0.75
    assert scene_spec(7, bucket, 8.0, (1, 1, 1), (1, 2, 1)) == scene_spec(7, bucket, 8.0, (1, 1, 1), (1, 2, 1), None)
    for bad in [(1,), (1, -1), (0, 0)]:
        with pytest.raises(ValueError, match="size_probs"):
            WorldClips(table, seed=3, size_probs=bad)
    assert WorldClips(table, seed=3, size_probs=(2, 1)).scene_mix == "size_probs=[2.0, 1.0]"
    boxes = WorldClips(table, seed=3, object_probs=(1, 0, 0), shape_probs=(0, 1, 0))
    assert boxes.scene_mix == "object_probs=[1.0, 0.0, 0.0] shape_probs=[0.0, 1.0, 0.0]"
    assert WorldClips(table, seed=3).scene_mix == ""
    assert all("box" in c for c in boxes.batch_at(2, render_video=False).captions if c)
    for bad in [(1, 1), (1, -1, 1), (0, 0, 0)]:
        with pytest.raises(ValueError, match="shape_probs"):
            WorldClips(table, seed=3, shape_probs=bad)
    pooled = WorldClips(table, seed=3, pool_size=60)
    assert pooled.pool_sizes == [16, 30, 16]                  # by expected draws, at least 16 each
    keys = [k for s in range(40) for k in pooled.batch_at(s, render_video=False).keys]
    assert all(0 <= j < pooled.pool_sizes[b] for b, j in keys) and len(set(keys)) < len(keys)


def test_latent_cache_is_kept_only_for_the_same_vae_and_scenes(tmp_path):
    from sora_core.train.latent_cache import LatentCache
    path = tmp_path / "cache.safetensors"
    cache = LatentCache(path, "vae1", scenes="object_probs=[0.6, 0.25, 0.15]")
    z = cache.get_or_encode([(0, 1), (0, 2)], lambda key: torch.full((2, 1, 2, 2), float(key[1])))
    assert z[:, 0, 0, 0, 0].tolist() == [1.0, 2.0] and cache.misses == 2
    cache.save(force=True)
    again = LatentCache(path, "vae1", scenes="object_probs=[0.6, 0.25, 0.15]")
    assert len(again) == 2 and torch.equal(again.get_or_encode([(0, 2)], None)[0], z[1])
    assert len(LatentCache(path, "vae1")) == 0                   # other scenes: rebuilt, not reused
    assert len(LatentCache(path, "vae2", scenes="object_probs=[0.6, 0.25, 0.15]")) == 0


# ---------------------------------------------------------------------------------------------
# Flow matching and condition masks
# ---------------------------------------------------------------------------------------------

def test_condition_masks_leave_frames_free():
    rng = np.random.default_rng(0)
    assert condition_mask("first", 5, rng).tolist() == [True, False, False, False, False]
    assert condition_mask("last", 5, rng).tolist() == [False, False, False, False, True]
    assert condition_mask("first_last", 5, rng).tolist() == [True, False, False, False, True]
    for _ in range(50):
        lead = condition_mask("lead_span", 5, rng)
        k = int(lead.sum())
        assert 1 <= k <= 4 and lead[:k].all()
        trail = condition_mask("trail_span", 5, rng)
        assert trail[-1] and not trail.all()
        assert not condition_mask("random", 3, rng).all()
    for kind in ("first", "first_last", "random", "lead_span"):
        assert not condition_mask(kind, 1, rng).any()          # images are never conditioned
    masks, kinds = condition_masks({"none": 0.5, "first": 0.5}, 400, 3, rng)
    assert masks.shape == (400, 3) and 150 < kinds.count("first") < 250
    assert all(bool(m[0]) == (k == "first") for m, k in zip(masks, kinds))


def test_flow_pair_and_masked_loss():
    g = torch.Generator().manual_seed(0)
    t = sample_t(2000, g)
    assert 0 < t.min() and t.max() < 1 and abs(float(t.mean()) - 0.5) < 0.03
    assert float(sample_t(2000, g, shift=3.0).mean()) > 0.6          # the shift moves t towards noise
    x0, noise = torch.randn(2, 4, 3, 2, 2, generator=g), torch.randn(2, 4, 3, 2, 2, generator=g)
    tf = torch.tensor([[0.0, 0.5, 1.0], [0.0, 0.0, 0.25]])
    xt, v = flow_pair(x0, noise, tf)
    assert torch.equal(xt[:, :, 0], x0[:, :, 0]) and torch.allclose(xt[0, :, 2], noise[0, :, 2])
    assert torch.allclose(v, noise - x0)
    free = tf > 0
    wrong_on_given = v.clone()
    wrong_on_given[:, :, 0] += 100.0                   # errors on given frames carry no loss
    assert float(masked_mse(wrong_on_given, v, free)) == 0.0
    assert float(masked_mse(v + 1.0, v, free)) == pytest.approx(1.0)
    # a per-pixel weight: the weighted mean; an error only where the weight is 5 counts 5 / (5 + 3) of
    # the plain error of that pixel x 4 pixels
    weight = torch.ones(2, 3, 2, 2)
    weight[:, :, 0, 0] = 5.0
    off = v.clone()
    off[:, :, :, 0, 0] += 2.0
    assert float(masked_mse(off, v, free, weight)) == pytest.approx(4.0 * 5.0 / 8.0)
    assert float(masked_mse(off, v, free)) == pytest.approx(4.0 / 4.0)
    assert float(masked_mse(off, v, free, torch.ones(2, 3, 2, 2))) == pytest.approx(1.0)


def test_object_latent_mask_marks_the_objects_latent_pixels():
    frames = np.zeros((9, 32, 32, 3), np.uint8)
    frames[..., 2] = 120                                   # a dark world
    frames[0, 4:8, 4:8] = (230, 40, 40)                    # an object in frame 0 only
    frames[5, 20:24, 24:28] = (40, 230, 40)                # another in frame 5 only
    m = object_latent_mask(frames, spatial=4, temporal=4, grow=0)
    assert m.shape == (3, 8, 8) and set(m.unique().tolist()) == {0.0, 1.0}
    assert m[0].nonzero().tolist() == [[1, 1]]             # latent frame 0 is frame 0
    assert m[1].sum() == 0                                 # frames 1-4 are empty
    assert m[2].nonzero().tolist() == [[5, 6]]             # latent frame 2 holds frames 5-8
    grown = object_latent_mask(frames, spatial=4, temporal=4, grow=1)
    assert grown[0].sum() == 9 and grown[0, 0:3, 0:3].all() and grown[1].sum() == 0
    assert object_latent_mask(np.zeros((1, 16, 24, 3), np.uint8), 4, 4).shape == (1, 4, 6)
    # a rendered clip: the mask sits where the captioner sees the object
    from sora_core.train.data import render_clip
    from sora_core.world.metrics import object_masks
    rendered, _ = render_clip(5, parse_bucket("32x32x5"), 8.0, (1, 0, 0))
    m = object_latent_mask(rendered, 4, 4, grow=0)
    seen = object_masks(rendered[:1])[0]
    ys, xs = np.nonzero(seen)
    assert m[0, ys // 4, xs // 4].all() and 0 < m[0].mean() < 0.5


# ---------------------------------------------------------------------------------------------
# Common pieces
# ---------------------------------------------------------------------------------------------

def test_checkpoint_round_trip_is_exact_and_atomic(tmp_path):
    state = {"step": 7, "opt": {"state": {0: {"exp_avg": torch.randn(3, dtype=torch.bfloat16)}},
                                "param_groups": [{"betas": (0.9, 0.99), "params": [0, 1], "foreach": None}]},
             "name": "x", "wall": 1.5}
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert back["step"] == 7 and back["name"] == "x" and back["opt"]["param_groups"][0]["betas"] == (0.9, 0.99)
    assert torch.equal(back["opt"]["state"][0]["exp_avg"], state["opt"]["state"][0]["exp_avg"])
    assert os.listdir(tmp_path) == ["ck.safetensors"]
    (tmp_path / "bad.safetensors").write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        load_checkpoint(tmp_path / "bad.safetensors")


def test_lr_warmup_cosine_and_ema():
    lrs = [lr_at(s, 1.0, 10, 100, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[100] == pytest.approx(0.1)
    m = torch.nn.Linear(2, 2)
    ema = EMA(m, decay=0.5)
    with torch.no_grad():
        m.weight.add_(1.0)
    before = ema.shadow["weight"].clone()
    ema.update(m)
    assert torch.all(ema.shadow["weight"] > before) and torch.all(ema.shadow["weight"] < m.weight)
