"""`HttpClient.download`: streamed to a file, size-limited, hashed, retried like any request."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from aiohttp import web
from yarl import URL

from watcher.errors import SourceAuthError, SourceTooLarge, SourceUnavailable
from watcher.sources.http import HttpClient, RetryPolicy

from .conftest import NoSleep

BODY = bytes(range(256)) * 1200  # 300 kB


class Server:
    """A download endpoint that streams BODY in chunks, without Content-Length, and can fail."""

    def __init__(self) -> None:
        self.failures: list[int] = []  # statuses to answer before the real body
        self.headers: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.headers.append(dict(request.headers))
        if self.failures:
            return web.Response(status=self.failures.pop(0), text="busy")
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for at in range(0, len(BODY), 16_384):
            await response.write(BODY[at : at + 16_384])
        await response.write_eof()
        return response


@pytest.fixture
async def served(aiohttp_server) -> tuple[Server, URL]:
    server = Server()
    app = web.Application()
    app.router.add_get("/file", server.handle)
    running = await aiohttp_server(app, host="127.0.0.1")
    return server, URL(str(running.make_url("/file")))


async def download(http: HttpClient, url: URL, path: Path, **kw: object):
    with path.open("w+b") as out:
        return await http.download(
            url, out, source="s", headers={"Authorization": "ApiKey k"}, timeout=2,
            policy=RetryPolicy(retries=2), **kw,  # type: ignore[arg-type]
        )  # fmt: skip


async def test_streams_hashes_and_reports_progress(served, http: HttpClient, tmp_path) -> None:
    server, url = served
    seen: list[int] = []
    got = await download(http, url, tmp_path / "f", progress=seen.append)
    assert (got.size, got.sha256) == (len(BODY), hashlib.sha256(BODY).hexdigest())
    assert (tmp_path / "f").read_bytes() == BODY
    assert seen[-1] == len(BODY) and seen == sorted(seen)
    assert server.headers[0]["Authorization"] == "ApiKey k"
    assert server.headers[0]["Accept"] == "*/*"


async def test_a_body_past_the_limit_stops_while_streaming(
    served, http: HttpClient, tmp_path
) -> None:
    _, url = served
    with pytest.raises(SourceTooLarge, match="larger than the limit of 100000 bytes"):
        await download(http, url, tmp_path / "f", max_bytes=100_000)
    assert (tmp_path / "f").stat().st_size <= 100_000


async def test_temporary_failures_are_retried_from_the_start(
    served, http: HttpClient, no_sleep: NoSleep, tmp_path
) -> None:
    server, url = served
    server.failures = [503, 502]
    got = await download(http, url, tmp_path / "f")
    assert got.size == len(BODY) and (tmp_path / "f").read_bytes() == BODY
    assert len(no_sleep.delays) == 2 and len(server.headers) == 3


async def test_errors_are_typed(served, http: HttpClient, tmp_path) -> None:
    server, url = served
    server.failures = [503] * 5
    with pytest.raises(SourceUnavailable, match="GET /file: HTTP 503"):
        await download(http, url, tmp_path / "f")
    server.failures = [401]
    with pytest.raises(SourceAuthError, match="HTTP 401"):
        await download(http, url, tmp_path / "f")
