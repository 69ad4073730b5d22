"""Many phrasings of one scene: the captions people write, in the world's vocabulary.

The canonical captions (``captions.long_caption`` / ``short_caption``) are one fixed grammar. People
write "a small white disc drifting to the left on a grey backdrop" or "There is a big cyan circle
falling." ``phrase(scene, rng, lexicon)`` draws one such phrasing of a scene: synonyms for every
attribute, word orders, with or without the size and the background, sentence and fragment forms.
Every phrasing parses back (``prompt_parse.parse_prompt``) to exactly what the scene states, which
``tests/test_phrasings.py`` checks over many scenes.

Two lexicons split the phrasings: ``TRAIN`` is what training samples (the text encoder and the DiT
learn from it); ``HELD_OUT`` adds synonyms and sentence forms training never sees, and the
``paraphrase`` evaluation set (``evaluation.evaluate.world_prompt_set``) always uses at least one of
them, so it measures phrasings the model was not trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import vocab as V
from .captions import SceneDescription, _as_description, join_list


@dataclass(frozen=True)
class Lexicon:
    """Word choices per attribute value and sentence forms (``{x}`` = the object list)."""
    shapes: dict[str, tuple[str, ...]]
    colours: dict[str, tuple[str, ...]]
    sizes: dict[str, tuple[str, ...]]
    motions: dict[str, tuple[str, ...]]
    backgrounds: dict[str, tuple[str, ...]]     # background colour words
    solid: tuple[str, ...]                       # "{c}" = a background colour word
    gradient: tuple[str, ...]                    # "{a}", "{b}"
    landscape: tuple[str, ...]
    ground: tuple[str, ...]
    forms: tuple[str, ...]                       # "{x}" objects, "{bg}" background ("" or " on ...")

    def merged(self, other: "Lexicon") -> "Lexicon":
        """This lexicon's choices plus ``other``'s (duplicates dropped, order kept)."""
        def m(a, b):
            return tuple(dict.fromkeys(a + b))

        def md(a, b):
            return {k: m(a.get(k, ()), b.get(k, ())) for k in dict.fromkeys([*a, *b])}
        return Lexicon(md(self.shapes, other.shapes), md(self.colours, other.colours),
                       md(self.sizes, other.sizes), md(self.motions, other.motions),
                       md(self.backgrounds, other.backgrounds), m(self.solid, other.solid),
                       m(self.gradient, other.gradient), m(self.landscape, other.landscape),
                       m(self.ground, other.ground), m(self.forms, other.forms))


def _dirs(*templates: str) -> dict[str, tuple[str, ...]]:
    return {d: tuple(t.format(d=d) for t in templates) for d in ("left", "right")}


TRAIN = Lexicon(
    shapes={"circle": ("ball", "circle", "disc", "dot"), "square": ("box", "square", "block"),
            "triangle": ("triangle",)},
    colours={c: (c,) for c in V.COLOURS} | {"purple": ("purple", "violet"), "cyan": ("cyan", "aqua")},
    sizes={"small": ("small", "little"), "large": ("large", "big")},
    motions={**_dirs("moving {d}", "moving to the {d}", "going {d}", "sliding {d}", "drifting to the {d}"),
             "up": ("moving up", "rising", "going up", "floating up"),
             "down": ("moving down", "falling", "dropping", "going down"),
             "bouncing": ("bouncing", "bouncing on the floor"),
             "static": ("standing still", "resting", "motionless", "stationary")},
    backgrounds={"black": ("black",), "gray": ("gray", "grey"), "navy": ("navy", "dark blue"),
                 "green": ("green", "dark green"), "maroon": ("maroon",)},
    solid=("on a plain {c} background", "on a {c} background", "on {c} background"),
    gradient=("on a gradient from {a} to {b}", "on a {a} to {b} gradient"),
    landscape=("over a textured landscape", "over a landscape"),
    ground=(" above a textured ground", " above the ground"),
    forms=("{x}{bg}", "{X}{bg}.", "{X}, {bg_bare}.", "{x}{bg}"),
)

HELD_OUT = Lexicon(
    shapes={"circle": ("disk",)},
    colours={"cyan": ("turquoise",)},
    sizes={"small": ("tiny",), "large": ("huge",)},
    motions={**_dirs("moving {d}ward", "travelling {d}wards", "gliding to the {d}"),
             "up": ("moving upward", "travelling up"), "down": ("moving downward", "sinking"),
             "bouncing": ("bouncing around",)},
    backgrounds={},
    solid=("on a {c} backdrop", "over a {c} backdrop"),
    gradient=("over a gradient from {a} to {b}",),
    landscape=("over hills", "over textured terrain"),
    ground=(),
    forms=("There is {x}{bg}.", "A video of {x}{bg}.", "This clip shows {x}{bg}.", "Here we see {x}{bg}.", "In this scene {x}{bg}."),
)


def _choice(rng: np.random.Generator, items) -> str:
    items = tuple(items)
    return items[int(rng.integers(len(items)))]


def _article(words: str) -> str:
    return ("an " if words[0] in "aeiou" else "a ") + words


def object_text(o, rng: np.random.Generator, lex: Lexicon, with_size: bool) -> str:
    """One object: "a big red ball moving left" in one of the lexicon's wordings."""
    adjectives = [_choice(rng, lex.colours[o.colour])]
    if with_size:
        adjectives.insert(0, _choice(rng, lex.sizes[o.size]))
    noun = _choice(rng, lex.shapes[o.shape])
    return f"{_article(' '.join(adjectives + [noun]))} {_choice(rng, lex.motions[o.motion])}"


def background_text(d: SceneDescription, rng: np.random.Generator, lex: Lexicon) -> str:
    """The background as a phrase ("on a grey backdrop", "over a landscape above the ground")."""
    if d.background == "solid":
        text = _choice(rng, lex.solid).format(c=_choice(rng, lex.backgrounds[d.colours[0]]))
    elif d.background == "gradient":
        a, b = (_choice(rng, lex.backgrounds[c]) for c in d.colours)
        text = _choice(rng, lex.gradient).format(a=a, b=b)
    else:
        text = _choice(rng, lex.landscape)
    return text + (_choice(rng, lex.ground) if d.ground and lex.ground else "")


def event_text(d: SceneDescription, rng: np.random.Generator, names: list[str]) -> str:
    """The event as a sentence about the object named as in the caption ("" for none)."""
    if d.event == "occluder":
        return _choice(rng, (f"The {names[d.target]} passes behind a bar and reappears.",
                             f"The {names[d.target]} passes behind a bar."))
    if d.event == "brush":
        return _choice(rng, (f"The {names[d.target]} leaves a trail.", f"The {names[d.target]} is leaving a trail."))
    if d.event == "pan":
        return _choice(rng, (f"The camera pans {d.pan}.", f"The camera is panning {d.pan}."))
    return ""


def phrase(scene, rng: np.random.Generator, lex: Lexicon = TRAIN, with_size: bool | None = None,
           with_background: bool | None = None) -> str:
    """One phrasing of ``scene`` (SceneSpec or SceneDescription) drawn from ``rng``: the size and the
    background each said or not (drawn when None), the words and the sentence form from ``lex``."""
    d = _as_description(scene)
    if with_size is None:
        with_size = bool(rng.random() < 0.5)
    if with_background is None:
        with_background = bool(rng.random() < 0.5)
    parts, names = [], []
    for o in d.objects:
        text = object_text(o, rng, lex, with_size)
        parts.append(text)
        # the event sentence names the object by its colour and the noun used for it
        words = text.split()
        noun_at = next(i for i, w in enumerate(words) if w in V.SHAPE_WORDS)
        names.append(f"{words[noun_at - 1]} {words[noun_at]}")
    objects = join_list(parts)
    bg = background_text(d, rng, lex) if with_background else ""
    form = _choice(rng, lex.forms)
    if "{bg_bare}" in form and not bg:
        form = "{X}."
    text = form.format(x=objects, X=objects[0].upper() + objects[1:], bg=f", {bg}" if bg else "",
                       bg_bare=bg)
    event = event_text(d, rng, names)
    return f"{text.rstrip('.')}. {event}" if event else text


def held_out_phrase(scene, rng: np.random.Generator) -> str:
    """A phrasing training never saw: always one of the held-out sentence forms, its words from both
    lexicons (so held-out synonyms such as "disk", "tiny", "huge", "turquoise", "sinking", "leftward"
    or "backdrop" come up among the trained ones)."""
    from dataclasses import replace
    lex = replace(TRAIN.merged(HELD_OUT), forms=HELD_OUT.forms)
    return phrase(scene, rng, lex)
