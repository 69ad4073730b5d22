"""Captions of the procedural world: one fixed grammar, shared by training, prompt expansion and the
analytic captioner.

Long caption (every object with size, colour, shape and motion; the background; the event)::

    A large red ball bouncing, a small blue box moving left and a small white triangle standing
    still, on a gradient from navy to black above a textured ground. The red ball passes behind a
    bar and reappears.

Short caption (objects without size, a short event tag)::

    a red ball bouncing and a blue box moving left, passing behind a bar

Both are deterministic functions of a ``SceneDescription`` (``describe(spec)`` for a scene spec; the
analytic captioner builds one from frames), so a caption never depends on anything but the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import vocab as V
from .scene import SceneSpec


# ---------------------------------------------------------------------------------------------
# What a caption says
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectDescription:
    shape: str
    colour: str
    size: str
    motion: str

    @property
    def name(self) -> str:
        """"red ball": colour and noun, unique inside a scene."""
        return f"{self.colour} {V.SHAPE_NOUN[self.shape]}"


@dataclass(frozen=True)
class SceneDescription:
    """The captionable content of a clip. ``event`` one of vocab.EVENTS; ``target`` the index of the
    object the occluder / brush event is about; ``pan`` "left"/"right" for a camera pan."""
    objects: tuple[ObjectDescription, ...]
    background: str = "solid"                   # vocab.BACKGROUND_KINDS
    colours: tuple[str, ...] = ("black",)       # solid: (c,), gradient: (top, bottom), landscape: ()
    ground: bool = False
    event: str = "none"
    target: int = 0
    pan: str | None = None


def describe(spec: SceneSpec) -> SceneDescription:
    """The description of a scene spec (what its captions say)."""
    objs = tuple(ObjectDescription(o.shape, o.colour, o.size, o.motion) for o in spec.objects)
    ev = spec.event
    pan = ("right" if ev.pan_speed > 0 else "left") if ev.kind == "pan" else None
    return SceneDescription(objs, spec.background.kind, tuple(spec.background.colours),
                            spec.background.ground, ev.kind, ev.target, pan)


def _as_description(scene) -> SceneDescription:
    if isinstance(scene, SceneDescription):
        return scene
    if isinstance(scene, SceneSpec):
        return describe(scene)
    raise TypeError(f"expected a SceneSpec or SceneDescription, got {type(scene).__name__}")


# ---------------------------------------------------------------------------------------------
# Phrases
# ---------------------------------------------------------------------------------------------

def object_phrase(obj: ObjectDescription, with_size: bool = True) -> str:
    """"a large red ball bouncing" (or without the size)."""
    words = f"{obj.size} {obj.name}" if with_size else obj.name
    article = "an" if words[0] in "aeiou" else "a"
    return f"{article} {words} {V.MOTION_PHRASE[obj.motion]}"


def join_list(items: list[str]) -> str:
    """"x", "x and y", "x, y and z"."""
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def background_phrase(d: SceneDescription) -> str:
    """"on a plain navy background" / "on a gradient from navy to black" / "over a textured
    landscape", plus " above a textured ground"."""
    if d.background == "solid":
        text = f"on a plain {d.colours[0]} background"
    elif d.background == "gradient":
        text = f"on a gradient from {d.colours[0]} to {d.colours[1]}"
    else:
        text = "over a textured landscape"
    return text + (" above a textured ground" if d.ground else "")


def event_sentence(d: SceneDescription) -> str:
    """The event as a sentence ("" when there is none)."""
    if d.event == "occluder":
        return f"The {d.objects[d.target].name} passes behind a bar and reappears."
    if d.event == "brush":
        return f"The {d.objects[d.target].name} leaves a trail."
    if d.event == "pan":
        return f"The camera pans {d.pan}."
    return ""


def event_tag(d: SceneDescription) -> str:
    """The event in a few words for the short caption ("" when there is none)."""
    return {"occluder": ", passing behind a bar", "brush": ", leaving a trail",
            "pan": f", camera panning {d.pan}"}.get(d.event, "")


# ---------------------------------------------------------------------------------------------
# Captions
# ---------------------------------------------------------------------------------------------

def long_caption(scene: SceneSpec | SceneDescription) -> str:
    """Every object (size, colour, shape, motion), the background and the event."""
    d = _as_description(scene)
    objects = join_list([object_phrase(o) for o in d.objects])
    text = f"{objects[0].upper()}{objects[1:]}, {background_phrase(d)}."
    sentence = event_sentence(d)
    return f"{text} {sentence}" if sentence else text


def short_caption(scene: SceneSpec | SceneDescription) -> str:
    """The objects (colour, shape, motion) and a short event tag: "a red ball bouncing"."""
    d = _as_description(scene)
    return join_list([object_phrase(o, with_size=False) for o in d.objects]) + event_tag(d)
