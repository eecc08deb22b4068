"""The package's layout as CONTRIBUTING.md states it, checked against what the imports say.

CONTRIBUTING.md's "Floors" table puts every module of ``zfcore`` on one floor; an import may point
to the same floor or a lower one, never up. Counting imports inside functions too, the modules
form no cycle, and no module imports another module's private (``_name``) names.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import zfcore

ROOT = Path(zfcore.__file__).resolve().parent
CONTRIBUTING = ROOT.parent / "CONTRIBUTING.md"


def _modules() -> dict[str, Path]:
    """``{"zfcore.x.y": path}`` for every module of the package (``__init__`` as the package)."""
    out = {}
    for p in sorted(ROOT.rglob("*.py")):
        parts = p.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` in ``module`` reads from."""
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[module].name == "__init__.py"
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports() -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """Every module's imports of other zfcore modules (module level and inside functions), and
    the private names imported across modules as ``(importer, module, name)``."""
    edges: dict[str, set[str]] = {m: set() for m in MODULES}
    private = []
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                source = _resolve(name, node)
                if not source.startswith("zfcore"):
                    continue
                for alias in node.names:
                    sub = f"{source}.{alias.name}"
                    if sub in MODULES:  # ``from . import mining``
                        edges[name].add(sub)
                        continue
                    edges[name].add(source)
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        private.append((name, source, alias.name))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("zfcore"):
                        edges[name].add(alias.name)
        edges[name].discard(name)
    # importing zfcore.a.b runs zfcore/a/__init__.py first: count the package too
    for name in list(edges):
        for target in list(edges[name]):
            parent = target.rsplit(".", 1)[0]
            if parent in MODULES and parent != "zfcore" and not name.startswith(parent + "."):
                edges[name].add(parent)
    return edges, private


def _floors() -> dict[str, int]:
    """CONTRIBUTING.md's floors: ``{module pattern: floor}`` (a pattern ending in ``/`` is a
    package and everything in it)."""
    text = CONTRIBUTING.read_text()
    section = text.split("## Floors", 1)[1].split("\n## ", 1)[0]
    floors = {}
    for line in section.splitlines():
        m = re.match(r"\|\s*(\d+)\s*[^|]*\|([^|]*)\|", line)
        if m:
            for pattern in re.findall(r"`([^`]+)`", m.group(2)):
                floors[pattern] = int(m.group(1))
    return floors


def _floor_of(module: str, floors: dict[str, int]) -> int | None:
    rel = module.removeprefix("zfcore").lstrip(".").replace(".", "/")
    if not rel:
        return max(floors.values()) + 1  # the package's own __init__ sits on top of it all
    best = None
    for pattern, floor in floors.items():
        if pattern.endswith("/"):
            if (rel + "/").startswith(pattern) and (best is None or len(pattern) > best[0]):
                best = (len(pattern), floor)
        elif rel == pattern:
            return floor
    return None if best is None else best[1]


def test_contributing_puts_every_module_on_one_floor():
    floors = _floors()
    assert floors, "CONTRIBUTING.md has no '## Floors' table"
    missing = [m for m in MODULES if _floor_of(m, floors) is None]
    assert not missing, f"modules on no floor of CONTRIBUTING.md's table: {missing}"
    stale = [
        p
        for p in floors
        if not any(_floor_of(m, {p: 0}) is not None for m in MODULES if m != "zfcore")
    ]
    assert not stale, f"CONTRIBUTING.md's floors name modules that do not exist: {stale}"


def test_imports_point_down_or_across_never_up():
    floors = _floors()
    edges, _ = _imports()
    up = [
        f"{a} (floor {_floor_of(a, floors)}) imports {b} (floor {_floor_of(b, floors)})"
        for a, targets in edges.items()
        for b in targets
        if b in MODULES
        and a != "zfcore"
        and b != "zfcore"
        and _floor_of(b, floors) > _floor_of(a, floors)
    ]
    assert not up, "imports that point up a floor:\n" + "\n".join(sorted(up))


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in MODULES:
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_counting_imports_inside_functions():
    edges, _ = _imports()
    # the package's __init__ re-exports the public API lazily; it is nobody's dependency
    edges = {a: {b for b in t if b != "zfcore"} for a, t in edges.items() if a != "zfcore"}
    assert _cycles(edges) == []


def test_no_private_name_is_imported_across_modules():
    _, private = _imports()
    assert private == [], "private names imported across modules: " + ", ".join(
        f"{a} imports {b}.{n}" for a, b, n in private
    )


def test_cycle_finder_finds_a_cycle():
    """A positive control: the checker itself sees a two-module cycle."""
    edges = {m: set() for m in MODULES}
    a, b = sorted(MODULES)[1:3]
    edges[a].add(b)
    edges[b].add(a)
    assert _cycles(edges) == [sorted([a, b])]


@pytest.mark.parametrize("name", zfcore.__all__)
def test_every_public_name_resolves(name):
    assert getattr(zfcore, name) is not None
