"""The status page (`/`), its JSON twin (`/api/status`) and `watcher status --json`: one view,
against a real App polling the simulator, rendered with every platform value escaped and
nothing loaded from anywhere but the endpoint itself. (The page in a real browser:
test_status_browser.py.)"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest

from watcher.app import App
from watcher.config import HttpSection, RuleConfig, Settings, SubscriptionConfig
from watcher.noise.silences import Silence
from watcher.page import StatusPage
from watcher.sources.http import HttpClient
from watcher.status_cli import status_command
from watcher.view import safe_link
from watcher_sim import World

from .conftest import FakeClock, make_settings, source_config

HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def fleet(world: World) -> World:
    """Three agents: steam (succeeds), amazon (fails twice), and one with a hostile name."""
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    world.add_agent(id=1596, name="amazon")
    world.add_run(1596, status=9, run_id=200)
    world.add_agent(id=7, name=HOSTILE)
    world.add_run(7, status=9, run_id=300)
    return world


@pytest.fixture
def settings(tmp_path: Path, cloud_url: str) -> Settings:
    dashboard = "https://dash.example/{agent_id}/{run_id}?n={agent_name}"
    settings = make_settings(tmp_path, source_config(cloud_url, dashboard_url=dashboard))
    settings.http = HttpSection(listen="127.0.0.1:0")
    return settings


@pytest.fixture
async def served(
    fleet: World, settings: Settings, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, str]]:
    """An App that has polled twice — amazon failed twice in a row in between — serving its
    endpoint on a free port."""
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        await app.once()
        for run_id in (201, 202):
            fleet.add_run(1596, status=6, run_id=run_id, message=f"Timeout <b>{run_id}</b>")
            clock.advance(60)
            await app.once()
        yield app, f"http://{host}:{port}"


@pytest.fixture
async def ruled(
    fleet: World, settings: Settings, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, str]]:
    """From 12:30, rules watch steam's runs (2 h at most) and amazon's hourly schedule (10
    minutes' grace); by 14:35 steam's run 101, started at 12:30, is stuck, and amazon missed
    its 13:00 and 14:00 slots."""
    clock.t = clock.t.replace(minute=30)
    settings.rules = [
        RuleConfig(name="two-hours", agents=["steam"], max_duration="2h"),
        RuleConfig(name="hourly", agents=["amazon"], schedule="0 * * * *", grace="10m"),
    ]
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        await app.once()
        fleet.add_run(2537, status=1, run_id=101)
        for _ in range(25):
            clock.advance(300)
            await app.once()
        yield app, f"http://{host}:{port}"


def marks_of(view: dict) -> dict[str, list[dict]]:
    return {a["name"]: a["marks"] for a in view["agents"]}


def row_of(html: str, agent: int) -> str:
    found = re.search(rf'<tr data-source="cloud" data-agent="{agent}">(.*?)</tr>', html, re.S)
    assert found is not None, f"no row of agent {agent}"
    return found[1]


async def test_a_stuck_run_and_a_missed_schedule_mark_their_agents_until_they_clear(
    ruled, fleet: World, clock: FakeClock, settings: Settings
) -> None:
    app, base = ruled
    _, _, text = await fetch(f"{base}/api/status")
    live = json.loads(text)
    marks = marks_of(live)
    [stuck] = marks["steam"]
    assert stuck == {
        "mark": "stuck",
        "since": stuck["since"],
        "run_id": "101",
        "message": "pending or running for 2h 5m, past max_duration 2h 0m",
    }
    assert "2026-11-23T14:30:00Z" < stuck["since"] <= "2026-11-23T14:35:00Z"
    [missed] = marks["amazon"]  # the latest slot missed
    assert missed == {
        "mark": "missed",
        "since": missed["since"],
        "expected_at": "2026-11-23T14:00:00Z",
        "schedule": "0 * * * * UTC",
        "message": "no run started within 10m 0s of 2026-11-23T14:00:00Z (0 * * * * UTC)",
    }
    assert marks[HOSTILE] == []
    _, _, html = await fetch(f"{base}/")
    steam, amazon = row_of(html, 2537), row_of(html, 1596)
    assert '<span class="badge m-stuck"' in steam and "m-missed" not in steam
    assert '<span class="badge m-missed"' in amazon and "m-stuck" not in amazon
    assert 'datetime="2026-11-23T14:00:00Z"' in amazon  # the slot it missed
    assert "m-stuck" not in row_of(html, 7) and "m-missed" not in row_of(html, 7)
    out = io.StringIO()  # `watcher status --json`, from the state file: the same marks
    assert status_command(settings, as_json=True, out=out, now=clock()) == 0
    assert marks_of(json.loads(out.getvalue())) == marks

    fleet.set_status(2537, 101, 10)  # steam's run finishes
    fleet.add_run(1596, status=1, run_id=203)  # amazon's starts, late
    clock.advance(60)
    await app.once()
    _, _, text = await fetch(f"{base}/api/status")
    assert set(map(len, marks_of(json.loads(text)).values())) == {0}
    _, _, html = await fetch(f"{base}/")
    rows = html.split('<tbody id="agents">', 1)[1].split("</tbody>", 1)[0]
    assert rows.count("<tr ") == 3 and "m-stuck" not in rows and "m-missed" not in rows


async def fetch(url: str) -> tuple[int, dict[str, str], str]:
    async with aiohttp.ClientSession() as client, client.get(url) as response:
        return response.status, dict(response.headers), await response.text()


async def test_the_json_view_lists_sources_agents_streaks_and_events(served) -> None:
    _, base = served
    status, headers, text = await fetch(f"{base}/api/status")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    view = json.loads(text)
    [source] = view["sources"]
    assert source["name"] == "cloud" and source["health"] == "ok" and not source["stale"]
    assert source["last_success"] == "2026-11-23T12:02:00Z" and source["failing_since"] is None
    assert source["budget"] == {"per_minute": 90, "rate": 90, "spent": source["budget"]["spent"]}
    assert source["budget"]["spent"] > 0 and source["mode"] == "hints"
    agents = {a["name"]: a for a in view["agents"]}
    assert agents.keys() == {"steam", "amazon", HOSTILE}
    amazon = agents["amazon"]
    assert (amazon["run_id"], amazon["state"], amazon["failures_in_a_row"]) == ("202", "failure", 2)
    assert amazon["failing_since"] is not None and amazon["last_success"] is not None
    assert amazon["url"] == "https://dash.example/1596/202?n=amazon"
    assert agents["steam"]["failures_in_a_row"] == 0 and agents["steam"]["state"] == "success"
    types = [e["type"] for e in view["events"]]
    assert types[:2] == ["run.finished", "run.discovered"]  # newest first
    assert types[-1] == "source.baselined" and len(types) == 5
    assert view["events"][0]["failures_in_a_row"] == 2
    totals = {"agents": 3, "failing_agents": 1, "failing_sources": 0, "outbox": 0, "held": 0}
    assert view["totals"] == totals
    assert view["silences"] == [] and view["outbox"] == []


async def test_the_page_escapes_every_value_and_loads_nothing_from_elsewhere(served) -> None:
    _, base = served
    status, headers, html = await fetch(f"{base}/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert HOSTILE not in html  # not in the markup, nor in the embedded JSON
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html  # shown, as text
    assert "Timeout &lt;b&gt;202&lt;/b&gt;" in html
    assert 'href="https://dash.example/1596/202?n=amazon"' in html
    assert not re.search(r"\bsrc=", html.replace("src=x", ""))  # no script, image or font
    assert "<link" not in html.replace('<link rel="icon" href="data:,">', "")
    assert "@import" not in html and "url(" not in html

    # The browser may run the inline script and style, and nothing else; it may connect only
    # to the endpoint itself.
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("default-src 'none';") and "connect-src 'self'" in policy
    for tag, directive in (("style", "style-src"), ("script", "script-src")):
        [inline] = re.findall(rf"<{tag}>(.*?)</{tag}>", html, re.S)
        digest = base64.b64encode(hashlib.sha256(inline.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in policy
    assert headers["X-Content-Type-Options"] == "nosniff"


async def test_the_page_shows_what_the_view_says(served) -> None:
    _, base = served
    _, _, html = await fetch(f"{base}/")
    rows = re.findall(r'<tr data-source="cloud" data-agent="(\d+)">(.*?)</tr>', html, re.S)
    assert [agent for agent, _ in rows] == ["1596", "2537", "7"]
    amazon = rows[0][1]
    assert 'class="badge s-failure">failure<' in amazon and 'class="bad">2<' in amazon
    assert re.search(r'<tr data-source="cloud">.*badge h-ok">ok<', html, re.S)
    assert html.count('<li data-id="') == 5
    assert 'id="silences-section" hidden' in html  # no silences: no section
    embedded = re.search(r'<script type="application/json" id="view">(.*?)</script>', html, re.S)
    assert embedded is not None and len(json.loads(embedded[1])["agents"]) == 3


async def test_a_silence_in_force_is_in_the_view_and_on_the_page(served, clock) -> None:
    app, base = served
    now = clock()
    app.store.add_silence(
        Silence(
            id="5e1f2a9c0d3b4e6f",
            matchers={"agent": "amazon", "outcome": "failure"},
            starts_at=now,
            ends_at=now + timedelta(hours=2),
            comment="new parser <b>",
            created_by="alice",
            created_at=now,
        )
    )
    _, _, text = await fetch(f"{base}/api/status")
    [silence] = json.loads(text)["silences"]
    assert (silence["id"], silence["state"]) == ("5e1f2a9c0d3b4e6f", "active")
    assert silence["matchers"] == "agent=amazon outcome=failure"
    assert silence["ends_at"] == "2026-11-23T14:02:00Z" and silence["created_by"] == "alice"
    _, _, html = await fetch(f"{base}/")
    section = html.split('id="silences-section"', 1)[1].split("</section>", 1)[0]
    assert not section.startswith(" hidden") and "agent=amazon outcome=failure" in section
    assert "new parser &lt;b&gt;" in section


async def test_watcher_status_shows_each_agents_marks_in_a_word(
    ruled, settings: Settings, clock: FakeClock
) -> None:
    out = io.StringIO()
    assert status_command(settings, out=out, now=clock()) == 0
    lines = out.getvalue().splitlines()
    header = next(line for line in lines if line.startswith("SOURCE  AGENT"))
    at = header.index("MARKS")
    rows = lines[lines.index(header) + 1 : lines.index(header) + 4]
    marks = {row.split()[1]: row[at:].split()[0] for row in rows}
    assert marks == {"1596": "missed:2026-11-23T14:00:00Z", "2537": "stuck:101", "7": "-"}


async def test_the_alerts_a_channel_holds_are_on_the_page(
    fleet: World, settings: Settings, clock: FakeClock, http: HttpClient
) -> None:
    """A failure within a mute window (Mondays; 2026-11-23 is one) is held until it ends."""
    settings.subscriptions = [
        SubscriptionConfig(name="ops", urls=["json://127.0.0.1:9/hook?token=s3cret"], mute=["Mon"])
    ]
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        await app.once()
        _, _, html = await fetch(f"http://{host}:{port}/")
        assert 'id="held-section" hidden' in html  # nothing held: no section
        fleet.add_run(1596, status=6, run_id=201)
        clock.advance(60)
        await app.once()
        _, _, text = await fetch(f"http://{host}:{port}/api/status")
        _, _, html = await fetch(f"http://{host}:{port}/")
    [held] = json.loads(text)["held"]
    assert held == {
        "channel": "ops: json://127.0.0.1:9/hook",
        "count": 1,
        "reason": "muted",
        "until": "2026-11-24T00:00:00Z",
    }
    section = html.split('id="held-section"', 1)[1].split("</section>", 1)[0]
    assert not section.startswith(" hidden")
    [row] = re.findall(r"<tr><td.*?</tr>", section)
    cells = re.findall(r'<td data-label="(\w+)">(.*?)</td>', row)
    assert cells == [
        ("Channel", "ops: json://127.0.0.1:9/hook"),
        ("Held", "1"),
        ("Why", "muted"),
        ("Until", '<time datetime="2026-11-24T00:00:00Z">2026-11-24 00:00:00Z</time>'),
    ]
    assert "s3cret" not in html


def test_silences_are_shown_when_there_are_any() -> None:
    view = {
        "version": "0",
        "generated_at": "2026-11-23T12:00:00Z",
        "totals": {"agents": 0, "failing_agents": 0, "failing_sources": 0, "outbox": 0},
        "sources": [],
        "agents": [],
        "events": [],
        "outbox": [],
        "held": [],
        "silences": [
            {
                "matchers": "agent=amazon-*",
                "ends_at": "2026-11-23T14:00:00Z",
                "comment": "maintenance <b>",
                "created_by": "ops",
            }
        ],
    }
    html = StatusPage(lambda: view).render(view)
    assert 'id="silences-section" hidden' not in html
    assert '<td data-label="Matchers">agent=amazon-*</td>' in html
    assert "maintenance &lt;b&gt;" in html


def test_only_http_links_are_kept() -> None:
    assert safe_link("https://dash.example/1") == "https://dash.example/1"
    assert safe_link("HTTP://dash.example/1") == "HTTP://dash.example/1"
    for bad in ("javascript:alert(1)", " javascript:alert(1)", "data:text/html,x", "//x", None):
        assert safe_link(bad) is None


async def test_watcher_status_json_is_the_same_view_read_from_the_state_file(
    served, settings: Settings, clock: FakeClock
) -> None:
    """`watcher status --json` reads the state file (read-only, beside the running App) and
    says what the endpoint says — but for what only the running daemon knows."""
    _, base = served
    _, _, text = await fetch(f"{base}/api/status")
    live = json.loads(text)
    out = io.StringIO()
    assert status_command(settings, as_json=True, out=out, now=clock()) == 0
    stored = json.loads(out.getvalue())
    for view in (live, stored):
        for source in view["sources"]:
            source["budget"].update(rate=None, spent=None)
            source.update(mode=None, sweep_age_s=None)
    assert stored == live


async def test_the_outbox_is_named_by_channel_without_the_query_string(
    fleet: World, settings: Settings, clock: FakeClock, http: HttpClient, tmp_path: Path
) -> None:
    settings.subscriptions = [
        SubscriptionConfig(name="ops", urls=["json://127.0.0.1:9/hook?token=s3cret-t0ken"])
    ]
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        await app.once()
        fleet.add_run(1596, status=6, run_id=201)
        clock.advance(60)
        await app.pollers[0].poll(force=True)  # recorded; not delivered yet
        clock.advance(30)
        _, _, text = await fetch(f"http://{host}:{port}/api/status")
        _, _, html = await fetch(f"http://{host}:{port}/")
    outbox = {t["channel"]: t for t in json.loads(text)["outbox"]}
    assert outbox.keys() == {"events file", "ops: json://127.0.0.1:9/hook"}
    assert outbox["ops: json://127.0.0.1:9/hook"]["depth"] == 1
    assert outbox["events file"]["oldest_age_s"] == 30
    assert "s3cret-t0ken" not in text and "s3cret-t0ken" not in html
    assert '<td data-label="Oldest">30s</td>' in html


def test_the_wheel_ships_the_page_templates(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("watcher-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in ("status.html", "status.css", "status.js"):
        assert f"watcher/templates/{name}" in names
