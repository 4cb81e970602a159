"""The shape of the house, read from the imports: rooms, one way through, no circles.

DESIGN.md: ``agent`` uses ``drivers``; ``drivers`` imports nothing of ``agent``;
``simulator`` plays the hardware and the cloud from outside, so nothing in
``agent`` imports it. Inside ``agent``, each sub-package (a room) says in its
``__init__.py`` docstring which rooms it may import (``...; imports locker,
storage.``); this test reads that line and fails on any arrow it does not allow.
Modules stay small, and are cut where they have two jobs.
"""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("agent", "drivers", "simulator")
MAX_LINES = 400
MAX_TOP_MODULES = 12  # modules at the top of agent/, beside its rooms


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

ROOMS = sorted(p.name for p in (ROOT / "agent").iterdir() if (p / "__init__.py").is_file())
_RULE = re.compile(r"; imports (nothing|[\w., ]+?)\.$")


def _room(module: str) -> str | None:
    """The room (``agent.locker``) a module of ``agent`` lives in; None at the top."""
    parts = module.split(".")
    return f"agent.{parts[1]}" if len(parts) > 1 and parts[1] in ROOMS else None


def _rule(room: str) -> set[str]:
    """What a room's ``__init__.py`` docstring says it may import, as dotted names."""
    doc = ast.get_docstring(ast.parse(MODULES[room].read_text())) or ""
    assert "\n" not in doc, f"{room}: the docstring is one line"
    found = _RULE.search(doc)
    assert found, f"{room}: the docstring ends '; imports a, b.' or '; imports nothing.'"
    if found.group(1) == "nothing":
        return set()
    names = [n.strip() for n in found.group(1).split(",")]
    return {n if n.split(".")[0] in PACKAGES else f"agent.{n}" for n in names}


RULES = {room: _rule(room) for room in (f"agent.{r}" for r in ROOMS)}


def _allowed(module: str, dep: str) -> bool:
    room = _room(module)
    if room is None or dep == "agent" or _room(dep) == room:
        return True  # the top may import any room; every room the package's face
    return any(dep == rule or dep.startswith(rule + ".") for rule in RULES[room])


def test_every_room_says_what_it_may_import():
    assert set(RULES) >= {
        "agent.locker",
        "agent.storage",
        "agent.cloud",
        "agent.api",
        "agent.codes",
    }
    for room, rule in RULES.items():
        for name in rule:
            assert name in MODULES, f"{room} names {name}, which is no module of ours"


def test_every_arrow_goes_where_its_room_allows():
    bad = sorted(
        f"{module} -> {dep}"
        for module, deps in GRAPH.items()
        if module.startswith("agent")
        for dep in deps
        if not _allowed(module, dep)
    )
    assert bad == []


def test_rooms_never_import_the_top():
    """app, cli, log and the like build and run the rooms; a room never reaches back up."""
    bad = sorted(
        f"{module} -> {dep}"
        for module, deps in GRAPH.items()
        if _room(module)
        for dep in deps
        if dep.startswith("agent.") and _room(dep) is None
    )
    assert bad == []


def test_rooms_are_one_way():
    """No two rooms may import each other (a module named in a rule, such as the thermal
    section's schema that ``config`` composes, is not its whole room)."""
    rooms = {room: {r for r in rule if r in RULES} for room, rule in RULES.items()}
    both = sorted((a, b) for a, deps in rooms.items() for b in deps if a in rooms.get(b, ()))
    assert both == []


def test_the_top_of_agent_stays_small():
    top = sorted(p.name for p in (ROOT / "agent").glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top


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


@pytest.mark.parametrize("name", sorted(MODULES))
def test_modules_stay_small(name):
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name}: {lines} lines"


def _readme_rooms() -> dict[str, str]:
    """The README's table rows by the folder they describe (``agent/thermal/`` ...)."""
    readme = (ROOT / "README.md").read_text()
    row = re.compile(r"^\| `((?:agent|drivers|simulator)/(?:[a-z0-9_]+/)?)` \|.*$", re.M)
    return {m.group(1): m.group(0) for m in row.finditer(readme)}


@pytest.mark.parametrize("room", sorted(_readme_rooms()))
def test_the_readme_names_every_module_of_a_room(room):
    """A newcomer reads the rooms from the README's tables: a module missing there
    (a split, a new job) is a room they cannot find (a new user found ten)."""
    named = _readme_rooms()[room]
    missing = [
        path.name
        for path in sorted((ROOT / room).glob("*.py"))
        if path.name != "__init__.py" and f"`{path.name}`" not in named
    ]
    assert not missing, f"README.md's row for {room} does not name {missing}"
