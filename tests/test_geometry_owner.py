"""``sora_core/geometry.py`` is the one owner of the latent geometry: no other module of the core, the
nodes or the headless runner restates its formulas.

The scanner reads the code of every ``.py`` file under ``sora_core/``, ``nodes/`` and ``headless/``
(``geometry.py`` itself excluded) token by token, with strings, docstrings and comments left out (docs
may quote the formulas), and looks for:

- the latent frame count ``1 + (T - 1) // ft`` (any ``(x - 1) // ft``), and the validity test
  ``(T - 1) % ft``;
- its inverse ``1 + (t - 1) * ft`` (also ``1 + k * ft``, ``k * ft + 1``);
- the size multiple ``fs * max(ph, pw)``, ``fs * ph``, ``max(patch...)``, ``lcm(...)``;
- the token grid arithmetic ``x // pt``, ``x % ph``, ``x // patch[i]``.

Here ``ft`` is any name spelling the temporal factor (``ft``, ``temporal``, ``x.temporal_factor``,
``_ft(vae)``), ``fs`` the spatial one. A hit fails the test with ``file:line: rule: code``; the fix is
a call to the geometry function named in the rule. (On Python 3.11 the expressions inside f-strings
are part of their string token and are not scanned.)
"""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("sora_core", "nodes", "headless")
OWNER = Path("sora_core/geometry.py")

_FT = r"(?:(?:\w+\s*\.\s*)*(?:ft|temporal_factor|temporal)\b|_ft\s*\(\s*\w*\s*\))"
_FS = r"(?:(?:\w+\s*\.\s*)*(?:fs|spatial_factor|spatial)\b)"
_PATCH = r"(?:(?:\w+\s*\.\s*)*patch\w*\s*\[)"
_MINUS1 = r"\((?:[^()]|\([^()]*\))*?-\s*1\s*\)"                   # "(expr - 1)", one level of nesting
_TERM = r"(?:\w+\s*\.\s*)*\w+(?:\s*\[[^\]]*\])?"                  # name, attribute or subscript

RULES: dict[str, tuple[str, ...]] = {
    "latent frame count (geometry.latent_frames / floor_valid_frames)": (
        rf"{_MINUS1}\s*//\s*{_FT}",
    ),
    "frame validity (geometry.is_valid_frames / ceil_valid_frames)": (
        rf"{_MINUS1}\s*%\s*{_FT}",
    ),
    "pixel frame count (geometry.pixel_frames / group_frames)": (
        rf"{_MINUS1}\s*\*\s*{_FT}",
        rf"{_FT}\s*\*\s*{_MINUS1}",
        rf"(?<![\w.])1\s*\+\s*{_TERM}\s*\*\s*{_FT}",
        rf"{_TERM}\s*\*\s*{_FT}\s*\+\s*1(?![\w.])",
    ),
    "size multiple (geometry.size_multiple)": (
        rf"{_FS}\s*\*\s*max\s*\(",
        rf"{_FS}\s*\*\s*(?:ph|pw|{_PATCH})",
        rf"(?:ph|pw|{_PATCH}[^\]]*\])\s*\*\s*{_FS}",
        r"\bmax\s*\(\s*(?:ph|pw|(?:\w+\s*\.\s*)*patch)",
        r"\blcm\s*\(",
    ),
    "token grid (geometry.token_grid_of / LatentGeometry.token_grid)": (
        rf"(?://|%)\s*(?:pt|ph|pw)\b",
        rf"(?://|%)\s*{_PATCH}",
    ),
}
_COMPILED = [(rule, re.compile(p)) for rule, pats in RULES.items() for p in pats]
_SKIP = {tokenize.STRING, tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT,
         tokenize.DEDENT, tokenize.ENCODING, tokenize.ENDMARKER}
_SKIP |= {getattr(tokenize, n) for n in ("FSTRING_MIDDLE",) if hasattr(tokenize, n)}


def _logical_lines(source: str):
    """(code, [(offset, line number)]) per logical line: its tokens joined by spaces, strings and
    comments left out, with the physical line each token starts on."""
    text, marks = "", []
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.NEWLINE and text:
            yield text, marks
            text, marks = "", []
        if tok.type in _SKIP:
            continue
        marks.append((len(text), tok.start[0]))
        text += tok.string + " "
    if text:
        yield text, marks


def scan_source(source: str, name: str = "<snippet>") -> list[str]:
    """``name:line: rule: code`` for every formula geometry owns that ``source`` restates."""
    hits = []
    for code, marks in _logical_lines(source):
        for rule, pattern in _COMPILED:
            for m in pattern.finditer(code):
                line = max(ln for off, ln in marks if off <= m.start())
                hits.append(f"{name}:{line}: {rule}: {m.group(0).strip()}")
    return sorted(set(hits), key=lambda h: (h.split(":")[0], int(h.split(":")[1]), h))


def scan_tree(root: Path = ROOT) -> list[str]:
    hits = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            if rel != OWNER:
                hits += scan_source(path.read_text(encoding="utf-8"), rel.as_posix())
    return hits


# ---------------------------------------------------------------------------------------------
# The tree
# ---------------------------------------------------------------------------------------------

def test_no_module_restates_the_geometry():
    hits = scan_tree()
    assert not hits, ("formulas owned by sora_core/geometry.py restated elsewhere; call geometry "
                      "instead:\n" + "\n".join(hits))


def test_the_scan_covers_the_pack():
    scanned = {p.relative_to(ROOT).as_posix() for top in SCANNED for p in (ROOT / top).rglob("*.py")}
    assert {"nodes/graph_ops.py", "sora_core/models/vae.py", "sora_core/media/clips.py",
            "sora_core/diffusion/conditions.py", "sora_core/models/patches.py",
            "sora_core/cli/generate.py"} <= scanned
    owner_hits = scan_source((ROOT / OWNER).read_text(encoding="utf-8"), OWNER.name)
    assert {rule for rule in RULES if any(f": {rule}: " in h for h in owner_hits)} == set(RULES), \
        "every rule must find its formula in geometry.py itself (else it looks for nothing)"


# ---------------------------------------------------------------------------------------------
# The scanner (it can fail, and names file and line)
# ---------------------------------------------------------------------------------------------

RESTATED = [   # lines the tree held before geometry owned them, and a few more spellings
    ("return clip[: 1 + (T - 1) // ft * ft]", "latent frame count"),
    ("t_lat = 1 + (T - 1) // cfg.temporal_factor", "latent frame count"),
    ("return 1 + (self.frames - 1) // self.ft", "latent frame count"),
    ("n = (video.shape[2] - 1) // ft + 1", "latent frame count"),
    ("while (1 + (t - 1) // ft) % patch[0]:", "latent frame count"),
    ("extra = ft - (T - 1) % ft", "frame validity"),
    ("ok = (frames - 1) % self.vae.temporal_factor == 0", "frame validity"),
    ("n = 1 + (latent_frames - 1) * _ft(vae)", "pixel frame count"),
    ("return [1 + (lat[0] - 1) * ft] + [n * ft for n in lat[1:]]", "pixel frame count"),
    ("lead = video[:, :, :1].expand(-1, -1, 1 + warmup * ft, -1, -1)", "pixel frame count"),
    ("if frames < 1 + 2 * ft:", "pixel frame count"),
    ("total = t_lat * cfg.temporal_factor + 1", "pixel frame count"),
    ("multiple = spec.vae.spatial_factor * max(spec.dit.patch_size[1:])", "size multiple"),
    ("multiple = geometry.size_multiple(fs, max(patch[1], patch[2]))", "size multiple"),
    ("m = math.lcm(fs * patch[1], fs * patch[2])", "size multiple"),
    ("m = fs * ph", "size multiple"),
    ("return shape[2] // pt, shape[3] // ph, shape[4] // pw", "token grid"),
    ("grid = (t // self.cfg.patch_size[0], h // 2, w // 2)", "token grid"),
    ("if h % pw:", "token grid"),
]


@pytest.mark.parametrize("line,rule", RESTATED)
def test_scanner_flags_each_formula(line, rule):
    source = f"def f():\n    x = 0\n    {line}\n        pass\n" if line.endswith(":") else \
             f"def f():\n    x = 0\n    {line}\n"
    hits = scan_source(source, "pkg/mod.py")
    assert hits and all(h.startswith("pkg/mod.py:3: ") for h in hits), hits
    assert any(f": {rule}" in h for h in hits), hits


def test_scanner_names_the_line_of_a_continued_expression():
    source = "x = f(a,\n      1 + (T - 1) // ft)\n"
    assert scan_source(source, "m.py") == ["m.py:2: latent frame count (geometry.latent_frames / "
                                           "floor_valid_frames): ( T - 1 ) // ft"]


@pytest.mark.parametrize("line", [
    "mid = (n - 1) // 2",                                        # plain arithmetic
    "return shift * s / (1 + (shift - 1) * s)",                  # flow's shift (diffusion/flow.py)
    "s_down = s_next * (1 + (s_next / s - 1) * eta)",            # a sampler (diffusion/samplers.py)
    "size = 2 * vae.spatial_factor",
    "tile, overlap = tile_size // fs, tile_overlap // fs",
    "chunk = max(1, CHUNK // max(1, pixels * self.temporal_factor))",
    "act = torch.finfo(dtype).bits // 8",
    "frames, ft = _grid(model, s)[0], int(model.spec.vae.temporal_factor)",
    "t = rearrange(t, 'b (f pt) -> b f pt', pt=pt)",
    "big = max(h, w)",
    "latent = geometry.latent_frames(T, ft)",
])
def test_scanner_leaves_unrelated_arithmetic(line):
    assert scan_source(line + "\n") == []


def test_scanner_ignores_strings_and_comments():
    source = ('"""T_lat = 1 + (T - 1) // ft; multiple fs * max(ph, pw)."""\n'
              "x = 1  # 1 + (t - 1) * ft\n"
              "msg = 'tokens: h // ph'\n")
    assert scan_source(source) == []
