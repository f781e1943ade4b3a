"""No import cycles between the modules of bridge/, engine/ and models/.

The graph is read from the source (``ast``), so nothing is imported and a lazy import inside a
function counts like one at the top: a cycle that only works because one side imports late is
still a cycle (the next refactor moves the import up and breaks it). A cycle is reported as its
strongly connected component, every module that reaches every other one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("bridge", "engine", "models")

LAYERS = {"bridge": 0, "models": 1, "engine": 2}  # DESIGN.md: imports point down only


def module_names(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file under ``packages``."""
    modules = {}
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of ``modules`` that ``name`` imports anywhere in its source (functions too)."""
    is_package = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package that holds this module
                package = name.split(".")
                package = package[: len(package) - node.level + (1 if is_package else 0)]
                base = ".".join(package + ([base] if base else []))
            # ``from pkg import mod`` imports the submodule; ``from mod import name`` the module.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:  # ``import a.b.c`` of a package: its nearest module
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(root: Path = ROOT, packages: tuple[str, ...] = PACKAGES) -> dict[str, set[str]]:
    modules = module_names(root, packages)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def describe(component: frozenset[str], graph: dict[str, set[str]]) -> str:
    """'a -> b -> a' for a cycle through the component's first module, then its other edges."""
    start = min(component)
    path, seen = [start], {start}
    while True:
        nxt = sorted(graph[path[-1]] & component)
        back = start in nxt
        step = next((m for m in nxt if m not in seen), None)
        if back and (step is None or len(path) > 1):
            return " -> ".join([*path, start])
        if step is None:
            return " <-> ".join(sorted(component))
        path.append(step)
        seen.add(step)


def test_the_graph_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.b import g\n")
    (pkg / "b.py").write_text("from . import c\n")
    (pkg / "c.py").write_text("import pkg.a\n")
    (pkg / "d.py").write_text("from pkg import a\n")
    graph = import_graph(tmp_path, ("pkg",))
    assert graph["pkg.d"] == {"pkg.a"}
    assert cycles(graph) == [frozenset({"pkg.a", "pkg.b", "pkg.c"})]
    assert describe(cycles(graph)[0], graph) == "pkg.a -> pkg.b -> pkg.c -> pkg.a"


def test_no_import_cycles() -> None:
    graph = import_graph()
    found = [describe(c, graph) for c in cycles(graph)]
    assert not found, "import cycles (break each by moving what both sides need into a lower module):\n" + (
        "\n".join(found)
    )


def test_imports_point_down_the_layers() -> None:
    upward = [
        f"{name} -> {target}"
        for name, targets in import_graph().items()
        for target in sorted(targets)
        if LAYERS[target.split(".")[0]] > LAYERS[name.split(".")[0]]
    ]
    assert not upward, "bridge imports neither models nor engine, models does not import engine:\n" + (
        "\n".join(upward)
    )


SERVING = ("engine.server", "engine.tasks", "engine.registry", "engine.sessions", "engine.devices")
TRAINING_SIDE = ("train", "export", "evaluate", "baselines", "metrics")  # a family's experiment code
# models.data modules the inference side reads: the composer's tokenizer takes its instrument names,
# programs and ranges from this table (plain data; it imports nothing of the data builders)
INFERENCE_TABLES = ("models.data.instruments",)


def test_the_serving_engine_imports_only_the_inference_side_of_models() -> None:
    graph = import_graph()
    reached, todo = set(), [m for m in graph if m.startswith(SERVING)]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    wrong = sorted(m for m in reached if m.startswith("models.") and m not in INFERENCE_TABLES
                   and (m.startswith("models.data.") or m.rpartition(".")[2] in TRAINING_SIDE))
    assert not wrong, f"the server and its tasks reach training-side modules: {', '.join(wrong)}"
    assert "models.format" in reached
