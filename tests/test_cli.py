"""The `watcher` command: exit codes, one-line errors, and each subcommand against the simulator."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from watcher.cli import main
from watcher.store import Store
from watcher_sim import World

from .conftest import served_in_a_thread
from .processes import ROOT, environment

KEY = "cli-secret-key-42"


@pytest.fixture
def sim() -> Iterator[tuple[World, str]]:
    """The simulator on 127.0.0.1, served from its own thread so the CLI can run its own loop."""
    world = World()
    world.api_keys = {KEY}
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    with served_in_a_thread(world) as url:
        yield world, url


def write_config(tmp_path: Path, base_url: str, **source: object) -> Path:
    extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in source.items())
    path = tmp_path / "watcher.toml"
    path.write_text(
        f"""
[watcher]
state_path = "{tmp_path / "state.db"}"
events_path = "{tmp_path / "events.jsonl"}"
log_format = "json"

[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "{base_url}"
api_key = "${{TEST_WATCHER_KEY}}"
retries = 0
timeout = 5
{extra}"""
    )
    return path


@pytest.fixture(autouse=True)
def key_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_WATCHER_KEY", KEY)


def test_bad_config_exits_2_with_one_line_per_problem(tmp_path: Path, capsys) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        """
[[sources]]
name = "cloud"
kind = "sequentum_cloud"
base_url = "not a url"
api_key = "canary-secret-123"
poll_interval = "often"
"""
    )
    assert main(["--config", str(path), "once"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "watcher: sources[0].base_url: not a URL",
        "watcher: sources[0].poll_interval: must be a number",
    ]


def test_missing_config_exits_2(tmp_path: Path, capsys) -> None:
    assert main(["--config", str(tmp_path / "nope.toml"), "check"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("watcher: config: ") and "nope.toml" in line


def test_config_without_sources_exits_2(tmp_path: Path, capsys) -> None:
    path = tmp_path / "w.toml"
    path.write_text('[watcher]\nstate_path = "/tmp/x.db"\n')
    assert main(["--config", str(path), "run"]) == 2
    assert "sources: no source configured" in capsys.readouterr().err


def test_once_check_and_status(sim, tmp_path: Path, capsys) -> None:
    world, url = sim
    config = write_config(tmp_path, url)
    assert main(["--config", str(config), "once"]) == 0
    world.add_run(2537, status=6, run_id=101, message="Timeout waiting for page")
    assert main(["--config", str(config), "once"]) == 0
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["type"] for e in events] == ["source.baselined", "run.discovered", "run.finished"]

    assert main(["--config", str(config), "check"]) == 0
    out = capsys.readouterr().out
    assert "config   ok" in out and "cloud    ok" in out

    assert main(["--config", str(config), "status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["SOURCE", "KIND", "HEALTH", "FAILING", "SINCE", "LAST", "SUCCESS",
                                "LAST", "ERROR"]  # fmt: skip
    assert table[1].split()[:4] == ["cloud", "sequentum_cloud", "ok", "-"]
    at = table.index("") + 1
    assert table[at].split() == ["SOURCE", "AGENT", "NAME", "RUN", "STATUS", "PHASE", "OUTCOME",
                                 "MARKS", "ENDED", "IN", "A", "ROW", "LAST", "SUCCESS"]  # fmt: skip
    assert table[at + 1].split()[:8] == ["cloud", "2537", "steam", "101", "Failure", "finished",
                                         "failure", "-"]  # fmt: skip
    streak, success = table[at + 1].split()[-2:]
    assert streak == "1" and success.endswith("Z")  # a failure in a row since run 100's success


def test_once_exits_1_when_a_source_fails(sim, tmp_path: Path, capsys) -> None:
    world, url = sim
    config = write_config(tmp_path, url)
    world.api_keys = {"another-key"}
    assert main(["--config", str(config), "once"]) == 1
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.startswith("watcher: ")]
    assert lines == [
        "watcher: cloud: GET /api/v1/agent/all: HTTP 401 Unauthorized: Invalid API key."
    ] or (len(lines) == 1 and "HTTP 401" in lines[0])
    assert KEY not in captured.err and KEY not in captured.out

    assert main(["--config", str(config), "check"]) == 1
    out = capsys.readouterr().out
    assert "cloud    FAIL" in out and "HTTP 401" in out and KEY not in out


def test_check_reports_an_unreachable_host(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["--config", str(config), "check"]) == 1
    assert "cannot connect to 127.0.0.1:9" in capsys.readouterr().out


def test_status_before_any_poll(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9")
    assert main(["--config", str(config), "status"]) == 0
    assert "no state yet" in capsys.readouterr().out
    assert main(["--config", str(config), "status", "--json"]) == 0  # the same view, empty
    view = json.loads(capsys.readouterr().out)
    assert [(s["name"], s["health"]) for s in view["sources"]] == [("cloud", "never polled")]
    assert view["agents"] == [] and view["events"] == [] and view["outbox"] == []
    assert not (tmp_path / "state.db").exists()


def test_status_json_lists_health_failing_since_and_streaks(sim, tmp_path: Path, capsys) -> None:
    world, url = sim
    config = write_config(tmp_path, url)
    assert main(["--config", str(config), "once"]) == 0
    for run_id in (101, 102):
        world.add_run(2537, status=6, run_id=run_id)
        assert main(["--config", str(config), "once"]) == 0
    world.api_keys = {"another-key"}
    assert main(["--config", str(config), "once"]) == 1  # the source fails
    capsys.readouterr()

    assert main(["--config", str(config), "status", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    [source] = view["sources"]
    assert (source["name"], source["health"]) == ("cloud", "failing")
    assert source["failing_since"] is not None and "HTTP 401" in source["last_error"]
    assert source["budget"] == {"per_minute": 90, "rate": None, "spent": None}  # not running
    [agent] = view["agents"]
    assert (agent["agent_id"], agent["name"], agent["run_id"]) == ("2537", "steam", "102")
    assert (agent["state"], agent["failures_in_a_row"]) == ("failure", 2)
    assert agent["failing_since"] is not None and agent["last_success"] is not None
    assert view["events"][0]["type"] == "source.failed"  # newest first
    assert view["totals"]["failing_agents"] == 1 and KEY not in json.dumps(view)

    for pattern in ("steam", "STEAM", "2537", "st*"):
        assert main(["--config", str(config), "status", "--json", "--agent", pattern]) == 0
        assert len(json.loads(capsys.readouterr().out)["agents"]) == 1
    assert main(["--config", str(config), "status", "--agent", "steam", "--source", "cloud"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.split()[:4] == ["cloud", "2537", "steam", "102"] for line in lines)


def test_status_filters_that_name_nothing_exit_2_in_one_line(sim, tmp_path: Path, capsys) -> None:
    _, url = sim
    config = write_config(tmp_path, url)
    with config.open("a") as f:
        f.write(
            '\n[[sources]]\nname = "acc"\nkind = "sequentum_acc"\nbase_url = "http://127.0.0.1:9"'
            '\napi_key = "${TEST_WATCHER_KEY}"\nagents = ["sequentum/Test2/quick"]\n'
        )
    for args in (["status"], ["status", "--json"]):
        assert main(["--config", str(config), *args, "--source", "nope"]) == 2
        err = capsys.readouterr().err
        assert err == "watcher: --source nope: no such source (have: cloud, acc)\n"
        # Before any poll too: an agent neither configured nor recorded is still a usage error.
        assert main(["--config", str(config), *args, "--agent", "nope"]) == 2
        err = capsys.readouterr().err
        assert err == "watcher: --agent nope: no such agent (have: sequentum/Test2/quick)\n"
    assert not (tmp_path / "state.db").exists()
    assert main(["--config", str(config), "once"]) == 1  # the ACC cannot be reached
    capsys.readouterr()
    assert main(["--config", str(config), "status", "--agent", "nope"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "watcher: --agent nope: no such agent (have: sequentum/Test2/quick, steam (2537))\n"
    )
    assert main(["--config", str(config), "status", "--agent", "sequentum/Test2/quick"]) == 0


def _spawn(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parent.parent
    return subprocess.Popen(
        [sys.executable, "-m", "watcher", *args],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {}), "PYTHONPATH": str(root)},
    )


def test_daemon_stops_cleanly_on_sigterm(sim, tmp_path: Path) -> None:
    _, url = sim
    config = write_config(tmp_path, url, poll_interval=5, poll_interval_active=1)
    proc = _spawn(["--config", str(config), "run"], {"TEST_WATCHER_KEY": KEY})
    events = tmp_path / "events.jsonl"
    deadline = time.monotonic() + 20
    while not (events.exists() and events.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert events.exists(), proc.stderr.read() if proc.poll() is not None else "no events"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert time.monotonic() - started < 10
    lines = [json.loads(line) for line in err.splitlines()]
    assert lines[-1]["event"] == "watcher stopped"
    assert all("level" in line and "timestamp" in line for line in lines)
    assert KEY not in err
    store = Store.open(tmp_path / "state.db")
    try:
        assert store.integrity_check() == "ok"
        assert store.outbox_depth() == 0  # everything delivered before exit
        assert store.known_agents("cloud") == {"2537"}
    finally:
        store.close()


def test_demo_shows_success_failure_and_stopped_and_serves_its_status_page() -> None:
    proc = _spawn(["demo", "--duration", "10", "--tick", "0.3", "--log-format", "json"])
    assert proc.stderr is not None
    head = []
    for line in proc.stderr:  # until the endpoint says where it listens
        head.append(line)
        if '"http endpoint listening"' in line:
            page = json.loads(line)["status_page"]
            break
    assert page.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(page, timeout=10) as answer:
        assert answer.status == 200 and "<title>" in answer.read().decode()
    _, rest = proc.communicate(timeout=60)
    err = "".join(head) + rest
    assert proc.returncode == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    outcomes = {e.get("outcome") for e in events if e.get("event") == "run.finished"}
    assert {"success", "failure", "stopped"} <= outcomes
    # And what no status shows: a run that hangs, a success without records, a missed start.
    found = {(e["event"], e.get("agent_name")) for e in events if "event" in e}
    assert ("run.stuck", "slow-crawler") in found
    assert ("run.anomaly", "empty-export") in found
    assert ("agent.missed_schedule", "minutely-report") in found


def test_the_process_entry_freezes_what_the_imports_built() -> None:
    # `watcher` and `python -m watcher` go through `entry`; tests call `main` and freeze nothing.
    script = (
        "import gc, sys\n"
        "from watcher.cli import entry\n"
        "sys.argv = ['watcher', 'completion', 'bash']\n"
        "code = entry()\n"
        "print(code, gc.get_freeze_count() > 10_000, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.stderr.split() == ["0", "True"]
    assert "complete" in done.stdout
    assert (
        'watcher = "watcher.cli:entry"'
        in (Path(__file__).parents[1] / "pyproject.toml").read_text()
    )


LAZY = "{'apprise', 'jinja2', 'prometheus_client', 'apscheduler'}"


def test_once_imports_only_what_its_config_uses(sim, tmp_path: Path) -> None:
    """No subscription, no [http] listen, no outputs: `watcher once` loads no alert library,
    template engine, scheduler, metrics or web server — neither on a first start nor when a
    failure is news."""
    world, url = sim
    config = write_config(tmp_path, url)
    script = (
        "import sys\n"
        "from watcher.cli import main\n"
        f"code = main(['--config', {str(config)!r}, 'once'])\n"
        f"print(code, sorted(m for m in sys.modules if m.split('.')[0] in {LAZY}\n"
        "                    or m.startswith('aiohttp.web')))\n"
    )

    def once() -> list[str]:
        done = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout.splitlines() or [done.stderr]

    assert once() == ["0 []"]  # the first start: the agents' history is recorded
    world.add_run(2537, status=6, run_id=101)
    assert once() == ["0 []"]  # a failure is news: an event, with its diagnostics
    assert '"run.finished"' in (tmp_path / "events.jsonl").read_text()
