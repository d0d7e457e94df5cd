"""The house's rules, checked on every run so they stay true: dependencies run one way
(config <- payments <- health), no import circles between modules, no module of the product
over about 300 lines. Read from the source with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("config", "payments", "health", "sandbox")
LAYERS = {"config": 0, "payments": 1, "health": 2}  # a package may import only from its own layer or below
MAX_LINES = 300
# The root URLconf and the settings name every app: they are the composition root, by string.


def _modules() -> dict[str, Path]:
    found = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _imports(path: Path, *, module_level_only: bool) -> list[str]:
    """Dotted names imported by the file; with module_level_only, imports inside functions
    and under TYPE_CHECKING are left out."""
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])

    def visit(node: ast.AST, *, nested: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                if not module_level_only:
                    visit(child, nested=True)
                continue
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # for the type checker only: never imported at run time
            if isinstance(child, ast.Import):
                names.extend(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else []))
                names.extend(f"{base}.{alias.name}" for alias in child.names)
                names.append(base)
            visit(child, nested=nested)

    visit(tree, nested=False)
    return names


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def test_config_and_payments_never_import_what_sits_above_them() -> None:
    modules = _modules()
    wrong = []
    for module, path in modules.items():
        layer = LAYERS.get(module.split(".")[0])
        if layer is None:
            continue
        for name in _imports(path, module_level_only=False):
            target = LAYERS.get(name.split(".")[0])
            if target is not None and target > layer:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(sorted(set(wrong)))


def test_no_import_circles_between_modules() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        edges = set()
        # A task reaches its service from inside the task function (HackSoft's way, so that a
        # service may queue its task); any other import inside a function is still an edge.
        for name in _imports(path, module_level_only=path.name == "tasks.py"):
            target = _resolve(name, modules)
            # A package's own __init__ (a docstring) is not an edge of its submodules.
            if target and target != module and not module.startswith(target + "."):
                edges.add(target)
        graph[module] = edges
    circles = _strongly_connected(graph)
    assert not circles, "\n".join(" <-> ".join(sorted(c)) for c in circles)


def test_no_module_of_the_product_is_over_about_300_lines() -> None:
    long = {module: n for module, path in _modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(group)

    for node in graph:
        if node not in index:
            connect(node)
    return found
