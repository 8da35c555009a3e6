"""The package's shape (issue #31): no import circle, imports only downwards, short modules.

Every `looptool` import counts, including the lazy ones inside functions (a lazy import is
still a dependency a reader has to follow); only `if TYPE_CHECKING:` blocks are skipped.
"""

from __future__ import annotations

import ast
import collections
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "looptool"

# Bottom to top. A module may import its own package and any package in a lower layer;
# packages in one layer do not import each other.
LAYERS: list[set[str]] = [
    {"prompts"},
    {"core"},
    {"params"},
    {"store"},
    {"engines"},
    {"seed"},
    {"eval"},
    {"loop"},
    {"report", "compare"},
    {"cli", "gpucheck"},
]
MAX_LINES = 450


def _modules() -> dict[str, Path]:
    mods = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def _imports(name: str, path: Path) -> set[str]:
    """Every looptool module `name` imports (module level and lazy)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            targets: list[str] = []
            if isinstance(child, ast.Import):
                targets = [alias.name for alias in child.names]
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    module = ".".join(base + ([child.module] if child.module else []))
                else:
                    module = child.module or ""
                targets = [module] + [f"{module}.{alias.name}" for alias in child.names]
            for target in targets:
                if target.split(".")[0] == "looptool":
                    resolved = _resolve(target)
                    if resolved and resolved != name:
                        found.add(resolved)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _layer(package: str) -> int:
    for index, members in enumerate(LAYERS):
        if package in members:
            return index
    raise AssertionError(f"looptool/{package}: not placed in tests/test_structure.py LAYERS")


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
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


def test_cycle_finder_finds_a_circle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle() -> None:
    cycles = _cycles(GRAPH)
    assert not cycles, "import circles inside looptool/:\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )


def test_imports_only_go_down() -> None:
    upward = []
    for module, targets in GRAPH.items():
        package = _package(module)
        if not package:
            continue
        for target in sorted(targets):
            other = _package(target)
            if not other or other == package:
                continue
            if _layer(other) >= _layer(package):
                upward.append(f"{module} -> {target}")
    assert not upward, "imports from a lower (or the same) layer upwards:\n" + "\n".join(upward)


@pytest.mark.parametrize(
    "path",
    [*sorted(PACKAGE.rglob("*.py")), *sorted((ROOT / "stages").glob("*.py"))],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_module_length(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)}: {lines} lines (limit {MAX_LINES})"


def test_every_package_has_a_layer() -> None:
    packages = collections.Counter(_package(m) for m in MODULES)
    for package in packages:
        if package:
            _layer(package)


def _missing_modules(root: Path) -> list[str]:
    """`from looptool.x import ...` / `import looptool.x` lines (lazy ones too) in ``root``
    whose module does not exist: a stale path after a move, which only fails when run."""
    missing = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for module in names:
                if module.split(".")[0] == "looptool" and module not in MODULES:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno}: {module}")
    return missing


@pytest.mark.parametrize("folder", ["looptool", "stages", "tests", "bench", "scripts"])
def test_every_imported_module_exists(folder: str) -> None:
    missing = _missing_modules(ROOT / folder)
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)
