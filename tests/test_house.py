"""The house stays easy to see: modules of a few hundred lines, functions a reader can hold in
their head, data flowing one way, and a simulator that is a second implementation.

Complexity is radon's cyclomatic complexity. A function may go over the limit only with a
comment saying why, on the line above its `def`: `# complexity: <why>`.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "watcher"
SIMULATOR = ROOT / "watcher_sim"
MAX_LINES = 450
MAX_COMPLEXITY = 15


def modules(package: Path) -> list[Path]:
    return sorted(package.rglob("*.py"))


def name(path: Path) -> str:
    return str(path.relative_to(ROOT))


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of its code (lazy imports too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_no_module_is_over_450_lines() -> None:
    sizes = {name(p): len(p.read_text(encoding="utf-8").splitlines()) for p in modules(PRODUCT)}
    assert sizes  # the product is where this test thinks it is
    assert {n: lines for n, lines in sizes.items() if lines > MAX_LINES} == {}


def test_no_function_is_over_complexity_15_without_saying_why() -> None:
    over = []
    for path in modules(PRODUCT):
        lines = path.read_text(encoding="utf-8").splitlines()
        for each in cc_visit("\n".join(lines)):  # functions and methods, and classes
            if hasattr(each, "methods"):
                continue  # a class: its methods are listed on their own
            above = lines[each.lineno - 2].strip() if each.lineno > 1 else ""
            if each.complexity > MAX_COMPLEXITY and not above.startswith("# complexity:"):
                over.append(f"{name(path)}:{each.lineno} {each.name} ({each.complexity})")
    assert over == []


NEVER = {
    # a source speaks HTTP to one platform and hands back what it read: it knows nothing of what
    # is done with it (state, routing, channels, the cycle that called it)
    "sources": ("watcher.store", "watcher.dispatch", "watcher.sinks", "watcher.poller",
                "watcher.app", "watcher.daemon"),
    # a sink is handed events and says what it did: it never polls or writes state itself
    "sinks": ("watcher.sources", "watcher.poller", "watcher.store", "watcher.app",
              "watcher.daemon"),
    # the config is read by everything and reads nothing of what it configures
    "config": ("watcher.app", "watcher.daemon", "watcher.poller", "watcher.store",
               "watcher.dispatch", "watcher.sinks"),
}  # fmt: skip
BECAUSE = {
    # the outputs sink downloads a run's files the only way there is: through its source
    "watcher/sinks/fetcher.py imports watcher.sources.base",
}


@pytest.mark.parametrize(("package", "never"), NEVER.items())
def test_data_flows_one_way(package: str, never: tuple[str, ...]) -> None:
    wrong = {
        f"{name(path)} imports {module}"
        for path in modules(PRODUCT / package)
        for module in imported(path)
        if module.startswith(never)
    }
    assert wrong - BECAUSE == set()


def test_the_simulator_is_a_second_implementation() -> None:
    """It shares no code with the product: what it knows of the platforms comes from their
    API documents, so a misreading in the product cannot be mirrored by the simulator. Only
    its demo names the product's public config, to start watcher against it."""
    borrowed = {
        f"{name(path)} imports {module}"
        for path in modules(SIMULATOR)
        for module in imported(path)
        if module == "watcher" or module.startswith("watcher.")
    }
    allowed = {m for m in borrowed if m.startswith("watcher_sim/demo.py imports watcher.config")}
    assert borrowed - allowed == set()


def test_the_plain_cloud_is_a_third_implementation() -> None:
    """`tests/plain_cloud.py`, the small Cloud the rules are held to besides the simulator, is
    written from the API documents alone: it imports neither the product nor the simulator
    (nor, relatively, a neighbour that does), and stays small enough to check by reading."""
    path = ROOT / "tests" / "plain_cloud.py"
    tree = ast.parse(path.read_text(encoding="utf-8"))
    relative = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level]
    borrowed = {m for m in imported(path) if m.split(".")[0] in ("watcher", "watcher_sim")}
    assert (borrowed, relative) == (set(), [])
    assert len(path.read_text(encoding="utf-8").splitlines()) <= 200


def test_event_types_are_spelled_by_their_one_vocabulary() -> None:
    """An event type in the product is an `EventType` member, never its string: a misspelled
    string is a type nobody emits or a filter that never matches, and nothing would say so.
    Docstrings and comments may name types; `events.py`, which defines them, spells them."""
    from watcher.events import EventType

    values = {t.value for t in EventType}
    raw = []
    for path in modules(PRODUCT):
        if path == PRODUCT / "events.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        raw += [
            f"{name(path)}:{node.lineno} {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value in values
            and id(node) not in prose
        ]
    assert raw == []
