"""The Dockerfile, read as a builder reads it (no Docker engine needed): a base image pinned by
tag and digest, OCI labels, dependency layers apart from the source, and the container's
promises kept — user 10001, a read-only root, the state volume, the healthcheck."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PINNED = re.compile(r"python:3\.\d+\.\d+-slim-[a-z]+@sha256:[0-9a-f]{64}")


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: continuation lines joined, comments dropped."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        lines.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


@pytest.fixture(scope="module")
def steps() -> list[tuple[str, str]]:
    return instructions((ROOT / "Dockerfile").read_text(encoding="utf-8"))


def stages(steps: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    out: list[list[tuple[str, str]]] = []
    for step in steps:
        if step[0] == "FROM":
            out.append([])
        if out:
            out[-1].append(step)
    return out


def args(steps: list[tuple[str, str]]) -> dict[str, str]:
    found = {}
    for kind, rest in steps:
        if kind == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            found[name] = value.strip('"')
    return found


def test_the_base_image_is_pinned_by_version_and_digest(steps) -> None:
    base = args(steps)["BASE"]
    assert PINNED.fullmatch(base), base
    froms = [rest.split()[0] for kind, rest in steps if kind == "FROM"]
    assert froms == ["${BASE}", "${BASE}"]  # both stages, the same pinned image


def test_oci_labels(steps) -> None:
    labels = dict(
        item.split("=", 1) for kind, rest in steps if kind == "LABEL" for item in shlex.split(rest)
    )
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    prefix = "org.opencontainers.image."
    assert labels[prefix + "title"] == "watcher"
    assert labels[prefix + "description"] == project["description"]
    assert labels[prefix + "licenses"] == project["license"]
    assert labels[prefix + "version"] == "${VERSION}"
    assert args(steps)["VERSION"] == project["version"]
    assert labels[prefix + "source"] == "${SOURCE_URL}"
    assert labels[prefix + "revision"] == "${REVISION}"
    assert args(steps)["BASE"].startswith(labels[prefix + "base.name"].rsplit("/", 1)[1] + "@")


def test_dependencies_are_layers_of_their_own_before_the_source(steps) -> None:
    build, runtime = stages(steps)
    order = [f"{kind} {rest}" for kind, rest in build]
    copy_project = order.index("COPY pyproject.toml ./")
    deps = next(i for i, s in enumerate(order) if "pip wheel --wheel-dir /deps" in s)
    source = next(i for i, s in enumerate(order) if s.startswith("COPY watcher "))
    app = next(i for i, s in enumerate(order) if "pip wheel --no-deps --wheel-dir /app ." in s)
    assert copy_project < deps < source < app
    assert not any(s.startswith("COPY") for s in order[copy_project + 1 : deps])
    installs = [rest for kind, rest in runtime if kind == "RUN" and "pip install" in rest]
    assert len(installs) == 2
    assert "source=/deps" in installs[0] and "-r /deps/requirements.txt" in installs[0]
    assert "source=/app" in installs[1] and "--no-deps" in installs[1]


def test_the_container_keeps_its_promises(steps) -> None:
    _, runtime = stages(steps)
    last = {kind: rest for kind, rest in runtime}
    assert last["USER"] == "10001:10001"
    assert last["VOLUME"] == '["/var/lib/watcher"]'
    assert "/healthz" in last["HEALTHCHECK"]
    env = " ".join(rest for kind, rest in runtime if kind == "ENV")
    for setting in ("PYTHONDONTWRITEBYTECODE=1", "TMPDIR=/var/lib/watcher",
                    "WATCHER_STATE_PATH=/var/lib/watcher/state.db"):  # fmt: skip
        assert setting in env
    assert last["ENTRYPOINT"] == '["watcher"]' and last["CMD"] == '["run"]'
    assert all("--compile" in rest for kind, rest in runtime if "pip install" in rest)
