"""Reading a prompt in the world's vocabulary: ``parse_prompt(text)`` -> ``PromptParse`` (objects with
colour, shape, size and motion, background, events), with synonyms (ball = circle, box = square,
"moving to the left", "a bouncing ball", "two balls", "on a navy background", "a gradient from navy
to black", "textured ground", "passes behind a bar", "leaves a trail", "the camera pans right"...).

Words outside the vocabulary are never dropped silently: they are listed in ``PromptParse.unknown``;
``UnknownWordsError`` (a ValueError) names them for callers that refuse them. Stop-words ("a", "the",
"and", "with"...) are ignored. The metrics read prompts with it (prompt adherence), and prompt
expansion (``sora_core.prompts``) builds scenes from what it reads.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from . import vocab as V
from .scene import ObjectRequest


class UnknownWordsError(ValueError):
    """The prompt has words outside the world's vocabulary; ``words`` lists them in order."""

    def __init__(self, words: list[str], text: str):
        self.words = list(words)
        super().__init__(f"prompt {text!r} has words outside the vocabulary: {', '.join(words)} "
                         f"(known: colours {', '.join(V.COLOURS)}; shapes ball/circle, box/square, "
                         f"triangle; sizes small/large; motion left/right/up/down/bouncing/static; "
                         f"backgrounds {', '.join(V.BACKGROUND_COLOURS)}, gradient, landscape, ground; "
                         f"events bar/occluder, trail/brush, camera pan)")


# ---------------------------------------------------------------------------------------------
# Parsing
# ---------------------------------------------------------------------------------------------

@dataclass
class PromptParse:
    """What a prompt asks for; None / empty = left open."""
    objects: list[ObjectRequest] = field(default_factory=list)
    background: str | None = None           # vocab.BACKGROUND_KINDS
    colours: list[str] = field(default_factory=list)
    ground: bool | None = None
    event: str | None = None
    target: int | None = None
    pan: str | None = None
    unknown: list[str] = field(default_factory=list)


MOVING_MOTIONS = ("left", "right", "up", "down", "bouncing")


class _Parser:
    """A left-to-right pass: adjectives collect in ``pending`` until a noun makes an object; motion
    words after a noun belong to that object, before a noun to the next one."""

    def __init__(self, text: str):
        if not isinstance(text, str):
            raise ValueError(f"prompt must be a string, got {type(text).__name__}")
        self.text, self.tokens = text, re.findall(r"[a-z0-9]+", text.lower())
        self.out = PromptParse()
        self.pending: dict = {}
        self.count = 1
        self.last: int | None = None      # index of the object the last noun made
        self.pan_context = False
        self.definite = False             # "the red ball": refers to an object already named

    def run(self) -> PromptParse:
        for i, w in enumerate(self.tokens):
            self.step(i, w)
        self.flush(end=True)
        return self.out

    def _is_background_colour(self, i: int) -> bool:
        before = [t for t in self.tokens[max(0, i - 3):i] if t != "dark"][-2:]
        after = [t for t in self.tokens[i + 1:i + 5] if t not in ("dark", "and", "to")]
        if "from" in before or (self.out.background == "gradient" and "to" in before[-1:]):
            return True
        for t in after[:3]:
            if t in V.SHAPE_WORDS or t in V.GENERIC_NOUNS:
                return False
            if t in V.BACKGROUND_NOUNS:
                return True
        return False

    def step(self, i: int, w: str) -> None:
        if w in ("the", "a", "an") and not self.pending:
            self.definite = w == "the"
        if w in V.COUNT_WORDS:
            self.count = V.COUNT_WORDS[w]
        elif (w in V.BACKGROUND_WORDS) and self._is_background_colour(i):
            self.out.colours.append(V.BACKGROUND_WORDS[w])
        elif w in V.COLOUR_WORDS:
            if "colour" in self.pending:
                self.flush()
            self.pending["colour"] = V.COLOUR_WORDS[w]
        elif w in V.SIZE_WORDS:
            self.pending["size"] = V.SIZE_WORDS[w]
        elif w in V.SHAPE_WORDS or w in V.GENERIC_NOUNS:
            self.pending["shape"] = V.SHAPE_WORDS.get(w)
            self.flush(noun=True)
        elif w in V.MOTION_WORDS or w in V.MOVING_WORDS:
            self.motion(V.MOTION_WORDS.get(w, "moving"))
        else:
            self.other(i, w)

    def other(self, i: int, w: str) -> None:
        nxt = self.tokens[i + 1] if i + 1 < len(self.tokens) else ""
        for kind, words in V.EVENT_WORDS.items():
            if w in words:
                self.event(kind)
                return
        if w in V.LANDSCAPE_WORDS:
            if nxt not in V.GROUND_WORDS:
                self.set_background("landscape")
        elif w in V.GROUND_WORDS:
            self.out.ground = True
        elif w == "gradient":
            self.set_background("gradient")
        elif w in V.BACKGROUND_NOUNS or w in V.STOP_WORDS:
            pass
        else:
            self.out.unknown.append(w)

    def set_background(self, kind: str) -> None:
        if self.out.background not in (None, kind):
            raise ValueError(f"prompt {self.text!r} asks for two backgrounds: {self.out.background} and {kind}")
        self.out.background = kind

    def event(self, kind: str) -> None:
        if self.out.event not in (None, kind):
            raise ValueError(f"prompt {self.text!r} asks for two events ({self.out.event} and {kind}); "
                             f"a clip has at most one")
        self.out.event = kind
        self.pan_context = kind == "pan"
        if kind != "pan" and self.out.target is None and self.last is not None:
            self.out.target = self.last

    def motion(self, m: str) -> None:
        if self.pan_context and m in ("left", "right"):
            self.out.pan = m
            return
        if self.last is not None and not self.pending:
            obj = self.out.objects[self.last]
            if m != "moving" or obj.motion is None:
                self.out.objects[self.last] = replace(obj, motion=m)
            return
        if m != "moving" or "motion" not in self.pending:
            self.pending["motion"] = m

    def flush(self, noun: bool = False, end: bool = False) -> None:
        """Turn the pending attributes into ``count`` objects (at a noun, a second colour, or the end)."""
        if not self.pending:
            return
        if end and set(self.pending) == {"motion"} and self.last is not None:
            self.motion(self.pending.pop("motion"))
            return
        same = [i for i, o in enumerate(self.out.objects) if self.definite and noun
                and all(getattr(o, k) == v for k, v in self.pending.items() if k != "motion")]
        if same:
            self.last = same[-1]
            m = self.pending.pop("motion", None)
            self.pending = {}
            if m:
                self.motion(m)
        else:
            for _ in range(self.count if noun else 1):
                self.out.objects.append(ObjectRequest(**self.pending))
            self.last = len(self.out.objects) - 1
        self.pending, self.count, self.pan_context, self.definite = {}, 1, False, False


def parse_prompt(text: str) -> PromptParse:
    """Read a prompt (never raises for unknown words: they are listed in ``unknown``)."""
    out = _Parser(text).run()
    if len(out.objects) > 3:
        raise ValueError(f"prompt {text!r} asks for {len(out.objects)} objects; a clip has 1 to 3")
    keys = [(o.colour, o.shape) for o in out.objects if o.colour and o.shape]
    if len(set(keys)) != len(keys):
        raise ValueError(f"prompt {text!r} asks for two objects of the same colour and shape; "
                         f"objects must be distinguishable")
    return out
