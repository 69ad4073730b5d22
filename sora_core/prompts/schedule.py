"""Prompt schedules: one prompt for a whole video, or several with their start times
(``"0:a red ball moving right | 20:the ball bounces"``), for long videos (``sora_core.long_video``)."""

from __future__ import annotations

import re
from dataclasses import dataclass


class ScheduleError(ValueError):
    """A malformed prompt schedule; the message names the part and what is allowed."""


@dataclass(frozen=True)
class Cue:
    """A prompt that starts at ``seconds`` into the video."""
    seconds: float
    prompt: str


_TIMED = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*:(.*)$", re.S)


def parse_schedule(spec: str, seconds: float | None = None) -> tuple[Cue, ...]:
    """``"a red ball"`` (one prompt: no part starts with a time) or ``"0:a red ball | 20:the ball
    bounces"`` (every part timed, in seconds: the first at 0, increasing, each before ``seconds`` when
    given) -> cues. Raises a ScheduleError naming the bad part."""
    if not isinstance(spec, str) or not spec.strip():
        raise ScheduleError("the prompt schedule is empty: give a prompt, or '0:first prompt | 20:second ...'")
    parts = spec.split("|")
    if not any(_TIMED.match(part) for part in parts):          # no start times: one prompt ("|" and all)
        return (Cue(0.0, spec.strip()),)
    cues = []
    for i, part in enumerate(parts):
        m = _TIMED.match(part)
        if m is None:
            raise ScheduleError(f"prompt schedule part {i + 1} {part.strip()!r} has no start time: write "
                                 f"'SECONDS:prompt', parts separated by '|' (e.g. '0:a red ball | 20:it bounces')")
        t, text = float(m.group(1)), m.group(2).strip()
        if not text:
            raise ScheduleError(f"prompt schedule part {i + 1} ({t:g} s) has an empty prompt")
        if not cues and t != 0:
            raise ScheduleError(f"the prompt schedule must start at 0 s, its first part starts at {t:g} s")
        if cues and t <= cues[-1].seconds:
            raise ScheduleError(f"prompt schedule part {i + 1} starts at {t:g} s, not after the part before it "
                                 f"({cues[-1].seconds:g} s): start times must increase")
        if seconds is not None and cues and t >= seconds:
            raise ScheduleError(f"prompt schedule part {i + 1} starts at {t:g} s, at or after the end of the "
                                 f"{seconds:g} s video")
        cues.append(Cue(t, text))
    return tuple(cues)
