"""The status page in headless Chromium (Debian's, driven by Playwright for Python) against a
real App polling the simulator: it lists the agents, shows a failure made in the simulator
live — without a reload — filters the agents, renders the same rows again from /api/status,
reads on a phone, and asks for nothing but the endpoint itself.

Skipped, with the reason, where Playwright or Chromium is missing (`.ci/run` installs both).
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

try:
    from playwright.async_api import Browser, Page, async_playwright, expect
except ImportError:  # pragma: no cover - depends on the machine
    pytest.skip(
        "Playwright for Python is not installed (pip install -e '.[test]'): the status page "
        "is not tested in a browser",
        allow_module_level=True,
    )

from watcher.app import App
from watcher.config import HttpSection, RuleConfig, SubscriptionConfig
from watcher.sources.http import HttpClient
from watcher_sim import World

from .conftest import FakeClock, make_settings, source_config

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HOSTILE = "<script>alert(1)</script>"

if not os.access(CHROMIUM, os.X_OK):
    pytest.skip(
        f"no Chromium at {CHROMIUM} (apt-get install chromium): the status page is not "
        "tested in a browser",
        allow_module_level=True,
    )


@pytest.fixture
def fleet(world: World) -> World:
    world.add_agent(id=2537, name="steam")
    world.add_run(2537, status=9, run_id=100)
    world.add_agent(id=1596, name="amazon")
    world.add_run(1596, status=9, run_id=200)
    world.add_agent(id=7, name=HOSTILE)
    world.add_run(7, status=9, run_id=300)
    return world


@pytest.fixture
async def served(
    fleet: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, str]]:
    settings = make_settings(tmp_path, source_config(cloud_url))
    settings.http = HttpSection(listen="127.0.0.1:0")
    async with App(settings, clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        await app.once()
        yield app, f"http://{host}:{port}"


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        await browser.close()


class Watched:
    """A page, with everything it asked for and every problem it had."""

    def __init__(self, page: Page, base: str) -> None:
        self.page = page
        self.requests: list[str] = []
        self.problems: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.problems.append(f"error: {error}"))
        page.on("dialog", lambda dialog: self.problems.append(f"dialog: {dialog.message}"))
        page.on(
            "console",
            lambda m: self.problems.append(f"console: {m.text}") if m.type == "error" else None,
        )
        self.base = base

    async def open(self) -> Page:
        await self.page.goto(self.base + "/")
        await expect(self.page.locator("#live")).to_have_text("live")  # the stream is open
        return self.page

    def foreign(self) -> list[str]:
        return [url for url in self.requests if not url.startswith(self.base + "/")]


async def watched(browser: Browser, base: str, **context: Any) -> Watched:
    return Watched(await browser.new_page(**context), base)


def row(page: Page, agent: str):
    return page.locator(f'#agents tr[data-agent="{agent}"]')


async def test_a_failure_appears_live_without_a_reload(
    served, browser: Browser, fleet: World, clock: FakeClock
) -> None:
    app, base = served
    view = await watched(browser, base)
    page = await view.open()
    names = await page.locator("#agents tr td[data-label=Agent] b").all_text_contents()
    assert sorted(names) == sorted(["steam", "amazon", HOSTILE])  # shown as text, not run
    await page.evaluate("window.sameDocument = true")

    fleet.add_run(1596, status=6, run_id=201, message="Timeout waiting for page")
    clock.advance(60)
    await app.once()
    amazon = row(page, "1596")
    await expect(amazon.locator("td[data-label=Outcome]")).to_have_text("failure")
    await expect(amazon.locator('td[data-label="In a row"]')).to_have_text("1")
    await expect(amazon.locator("td[data-label=Run]")).to_contain_text("201")
    await expect(amazon.locator("td[data-label=Message]")).to_have_text("Timeout waiting for page")
    first = page.locator("#events li").first
    await expect(first).to_contain_text("run.finished")
    await expect(first).to_contain_text("amazon · run 201")
    await expect(page.locator("#totals")).to_contain_text("3 agents · 1 failing")

    fleet.inject("*", kind="http", status=503, times=-1)  # the source goes down
    for _ in range(2):  # and stays down past source_failed_after: source.failed
        clock.advance(200)
        await app.once()
    await expect(page.locator('#sources td[data-label="Health"]')).to_contain_text("failing")

    assert await page.evaluate("window.sameDocument") is True  # no reload happened
    assert view.problems == []
    assert view.foreign() == []


@pytest.fixture
def configured(
    fleet: World, tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient
) -> Callable[..., App]:
    """An App on the simulator serving its endpoint, with the given rules and subscriptions."""

    def build(*, rules: tuple[RuleConfig, ...] = (), subscriptions=()) -> App:
        settings = make_settings(tmp_path, source_config(cloud_url))
        settings.http = HttpSection(listen="127.0.0.1:0")
        settings.rules = list(rules)
        settings.subscriptions = list(subscriptions)
        return App(settings, clock=clock, http=http)

    return build


async def open_page(app: App, browser: Browser) -> Watched:
    host, port = await app.serve_http() or ("", 0)
    view = await watched(browser, f"http://{host}:{port}")
    await (await view.open()).evaluate("window.sameDocument = true")
    return view


async def same_after_a_refresh(page: Page) -> list[str]:
    """The agents rows as the live events left them, once the page has rendered the server's
    view again: the same."""
    [_, live, *_] = await page.evaluate(visible_text())
    await page.click("#refresh")
    await expect(page.locator("body")).to_have_attribute("data-refreshed", "1")
    [_, refreshed, *_] = await page.evaluate(visible_text())
    assert refreshed == live
    return live


async def test_a_stuck_run_is_marked_live_and_the_mark_goes_when_it_finishes(
    configured, browser: Browser, fleet: World, clock: FakeClock
) -> None:
    two_hours = RuleConfig(name="two-hours", agents=["steam"], max_duration="2h")
    async with configured(rules=[two_hours]) as app:
        await app.once()
        fleet.add_run(2537, status=1, run_id=101)  # steam starts
        clock.advance(60)
        await app.once()
        view = await open_page(app, browser)
        outcome = row(view.page, "2537").locator("td[data-label=Outcome]")
        await expect(outcome).to_have_text("running")

        clock.advance(7200)  # past its two hours
        await app.once()
        stuck = outcome.locator(".badge.m-stuck")
        await expect(stuck).to_have_text("stuck")
        assert (await stuck.get_attribute("title") or "").startswith("pending or running for 2h")
        await expect(outcome).to_contain_text("running")  # the run's own outcome stays
        assert "running stuck" in (await same_after_a_refresh(view.page))[1]
        await view.page.select_option("#filter-state", "stuck")
        await expect(view.page.locator("#agents tr:visible")).to_have_count(1)
        await expect(row(view.page, "2537")).to_be_visible()
        await view.page.select_option("#filter-state", "")

        fleet.set_status(2537, 101, 10)  # it finishes: no longer stuck
        clock.advance(60)
        await app.once()
        await expect(outcome).to_have_text("success")
        await expect(outcome.locator(".badge")).to_have_count(1)
        assert await view.page.evaluate("window.sameDocument") is True
        assert view.problems == [] and view.foreign() == []


async def test_a_missed_schedule_is_marked_live_and_the_mark_goes_when_a_run_starts(
    configured, browser: Browser, fleet: World, clock: FakeClock
) -> None:
    clock.t = clock.t.replace(minute=30)  # 12:30
    hourly = RuleConfig(name="hourly", agents=["amazon"], schedule="0 * * * *", grace="10m")
    async with configured(rules=[hourly]) as app:
        await app.once()
        view = await open_page(app, browser)
        outcome = row(view.page, "1596").locator("td[data-label=Outcome]")
        for _ in range(8):  # 12:30 → 13:10: the 13:00 slot passes its grace with no run
            clock.advance(300)
            await app.once()
        missed = outcome.locator(".badge.m-missed")
        await expect(missed).to_contain_text("missed")
        await expect(missed.locator("time")).to_have_attribute("datetime", "2026-11-23T13:00:00Z")
        assert "success missed 2026-11-23T13:00:00Z" in (await same_after_a_refresh(view.page))[0]

        fleet.add_run(1596, status=1, run_id=201)  # a run starts, late
        clock.advance(60)
        await app.once()
        await expect(outcome).to_have_text("running")
        assert await view.page.evaluate("window.sameDocument") is True
        assert view.problems == [] and view.foreign() == []


async def test_the_alerts_a_channel_holds_render_the_same_after_a_refresh(
    configured, browser: Browser, fleet: World, clock: FakeClock
) -> None:
    """A failure within a mute window (Mondays; 2026-11-23 is one) is held until it ends."""
    muted = SubscriptionConfig(name="ops", urls=["json://127.0.0.1:9/hook"], mute=["Mon"])
    async with configured(subscriptions=[muted]) as app:
        await app.once()
        fleet.add_run(1596, status=6, run_id=201)
        clock.advance(60)
        await app.once()
        view = await open_page(app, browser)
        page = view.page
        await expect(page.locator("#held-section")).to_be_visible()
        rendered = await page.evaluate(visible_text())
        await page.click("#refresh")
        await expect(page.locator("body")).to_have_attribute("data-refreshed", "1")
        assert await page.evaluate(visible_text()) == rendered
    held = rendered[4]
    assert held == ["ops: json://127.0.0.1:9/hook | 1 | muted | 2026-11-24T00:00:00Z"]
    assert view.problems == [] and view.foreign() == []


def visible_text() -> str:
    """A script returning what the page shows, row by row and cell by cell, each moment as its
    timestamp (the relative "5s ago" moves on with the browser's clock)."""
    return """() => {
        const text = (node) => {
            const copy = node.cloneNode(true);
            for (const t of copy.querySelectorAll('time')) t.textContent = t.dateTime;
            return copy.textContent.replace(/\\s+/g, ' ').trim();
        };
        const rows = (id) => [...document.getElementById(id).children].map(
            (r) => r.cells ? [...r.cells].map(text).join(' | ') : text(r));
        return ['sources', 'agents', 'events', 'outbox', 'held', 'silences'].map(rows)
            .concat([[text(document.getElementById('totals'))]]);
    }"""


async def test_filters_and_a_refresh_render_the_same_rows(
    served, browser: Browser, fleet: World, clock: FakeClock
) -> None:
    app, base = served
    fleet.add_run(1596, status=6, run_id=201)
    clock.advance(60)
    await app.once()
    view = await watched(browser, base)
    page = await view.open()

    await page.fill("#filter-name", "AMA")
    await expect(page.locator("#agents tr:visible")).to_have_count(1)
    await expect(row(page, "1596")).to_be_visible()
    await expect(page.locator("#shown")).to_have_text("1 of 3 shown")
    await page.fill("#filter-name", "")
    await page.select_option("#filter-state", "success")
    await expect(page.locator("#agents tr:visible")).to_have_count(2)
    await page.select_option("#filter-state", "failing")
    await expect(page.locator("#agents tr:visible")).to_have_count(1)
    await page.select_option("#filter-state", "")
    await expect(page.locator("#agents tr:visible")).to_have_count(3)

    rendered = await page.evaluate(visible_text())  # by the server (Jinja2)
    await page.click("#refresh")
    await expect(page.locator("body")).to_have_attribute("data-refreshed", "1")
    assert await page.evaluate(visible_text()) == rendered  # by the script, from /api/status
    assert rendered[-1] == ["3 agents · 1 failing · 0 sources failing · 0 waiting"]
    assert len(rendered[1]) == 3 and len(rendered[2]) == 3  # agents; events
    assert view.problems == [] and view.foreign() == []


async def test_the_page_reads_on_a_phone(served, browser: Browser) -> None:
    _, base = served
    view = await watched(browser, base, viewport={"width": 375, "height": 740}, is_mobile=True)
    page = await view.open()
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375  # nothing to scroll sideways
    cell = row(page, "2537").locator("td[data-label=Outcome]")
    assert await cell.evaluate("c => getComputedStyle(c, '::before').content") == '"Outcome"'
    box = await row(page, "2537").bounding_box()
    assert box is not None and box["width"] <= 375
    assert re.fullmatch(r"\d+ agents · .*", await page.locator("#totals").inner_text())
    assert view.problems == [] and view.foreign() == []
