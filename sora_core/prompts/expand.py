"""Prompt expansion: a short user prompt becomes a detailed caption of the training distribution.

``parse_prompt(text)`` (from ``sora_core.world.prompt_parse``) reads a prompt in the world's
vocabulary; ``prompt_to_scene(text, seed, ...)`` fills everything the prompt leaves open with
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
from dataclasses import dataclass, replace

import numpy as np

from ..world import vocab as V
from ..world.captions import long_caption
from ..world.prompt_parse import MOVING_MOTIONS, PromptParse, UnknownWordsError, parse_prompt
from ..world.scene import BackgroundSpec, ObjectRequest, SceneSpec, as_rng, sample_scene_sized

__all__ = ["PromptParse", "UnknownWordsError", "parse_prompt", "prompt_to_scene", "expand_prompt", "open_size_from",
           "ChatExpander", "ExpansionError"]


# ---------------------------------------------------------------------------------------------
# Prompt -> scene -> caption
# ---------------------------------------------------------------------------------------------

def _resolve_moving(rng, objs: list[ObjectRequest]) -> list[ObjectRequest]:
    """"moving" without a direction: pick one of the moving motions."""
    return [replace(o, motion=MOVING_MOTIONS[rng.integers(len(MOVING_MOTIONS))]) if o.motion == "moving" else o
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


# The size an expansion gives an object whose size the prompt leaves open. At the default 64 x 64 a small
# object is 10 pixels wide, under three latent pixels: the default model draws a small box as a ball in
# about half the clips, a large one right in nine of ten (docs/training.md, "Small boxes"). A prompt
# that says "small" (little, tiny) still gets a small object; None draws open sizes as the world does.
OPEN_SIZE = "large"


def open_size_from(image=None) -> str:
    """The size an expansion gives an object whose size the prompt leaves open: with a start image
    (uint8 (H, W, 3)) whose objects the captioner reads as all one size, that size, so the caption does
    not contradict the frame the video starts from; else ``OPEN_SIZE``."""
    if image is None:
        return OPEN_SIZE
    from ..world.captioner import analyze
    sizes = {o.size for o in analyze(np.asarray(image)[None]).objects}
    return sizes.pop() if len(sizes) == 1 else OPEN_SIZE


def prompt_to_scene(text: str, seed, width: int = 64, height: int = 64, frames: int = 17,
                    fps: float = 8.0, open_size: str | None = OPEN_SIZE) -> SceneSpec:
    """The scene a prompt describes, everything it leaves open drawn from ``seed`` (int or
    numpy Generator), an open size ``open_size`` where the objects fit in the frame at that size (None:
    drawn). Raises UnknownWordsError for words outside the vocabulary."""
    if open_size is not None and open_size not in V.SIZES:
        raise ValueError(f"open_size={open_size!r} is unknown; allowed: {', '.join(V.SIZES)} or None")
    p = parse_prompt(text)
    if p.unknown:
        raise UnknownWordsError(p.unknown, text)
    rng = as_rng(seed)
    objs = _resolve_moving(rng, p.objects)
    event = p.event or ("pan" if p.pan else None)
    # too crowded at the open size: the sizes are drawn (and shrunk) as the world does
    return sample_scene_sized(rng, width, height, frames, fps, objects=objs, sizes=[open_size] * len(objs),
                              n_objects=len(objs) or None, event=event or "none", background=_background(rng, p),
                              ground=p.ground, pan_direction=p.pan, event_target=p.target)


def expand_prompt(text: str, seed, open_size: str | None = OPEN_SIZE, **grid) -> str:
    """The long caption of ``prompt_to_scene(text, seed, open_size=open_size, **grid)``: a detailed
    caption in the training distribution that keeps every constraint of the prompt."""
    return long_caption(prompt_to_scene(text, seed, open_size=open_size, **grid))


def expand_schedule(text: str, seed, open_size: str | None = OPEN_SIZE, **grid) -> str:
    """``expand_prompt`` of a prompt, or of each prompt of a schedule (``"0:a red ball | 20:a blue box"``,
    ``prompts.schedule.parse_schedule``), which keeps its start times: every window of a long video gets a
    caption of the training distribution. Raises UnknownWordsError / ScheduleError naming the part."""
    from .schedule import parse_schedule
    cues = parse_schedule(text)
    if len(cues) == 1 and cues[0].prompt == text.strip():          # one prompt, no start time
        return expand_prompt(text, seed, open_size, **grid)
    return " | ".join(f"{c.seconds:g}:{expand_prompt(c.prompt, seed, open_size, **grid)}" for c in cues)


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
    "pans left/right. 1 to 3 objects. Keep everything the prompt says; fill the rest (an object whose "
    "size the prompt does not give is large). Answer with the "
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
