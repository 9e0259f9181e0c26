"""The package's modules import each other in one direction only: no module reaches, directly or
through others, back to itself. Imports inside functions count too (they are the usual way a
circle hides)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "duse_ros"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node, name, path.name == "__init__.py")
                candidates = [f"{base}.{a.name}" for a in node.names] + [base]
            else:
                continue
            for candidate in candidates:
                # the longest prefix that is one of our modules (a package's __init__ counts)
                parts = candidate.split(".")
                for k in range(len(parts), 0, -1):
                    prefix = ".".join(parts[:k])
                    if prefix in modules:
                        if prefix != name and not name.startswith(prefix + "."):  # a package's own __init__
                            targets.add(prefix)
                        break
        graph[name] = targets
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_circle():
    graph = import_graph()
    assert graph["duse_ros.loading"] >= {"duse_ros.checkpoint", "duse_ros.models", "duse_ros.weights"}
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_circle_check_finds_a_planted_circle():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_layers_point_down():
    graph = import_graph()
    models = {m for m in graph if m.startswith("duse_ros.models")}
    for module in models:  # pure PyTorch: nothing above it, no ROS
        assert all(t.startswith("duse_ros.models") or t in ("duse_ros.classes",) for t in graph[module]), (
            module,
            graph[module],
        )
    for module in (m for m in graph if m.startswith(("duse_ros.affect", "duse_ros.bridge", "duse_ros.io"))):
        assert not any(t.startswith(("duse_ros.nodes", "duse_ros.tools")) for t in graph[module]), (
            module,
            graph[module],
        )
