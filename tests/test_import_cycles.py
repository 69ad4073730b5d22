"""No import cycles between sora_core modules (issue 21: the two trainers used to import each other).

The graph is built statically with ``ast`` from the source files, so it sees every import, not only
the ones a test run happens to execute:

- every ``import a.b`` and ``from a.b import c`` counts, at module level and inside functions,
  methods, classes, ``try`` / ``if`` blocks alike (a lazy import inside a function is still a
  dependency: it runs the first time the function does, and a cycle through it breaks as soon as
  someone hoists it to the top); relative imports are resolved against the importing module;
- an edge goes to the module named: ``from pkg import name`` is an edge to ``pkg.name`` when that is
  a module (a file or a package), else to ``pkg`` itself (its ``__init__``, which defines ``name``);
- importing ``a.b.c`` also runs the ``__init__`` of ``a`` and ``a.b``, but those implicit parent
  edges are *not* counted: otherwise any package whose ``__init__`` imports one of its submodules
  (``models/__init__`` -> ``models.vae``) would form a cycle with that submodule by itself, which is the
  normal way packages re-export. A submodule that imports its own package (``from . import name``
  with ``name`` defined in ``__init__``), while that ``__init__`` imports the submodule, is a cycle:
  it only works because of the order the two happen to run in;
- imports of anything outside sora_core (torch, the standard library) are ignored, as are dynamic
  imports (``importlib.import_module(name)``, e.g. the weights registry's ``"module", "Class"``
  strings): a string is not an import statement, and a registry names its classes by design;
- an import in the body of ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) does not count: it
  never runs, it only names types for annotations (``world.motion`` annotates with ``SceneSpec``,
  while ``world.scene`` imports ``world.motion`` to validate specs); its ``else:`` branch counts.

A cycle is reported as the chain of modules, each with the file line of the import that closes it.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def module_files(package_dir: Path) -> dict[str, Path]:
    """Dotted module name -> file for every .py file of the package at ``package_dir``."""
    base = package_dir.parent
    out = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = list(path.relative_to(base).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute name ``from <...> import`` refers to, inside ``module``."""
    if node.level == 0:
        return node.module or ""
    anchor = module.split(".") if is_package else module.split(".")[:-1]
    if node.level > 1:
        anchor = anchor[: len(anchor) - (node.level - 1)]
    return ".".join(anchor + ([node.module] if node.module else []))


def _target(name: str, modules: dict[str, Path]) -> str | None:
    """The longest prefix of the dotted ``name`` that is a module of the package (None: outside it)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in modules:
            return candidate
    return None


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``<module>.TYPE_CHECKING``."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except the bodies of ``if TYPE_CHECKING:`` blocks (their else counts)."""
    todo = [tree]
    while todo:
        node = todo.pop()
        yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))


def import_edges(module: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """Modules of the package ``module`` imports (anywhere in its file) -> line of the first such import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    is_package = path.name == "__init__.py"
    edges: dict[str, int] = {}

    def add(name: str, line: int) -> None:
        target = _target(name, modules)
        if target is not None and target != module:
            edges[target] = min(line, edges.get(target, line))

    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve_from(node, module, is_package)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                add(full if full in modules else base, node.lineno)
    return edges


def import_graph(package_dir: Path) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    """({module: {imported module: line}}, {module: file}) for the package at ``package_dir``."""
    modules = module_files(package_dir)
    return {m: import_edges(m, p, modules) for m, p in modules.items()}, modules


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle (a list of modules, first == last) per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:                      # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return [_cycle_in(comp, graph) for comp in components]


def _cycle_in(component: list[str], graph: dict[str, dict[str, int]]) -> list[str]:
    """A shortest cycle through the first module of a strongly connected component (breadth first)."""
    members, start = set(component), component[0]
    parent: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(graph[v]):
                if w == start:
                    chain = [v]
                    while chain[-1] != start:
                        chain.append(parent[chain[-1]])
                    return [start] + chain[::-1][1:] + [start] if len(chain) > 1 else [start, v, start]
                if w in members and w not in parent:
                    parent[w] = v
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in component {component}")


def describe(cycle: list[str], graph: dict[str, dict[str, int]], files: dict[str, Path]) -> str:
    """'a (a.py:12) -> b (b.py:3) -> a' : each module with the line of the import of the next one."""
    steps = [f"{a} ({files[a].name}:{graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join(steps + [cycle[-1]])


def cycle_report(package_dir: Path) -> list[str]:
    graph, files = import_graph(package_dir)
    return [describe(c, graph, files) for c in find_cycles(graph)]


# ---------------------------------------------------------------------------------------------
# The real package
# ---------------------------------------------------------------------------------------------

def test_sora_core_has_no_import_cycles():
    cycles = cycle_report(ROOT / "sora_core")
    assert not cycles, "import cycles in sora_core:\n" + "\n".join(cycles)


def test_the_graph_sees_the_trainers_imports():
    """The graph is not empty by accident: it knows what the two trainers import, lazy ones included."""
    graph, _ = import_graph(ROOT / "sora_core")
    dit, vae = graph["sora_core.train.dit_trainer"], graph["sora_core.train.vae_trainer"]
    assert "sora_core.train.loop" in dit and "sora_core.models.dit" in dit          # module level / in a method
    assert "sora_core.models.vae" in vae and "sora_core.weights" in vae             # both lazy
    assert "sora_core.train.vae_trainer" not in dit and "sora_core.train.dit_trainer" not in vae


# ---------------------------------------------------------------------------------------------
# The checker on synthetic packages
# ---------------------------------------------------------------------------------------------

def make_package(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: source}`` under ``root/pkg`` and return the package folder."""
    for rel, src in files.items():
        path = root / "pkg" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(src)
    return root / "pkg"


def test_a_cycle_through_a_function_level_import_is_found(tmp_path):
    pkg = make_package(tmp_path, {
        "__init__.py": "",
        "sub/__init__.py": "",
        "sub/a.py": "from .b import g\n\ndef f():\n    return g()\n",
        "sub/b.py": "def g():\n    from ..sub.a import f  # lazy, still a cycle\n    return f\n",
        "c.py": "import pkg.sub.a\n",
    })
    (report,) = cycle_report(pkg)
    assert report == "pkg.sub.a (a.py:1) -> pkg.sub.b (b.py:2) -> pkg.sub.a"


def test_a_longer_module_level_cycle_is_found_and_named(tmp_path):
    pkg = make_package(tmp_path, {
        "__init__.py": "",
        "x.py": "import os\nfrom pkg import y\n",
        "y.py": "import pkg.z as z\n",
        "z.py": "from . import x\n",
    })
    assert cycle_report(pkg) == ["pkg.x (x.py:2) -> pkg.y (y.py:1) -> pkg.z (z.py:1) -> pkg.x"]


def test_an_init_importing_its_submodules_is_not_a_cycle(tmp_path):
    pkg = make_package(tmp_path, {
        "__init__.py": "from .models import Model\nfrom . import util\n",
        "util.py": "import math\n",
        "models/__init__.py": "from .net import Model\n",
        "models/net.py": "from ..util import helper\nfrom pkg.models import layers\n",
        "models/layers.py": "import torch\n",
    })
    assert cycle_report(pkg) == []


def test_a_submodule_importing_its_packages_init_is_a_cycle(tmp_path):
    pkg = make_package(tmp_path, {
        "__init__.py": "from .net import Model\nVERSION = 1\n",
        "net.py": "from . import VERSION\n",
    })
    assert cycle_report(pkg) == ["pkg (__init__.py:1) -> pkg.net (net.py:1) -> pkg"]


def test_type_checking_imports_do_not_count_but_their_else_does(tmp_path):
    files = {
        "__init__.py": "",
        "spec.py": "from .motion import speed\n",
        "motion.py": ("from typing import TYPE_CHECKING\nimport typing\nif TYPE_CHECKING:\n    from .spec import Spec\n"
                      "if typing.TYPE_CHECKING:\n    import pkg.spec\n"),
    }
    assert cycle_report(make_package(tmp_path / "a", files)) == []
    files["motion.py"] += "else:\n    from . import spec\n"
    assert cycle_report(make_package(tmp_path / "b", files)) == ["pkg.motion (motion.py:8) -> pkg.spec (spec.py:1) -> pkg.motion"]


@pytest.mark.parametrize("src", ["import pkg.a\n", "from pkg import a\n", "from . import a\n", "from .a import f\n"])
def test_self_imports_are_not_cycles(tmp_path, src):
    pkg = make_package(tmp_path, {"__init__.py": "", "a.py": src + "def f():\n    pass\n"})
    assert cycle_report(pkg) == []
