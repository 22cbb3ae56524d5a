"""The packages form layers and imports only point down:

    scene.datasets -> segment2d -> lift3d -> tracking -> scene -> viz -> scene.app

Every module of the project is parsed with ``ast`` (nothing is imported): every import statement at any
depth counts, lazy ones inside functions included, relative imports resolved. A module may import its own
layer and the layers below; an import of a higher layer fails, and so does a cycle between packages or
between modules (two modules that need each other, such as a CLI and a demo importing each other). ``scene/__init__.py`` belongs to
the lowest layer: importing ``scene.datasets`` runs it. A ``__main__`` module is an entry point nothing
imports, so it belongs to the application layer.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIRS = {"scene.datasets": "datasets", "segment2d": "segment2d", "lift3d": "lift3d",
                "tracking": "tracking", "scene": "scene", "viz": "viz"}
LAYERS = ("datasets", "segment2d", "lift3d", "tracking", "scene", "viz", "app")


def layer_of(module: str) -> str:
    """The layer a project module belongs to (by its dotted name)."""
    if module == "scene" or _within(module, "scene.datasets"):
        return "datasets"
    if _within(module, "scene.app") or module.endswith(".__main__") or module == "__main__":
        return "app"
    for package in ("segment2d", "lift3d", "tracking", "scene", "viz"):
        if _within(module, package):
            return package
    raise ValueError(f"{module} is in no layer")


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the layered packages."""
    modules = {}
    for package, folder in PACKAGE_DIRS.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            name = ".".join((package,) + parts)
            if package == "scene" and _within(name, "scene.datasets"):
                continue  # a stray folder; the real scene.datasets lives in datasets/
            modules[name] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(project module, line) of every import in the file, at any depth, relative ones resolved.
    ``from P import X`` names the module ``P.X`` when that is a module, else ``P``."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _absolute(node, package)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.append((candidate if candidate in known else base, node.lineno))
    return [(_owning_module(module, known), line) for module, line in found if _owning_module(module, known)]


def _absolute(node: ast.ImportFrom, package: str) -> str:
    if node.level == 0:
        return node.module or ""
    parts = package.split(".")
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _owning_module(module: str, known: set[str]) -> str | None:
    """``module`` or its nearest enclosing project module (``import a.b.c`` of an attribute path);
    None for third-party modules."""
    while module:
        if module in known:
            return module
        module = module.rpartition(".")[0]
    return None


def import_graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    modules = project_modules(root)
    known = set(modules)
    return {name: imported_modules(name, path, known) for name, path in modules.items()}


def upward_imports(graph: dict) -> list[str]:
    """'module:line imports target (layer a -> layer b)' for every import of a higher layer."""
    bad = []
    for module, targets in graph.items():
        for target, line in targets:
            if LAYERS.index(layer_of(target)) > LAYERS.index(layer_of(module)):
                bad.append(f"{module}:{line} imports {target} ({layer_of(module)} -> {layer_of(target)})")
    return sorted(set(bad), key=bad.index)


def package_cycles(graph: dict) -> list[list[str]]:
    """Cycles between packages (the layers: ``scene.datasets`` and ``scene.app`` count apart from
    ``scene``), as strongly connected components of more than one package."""
    edges: dict[str, set[str]] = {}
    for module, targets in graph.items():
        edges.setdefault(layer_of(module), set()).update(layer_of(t) for t, _ in targets)
    return _cycles(edges)


def module_cycles(graph: dict) -> list[list[str]]:
    """Cycles between modules (lazy imports included): two modules that need each other."""
    return _cycles({module: {t for t, _ in targets} for module, targets in graph.items()})


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    edges = {node: targets - {node} for node, targets in edges.items()}
    return sorted(sorted(c) for c in _strongly_connected(edges) if len(c) > 1)


def _strongly_connected(edges: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm (recursive: the package graph is small)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []
    nodes = set(edges) | {t for ts in edges.values() for t in ts}

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in edges.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == node:
                    break
            found.append(component)

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def test_every_module_has_a_layer():
    modules = project_modules()
    assert len(modules) > 50  # the walk found the packages
    for name in modules:
        layer_of(name)


def test_no_import_runs_up_the_layers():
    bad = upward_imports(import_graph())
    assert not bad, "imports that run up the layers:\n" + "\n".join(bad)


def test_no_cycle_between_packages_or_modules():
    graph = import_graph()
    cycles = package_cycles(graph) + module_cycles(graph)
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_checks_see_lazy_relative_and_upward_imports(tmp_path):
    """The parser itself: a lazy relative import of a higher layer and a package cycle are caught."""
    for package, folder in PACKAGE_DIRS.items():
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "__init__.py").write_text("")
    (tmp_path / "lift3d" / "a.py").write_text("def f():\n    from tracking import b\n    return b\n")
    (tmp_path / "tracking" / "b.py").write_text("from lift3d.a import f\n")
    (tmp_path / "tracking" / "c.py").write_text("def g():\n    from .b import f\n    return f\n")
    graph = import_graph(tmp_path)
    assert ("tracking.b", 2) in graph["tracking.c"]  # relative, inside a function
    assert upward_imports(graph) == ["lift3d.a:2 imports tracking.b (lift3d -> tracking)"]
    assert package_cycles(graph) == [["lift3d", "tracking"]]
    assert module_cycles(graph) == [["lift3d.a", "tracking.b"]]


@pytest.mark.parametrize("module, layer", [("scene", "datasets"), ("scene.datasets.readers.tum", "datasets"),
                                           ("scene.eval.box_ap", "scene"), ("scene.app.cli", "app"),
                                           ("scene.__main__", "app"), ("viz.render", "viz")])
def test_layer_names(module, layer):
    assert layer_of(module) == layer
