"""/api/silences on the daemon's endpoint, in-process against a real App: reads are open,
writes need the bearer token of `[http] token_file`, bad requests name their field."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from watcher.app import App
from watcher.config import HttpSection, Settings
from watcher.sources.http import HttpClient

from .conftest import FakeClock, make_settings, source_config

TOKEN = "silence-token-4f9a1c2e7b"
SILENCE = {
    "matchers": {"agent": "amazon-*", "outcome": "failure"},
    "for": "2h",
    "comment": "deploying the new parser",
    "created_by": "alice",
}


def settings_with(tmp_path: Path, cloud_url: str, token: str | None) -> Settings:
    settings = make_settings(tmp_path, source_config(cloud_url))
    token_file = None
    if token is not None:
        token_file = tmp_path / "http.token"
        token_file.write_text(token + "\n")
    settings.http = HttpSection(listen="127.0.0.1:0", token_file=token_file)
    return settings


@pytest.fixture
async def served(
    tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient
) -> AsyncIterator[tuple[App, str]]:
    async with App(settings_with(tmp_path, cloud_url, TOKEN), clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        yield app, f"http://{host}:{port}/api/silences"


@pytest.fixture
async def client() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def call(
    client: aiohttp.ClientSession, method: str, url: str, **kw: object
) -> tuple[int, dict]:
    async with client.request(method, url, **kw) as response:  # type: ignore[arg-type]
        return response.status, await response.json(content_type=None)


async def test_writes_need_the_token_reads_do_not(served, client, clock: FakeClock) -> None:
    app, url = served
    assert await call(client, "POST", url, json=SILENCE) == (
        401,
        {"error": "Authorization: Bearer <token> required"},
    )
    wrong = await call(client, "POST", url, json=SILENCE, headers=bearer("not-the-token"))
    assert wrong == (403, {"error": "wrong token"})
    status, made = await call(client, "POST", url, json=SILENCE, headers=bearer(TOKEN))
    assert status == 201 and len(made["id"]) == 36
    assert made["matchers"] == {"agent": "amazon-*", "outcome": "failure"}
    assert (made["state"], made["created_by"], made["comment"]) == (
        "active",
        "alice",
        "deploying the new parser",
    )
    assert made["ends_at"] == "2026-11-23T14:00:00Z"
    assert await call(client, "GET", url) == (200, {"silences": [made]})  # no token needed
    assert app.store is not None and [s.id for s in app.store.silences()] == [made["id"]]

    assert (await call(client, "DELETE", f"{url}/{made['id']}"))[0] == 401
    clock.advance(60)
    status, expired = await call(client, "DELETE", f"{url}/{made['id']}", headers=bearer(TOKEN))
    assert (status, expired["state"], expired["ends_at"]) == (
        200,
        "expired",
        "2026-11-23T12:01:00Z",
    )
    missing = await call(client, "DELETE", f"{url}/no-such-silence", headers=bearer(TOKEN))
    assert missing == (404, {"error": "no silence no-such-silence"})


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        ({"matchers": {"outcome": "failed"}}, "matchers.outcome", "must be one of success"),
        ({"matchers": {"agnet": "x"}}, "matchers.agnet", "unknown matcher"),
        ({"matchers": {}}, "matchers", "give at least one of"),
        ({"matchers": {"source": "acc"}}, "matchers.source", 'unknown source "acc"'),
        ({"for": "2 hours"}, "for", "not a duration"),
        ({"for": 1e308}, "for", "too long"),
        ({"for": float("nan")}, "for", "must be a finite number"),
        ({"for": "1h", "starts_at": "9999-12-31T23:30:00Z"}, "for", "too long"),
        ({"for": None, "ends_at": "tomorrow"}, "ends_at", "must be an ISO 8601 time"),
        ({"for": None, "ends_at": "2026-11-23T11:00:00Z"}, "ends_at", "must be after the start"),
        ({"ends_at": "2026-11-24T00:00:00Z"}, "for", "give either for"),
        ({"comment": ""}, "comment", "required"),
        ({"created_by": None}, "created_by", "required"),
        ({"until": "2h"}, "until", "unknown field"),
    ],
)
async def test_a_bad_silence_is_422_naming_the_field(
    served, client, change: dict, field: str, error: str
) -> None:
    _, url = served
    body = {**SILENCE, **change}
    status, answer = await call(client, "POST", url, json=body, headers=bearer(TOKEN))
    assert status == 422 and answer["field"] == field
    assert answer["error"].startswith(f"{field}: ") and error in answer["error"]


async def test_a_body_that_is_not_json_is_400(served, client) -> None:
    _, url = served
    status, answer = await call(client, "POST", url, data=b"{", headers=bearer(TOKEN))
    assert (status, answer) == (400, {"error": "the body must be JSON"})


async def test_without_a_token_file_silences_are_read_only(
    tmp_path: Path, cloud_url: str, clock: FakeClock, http: HttpClient, client
) -> None:
    async with App(settings_with(tmp_path, cloud_url, None), clock=clock, http=http) as app:
        host, port = await app.serve_http() or ("", 0)
        url = f"http://{host}:{port}/api/silences"
        status, answer = await call(client, "POST", url, json=SILENCE, headers=bearer(TOKEN))
        assert status == 403 and "set [http] token_file" in answer["error"]
        assert await call(client, "GET", url) == (200, {"silences": []})


def test_a_token_file_that_is_missing_or_short_is_a_config_error(tmp_path: Path) -> None:
    from watcher.config import load_settings
    from watcher.errors import ConfigError

    config = tmp_path / "watcher.toml"
    (tmp_path / "short").write_text("abc")
    for name, problem in (
        ("nope", f"http.token_file: cannot read {tmp_path / 'nope'}: No such file or directory"),
        ("short", f"http.token_file: {tmp_path / 'short'} must hold a token of 16 characters"),
    ):
        config.write_text(
            f'[http]\nlisten = "127.0.0.1:0"\ntoken_file = "{name}"\n[[sources]]\n'
            'name = "cloud"\nkind = "sequentum_cloud"\nbase_url = "http://x"\napi_key = "k"\n'
        )
        with pytest.raises(ConfigError) as caught:
            load_settings(config, {})
        [line] = caught.value.problems
        assert line.startswith(problem)
