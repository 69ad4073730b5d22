"""Training stages on the tiny preset: exact resume per stage, export, starting from exported weights,
the text stage, the command line and a 2-process torchrun run on CPU."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import train_tiny_model
from sora_core.train.common import load_checkpoint
from sora_core.train.data import WorldClips
from sora_core.train.dit_trainer import DiTTrainer
from sora_core.train.loop import CHECKPOINT
from sora_core.train.presets import train_preset
from sora_core.train.text_trainer import TextTrainer, label_space, scene_labels
from sora_core.train.shared import TextContextCache, encoder_id
from sora_core.train.vae_trainer import VAETrainer

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")

# ---------------------------------------------------------------------------------------------
# Stages: smoke run, resume, export
# ---------------------------------------------------------------------------------------------

def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _log(run: Path) -> list[dict]:
    return [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stage", ["text", "vae", "dit", "dit-objects"])
def test_stage_resume_continues_exactly(tmp_path, stage):
    cls = {"text": TextTrainer, "vae": VAETrainer, "dit": DiTTrainer, "dit-objects": DiTTrainer}[stage]
    preset = train_preset(stage.split("-")[0], "tiny")
    if stage == "dit":
        preset = dataclasses.replace(preset, pool_size=3)            # exercise the latent cache too
    if stage == "dit-objects":                                       # and the object-weighted loss with its mask cache,
        preset = dataclasses.replace(preset, pool_size=3, object_weight=4.0, shape_probs=(1.0, 2.0, 1.0))  # a shape mix
    straight = cls(preset, tmp_path / "a", progress=False)
    straight.fit(steps=4)
    losses = [r["loss"] for r in _log(tmp_path / "a") if "loss" in r]
    assert len(losses) == 4 and all(math.isfinite(v) for v in losses)
    assert (tmp_path / "a" / "loss.png").is_file()

    first = cls(preset, tmp_path / "b", progress=False)
    first.fit(steps=4, until=2)
    saved = load_checkpoint(tmp_path / "b" / CHECKPOINT)
    assert saved["step"] == 2
    resumed = cls(preset, tmp_path / "b", resume=True, progress=False)
    assert resumed.step == 2 and _states_equal(resumed.module.state_dict(), saved["model"])
    assert _states_equal(resumed.ema.shadow, saved["ema"]["shadow"])
    resumed.fit(steps=4)
    assert _states_equal(resumed.module.state_dict(), straight.module.state_dict())
    assert _states_equal(resumed.ema.shadow, straight.ema.shadow)
    assert [r["loss"] for r in _log(tmp_path / "b") if "loss" in r] == losses

    with pytest.raises(FileExistsError, match="--resume"):
        cls(preset, tmp_path / "a", progress=False)
    if stage == "dit-objects":
        assert all(0 < r["object_frac"] < 1 for r in _log(tmp_path / "a") if "loss" in r)
        assert (tmp_path / "a" / "mask_cache.r0.safetensors").is_file()


def test_object_weighted_loss_masks_match_in_pool_and_fresh_modes(tmp_path):
    base = dataclasses.replace(train_preset("dit", "tiny"), object_weight=4.0)
    pooled = DiTTrainer(dataclasses.replace(base, pool_size=3, shape_probs=(0, 1, 0)), tmp_path / "p", progress=False)
    z, captions, masks = pooled.latents_at(1)
    assert masks.shape == (z.shape[0],) + z.shape[2:] and set(masks.unique().tolist()) <= {0.0, 1.0}
    bucket = pooled.data.bucket_at(1)
    for key, m in zip(pooled.data.batch_at(1, render_video=False).keys, masks):
        assert torch.equal(m, pooled._object_mask(pooled._render_pool_entry(key, bucket)))
        assert {o.shape for o in pooled.data.spec(pooled.data.pool_scene_seed(key), bucket).objects} == {"square"}
    assert pooled.cache.scenes == pooled.mask_cache.scenes == "shape_probs=[0.0, 1.0, 0.0]"
    fresh = DiTTrainer(base, tmp_path / "f", progress=False)
    batch = fresh.data.batch_at(2)
    z, captions, masks = fresh.latents_at(2)
    from sora_core.train.data import render_clip
    expect = [fresh._object_mask(render_clip(s, batch.bucket, fresh.data.fps)[0]) for s in batch.scene_seeds]
    assert torch.equal(masks, torch.stack(expect))
    assert DiTTrainer(train_preset("dit", "tiny"), tmp_path / "n", progress=False).latents_at(1)[2] is None
    # validation reports the loss on the objects' latent pixels next to the plain one
    val = pooled.evaluate(pooled.ema_module())
    assert {"val_loss", "val_obj", "val_obj_t0.2", "val_obj_t0.95"} <= set(val)
    assert all(math.isfinite(v) and v > 0 for v in val.values()) and val["val_obj"] != val["val_loss"]
    with pytest.raises(ValueError, match="object_weight"):
        dataclasses.replace(base, object_weight=-1.0)
    with pytest.raises(ValueError, match="shape_probs"):
        dataclasses.replace(base, shape_probs=(1.0, 0.0))
    with pytest.raises(ValueError, match="size_probs"):
        dataclasses.replace(base, size_probs=(1.0, 0.0, 1.0))


def test_exported_weights_load(tmp_path):
    from sora_core.weights import load_component
    vae_run, vae_path, dit_run, dit_dir = train_tiny_model(tmp_path, vae_steps=2, dit_steps=2)
    vae, cfg = load_component(vae_path, kind="vae")
    assert len(cfg.latents_mean) == cfg.z_dim and all(s > 0 for s in cfg.latents_std)
    # decoder-only fine-tuning keeps the latent space (encoder and statistics) and changes the decoder
    dec_preset = dataclasses.replace(train_preset("vae", "tiny"), train_encoder=False, kl_weight=0.0)
    dec_run = VAETrainer(dec_preset, tmp_path / "dec", progress=False, init_path=str(vae_path))
    dec_run.fit(steps=2)
    (dec_path,) = dec_run.export(tmp_path / "dec_model")
    tuned, tuned_cfg = load_component(dec_path, kind="vae")
    assert encoder_id(tuned) == encoder_id(vae) and tuned_cfg.latents_std == cfg.latents_std
    assert not torch.equal(tuned.decoder.conv_out.weight, vae.decoder.conv_out.weight)
    # the object-weighted decoder loss on a scene mix: a different loss than the plain one on the same step
    weighted = VAETrainer(dataclasses.replace(dec_preset, object_weight=4.0, shape_probs=(0, 1, 0), size_probs=(1, 0)),
                          tmp_path / "dec_w", progress=False, init_path=str(vae_path))
    plain = VAETrainer(dataclasses.replace(dec_preset, shape_probs=(0, 1, 0), size_probs=(1, 0)),
                       tmp_path / "dec_p", progress=False, init_path=str(vae_path))
    assert weighted.data.scene_mix == "shape_probs=[0.0, 1.0, 0.0] size_probs=[1.0, 0.0]"
    (lw, mw), (lp, mp) = weighted.loss(0), plain.loss(0)
    assert mw["l1"] == pytest.approx(mp["l1"]) and float(lw) != pytest.approx(float(lp))
    with pytest.raises(ValueError, match="object_weight"):
        dataclasses.replace(dec_preset, object_weight=-1.0)
    dit, _ = load_component(dit_dir / "dit.safetensors", kind="dit")
    text, _ = load_component(dit_dir / "text_encoder.safetensors", kind="text_encoder")
    ema = dit_run.ema_module()
    assert _states_equal(dit.state_dict(), ema.dit.state_dict())
    assert _states_equal(text.state_dict(), ema.text_encoder.state_dict())
    with pytest.raises(FileExistsError):
        dit_run.export(dit_dir)
    # the unconditional (empty) prompt gives finite embeddings
    emb = text.eval()(*text.tokenize([""]))
    assert torch.isfinite(emb).all()


def test_dit_starts_from_exported_weights_of_the_same_latent_space(tmp_path):
    from sora_core.weights import load_component
    vae_run = VAETrainer(train_preset("vae", "tiny"), tmp_path / "vae", progress=False)
    vae_run.fit(steps=2)
    (vae_path,) = vae_run.export(tmp_path / "vae_out")
    first = DiTTrainer(train_preset("dit", "tiny"), tmp_path / "d1", progress=False, vae_path=str(vae_path))
    first.fit(steps=2)
    first.export(tmp_path / "m1")
    second = DiTTrainer(train_preset("dit", "tiny"), tmp_path / "d2", progress=False, vae_path=str(vae_path),
                        init_dir=str(tmp_path / "m1"))
    exported, _ = load_component(tmp_path / "m1" / "dit.safetensors", kind="dit")
    assert _states_equal(second.module.dit.state_dict(), exported.state_dict())
    assert all(p.requires_grad and p.dtype == torch.float32 for p in second.module.parameters())
    second.fit(steps=3)
    assert not _states_equal(second.module.dit.state_dict(), exported.state_dict())
    assert json.loads((tmp_path / "d2" / "run.json").read_text())["inputs"]["init"] == str(tmp_path / "m1")
    # a model from before a path was added (no pooled text): its tensors load, the new path starts fresh
    from sora_core.configs import replace as cfg_replace
    from sora_core.models.dit import DiT
    from sora_core.weights import read_metadata, save_component
    old_cfg = cfg_replace(exported.cfg, pooled_text=False)
    old = DiT(old_cfg)
    old.load_state_dict({k: v for k, v in exported.state_dict().items() if "text_pool" not in k})
    (tmp_path / "m_old").mkdir()
    save_component(tmp_path / "m_old" / "dit.safetensors", old, old_cfg,
                   metadata={"vae_id": read_metadata(tmp_path / "m1" / "dit.safetensors")["vae_id"]})
    (tmp_path / "m_old" / "text_encoder.safetensors").write_bytes((tmp_path / "m1" / "text_encoder.safetensors").read_bytes())
    grown = DiTTrainer(train_preset("dit", "tiny"), tmp_path / "d5", progress=False, vae_path=str(vae_path),
                       init_dir=str(tmp_path / "m_old"))
    assert grown.init_fresh and all("text_pool" in k for k in grown.init_fresh)
    assert torch.equal(grown.module.dit.blocks[0].attn1.to_q.weight, old.blocks[0].attn1.to_q.weight)
    # another VAE = another latent space: refused, naming both encoders
    other = VAETrainer(dataclasses.replace(train_preset("vae", "tiny"), seed=5), tmp_path / "vae2", progress=False)
    other.fit(steps=2)
    (other_path,) = other.export(tmp_path / "vae2_out")
    with pytest.raises(ValueError, match="latent space of VAE encoder"):
        DiTTrainer(train_preset("dit", "tiny"), tmp_path / "d3", progress=False, vae_path=str(other_path),
                   init_dir=str(tmp_path / "m1"))
    with pytest.raises(FileNotFoundError, match="missing"):
        DiTTrainer(train_preset("dit", "tiny"), tmp_path / "d4", progress=False, vae_path=str(vae_path),
                   init_dir=str(tmp_path / "nowhere"))


def test_caption_labels_state_what_the_caption_says():
    from sora_core.train.data import caption_of
    from sora_core.world.scene import sample_scene
    names, groups = label_space()
    assert len(set(names)) == len(names)
    for seed in range(40):
        spec = sample_scene(seed, width=64, height=64, frames=17, fps=8.0)
        short, long = caption_of(spec, False), caption_of(spec, True)
        for descriptive, text in ((False, short), (True, long)):
            y, w = scene_labels(spec, descriptive)
            on = [n for n, v in zip(names, y) if v]
            assert f"count {len(spec.objects)}" in on
            for o in spec.objects:
                assert f"object {o.colour} {o.shape} {o.motion}" in on and o.colour in text
            weighted = {g for g, v in zip(groups, w) if v}
            assert weighted == ({"words", "sizes", "motion", "size", "count", "background", "event"}
                                if descriptive else {"words", "motion", "count", "event"})
            assert all(f"colour {o.colour}" in on and f"size {o.size}" in on for o in spec.objects)
            if not descriptive:
                assert not any(o.size in text.split() for o in spec.objects)   # short captions omit sizes


def test_pretrained_text_encoder_reads_captions_and_stays_frozen_in_the_dit_stage(tmp_path):
    """The text stage learns (held-out BCE falls) and exports an encoder; a DiT preset that freezes
    the text encoder refuses to start without one and leaves it unchanged while the DiT trains."""
    from sora_core.weights import load_component
    tiny = train_preset("text", "tiny")
    preset = dataclasses.replace(tiny, batch_size=16, optim=dataclasses.replace(tiny.optim, lr=3e-3),
                                 loop=dataclasses.replace(tiny.loop, eval_every=0, log_every=20))
    text_run = TextTrainer(preset, tmp_path / "text", progress=False)
    before = text_run.evaluate(text_run.ema_module())
    text_run.fit(steps=60)
    after = text_run.evaluate(text_run.ema_module())
    assert after["val_bce_short"] < 0.5 * before["val_bce_short"]
    assert after["val_bce_long"] < 0.5 * before["val_bce_long"]
    (text_path,) = text_run.export(tmp_path / "text_out")
    assert not any(k.startswith("head") for k in load_component(text_path, kind="text_encoder")[0].state_dict())

    frozen = dataclasses.replace(train_preset("dit", "tiny"), train_text_encoder=False)
    with pytest.raises(ValueError, match="--text"):
        DiTTrainer(frozen, tmp_path / "d0", progress=False)
    dit_run = DiTTrainer(frozen, tmp_path / "d1", progress=False, text_path=str(text_path))
    text, _ = load_component(text_path, kind="text_encoder")
    dit0 = {k: v.clone() for k, v in dit_run.module.dit.state_dict().items()}
    dit_run.fit(steps=3)
    assert _states_equal(dit_run.module.text_encoder.state_dict(), text.state_dict())
    assert not _states_equal(dit_run.module.dit.state_dict(), dit0)
    assert json.loads((tmp_path / "d1" / "run.json").read_text())["inputs"]["text"] == str(text_path)

    # the frozen encoder's features are computed once per caption, one caption at a time, so they do
    # not depend on the batch a caption first came in, and match the batched encoder's
    assert len(dit_run.text_cache) > 0
    caps = ["a red ball moving left", "A large blue box bouncing on a plain gray background, and a small "
            "green triangle standing still."]
    alone, together = TextContextCache(text, "cpu", True), TextContextCache(text, "cpu", True)
    c1, m1 = alone(caps[:1])
    c2, m2 = together(caps[::-1])
    n = int(m1.sum())
    assert torch.equal(c1[0, :n], c2[1, :n]) and not m2[1, n:].any() and (c2[1, n:] == 0).all()
    ids, mask = text.tokenize(caps)
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
        batched = text(ids, mask).float()
    ctx, cmask = alone(caps)
    assert torch.equal(cmask, mask) and torch.allclose(ctx, batched, atol=0.05)
    small = TextContextCache(text, "cpu", True, max_entries=2)       # least recently used dropped first
    small(caps[:1]), small(caps[1:]), small(caps[:1]), small(["a blue box"])
    assert list(small.entries) == [caps[0], "a blue box"]
    assert torch.equal(small(caps)[0], ctx)

    # and a run on the frozen encoder resumes exactly
    straight = DiTTrainer(frozen, tmp_path / "d2", progress=False, text_path=str(text_path))
    straight.fit(steps=3)
    first = DiTTrainer(frozen, tmp_path / "d3", progress=False, text_path=str(text_path))
    first.fit(steps=3, until=1)
    resumed = DiTTrainer(frozen, tmp_path / "d3", resume=True, progress=False, text_path=str(text_path))
    resumed.fit(steps=3)
    assert _states_equal(resumed.module.state_dict(), straight.module.state_dict())


def test_exported_statistics_normalise_latents_when_training_continues_from_trained_weights(tmp_path):
    """A run started from a VAE that already has latent statistics (stage 2 of the default recipe)
    must export raw-space statistics: the exported VAE's latents are ~N(0, 1) per channel."""
    from sora_core.train.shared import parse_bucket
    from sora_core.weights import load_component
    first = VAETrainer(train_preset("vae", "tiny"), tmp_path / "a", progress=False)
    first.fit(steps=2)
    (path,) = first.export(tmp_path / "m1")
    _, cfg1 = load_component(path, kind="vae")
    preset = dataclasses.replace(train_preset("vae", "tiny"), stats_clips=16)
    second = VAETrainer(preset, tmp_path / "b", progress=False, init_path=str(path))
    second.fit(steps=2)
    (path2,) = second.export(tmp_path / "m2")
    vae2, cfg2 = load_component(path2, kind="vae")
    assert cfg2.latents_std != cfg1.latents_std
    clips = WorldClips(second.buckets, preset.seed + 1, preset.fps).eval_batch(
        preset.stats_clips, parse_bucket(preset.eval_bucket)).video
    z = torch.cat([vae2.encode(c) for c in clips.split(1)])
    per_channel = z.transpose(0, 1).flatten(1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(cfg2.z_dim), atol=1e-3)
    assert torch.allclose(per_channel.std(1), torch.ones(cfg2.z_dim), atol=1e-3)


# ---------------------------------------------------------------------------------------------
# Command line and torchrun
# ---------------------------------------------------------------------------------------------

def _run(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=240, **kw)


def test_cli_errors(tmp_path):
    from sora_core.cli.train import main
    assert main(["vae", "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert main(["vae", "--preset", "tiny", "--out", str(tmp_path / "x"), "--steps", "0"]) == 2
    assert main(["vae", "--preset", "tiny", "--out", str(tmp_path / "x"), "--resume"]) == 2
    assert main(["text", "--preset", "tiny", "--out", str(tmp_path / "x"), "--vae", "v.safetensors"]) == 2
    assert main(["vae", "--preset", "tiny", "--out", str(tmp_path / "x"), "--text", "t.safetensors"]) == 2
    assert not (tmp_path / "x" / CHECKPOINT).exists()


def test_cli_seed_draws_new_scenes_and_binds_the_resume(tmp_path):
    from sora_core.cli.train import main
    from sora_core.train.buckets import BucketTable
    out = tmp_path / "seeded"
    assert main(["text", "--preset", "tiny", "--out", str(out), "--seed", "5", "--until", "1", "--no-progress"]) == 0
    saved = json.loads((out / "run.json").read_text())["preset"]["preset"]
    assert saved["seed"] == 5
    table = BucketTable.from_dict(saved["buckets"])
    assert WorldClips(table, 5).batch_at(0).scene_seeds != WorldClips(table, 0).batch_at(0).scene_seeds
    before = load_checkpoint(out / CHECKPOINT)["step"]
    assert main(["text", "--preset", "tiny", "--out", str(out), "--resume", "--no-progress"]) == 2   # seed 0
    assert load_checkpoint(out / CHECKPOINT)["step"] == before
    assert main(["text", "--preset", "tiny", "--out", str(out), "--resume", "--seed", "5", "--no-progress"]) == 0
    assert load_checkpoint(out / CHECKPOINT)["step"] == 4


def test_torchrun_two_processes(tmp_path):
    out = tmp_path / "ddp"
    r = _run(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517",
              "-m", "sora_core.cli.train", "dit", "--preset", "tiny", "--out", str(out), "--steps", "3",
              "--no-progress", "--threads", "1", "--export", str(tmp_path / "model")])
    assert r.returncode == 0, r.stderr[-3000:]
    state = load_checkpoint(out / CHECKPOINT)
    assert state["step"] == 3
    losses = [r["loss"] for r in _log(out) if "loss" in r]
    assert len(losses) == 3 and all(math.isfinite(v) for v in losses)
    assert json.loads((out / "run.json").read_text())["world_size"] == 2
    assert (tmp_path / "model" / "dit.safetensors").is_file()


def test_decoder_trains_on_a_dits_denoised_latents(tmp_path):
    """Decoder-only training on what a DiT makes: the encoder (latent space) stays fixed, a share of
    the clips is decoded from the DiT's x0 prediction, the loss is finite, resume is exact."""
    vae_run, vae_path, dit_run, dit_dir = train_tiny_model(tmp_path, vae_steps=2, dit_steps=2)
    tiny = train_preset("vae", "tiny")
    preset = dataclasses.replace(tiny, train_encoder=False, kl_weight=0.0, sample_posterior=False,
                                 denoised_dit=str(dit_dir), denoised_frac=0.5)
    run = VAETrainer(preset, tmp_path / "dec", progress=False, init_path=str(vae_path))
    before = {k: v.clone() for k, v in run.module.state_dict().items()}
    x = run.data.batch_at(0).video
    caps = run.data.batch_at(0).captions
    clean, none = run.denoised_latents(x, caps, 0, frac=0.0)
    mixed, pick = run.denoised_latents(x, caps, 0, frac=1.0, t_value=0.3)
    assert not none.any() and pick.all() and clean.shape == mixed.shape
    assert not torch.allclose(clean, mixed)                                   # the DiT changed them
    low, _ = run.denoised_latents(x, caps, 0, frac=1.0, t_value=0.0)
    assert torch.allclose(low, clean, atol=1e-5)                              # t = 0: x0 = x_t exactly
    run.fit(steps=4)
    log = _log(tmp_path / "dec")
    assert all(math.isfinite(r["loss"]) for r in log if "loss" in r)
    assert any("psnr_denoised" in r for r in log if r.get("eval"))
    after = run.module.state_dict()
    enc = [k for k in after if k.startswith(("encoder.", "quant_conv."))]
    dec = [k for k in after if k.startswith("decoder.")]
    assert all(torch.equal(after[k], before[k]) for k in enc)                 # latent space kept
    assert any(not torch.equal(after[k], before[k]) for k in dec)
    resumed_dir = tmp_path / "dec2"
    first = VAETrainer(preset, resumed_dir, progress=False, init_path=str(vae_path))
    first.fit(steps=4, until=2)
    again = VAETrainer(preset, resumed_dir, resume=True, progress=False, init_path=str(vae_path))
    again.fit(steps=4)
    assert _states_equal(again.module.state_dict(), run.module.state_dict())
    # the DiT must come from this VAE's latent space, and the encoder must stay frozen
    other_vae = train_tiny_model(tmp_path / "o", vae_steps=1, dit_steps=0, vae_seed=1)[1]
    with pytest.raises(ValueError, match="latent space"):
        VAETrainer(preset, tmp_path / "bad", progress=False, init_path=str(other_vae))
    with pytest.raises(ValueError, match="train_encoder"):
        dataclasses.replace(tiny, denoised_dit=str(dit_dir))


# ---------------------------------------------------------------------------------------------
# Ghosts: a faint copy of the objects in x0, the target still the clean x0
# ---------------------------------------------------------------------------------------------

def test_add_ghosts_places_a_faint_moved_copy_outside_the_objects():
    from sora_core.train.dit_trainer import add_ghosts
    z = torch.zeros(1, 2, 3, 8, 8)
    z[..., 2:4, 2:4] = 1.0
    objects = torch.zeros(1, 3, 8, 8)
    objects[..., 2:4, 2:4] = 1.0
    t_frames = torch.tensor([[0.0, 0.5, 0.9]])                  # frame 0 given (clean)
    out = add_ghosts(z, objects, t_frames, torch.tensor([True]), torch.tensor([0.5]), torch.tensor([[0, 4]]), 0.3)
    assert torch.equal(out[:, :, 0], z[:, :, 0]), "no ghost on a given frame"
    expect = z[:, :, 1:].clone()
    expect[..., 2:4, 6:8] = 0.5
    assert torch.equal(out[:, :, 1:], expect), "half-strength copy 4 latent pixels right, the object untouched"
    wrapped = add_ghosts(z, objects, t_frames, torch.tensor([True]), torch.tensor([1.0]), torch.tensor([[7, 0]]), 0.3)
    moved_up = z.clone()
    moved_up[:, :, 1:, 1, 2:4] = 1.0                            # up by one (7 of 8, wrapping): row 1 is new
    assert torch.equal(wrapped, moved_up)
    off = add_ghosts(z, objects, t_frames, torch.tensor([False]), torch.tensor([0.5]), torch.tensor([[0, 4]]), 0.3)
    assert torch.equal(off, z)


def test_ghost_samples_still_lead_to_the_clean_latent(tmp_path, monkeypatch):
    from sora_core.train import dit_trainer
    preset = dataclasses.replace(train_preset("dit", "tiny"), ghost_prob=1.0, ghost_strength=(0.5, 0.5),
                                 ghost_t_min=0.05)
    trainer = DiTTrainer(preset, tmp_path / "g", progress=False)
    seen = {}

    def capture(v, target, free, weight=None):
        seen.update(target=target, free=free)
        return (v * 0).sum()
    monkeypatch.setattr(dit_trainer, "masked_mse", capture)
    real = trainer.model.forward
    monkeypatch.setattr(trainer.model, "forward",
                        lambda x_t, t, *a: seen.update(x_t=x_t.clone(), t=t.clone()) or real(x_t, t, *a))
    trainer.loss(1)
    z, _, objects = trainer.latents_at(1)
    assert objects is not None, "ghosts need the object masks"
    t = seen["t"][:, None, :, None, None]
    x0 = seen["x_t"] - t * seen["target"]                  # what a perfect prediction denoises to
    free = seen["free"][:, None, :, None, None].expand_as(z)
    assert torch.allclose(x0[free], z[free], atol=1e-5)
    gen = dit_trainer.step_generator(preset.seed, 1, 0, 3)           # the loss' own draws: t, then the noise
    dit_trainer.sample_t(z.shape[0], gen, preset.t_logit_mean, preset.t_logit_std, preset.t_shift)
    plain = (1 - t) * z + t * torch.randn(z.shape, generator=gen)     # the same x_t without a ghost
    ghost = (seen["x_t"] - plain) / (1 - t).clamp_min(1e-6)           # = strength * (moved - z) on the copy
    assert ghost[free].abs().amax() > 0.05, "a faint copy is in x_t"
    assert torch.allclose(ghost[~free], torch.zeros(()), atol=1e-5), "never on given frames"
    with pytest.raises(ValueError, match="ghost_prob"):
        dataclasses.replace(preset, ghost_prob=1.5)
    with pytest.raises(ValueError, match="ghost_strength"):
        dataclasses.replace(preset, ghost_strength=(0.6, 0.2))
    with pytest.raises(ValueError, match="ghost_t_min"):
        dataclasses.replace(preset, ghost_t_min=0.0)
