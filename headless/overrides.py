"""Input values given on the command line: the ``--set`` options of ``sora run`` and ``sora batch``
and the rows of ``sora batch`` (CSV / JSON Lines files), each value turned into the type its input
declares in ``/object_info`` (the server's, or the pack's own for ``sora run``).

    STRING   CSV / --set: the cell's text as it is;      JSONL: a JSON string
    INT      an integer within the widget's min..max      (JSONL: a JSON number without a fraction)
    FLOAT    a finite number within min..max              (NaN and Infinity are refused)
    BOOLEAN  true/false, yes/no, 1/0 in any case          (JSONL: JSON true / false)
    COMBO    one of the input's choices

A value never becomes a link to another node by its look: a link takes a column (JSONL key, --set
target) named ``NODE_ID.input@link`` whose value is ``NODE_ID:SLOT``, e.g. ``2.latent@link`` = ``4:0``
(output 0 of node 4). Inputs of other types (LATENT, MODEL ...) can only be linked.
Every error names the row (file and line, or --set), the job, the column and what is allowed.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .executor import convert_value, types_match
from .workflow import WIDGET_TYPES, WorkflowError, combo_choices, ordered_inputs, spec_options, spec_type

LINK = "@link"
INT_TEXT = re.compile(r"[+-]?\d{1,40}", re.ASCII)
FLOAT_TEXT = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", re.ASCII)
SLOT_TEXT = re.compile(r"\d{1,6}", re.ASCII)
BOOL_TEXT = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
SET_FORM = "NODE_ID.input=value (e.g. 3.steps=4) or NODE_ID.input@link=NODE_ID:SLOT"


@dataclass(frozen=True)
class Row:
    """One job's values: ``where`` ("FILE line N" or "--set"), ``values`` {key: value} and ``text``:
    True when the values are text (CSV cells, --set), False when they are typed JSON (JSONL)."""

    where: str
    values: dict
    text: bool


# ======================================================================================== reading


def read_rows(path: str | Path) -> list[Row]:
    """The rows of a ``.csv`` (header of ``NODE_ID.input`` columns, optional ``job``) or ``.jsonl`` file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--rows file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".jsonl", ".ndjson"):
        raise WorkflowError(f"--rows {path}: use a .csv or .jsonl file")
    try:
        return _read_csv(path) if suffix == ".csv" else _read_jsonl(path)
    except UnicodeDecodeError as e:
        raise WorkflowError(f"--rows {path}: not UTF-8 text (byte {e.start})") from None


def set_row(sets: list[str]) -> Row:
    """``--set NODE_ID.input=value`` options as one text row (values converted like CSV cells)."""
    values = {}
    for text in sets or []:
        key, eq, raw = text.partition("=")
        if not eq:
            raise WorkflowError(f"--set {text!r} must look like {SET_FORM}")
        _check_key(key.strip(), f"--set {text!r}")
        values[key.strip()] = raw
    return Row("--set", values, True)


def _check_key(key: str, where: str) -> None:
    node, dot, name = str(key).removesuffix(LINK).rpartition(".")
    if key != "job" and (not dot or not node.strip() or not name.strip()):
        raise WorkflowError(f"{where}: column {key!r} must be NODE_ID.input (e.g. 3.steps), "
                            f"NODE_ID.input{LINK} or 'job'")


def _read_csv(path: Path) -> list[Row]:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        try:
            header = next(reader, None)
            if not header or not any(h.strip() for h in header):
                raise WorkflowError(f"{path} line 1: the header row is missing (columns NODE_ID.input, ...)")
            header = [h.strip() for h in header]
            for h in header:
                _check_key(h, f"{path} line 1")
            if len(set(header)) != len(header):
                dup = next(h for h in header if header.count(h) > 1)
                raise WorkflowError(f"{path} line 1: column {dup!r} appears twice")
            rows = []
            for cells in reader:
                where = f"{path} line {reader.line_num}"
                if not any(c.strip() for c in cells):
                    continue
                if len(cells) != len(header):
                    raise WorkflowError(f"{where}: {len(cells)} fields, the header has {len(header)}")
                rows.append(Row(where, {h: c for h, c in zip(header, cells) if c.strip() != ""}, True))
        except csv.Error as e:
            raise WorkflowError(f"{path} line {reader.line_num}: not valid CSV ({e})") from None
    if not rows:
        raise WorkflowError(f"{path}: no rows below the header")
    return rows


def _no_constant(name: str):
    raise ValueError(f"{name} is not allowed (numbers must be finite)")


def _read_jsonl(path: Path) -> list[Row]:
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{path} line {n}"
        try:
            row = json.loads(line, parse_constant=_no_constant)
        except json.JSONDecodeError as e:
            raise WorkflowError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        except ValueError as e:
            raise WorkflowError(f"{where}: {e}") from None
        except RecursionError:
            raise WorkflowError(f"{where}: the JSON is nested too deeply") from None
        if not isinstance(row, dict):
            raise WorkflowError(f"{where}: each line must be a JSON object of NODE_ID.input keys, "
                                f"got {type(row).__name__}")
        for key in row:
            _check_key(key, where)
        rows.append(Row(where, row, False))
    if not rows:
        raise WorkflowError(f"{path}: no rows")
    return rows


# ======================================================================================== applying


def apply_row(prompt: dict, row: Row, object_info: dict, job: str | None = None) -> None:
    """Set the row's values (converted by their inputs' declared types) and links in ``prompt``."""
    done: dict[tuple[str, str], str] = {}
    for key, raw in row.values.items():
        if key == "job":
            continue
        if row.where == "--set":
            where = f"--set {key}={raw}"
        else:
            where = f"{row.where}{f' (job {job})' if job else ''}, column {key}"
        target = key.removesuffix(LINK)
        node, name, spec = _resolve(prompt, target, object_info, where)
        if row.where == "--set":
            where += f" (node {node} ({prompt[node]['class_type']}) input '{name}')"
        if (node, name) in done:
            raise WorkflowError(f"{where}: input {name!r} of node {node} is already set by column {done[node, name]}")
        done[node, name] = key
        if key.endswith(LINK):
            value = _link(raw, prompt, node, spec, object_info, where)
        else:
            value = typed_value(raw, spec, row.text, where, target)
        prompt[node]["inputs"][name] = value


def _resolve(prompt: dict, target: str, object_info: dict, where: str) -> tuple[str, str, Any]:
    """(node id, input name, input spec) of ``NODE_ID.input`` (or ``TITLE.input``, a unique title)."""
    node, _, name = target.rpartition(".")
    node, name = node.strip(), name.strip()
    if node not in prompt:
        titled = [k for k, v in prompt.items() if isinstance(v, dict) and (v.get("_meta") or {}).get("title") == node]
        if len(titled) != 1:
            ids = sorted(prompt, key=lambda k: (0, int(k), "") if k.isascii() and k.isdigit() else (1, 0, k))
            raise WorkflowError(f"{where}: no node with id or unique title {node!r}; node ids: {', '.join(ids)}")
        node = titled[0]
    entry = prompt[node] if isinstance(prompt[node], dict) else {}
    kind = entry.get("class_type")
    if not isinstance(entry.get("inputs"), dict):
        raise WorkflowError(f"{where}: node {node} of the workflow has no 'inputs' object")
    if not isinstance(kind, str) or kind not in object_info:
        raise WorkflowError(f"{where}: node {node} is of type {_show(kind)}, which the server does not list in "
                            "/object_info, so the input's type is unknown")
    specs = {n: s for _, n, s in ordered_inputs(object_info[kind])}
    if name not in specs:
        raise WorkflowError(f"{where}: node {node} ({kind}) has no input {name!r}; its inputs: {', '.join(specs)}")
    return node, name, specs[name]


def allowed(spec: Any) -> str:
    """What an input accepts, for messages: 'an integer from 1 to 100', "one of 'euler', 'heun'"..."""
    kind, opts = spec_type(spec), spec_options(spec)
    bounds = "".join(f" {w} {opts[k]}" for w, k in (("from", "min"), ("to", "max")) if k in opts)
    return {"INT": f"an integer{bounds}", "FLOAT": f"a finite number{bounds}", "STRING": "text",
            "BOOLEAN": "true or false (also yes/no, 1/0)",
            "COMBO": "one of " + ", ".join(map(repr, (combo_choices(spec) or [])[:12]))}.get(kind, kind)


def typed_value(raw: Any, spec: Any, text: bool, where: str, target: str = "NODE_ID.input") -> Any:
    """``raw`` (a text cell when ``text``, else a JSON value) as the input's declared type, within
    its bounds / among its choices; WorkflowError naming ``where`` and what is allowed otherwise."""
    kind = spec_type(spec)
    if kind == "*" and not isinstance(raw, (list, dict)):  # an input of any type: the text, or the JSON value
        return raw
    if kind not in WIDGET_TYPES:
        raise WorkflowError(f"{where}: the input takes a {kind}, which only a link gives: use the column "
                            f"{target}{LINK} with NODE_ID:SLOT")
    if not text and isinstance(raw, (list, dict)):
        raise WorkflowError(f"{where}: a JSON {type(raw).__name__} is not a value, it expects {allowed(spec)} "
                            f"(to link the input, use the key {target}{LINK} with \"NODE_ID:SLOT\")")
    value = _from_text(raw, kind, spec) if text else _from_json(raw, kind)
    if value is None:
        raise WorkflowError(f"{where}: {_show(raw)} is not allowed; it expects {allowed(spec)}")
    return convert_value(value, spec, where)


def _show(raw: Any, limit: int = 60) -> str:
    """``repr(raw)``, cut to ``limit`` characters for messages."""
    text = repr(raw)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _from_text(raw: str, kind: str, spec: Any) -> Any:
    s = raw.strip()
    if kind == "STRING":
        return raw
    if kind == "INT":
        return int(s) if INT_TEXT.fullmatch(s) else None
    if kind == "FLOAT":
        value = float(s) if FLOAT_TEXT.fullmatch(s) else math.nan
        return value if math.isfinite(value) else None
    if kind == "BOOLEAN":
        return BOOL_TEXT.get(s.lower())
    choices = combo_choices(spec) or []
    return next((c for c in choices if c == raw or str(c) == s), raw)


def _from_json(raw: Any, kind: str) -> Any:
    if kind == "COMBO":
        return raw
    ok = {"STRING": isinstance(raw, str), "BOOLEAN": isinstance(raw, bool),
          "INT": isinstance(raw, int) and not isinstance(raw, bool)
          or isinstance(raw, float) and math.isfinite(raw) and raw.is_integer(),
          "FLOAT": isinstance(raw, (int, float)) and not isinstance(raw, bool) and math.isfinite(raw)}[kind]
    return raw if ok else None


def _link(raw: Any, prompt: dict, node: str, spec: Any, object_info: dict, where: str) -> list:
    """``NODE_ID:SLOT`` as an API link ``[NODE_ID, SLOT]``, checked against the workflow and the
    origin's declared outputs."""
    origin, colon, slot = str(raw).strip().rpartition(":") if isinstance(raw, str) else ("", "", "")
    if not colon or not origin or not SLOT_TEXT.fullmatch(slot):
        raise WorkflowError(f"{where}: {_show(raw)} is not a link; write NODE_ID:SLOT, e.g. 4:0 for output 0 of node 4")
    if origin not in prompt or origin == node:
        raise WorkflowError(f"{where}: cannot link to node {_show(origin)}; "
                            + ("it is the node itself" if origin == node else f"node ids: {', '.join(sorted(prompt))}"))
    kind = prompt[origin].get("class_type") if isinstance(prompt[origin], dict) else None
    outputs = (object_info.get(kind) or {}).get("output") if isinstance(kind, str) else None
    if outputs is not None:
        if int(slot) >= len(outputs):
            raise WorkflowError(f"{where}: node {origin} ({kind}) has {len(outputs)} output(s), no output {slot}")
        if not types_match(str(outputs[int(slot)]), spec_type(spec)):
            raise WorkflowError(f"{where}: the input takes a {spec_type(spec)} but output {slot} of node {origin} "
                                f"({kind}) gives {outputs[int(slot)]}")
    return [origin, int(slot)]
