"""The shape of the house, read from the imports: one way through, no circles.

DESIGN.md: ``agent`` uses ``drivers``; ``drivers`` imports nothing of ``agent``;
``simulator`` plays the hardware and the cloud from outside, so nothing in
``agent`` imports it. Modules stay small (Klipper's extras: ~150 lines).
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "drivers", "simulator")
MAX_LINES = 320  # "about 300"


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every module of ours that ``name`` imports, anywhere in the file (TYPE_CHECKING too)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def test_drivers_import_nothing_of_agent_or_simulator():
    bad = {
        (m, d)
        for m, deps in GRAPH.items()
        if m.startswith("drivers")
        for d in deps
        if d.startswith(("agent", "simulator"))
    }
    assert bad == set()


def test_agent_imports_nothing_of_simulator():
    bad = {
        (m, d)
        for m, deps in GRAPH.items()
        if m.startswith("agent")
        for d in deps
        if d.startswith("simulator")
    }
    assert bad == set()


def _cycle() -> list[str] | None:
    """A cycle among our modules, if any. A package importing its own submodules
    (an ``__init__`` re-exporting them) is not a cycle of the code."""
    edges = {
        m: {d for d in deps if m != d.rpartition(".")[0] or MODULES[m].name != "__init__.py"}
        for m, deps in GRAPH.items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for module in sorted(edges):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_import_circles():
    assert _cycle() is None


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("agent")))
def test_agent_modules_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"
