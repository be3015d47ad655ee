"""Imports only point down the floors of DESIGN.md's "Layers" figure, and never in a circle.

Every module of the shipped packages is parsed (ast, nothing imported) and each of
its imports, wherever it stands (top level, inside a function, under
``TYPE_CHECKING``), is an edge: a late import is still a dependency, and a
type-only one still ties two modules together. An edge to a higher floor, a
circle of modules, or a module the table does not place fails the test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("labrig", "drivers", "sim_backend", "calibration")
#: ``../shared/DESIGN.md`` beside the checkout (or beside the folder of worktrees)
DESIGN = next((p / "shared" / "DESIGN.md" for p in ROOT.parents if (p / "shared" / "DESIGN.md").is_file()),
              ROOT.parent / "shared" / "DESIGN.md")

#: DESIGN.md's floors, lowest first, as module prefixes (the longest prefix wins). The
#: figure's own entries are marked; the rest are the small modules it does not name,
#: put on the floor of what they serve.
FLOORS: tuple[tuple[str, ...], ...] = (
    # 0: differentiable 4f physics | device protocols | TOML data
    ("labrig.optics", "drivers.base", "labrig.profiles",  # the figure
     "drivers.errors", "drivers.config", "drivers.plugin",  # the protocols' errors, profile tables, plugin contract
     "labrig", "labrig.io", "labrig.paths", "labrig.timing", "labrig.geometry", "labrig.progress"),
    # 1: teacher, SCLC student, KD, datasets (and the experiments built on them)
    ("labrig.models", "labrig.distill", "labrig.data", "labrig.experiments"),
    # 2: real devices | simulated devices (same protocols)
    ("drivers", "sim_backend"),
    # 3: a configured bench
    ("labrig.bench",),
    # 4: in-situ fine-tuning, mask compiler, calibration routines
    ("labrig.hil", "labrig.deploy", "calibration"),
    # 5: front ends (one engine, two faces)
    ("labrig.gui", "labrig.cli", "labrig.commands", "labrig.demo"),
)


def floor_of(module: str) -> int | None:
    """The floor of `module` by its longest matching prefix in FLOORS, or None."""
    best: tuple[int, int] | None = None
    for level, prefixes in enumerate(FLOORS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), level)
    return None if best is None else best[1]


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """(imported module, line) for every import of our packages in one module."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                yield (sub if sub in MODULES else base), node.lineno


def _edges() -> dict[str, dict[str, int]]:
    """module -> {imported module of ours: first line}; a module's import of its own
    package's __init__ (implied by Python, not a choice) is left out."""
    graph: dict[str, dict[str, int]] = {}
    for name, path in MODULES.items():
        out = graph.setdefault(name, {})
        for target, line in _imports(name, path):
            while target not in MODULES and "." in target:  # `import a.b.c` names a module or a symbol
                target = target.rpartition(".")[0]
            if target in MODULES and target != name and not name.startswith(target + "."):
                out.setdefault(target, line)
    return graph


def test_the_table_places_every_module() -> None:
    missing = sorted(m for m in MODULES if floor_of(m) is None)
    assert not missing, f"modules on no floor (add them to FLOORS, and to DESIGN.md): {missing}"


def test_imports_point_down() -> None:
    upward = [
        f"{MODULES[src].relative_to(ROOT)}:{line}: {src} (floor {floor_of(src)}) imports "
        f"{dst} (floor {floor_of(dst)})"
        for src, targets in _edges().items() for dst, line in targets.items()
        if (floor_of(dst) or 0) > (floor_of(src) or 0)
    ]
    assert not upward, "imports up the floors:\n" + "\n".join(upward)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(graph[root]))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph.get(child, {}))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_import_cycles() -> None:
    graph = _edges()
    cycles = _cycles(graph)
    detail = [
        " <-> ".join(c) + "\n    " + "; ".join(
            f"{a} -> {b} (line {graph[a][b]})" for a in c for b in graph[a] if b in c)
        for c in cycles
    ]
    assert not cycles, "import cycles:\n" + "\n".join(detail)


#: (importer, imported, why): arrows DESIGN.md forbids even where they point down
FORBIDDEN: tuple[tuple[str, str, str], ...] = (
    ("calibration", "sim_backend", "calibration works on glass: it never reads the simulator or its truth"),
    ("labrig.hil", "sim_backend", "in-situ training works on glass: it never reads the simulator or its truth"),
    ("labrig", "sim_backend", "labrig finds simulated devices through entry points, like real ones"),
    ("labrig", "drivers.vendors", "labrig finds vendor drivers through entry points, never by name"),
    ("labrig", "drivers.templates", "templates are copied, never imported"),
)


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def test_no_forbidden_imports() -> None:
    found = [
        f"{MODULES[src].relative_to(ROOT)}:{line}: {src} imports {dst}: {why}"
        for src, targets in _edges().items() for dst, line in targets.items()
        for importer, imported, why in FORBIDDEN if _within(src, importer) and _within(dst, imported)
    ]
    assert not found, "\n".join(found)


def test_the_checker_sees_upward_and_circular_imports() -> None:
    """The walk itself: a late import counts, and a two-module circle is found."""
    assert floor_of("labrig.deploy.run") == 4 and floor_of("labrig.bench") == 3
    assert floor_of("drivers.vendors.genicam.camera") == 2 and floor_of("drivers.base") == 0
    assert _cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b": 1}, "b": {}}) == []


def _design_figure() -> list[list[str]]:
    """The entries of DESIGN.md's Layers figure, top floor first."""
    text = DESIGN.read_text(encoding="utf-8")
    block = re.search(r"## Layers.*?```\n(.*?)```", text, re.S)
    assert block, f"{DESIGN}: no Layers figure"
    rows = []
    for line in block.group(1).splitlines():
        names = [w.rstrip("/*").rstrip("/").replace("/", ".") for w in line.split()
                 if re.fullmatch(r"(labrig\.\w+|drivers[./][\w*]*|sim_backend/\*|calibration/|profiles)", w)]
        if names:
            rows.append(names)
    return rows


@pytest.mark.skipif(not DESIGN.is_file(), reason="DESIGN.md is not beside this checkout")
def test_the_table_is_design_md() -> None:
    rows = _design_figure()
    assert len(rows) == len(FLOORS)
    for level, names in enumerate(reversed(rows)):
        for name in names:
            module = "labrig.profiles" if name == "profiles" else name
            assert floor_of(module) == level, f"DESIGN.md puts {name} on floor {level}, FLOORS on {floor_of(module)}"
