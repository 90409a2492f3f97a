"""systemd/watcher.service: the directives the daemon relies on, `systemd-analyze verify`, and
the sandboxing score of `systemd-analyze security --offline=true` (at most 2.0)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "watcher.service"
MAX_EXPOSURE = 2.0
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None,
    reason="systemd-analyze is not installed (Debian package 'systemd'; .ci/run installs it "
    "when apt-get can)",
)


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """Sections → key → every value given (systemd allows a key more than once)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"a directive outside any section: {line}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


@pytest.fixture(scope="module")
def service() -> dict[str, list[str]]:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert set(unit) == {"Unit", "Service", "Install"}
    return unit["Service"]


def one(service: dict[str, list[str]], key: str) -> str:
    values = service.get(key, [])
    assert len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def test_the_daemon_contract(service) -> None:
    assert one(service, "Type") == "notify"
    assert one(service, "NotifyAccess") == "main"
    assert re.fullmatch(r"[1-9][0-9]*s?", one(service, "WatchdogSec"))
    assert one(service, "Restart") == "on-failure"
    assert one(service, "RestartPreventExitStatus") == "2"  # an invalid config stays down
    assert one(service, "ExecReload") == "/bin/kill -HUP $MAINPID"
    start = one(service, "ExecStart").split()
    assert start[:2] == ["/usr/bin/env", "watcher"] and start[-1] == "run"
    assert "/etc/watcher/watcher.toml" in start  # in ConfigurationDirectory=watcher


def test_state_config_secrets_and_umask(service) -> None:
    assert one(service, "StateDirectory") == "watcher"
    assert one(service, "ConfigurationDirectory") == "watcher"
    assert one(service, "UMask") == "0077"
    name, _, path = one(service, "LoadCredential").partition(":")
    assert name == "sequentum" and path.startswith("/")  # read as api_key_file = "sequentum"


def test_config_example_names_the_credential_the_unit_loads() -> None:
    example = (UNIT.parent.parent / "config.example.toml").read_text(encoding="utf-8")
    assert "LoadCredential=sequentum:" in example and 'api_key_file = "sequentum"' in example


@needs_analyze
def test_systemd_analyze_verify_passes() -> None:
    result = subprocess.run(
        [str(ANALYZE), "verify", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr


@needs_analyze
def test_systemd_analyze_security_score_is_at_most_2() -> None:
    result = subprocess.run(
        [str(ANALYZE), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for watcher\.service: ([0-9.]+)", result.stdout)
    assert match, result.stdout[-500:]
    assert float(match.group(1)) <= MAX_EXPOSURE, result.stdout
