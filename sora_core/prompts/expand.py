"""Prompt expansion: a short user prompt becomes a detailed caption of the training distribution.

``parse_prompt(text)`` reads a prompt in the world's vocabulary (with synonyms: ball = circle,
box = square, "moving to the left", "a bouncing ball", "two balls", "on a navy background", "a
gradient from navy to black", "textured ground", "passes behind a bar", "leaves a trail", "the camera
pans right"...). ``prompt_to_scene(text, seed, ...)`` fills everything the prompt leaves open with
seeded choices and returns a ``SceneSpec``; ``expand_prompt(text, seed)`` returns that scene's long
caption.

Words outside the vocabulary are never dropped silently: ``parse_prompt`` lists them in
``PromptParse.unknown`` and ``prompt_to_scene`` / ``expand_prompt`` raise ``UnknownWordsError``
(a ValueError) naming them. Stop-words ("a", "the", "and", "with"...) are ignored.

``ChatExpander`` asks any OpenAI-compatible ``/chat/completions`` endpoint instead (only when
constructed with a base URL and a model; nothing is ever called otherwise).
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass, field, replace

from ..world import vocab as V
from ..world.captions import long_caption
from ..world.scene import BackgroundSpec, ObjectRequest, SceneSpec, as_rng, sample_scene


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


_MOVING = ("left", "right", "up", "down", "bouncing")


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
        before = self.tokens[max(0, i - 2):i]
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


# ---------------------------------------------------------------------------------------------
# Prompt -> scene -> caption
# ---------------------------------------------------------------------------------------------

def _resolve_moving(rng, objs: list[ObjectRequest]) -> list[ObjectRequest]:
    """"moving" without a direction: pick one of the moving motions."""
    return [replace(o, motion=_MOVING[rng.integers(len(_MOVING))]) if o.motion == "moving" else o
            for o in objs]


def _background(rng, p: PromptParse) -> BackgroundSpec | None:
    """A full BackgroundSpec when the prompt says anything about the background, else None."""
    kind = p.background or {0: None, 1: "solid"}.get(len(p.colours), "gradient")
    if kind is None:
        return None
    names = [c for c in V.BACKGROUND_COLOURS if c not in p.colours]
    need = {"solid": 1, "gradient": 2, "landscape": 0}[kind]
    if len(p.colours) > need:
        raise ValueError(f"a {kind} background takes {need} colour(s), the prompt gives {p.colours}")
    cols = list(p.colours) + [names[i] for i in rng.permutation(len(names))[: need - len(p.colours)]]
    return BackgroundSpec(kind, tuple(cols), bool(p.ground), int(rng.integers(2**31)))


def prompt_to_scene(text: str, seed, width: int = 64, height: int = 64, frames: int = 17,
                    fps: float = 8.0) -> SceneSpec:
    """The scene a prompt describes, everything it leaves open drawn from ``seed`` (int or
    numpy Generator). Raises UnknownWordsError for words outside the vocabulary."""
    p = parse_prompt(text)
    if p.unknown:
        raise UnknownWordsError(p.unknown, text)
    rng = as_rng(seed)
    objs = _resolve_moving(rng, p.objects)
    event = p.event or ("pan" if p.pan else None)
    return sample_scene(rng, width, height, frames, fps, n_objects=len(objs) or None,
                        event=event or "none", objects=objs, background=_background(rng, p),
                        ground=p.ground, pan_direction=p.pan, event_target=p.target)


def expand_prompt(text: str, seed, **grid) -> str:
    """The long caption of ``prompt_to_scene(text, seed, **grid)``: a detailed caption in the
    training distribution that keeps every constraint of the prompt."""
    return long_caption(prompt_to_scene(text, seed, **grid))


# ---------------------------------------------------------------------------------------------
# Optional: an OpenAI-compatible chat model as the expander
# ---------------------------------------------------------------------------------------------

class ExpansionError(RuntimeError):
    """The chat endpoint failed: timeout, HTTP error, unreachable, or an unexpected answer."""


SYSTEM_PROMPT = (
    "You rewrite short video prompts into one detailed caption of a simple procedural world. "
    "Use only these words: objects ball, box, triangle; sizes small, large; colours "
    + ", ".join(V.COLOURS) + "; motions moving left, moving right, moving up, moving down, bouncing, "
    "standing still; backgrounds: a plain " + "/".join(V.BACKGROUND_COLOURS) + " background, a gradient "
    "from one of those to another, or a textured landscape, optionally above a textured ground; "
    "events: an object passes behind a bar and reappears, an object leaves a trail, or the camera "
    "pans left/right. 1 to 3 objects. Keep everything the prompt says; fill the rest. Answer with the "
    "caption only, in this form: 'A large red ball bouncing and a small blue box moving left, on a "
    "plain navy background. The red ball leaves a trail.'")


@dataclass(frozen=True)
class ChatExpander:
    """Prompt expansion by an OpenAI-compatible chat-completions endpoint.

    ``base_url`` like "http://localhost:8000/v1" (the request goes to ``base_url + /chat/completions``);
    ``model`` the model name the server expects; ``api_key`` sent as a Bearer token when given.
    Nothing is contacted until ``expand`` is called.
    """
    base_url: str
    model: str
    api_key: str | None = None
    timeout: float = 30.0
    temperature: float = 0.0
    system_prompt: str = SYSTEM_PROMPT

    def __post_init__(self):
        if not isinstance(self.base_url, str) or not re.match(r"^https?://\S+$", self.base_url):
            raise ValueError(f"base_url must be an http(s) URL, got {self.base_url!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("model must be a non-empty model name")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise ValueError(f"timeout must be > 0 seconds, got {self.timeout!r}")

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"

    def _request(self, prompt: str) -> urllib.request.Request:
        body = {"model": self.model, "temperature": self.temperature,
                "messages": [{"role": "system", "content": self.system_prompt},
                             {"role": "user", "content": prompt}]}
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")

    def expand(self, prompt: str) -> str:
        """The endpoint's expansion of ``prompt`` (stripped). Raises ExpansionError on failure."""
        try:
            with urllib.request.urlopen(self._request(prompt), timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:200].decode("utf-8", "replace")
            raise ExpansionError(f"{self.url} answered HTTP {e.code}: {detail}") from e
        except (socket.timeout, TimeoutError) as e:
            raise ExpansionError(f"{self.url} did not answer within {self.timeout} s") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise ExpansionError(f"{self.url} did not answer within {self.timeout} s") from e
            raise ExpansionError(f"cannot reach {self.url}: {e.reason}") from e
        try:
            text = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ExpansionError(f"{self.url} answered something that is not a chat completion: "
                                 f"{raw[:200]!r}") from e
        if not isinstance(text, str) or not text.strip():
            raise ExpansionError(f"{self.url} answered an empty completion")
        return text.strip()

    __call__ = expand
