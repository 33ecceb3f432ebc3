"""The shape of the code base, checked: imports form a DAG, no function is too long to
take apart in a test. These are the rules that keep each transformation one module and
each stage-model rule one simulator method (issue 11)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parent.parent
# source folder -> the import name it installs under (pyproject's package-dir)
PACKAGES = {"planner": "planner", "solvers": "planner.solvers", "models": "planner.models"}
MAX_FUNCTION_LINES = 80


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for folder, pkg in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            out[".".join([pkg, *parts])] = path
    return out


def _resolve(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> nx.DiGraph:
    """Module -> module it imports (anywhere in the file, lazy imports included)."""
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    for mod, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            for t in targets:
                while t and t not in mods:
                    t = t.rpartition(".")[0]
                if t and t != mod:
                    g.add_edge(mod, t)
    return g


def test_imports_form_a_dag():
    g = import_graph()
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + [c[0]]) for c in cycles[:10])


def function_lengths() -> list[tuple[int, str]]:
    out = []
    for mod, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                out.append((node.end_lineno - node.lineno + 1, f"{mod}.{node.name} ({path.name}:{node.lineno})"))
    return sorted(out, reverse=True)


def test_no_function_is_longer_than_the_limit():
    long = [f"{name}: {n} lines" for n, name in function_lengths() if n > MAX_FUNCTION_LINES]
    assert not long, "functions over the limit: " + "; ".join(long)


def test_production_never_imports_the_test_oracle():
    g = import_graph()
    users = sorted(u for u, v in g.edges if v == "planner.solvers.brute_force")
    assert not users, f"brute_force is a test oracle, imported by {users}"


if __name__ == "__main__":  # the longest functions, for the issue note
    for n, name in function_lengths()[:10]:
        print(f"{n:4d}  {name}")


# what each layer may import (DESIGN §2): data flows import -> graph -> solve -> plan ->
# simulate -> (execute | export | report); the CLI sits on top and nothing imports it
CORE = ("planner.graph", "planner.target", "planner.plan", "planner.bounds", "planner.replay", "planner.simulate")
FORBIDDEN = {
    "core": (
        "planner.solvers",
        "planner.models",
        "planner.commands",
        "planner.cli",
        "planner.execute",
        "planner.export",
    ),
    "planner.solvers": ("planner.models", "planner.commands", "planner.cli", "planner.execute", "planner.export"),
    "planner.models": ("planner.solvers", "planner.commands", "planner.cli", "planner.execute", "planner.export"),
}


def _layer(mod: str) -> str | None:
    if mod in CORE:
        return "core"
    for layer in ("planner.solvers", "planner.models"):
        if mod == layer or mod.startswith(layer + "."):
            return layer
    return None


def test_layers_import_only_downwards():
    bad = []
    for u, v in import_graph().edges:
        layer = _layer(u)
        if layer and any(v == f or v.startswith(f + ".") for f in FORBIDDEN[layer]):
            bad.append(f"{u} -> {v}")
        if v == "planner.cli" and u != "planner.__main__":
            bad.append(f"{u} -> {v}")
    assert not bad, "imports against the layering: " + "; ".join(sorted(bad))


def undocumented() -> list[str]:
    """Public module-level functions and classes (and public methods of public classes)
    without a docstring, in planner/, solvers/ and models/."""
    missing = []
    for mod, path in _modules().items():
        for node in ast.parse(path.read_text()).body:
            items = [node]
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                items += [n for n in node.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
            for n in items:
                kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
                if isinstance(n, kinds) and not n.name.startswith("_") and not ast.get_docstring(n):
                    missing.append(f"{mod}.{n.name} ({path.name}:{n.lineno})")
    return missing


def test_public_definitions_say_why_they_exist():
    missing = undocumented()
    assert not missing, "public definitions without a docstring: " + "; ".join(missing)
