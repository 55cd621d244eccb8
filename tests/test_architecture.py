"""The layers as drawn in ARCHITECTURE.md: an acyclic import graph, HTTP-free ops, SDK-free HTTP.

Imports are read from the source (every `import`/`from ... import` of a `gateway` module,
those under `if TYPE_CHECKING:` and inside functions too), so a cycle cannot hide in a lazy
import.
"""

from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parent.parent / "gateway"


def module_name(path: Path) -> str:
    parts = path.relative_to(GATEWAY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in GATEWAY.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = {t for t in imports_of(path) if t in modules and t != name}
        # `from gateway.testing import x` depends on the package's __init__ only when x is not
        # a submodule; a submodule import depends on that submodule.
        edges[name] = targets
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    edges = graph()
    # Packages import their own submodules in __init__: that edge is not a cycle by itself.
    for package in [m for m in edges if (GATEWAY.parent / m.replace(".", "/")).is_dir()]:
        for module in edges:
            if module.startswith(package + "."):
                edges[module].discard(package)
    assert find_cycle(edges) is None, " -> ".join(find_cycle(edges) or [])


def test_ops_never_see_http_and_the_http_layer_never_sees_the_sdk():
    edges = graph()
    for op_module in [m for m in edges if m.startswith("gateway.ops.")]:
        source = (GATEWAY.parent / (op_module.replace(".", "/") + ".py")).read_text()
        assert "import httpx" not in source and "import urllib3" not in source, op_module
        assert "starlette" not in source and "fastapi" not in source, op_module
    for http_module in ("gateway/app.py", "gateway/middleware.py"):
        source = (GATEWAY.parent / http_module).read_text()
        assert "databricks.sdk" not in source, http_module


def test_the_registry_does_not_import_the_runtime():
    assert "gateway.runtime" not in imports_of(GATEWAY / "registry.py")


def test_the_check_sees_a_cycle_when_there_is_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
