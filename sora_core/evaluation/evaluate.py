"""Evaluation: score videos with the world metrics, from a folder + prompts file or by generating.

    entries = read_prompt_file("prompts.jsonl")                  # file + prompt (+ task fields)
    results = score_folder("videos/", entries)                   # list[ClipResult]
    write_report("eval_out", results, settings)                  # report.json, report.md, figures

Generation (``evaluate_generated``) runs ``sora_core.pipeline`` on prompts x seeds for the tasks
t2v (text-to-video), i2v (animate the first frame of the prompt's rendered scene), extend (continue
the rendered scene), loop, sdedit (re-generate the rendered scene at several strengths), connect
(transition between two rendered scenes) and vae (reconstruct the rendered scene); see ``tasks``.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..world import metrics as M
from ..world import vocab as V
from .figures import contact_sheet

TASKS = ("t2v", "i2v", "extend", "loop", "sdedit", "connect", "vae")
PROMPT_FILE_EXTS = (".jsonl", ".txt", ".csv")
_FILE_KEYS = ("file", "video", "filename", "path", "name")
_PROMPT_KEYS = ("prompt", "caption", "text")
_OPTIONAL_KEYS = ("task", "join", "source", "strength", "transition", "seed")


class PromptFileError(ValueError):
    """A prompts file that cannot be read: the message names the file and the line."""


# ---------------------------------------------------------------------------------------------
# Prompt files and prompt sets
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptEntry:
    """One line of a prompts file. ``file`` is the video (folder mode, else ""); ``task`` one of
    TASKS; ``join`` (extend: first new frame), ``transition`` (connect: [start, end) frames),
    ``source`` (i2v image / sdedit or vae source video), ``strength`` (sdedit) are task fields."""
    prompt: str
    file: str = ""
    task: str = "t2v"
    line: int = 0
    join: int | None = None
    transition: tuple[int, int] | None = None
    source: str | None = None
    strength: float | None = None
    seed: int | None = None
    spec: object = field(default=None, compare=False, repr=False)   # SceneSpec of a built-in prompt


def _entry_from_fields(row: dict, where: str, need_file: bool, line: int) -> PromptEntry:
    """A PromptEntry from a parsed row (jsonl object / csv row), validated."""
    lower = {str(k).strip().lower(): v for k, v in row.items() if k is not None}
    unknown = sorted(set(lower) - set(_FILE_KEYS) - set(_PROMPT_KEYS) - set(_OPTIONAL_KEYS))
    if unknown:
        raise PromptFileError(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: "
                              f"{'/'.join(_FILE_KEYS)}, {'/'.join(_PROMPT_KEYS)}, {', '.join(_OPTIONAL_KEYS)}")
    file = next((str(lower[k]).strip() for k in _FILE_KEYS if lower.get(k) not in (None, "")), "")
    prompt = next((lower[k] for k in _PROMPT_KEYS if k in lower), None)
    if need_file and not file:
        raise PromptFileError(f"{where}: no video file name (a field named {' / '.join(_FILE_KEYS)})")
    if not isinstance(prompt, str):
        raise PromptFileError(f"{where}: no prompt (a text field named {' / '.join(_PROMPT_KEYS)})")
    try:
        return _checked_entry(PromptEntry(
            prompt.strip(), file, str(lower.get("task") or "t2v").strip().lower(), line,
            _opt(lower, "join", int), _opt(lower, "transition", _pair), _opt(lower, "source", str),
            _opt(lower, "strength", float), _opt(lower, "seed", int)))
    except (TypeError, ValueError) as e:
        raise PromptFileError(f"{where}: {e}") from None


def _opt(row: dict, key: str, kind):
    v = row.get(key)
    if v is None or v == "":
        return None
    try:
        return kind(v)
    except (TypeError, ValueError):
        raise ValueError(f"field {key!r} must be {getattr(kind, '__name__', kind)}, got {v!r}") from None


def _pair(v) -> tuple[int, int]:
    parts = json.loads(v) if isinstance(v, str) else v
    if not (isinstance(parts, (list, tuple)) and len(parts) == 2):
        raise ValueError(f"transition must be [start, end], got {v!r}")
    return int(parts[0]), int(parts[1])


def _checked_entry(e: PromptEntry) -> PromptEntry:
    """Task and prompt validation shared by every format."""
    from ..world.prompt_parse import parse_prompt
    if e.task not in TASKS:
        raise ValueError(f"task {e.task!r} is unknown; allowed: {', '.join(TASKS)}")
    if e.strength is not None and not 0 < e.strength <= 1:
        raise ValueError(f"strength must be in (0, 1], got {e.strength}")
    parse_prompt(e.prompt)   # too many objects / indistinguishable objects raise here
    return e


def _txt_entry(text: str, where: str, need_file: bool, line: int) -> PromptEntry:
    if not need_file:
        return _entry_from_fields({"prompt": text}, where, False, line)
    for sep in ("\t", " | "):
        if sep in text:
            file, prompt = text.split(sep, 1)
            return _entry_from_fields({"file": file, "prompt": prompt}, where, True, line)
    raise PromptFileError(f"{where}: expected 'FILE<TAB>PROMPT' or 'FILE | PROMPT', got {text[:60]!r}")


def read_prompt_file(path: str | os.PathLike, need_file: bool = True) -> list[PromptEntry]:
    """Read a prompts file: ``.jsonl`` (one JSON object a line: file, prompt, optional task fields),
    ``.txt`` (``FILE<TAB>PROMPT`` or ``FILE | PROMPT`` a line; with ``need_file=False`` one prompt
    a line) or ``.csv`` (a header row naming the columns). Blank lines and ``#`` comments (jsonl,
    txt) are skipped. Any malformed line raises PromptFileError naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such prompts file: {path}")
    ext = path.suffix.lower()
    if ext not in PROMPT_FILE_EXTS:
        raise PromptFileError(f"prompts file {path.name!r}: unknown extension {ext or '(none)'!r}; "
                              f"allowed are {', '.join(PROMPT_FILE_EXTS)}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise PromptFileError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    entries = []
    if ext == ".csv":
        reader = csv.DictReader(text.splitlines())
        for row in reader:
            if None in row:
                raise PromptFileError(f"{path}:{reader.line_num}: more cells than header columns "
                                      f"({', '.join(reader.fieldnames or [])})")
            if any((v or "").strip() for v in row.values()):
                entries.append(_entry_from_fields(row, f"{path}:{reader.line_num}", need_file, reader.line_num))
    else:
        for n, raw in enumerate(text.splitlines(), start=1):
            line, where = raw.strip(), f"{path}:{n}"
            if not line or line.startswith("#"):
                continue
            if ext == ".jsonl":
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise PromptFileError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
                if not isinstance(row, dict):
                    raise PromptFileError(f"{where}: expected a JSON object, got {type(row).__name__}")
                entries.append(_entry_from_fields(row, where, need_file, n))
            else:
                entries.append(_txt_entry(line, where, need_file, n))
    return _no_duplicates(entries, path)


def _no_duplicates(entries: list[PromptEntry], path: Path) -> list[PromptEntry]:
    if not entries:
        raise PromptFileError(f"{path}: no prompts in the file")
    seen: dict[tuple, int] = {}
    for e in entries:
        key = (e.file, e.task, e.strength)
        if e.file and key in seen:
            raise PromptFileError(f"{path}:{e.line}: {e.file!r} is listed twice (also on line {seen[key]})")
        seen[key] = e.line
    return entries


PROMPT_SETS = ("world", "world-single", "paraphrase")


def fills_seed(seed: int, line: int, variant: int = 0) -> int:
    """The seed of what an evaluation fills in for a prompt (its expansion, the scene of a conditioned
    task): drawn per prompt line as well as per run seed, so the fills of a prompt set are as varied as
    a user's over many seeds (one seed for every line gave every unsized prompt the same size and
    background)."""
    return int(np.random.SeedSequence([int(seed), int(line), int(variant)]).generate_state(1)[0])


def prompt_for_model(prompt: str, seed: int, expand: bool, width: int, height: int, frames: int,
                     fps: float, line: int = 0) -> str:
    """What an evaluation run gives the model: the prompt, or (``expand``) its expanded caption for this
    grid, run seed and prompt line (``fills_seed``; the prompt as written is what is scored)."""
    if not expand:
        return prompt
    from ..prompts.expand import expand_prompt
    return expand_prompt(prompt, fills_seed(seed, line), width=width, height=height, frames=frames, fps=fps)


def world_prompt_set(name: str = "world", count: int = 100, seed: int = 0, width: int = 64,
                     height: int = 64, frames: int = 17, fps: float = 8.0) -> list[PromptEntry]:
    """``count`` prompts sampled from the world with fixed seeds: the short caption of a random
    scene (``world``: 1 to 3 objects and any event; ``world-single``: one object, no event), or
    (``paraphrase``) the ``world-single`` scenes phrased as training never phrased them
    (``world.phrasings.held_out_phrase``: held-out sentence forms and synonyms). The scenes come from a
    seed sequence of their own, (``seed``, i), apart from training's int seeds."""
    from ..world.captions import short_caption
    from ..world.phrasings import held_out_phrase
    from ..world.scene import sample_scene
    if name not in PROMPT_SETS:
        raise ValueError(f"prompt set {name!r} is unknown; allowed: {', '.join(PROMPT_SETS)}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    out = []
    for i in range(count):
        rng = np.random.default_rng([0x5EA1, seed, i])
        single = name != "world"
        spec = sample_scene(rng, width, height, frames, fps, n_objects=1 if single else None,
                            event="none" if single else None)
        text = (held_out_phrase(spec, np.random.default_rng([0x9A2A, seed, i])) if name == "paraphrase"
                else short_caption(spec))
        out.append(PromptEntry(text, task="t2v", line=i + 1, spec=spec))
    return out


def model_prompt_set(model, name: str, count: int, seed: int) -> list[PromptEntry]:
    """``world_prompt_set`` at ``model``'s default clip size, length and frame rate."""
    d = model.defaults
    return world_prompt_set(name, count, seed, width=d.width, height=d.height, frames=d.frames, fps=d.fps)


# ---------------------------------------------------------------------------------------------
# Scoring one clip
# ---------------------------------------------------------------------------------------------

@dataclass
class ClipResult:
    """The scores of one video. ``metrics``: name -> value (None = not applicable); ``seen``: the
    analytic caption of the video; ``sheet``: its contact sheet (uint8 image, not saved in JSON)."""
    name: str
    prompt: str
    task: str
    metrics: dict[str, float | None]
    seen: str = ""
    seed: int | None = None
    size: tuple[int, int, int] = (0, 0, 0)   # frames, height, width
    objects: int = 0                         # objects the prompt asks for
    notes: list[str] = field(default_factory=list)
    sheet: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict:
        return {"video": self.name, "prompt": self.prompt, "task": self.task, "seed": self.seed,
                "frames": self.size[0], "height": self.size[1], "width": self.size[2],
                "objects_asked": self.objects, "seen": self.seen,
                "metrics": {k: _clean(v) for k, v in self.metrics.items()}, "notes": self.notes}


def _clean(v):
    return None if v is None or not np.isfinite(v) else round(float(v), 5)


def _detection_boxes(analysis) -> list[list[dict]]:
    """The analysis' detections as contact-sheet boxes in the colour seen, labelled with the colour
    and shape seen ("red box"); partial detections (cut by the border, the occluder or another
    object) get a "?"."""
    boxes = []
    for dets in analysis.detections:
        row = []
        for d in dets:
            x, y, w, h = d.bbox
            label = f"{d.colour} {V.SHAPE_NOUN[d.shape]}{'?' if d.partial else ''}"
            row.append({"box": (x, y, x + w, y + h), "label": label, "colour": V.COLOURS[d.colour]})
        boxes.append(row)
    return boxes


def score_clip(frames: np.ndarray, fps: float, entry: PromptEntry, name: str, *,
               extra: dict[str, float | None] | None = None, seed: int | None = None,
               expected=None) -> ClipResult:
    """Analyse ``frames`` (T, H, W, 3) and score them against ``entry.prompt`` (or ``expected``:
    a SceneSpec / SceneDescription): prompt adherence, temporal flicker, object permanence and
    identity drift, plus the task metrics given in ``extra``."""
    from ..world.captioner import analyze
    from ..world.captions import long_caption
    from ..world.prompt_parse import parse_prompt
    analysis = analyze(frames, fps)
    notes = []
    parsed = parse_prompt(entry.prompt)
    if parsed.unknown:
        notes.append(f"words outside the vocabulary, not scored: {', '.join(parsed.unknown)}")
    truth = expected if expected is not None else parsed
    adherence = M.prompt_adherence(analysis, truth) if entry.prompt else {}
    metrics = {**adherence, "temporal_flicker": M.temporal_flicker(frames),
               "object_permanence": M.object_permanence(analysis),
               "identity_drift": M.identity_drift(analysis), **M.identity_kept(analysis), **(extra or {})}
    seen = long_caption(analysis.description()) if analysis.objects else "(no objects seen)"
    sheet = contact_sheet(frames, detections=_detection_boxes(analysis), title=f"{name}: {entry.prompt}",
                          subtitle=f"seen: {seen}")
    return ClipResult(name, entry.prompt, entry.task, metrics, seen, seed, tuple(frames.shape[:3]),
                      len(M.Expected.of(truth).objects), notes, sheet)


# ---------------------------------------------------------------------------------------------
# Task metrics of a video on disk
# ---------------------------------------------------------------------------------------------

def _read_source(folder: Path, entry: PromptEntry, where: str):
    from ..media.video_io import read_video
    if not entry.source:
        raise PromptFileError(f"{where}: task {entry.task} needs a 'source' field (the original video or image)")
    return read_video(folder / entry.source)[0]


def task_metrics(frames: np.ndarray, entry: PromptEntry, folder: Path, where: str) -> dict[str, float | None]:
    """The metrics of ``entry.task`` for a video on disk (sources are read relative to ``folder``)."""
    if entry.task == "loop":
        return {"loop_seam_ratio": M.loop_seam_ratio(frames)}
    if entry.task == "extend":
        if entry.join is None:
            raise PromptFileError(f"{where}: task extend needs 'join' (the index of the first new frame)")
        return {"boundary_continuity": M.boundary_continuity(frames, entry.join)}
    if entry.task == "connect":
        start, end = entry.transition or (0, len(frames))
        out = {"transition_smoothness": M.transition_smoothness(frames, start, end)}
        if entry.transition:
            joins = [j for j in (start, end - 1) if 1 <= j <= len(frames) - 1]
            out["boundary_continuity"] = max(M.boundary_continuity(frames, j) for j in joins)
        return out
    if entry.task == "i2v":
        return {"first_frame_psnr": M.first_frame_psnr(_read_source(folder, entry, where)[0], frames)} \
            if entry.source else {}
    if entry.task in ("sdedit", "vae"):
        src = _read_source(folder, entry, where)
        if src.shape != frames.shape:
            raise PromptFileError(f"{where}: the video {frames.shape} and its source {src.shape} differ in size")
        if entry.task == "vae":
            return {"psnr": M.reconstruction_psnr(src, frames), "ssim": M.reconstruction_ssim(src, frames)}
        key = "structure_iou" if entry.strength is None else f"structure_iou@{entry.strength:.2f}"
        return {key: M.structure_preservation(src, frames)}
    return {}


def score_folder(folder: str | os.PathLike, entries: list[PromptEntry], progress: bool = True) -> list[ClipResult]:
    """Score the videos of ``folder`` listed in ``entries`` (a missing video is an error naming
    its line). Shows a tqdm progress bar."""
    from tqdm import tqdm
    from ..media.video_io import read_video
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such folder of videos: {folder}")
    missing = [f"{e.file} (line {e.line})" for e in entries if not (folder / e.file).exists()]
    if missing:
        raise FileNotFoundError(f"videos listed in the prompts file are not in {folder}: {', '.join(missing[:5])}"
                                + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    results = []
    for e in tqdm(entries, desc="scoring", unit="video", disable=not progress):
        frames, fps = read_video(folder / e.file)
        where = f"line {e.line} ({e.file})"
        try:
            extra = task_metrics(frames, e, folder, where)
        except PromptFileError:
            raise
        except ValueError as err:
            raise PromptFileError(f"{where}: task {e.task}: {err}") from None
        results.append(score_clip(frames, fps, e, e.file, extra=extra, seed=e.seed))
    return results
