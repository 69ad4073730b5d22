"""Phrasings of a scene (world.phrasings): every one reads back to the scene, training never sees the
held-out words and forms, the training data and the text stage sample them reproducibly, and the
paraphrase evaluation set is built from them."""

import dataclasses

import numpy as np
import pytest
import torch

from sora_core.evaluation.evaluate import world_prompt_set
from sora_core.world.captions import describe, short_caption
from sora_core.world.phrasings import HELD_OUT, TRAIN, held_out_phrase, phrase
from sora_core.world.prompt_parse import parse_prompt
from sora_core.world.scene import sample_scene


def _reads_back(text: str, spec) -> None:
    """``text`` parses to exactly the objects, background and event of ``spec``, with no unknown word."""
    d, p = describe(spec), parse_prompt(text)
    assert p.unknown == [], text
    assert [(o.colour, o.shape, o.motion) for o in p.objects] == [(o.colour, o.shape, o.motion) for o in d.objects], text
    sizes = [o.size for o in p.objects]
    assert sizes == [None] * len(sizes) or sizes == [o.size for o in d.objects], text
    if p.background or p.colours:
        kind = p.background or ("solid" if len(p.colours) == 1 else "gradient")
        assert kind == d.background, text
        assert d.background == "landscape" or list(p.colours) == list(d.colours), text
        assert bool(p.ground) == d.ground or not p.ground, text
    event = p.event or ("pan" if p.pan else "none")
    assert event == d.event, text
    if d.event == "pan":
        assert p.pan == d.pan, text
    elif d.event != "none":
        assert p.target == d.target, text


@pytest.mark.parametrize("lexicon", ["train", "held-out"])
def test_every_phrasing_reads_back_to_its_scene(lexicon):
    lex = TRAIN if lexicon == "train" else dataclasses.replace(TRAIN.merged(HELD_OUT), forms=HELD_OUT.forms)
    texts = set()
    for i in range(400):
        rng = np.random.default_rng(i)
        spec = sample_scene(rng, 64, 64, 17, 8.0)
        for size, background in ((True, True), (False, False), (None, None)):
            text = phrase(spec, rng, lex, size, background)
            _reads_back(text, spec)
            texts.add(text)
    assert len(texts) > 1000        # phrasings, not one caption per scene


def test_training_phrasings_never_use_held_out_words_or_forms():
    held_words = {w for table in (HELD_OUT.shapes, HELD_OUT.colours, HELD_OUT.sizes, HELD_OUT.motions)
                  for ws in table.values() for phrase_ in ws for w in phrase_.split()}
    train_words = {w for table in (TRAIN.shapes, TRAIN.colours, TRAIN.sizes, TRAIN.motions)
                   for ws in table.values() for phrase_ in ws for w in phrase_.split()}
    only_held = held_words - train_words
    assert {"disk", "tiny", "huge", "turquoise", "sinking"} <= only_held
    starts = ("There is", "A video of", "This clip shows", "Here we see", "In this scene")
    for i in range(300):
        rng = np.random.default_rng(1000 + i)
        text = phrase(sample_scene(rng, 64, 64, 17, 8.0), rng, TRAIN)
        assert not only_held & set(text.lower().replace(",", " ").replace(".", " ").split()), text
        assert "backdrop" not in text and not text.startswith(starts), text


def test_paraphrase_set_is_the_single_object_scenes_in_held_out_forms():
    para = world_prompt_set("paraphrase", 40, seed=3)
    single = world_prompt_set("world-single", 40, seed=3)
    starts = ("There is", "A video of", "This clip shows", "Here we see", "In this scene")
    for p, s in zip(para, single):
        assert p.spec == s.spec and s.prompt == short_caption(s.spec)
        assert p.prompt.startswith(starts) and p.prompt != s.prompt
        _reads_back(p.prompt, p.spec)
    assert len({p.prompt for p in para}) == 40
    assert [p.prompt for p in world_prompt_set("paraphrase", 40, seed=3)] == [p.prompt for p in para]
    assert held_out_phrase(para[0].spec, np.random.default_rng(5)) == held_out_phrase(para[0].spec, np.random.default_rng(5))


def test_gradient_colours_after_dark_are_read_as_background():
    """"from dark green to dark blue" names two background colours (it used to make a blue object)."""
    p = parse_prompt("a red ball moving left on a gradient from dark green to dark blue")
    assert [(o.colour, o.shape) for o in p.objects] == [("red", "circle")]
    assert p.background == "gradient" and p.colours == ["green", "navy"]


# ---------------------------------------------------------------------------------------------
# Training data
# ---------------------------------------------------------------------------------------------

def test_caption_styles_state_what_the_caption_says():
    from sora_core.train.data import CaptionStyle, caption_of, draw_caption_style
    from sora_core.train.text_trainer import GROUPS, label_space, scene_labels
    _, groups = label_space()
    spec = sample_scene(np.random.default_rng(4), 64, 64, 17, 8.0, n_objects=2)

    def stated(style):
        w = scene_labels(spec, style)[1]
        return {g for g, v in zip(groups, w) if v}
    assert stated(True) == set(GROUPS) and stated(False) == {"words", "motion", "count", "event"}
    assert stated(CaptionStyle(False, True, True, False)) == {"words", "motion", "count", "event", "sizes", "size"}
    assert stated(CaptionStyle(True, True, False, True)) == {"words", "motion", "count", "event", "background"}
    # a phrasing's text is a function of its style alone
    style = CaptionStyle(False, True, True, True, seed=9)
    assert caption_of(spec, style) == caption_of(spec, style) != caption_of(spec, False)
    rng = np.random.default_rng(0)
    state = rng.bit_generator.state
    assert draw_caption_style(rng, True, 0.0) == CaptionStyle(True) and rng.bit_generator.state == state
    drawn = [draw_caption_style(np.random.default_rng(s), False, 0.5) for s in range(200)]
    assert 60 < sum(d.phrasing for d in drawn) < 140


def test_world_clips_phrasings_are_reproducible_and_leave_the_canonical_run_unchanged():
    from sora_core.train.buckets import BucketTable
    from sora_core.train.data import WorldClips, caption_of
    from sora_core.train.presets import train_preset
    table = BucketTable.from_dict(train_preset("dit", "tiny").buckets)
    plain = WorldClips(table, seed=3)
    phrased = WorldClips(table, seed=3, phrasing_prob=1.0)
    for step in range(4):
        a, b = plain.batch_at(step, render_video=False), phrased.batch_at(step, render_video=False)
        assert a.scene_seeds == b.scene_seeds
        descriptive = plain.descriptive_at(step, len(a.scene_seeds))
        canonical = [caption_of(plain.spec(s, a.bucket), d) for s, d in zip(a.scene_seeds, descriptive)]
        assert a.captions == canonical            # the same captions as before phrasings existed
        assert all(t != c for t, c in zip(b.captions, a.captions))
        assert b.captions == phrased.batch_at(step, render_video=False).captions
    with pytest.raises(ValueError, match="phrasing_prob"):
        WorldClips(table, seed=3, phrasing_prob=1.5)


def test_text_stage_from_an_encoder_keeps_its_canonical_features(tmp_path):
    """The phrasings text stage starts from given weights; at step 0 its features equal them (drift 0),
    and the drift term is in the loss and the log."""
    from sora_core.configs import text_encoder_preset
    from sora_core.models.text import ByteTextEncoder
    from sora_core.train.presets import train_preset
    from sora_core.train.text_trainer import TextTrainer
    from sora_core.weights import save_component
    torch.manual_seed(0)
    cfg = text_encoder_preset("tiny")
    init = tmp_path / "text_encoder.safetensors"
    save_component(init, ByteTextEncoder(cfg), cfg)
    preset = train_preset("text", "tiny-phrasings")
    with pytest.raises(ValueError, match="--init"):
        TextTrainer(preset, tmp_path / "no_init", progress=False)
    trainer = TextTrainer(preset, tmp_path / "run", progress=False, init_path=str(init))
    caps, y, w, canon = trainer.batch_at(0)
    assert len(caps) == len(canon) == preset.batch_size and y.shape == w.shape
    assert float(trainer.feature_drift(trainer.module.text_encoder, canon)) < 1e-3   # bf16 autocast: grad and no-grad kernels differ slightly
    loss, logs = trainer.loss(0)
    assert set(logs) == {"bce", "drift"} and float(loss) == pytest.approx(logs["bce"] + logs["drift"], rel=1e-4)
    trainer.fit()
    metrics = trainer.evaluate(trainer.ema_module())
    assert {"val_bce_phrased", "val_drift_short", "val_drift_long"} <= set(metrics)
