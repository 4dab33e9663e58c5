"""The package's import structure, enforced: no import circles, counting imports made inside
functions, and the layers of the README's layout section (``tox -e lint`` checks the same
layers with import-linter's contract in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"hsmlbench": ROOT / "hsmlbench", "hsmlbench.kernels": ROOT / "kernels"}

# Lowest first, as the README's layout section draws them. A module may import its own layer
# and the layers below it, never one above.
LAYERS = (
    ("hsmlbench.kernels",),
    ("hsmlbench.configs", "hsmlbench.atomic", "hsmlbench.seeding"),
    ("hsmlbench.results",),
    ("hsmlbench.methods",),
    ("hsmlbench.domains",),
    ("hsmlbench.run", "hsmlbench.testing"),
    ("hsmlbench.report",),
    ("hsmlbench.cli",),
)


def modules() -> dict[str, Path]:
    """Every module of hsmlbench (kernels/ installs as hsmlbench.kernels)."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The hsmlbench modules ``name`` imports anywhere in its file, functions included
    ("from a import b" names the module a.b when there is one, else a)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets |= {alias.name for alias in node.names if alias.name in known}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                if f"{base}.{alias.name}" in known:
                    targets.add(f"{base}.{alias.name}")
                elif base in known:
                    targets.add(base)
    return targets - {name}


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the components with more than one module (import circles)."""
    index, low, stack, on_stack, result = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return result


def layer_of(module: str) -> int | None:
    for level, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return level
    return None


def layer_violations(edges: dict[str, set[str]]) -> list[str]:
    problems = []
    for source, targets in sorted(edges.items()):
        for target in sorted(targets):
            low, high = layer_of(source), layer_of(target)
            if low is not None and high is not None and high > low:
                problems.append(f"{source} (layer {low}) imports {target} (layer {high})")
    return problems


def test_no_import_circles_counting_imports_inside_functions():
    assert strongly_connected(graph()) == []


def test_every_module_sits_in_a_layer():
    unplaced = [m for m in modules() if m != "hsmlbench" and layer_of(m) is None]
    assert unplaced == []


def test_no_module_imports_a_layer_above_its_own():
    assert layer_violations(graph()) == []


def test_kernels_import_nothing_from_the_rest_of_hsmlbench():
    edges = graph()
    outside = {
        (s, t)
        for s, ts in edges.items()
        if s.startswith("hsmlbench.kernels")
        for t in ts
        if not t.startswith("hsmlbench.kernels")
    }
    assert outside == set()


@pytest.mark.parametrize(
    "source, imported",
    [
        ("hsmlbench/methods/_wrong_layer.py", "from hsmlbench.run.grid import reproduce\n"),
        (
            "hsmlbench/results/_wrong_layer.py",
            "def f():\n    from hsmlbench.report import tables\n",
        ),
    ],
)
def test_the_checks_catch_a_module_at_the_wrong_layer(tmp_path, monkeypatch, source, imported):
    """The checks themselves can fail: a module importing upward (at the top or in a function)
    is reported, and a circle through it too."""
    copy = tmp_path / "hsmlbench"
    (copy / Path(source).parent.relative_to("hsmlbench")).mkdir(parents=True)
    real = modules()
    monkeypatch.setitem(PACKAGES, "hsmlbench", copy)
    monkeypatch.setitem(PACKAGES, "hsmlbench.kernels", ROOT / "kernels")
    for name, path in real.items():
        if name.startswith("hsmlbench.kernels"):
            continue
        target = copy / path.relative_to(ROOT / "hsmlbench")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(path.read_text())
    (tmp_path / source).write_text(imported)
    name = source.removesuffix(".py").replace("/", ".")
    assert any(v.startswith(name + " ") for v in layer_violations(graph()))
