"""The simulator is a second implementation of the platforms, not a mirror of the product.

`watcher_sim` may import nothing of `watcher` but the settings `demo.py` builds the daemon's
config from; the product may import `watcher_sim` only lazily, inside the `demo` command. The
status tables are written twice, from the seeds, and checked here against the seeds and
against each other: a mistake in either shows.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.runs import Phase
from watcher.status import ACC_JOB_CODES, ACC_RUN_CODES, CLOUD_CODES, cloud_status
from watcher_sim.statuses import (
    ACC_JOB_FINISHED,
    ACC_JOB_NAMES,
    ACC_RUN_ACTIVE,
    ACC_RUN_FINISHED,
    ACC_RUN_NAMES,
    CLOUD_ACTIVE,
    CLOUD_FINISHED,
    CLOUD_NAMES,
    CLOUD_STRING_NAMES,
    CloudStatus,
)

ROOT = Path(__file__).resolve().parents[1]
ALLOWED_IN_DEMO = {"watcher.config"}


def imports(path: Path) -> Iterator[tuple[str, ast.AST, list[ast.AST]]]:
    """(module imported, the import node, its enclosing nodes) for every import in a file."""
    tree = ast.parse(path.read_text(), filename=str(path))

    def walk(node: ast.AST, parents: list[ast.AST]) -> Iterator[tuple[str, ast.AST, list]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child, parents
            elif isinstance(child, ast.ImportFrom) and child.level == 0 and child.module:
                yield child.module, child, parents
            yield from walk(child, [*parents, child])

    yield from walk(tree, [])


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_simulator_imports_nothing_of_the_product() -> None:
    modules = sorted((ROOT / "watcher_sim").rglob("*.py"))
    assert len(modules) > 10
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {module}"
        for path in modules
        for module, node, _ in imports(path)
        if is_under(module, "watcher")
        and not (path.name == "demo.py" and module in ALLOWED_IN_DEMO)
    ]
    assert offenders == []


def test_the_product_imports_the_simulator_only_inside_the_demo_command() -> None:
    found = []
    for path in sorted((ROOT / "watcher").rglob("*.py")):
        for module, node, parents in imports(path):
            if is_under(module, "watcher_sim"):
                functions = [p.name for p in parents if isinstance(p, ast.AsyncFunctionDef)]
                found.append((path.relative_to(ROOT).as_posix(), functions, node.lineno))
    assert [(where, functions) for where, functions, _ in found] == [("watcher/cli.py", ["_demo"])]


# -------------------------------------------------------------- the tables


def test_cloud_statuses_are_the_seeds() -> None:
    assert [CLOUD_NAMES[c] for c in range(13)] == [
        "Invalid", "Running", "Exporting", "Starting", "Queuing", "Stopping", "Failure",
        "Failed", "Stopped", "Completed", "Success", "Skipped", "Waiting",
    ]  # fmt: skip
    assert {int(s) for s in CLOUD_ACTIVE} == {1, 2, 3, 4, 5, 12}  # seed 001, "Active statuses"
    assert {int(s) for s in CLOUD_FINISHED} == {6, 7, 8, 9, 10, 11}
    assert CloudStatus.INVALID not in CLOUD_ACTIVE | CLOUD_FINISHED
    assert {"CompletedWithErrors", "FailedToStart", "Queued"} <= CLOUD_STRING_NAMES


@pytest.mark.parametrize("code", range(13))
def test_the_product_reads_each_cloud_status_as_the_simulator_means_it(code: int) -> None:
    name, phase, _outcome = CLOUD_CODES[code]
    assert name == CLOUD_NAMES[code]
    assert phase.active == (code in CLOUD_ACTIVE)
    assert (phase is Phase.FINISHED) == (code in CLOUD_FINISHED)
    assert cloud_status(CLOUD_NAMES[code]).phase == phase  # the string form reads the same


@pytest.mark.parametrize("name", sorted(CLOUD_STRING_NAMES))
def test_the_product_reads_every_name_the_cloud_may_send(name: str) -> None:
    unknown = cloud_status(name).phase is Phase.UNKNOWN
    assert unknown == (name in {"Invalid", "Unknown"})


def test_acc_statuses_agree_with_the_product() -> None:
    assert {c for c, (_, phase, _) in ACC_RUN_CODES.items() if phase is Phase.FINISHED} == set(
        ACC_RUN_FINISHED
    )
    assert {c for c, (_, phase, _) in ACC_JOB_CODES.items() if phase is Phase.FINISHED} == set(
        ACC_JOB_FINISHED
    )
    assert all(ACC_RUN_CODES[c][1].active for c in ACC_RUN_ACTIVE)
    assert [ACC_RUN_CODES[c][0] for c in range(8)] == [ACC_RUN_NAMES[c] for c in range(8)]
    assert [ACC_JOB_CODES[c][0] for c in range(6)] == [ACC_JOB_NAMES[c] for c in range(6)]
