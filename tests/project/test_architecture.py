"""Imports only go down (ARCHITECTURE.md): every ``import`` in ``src/dear`` — at module level or
inside a function — goes to the same or a lower layer, and no two packages import each other,
directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

# Lowest first. A module's layer is that of its longest listed prefix; ``__main__`` modules and the
# listed ``python -m`` entry modules inside stage packages are entry points.
LAYERS: list[tuple[str, list[str]]] = [
    ("base", ["dear", "dear.errors", "dear.utils"]),  # "dear": the package's own __init__ only
    ("data", ["dear.data"]),
    ("models", ["dear.models"]),
    ("evaluation", ["dear.eval"]),
    ("stages", ["dear.rerank", "dear.listwise", "dear.distill"]),
    ("report", ["dear.report"]),
    (
        "entry",
        [
            "dear.cli",
            "dear.config",
            "dear.training",
            "dear.cot",
            "dear.serve",
            "dear.export",
            "dear.distill.precompute",
            "dear.listwise.window_fit",
        ],
    ),
]
RANK = {prefix: rank for rank, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes}
ENTRY = len(LAYERS) - 1


def layer(module: str) -> int:
    if module.rsplit(".", 1)[-1] == "__main__":
        return ENTRY
    if module == "dear":
        return RANK["dear"]
    parts = module.split(".")
    for n in range(len(parts), 1, -1):
        if ".".join(parts[:n]) in RANK:
            return RANK[".".join(parts[:n])]
    raise KeyError(
        f"{module}: no layer (add its package to LAYERS in tests/project/test_architecture.py and "
        "ARCHITECTURE.md)"
    )


def package(module: str) -> str:
    """``dear.<package>`` (a top-level module counts as its own package); entry modules inside a
    stage package are their own node, as they sit above it."""
    if module.endswith(".__main__") or (module in RANK and module.count(".") > 1):
        return module
    return ".".join(module.split(".")[:2])


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """The ``dear`` modules ``source`` imports, anywhere in it (functions included)."""
    found = set()
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            for (
                alias
            ) in node.names:  # ``from dear.data import irds`` imports the submodule dear.data.irds
                full = f"{base}.{alias.name}"
                found.add(full if _is_module(full) else base)
    return {m for m in found if m == "dear" or m.startswith("dear.")}


def _is_module(name: str) -> bool:
    path = SRC.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    graph = {}
    for path in sorted((SRC / "dear").rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        module = ".".join(parts[:-1] if is_package else parts)
        graph[module] = imports(path.read_text(encoding="utf-8"), module, is_package)
    return graph


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(
        f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
        for m, targets in graph.items()
        for t in targets
        if layer(t) > layer(m)
    )


def package_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected sets of more than one package (Tarjan), each sorted."""
    edges: dict[str, set[str]] = {}
    for m, targets in graph.items():
        edges.setdefault(package(m), set())
        for t in targets:
            if package(t) != package(m):
                edges[package(m)].add(package(t))
                edges.setdefault(package(t), set())
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_every_module_has_a_layer():
    for module in import_graph():
        layer(module)


def test_imports_only_go_down():
    assert upward(import_graph()) == []


def test_no_cycle_between_packages():
    assert package_cycles(import_graph()) == []


def test_the_checker_catches_violations():
    """The checks fail on a synthetic upward edge (one inside a function) and on a package cycle."""
    source = "import os\n\ndef f():\n    from dear.eval.judges import build_judge\n    from ..utils import io\n"
    found = imports(source, "dear.data.fake")
    assert found == {"dear.eval.judges", "dear.utils.io"}
    assert upward({"dear.data.fake": found}) == [
        "dear.data.fake (data) imports dear.eval.judges (evaluation)"
    ]
    assert (
        upward({"dear.eval.fake": {"dear.data.contract", "dear.utils.io", "dear.eval.judges"}})
        == []
    )
    cyclic = {
        "dear.rerank.a": {"dear.listwise.b"},
        "dear.listwise.b": {"dear.distill.c"},
        "dear.distill.c": {"dear.rerank.d"},
        "dear.rerank.d": set(),
    }
    assert package_cycles(cyclic) == [["dear.distill", "dear.listwise", "dear.rerank"]]
    assert package_cycles({"dear.rerank.a": {"dear.data.b"}, "dear.data.b": set()}) == []
    with pytest.raises(KeyError, match="no layer"):
        layer("dear.newpackage.module")
