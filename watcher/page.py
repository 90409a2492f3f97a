"""The status page (`/`) and its JSON twin (`/api/status`), served by the HTTP endpoint.

The page is rendered on the server from the view (`watcher.view`) with Jinja2, autoescaping
every value — they come from platforms and users. It carries everything it needs inline (its
CSS and script, no fonts, nothing from elsewhere), so it works on a closed network; a
Content-Security-Policy that allows only those two inline blocks, by hash, and requests to the
endpoint itself makes that a promise the browser keeps. The script keeps the page current: it
follows `/events` (server-sent events) and updates the agents (their runs and the rules' marks)
and the events as they happen, and every `REFRESH` seconds it renders the whole view again from
`/api/status`.

The templates are files in the package (`watcher/templates/`), shipped in the wheel.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

import jinja2
from aiohttp import web
from markupsafe import Markup

from watcher.durations import duration_of
from watcher.events import EventType

REFRESH = 15
"""Seconds between two renderings of the whole view from `/api/status`."""

EVENT_TYPES = tuple(EventType)
"""The event types the page listens for on `/events` (SSE delivers a named event only to a
listener of its name); any other type still appears with the next refresh."""

View = Callable[[], dict[str, Any]]


def _asset(name: str) -> str:
    return resources.files("watcher").joinpath("templates", name).read_text(encoding="utf-8")


def _csp_hash(text: str) -> str:
    digest = base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()
    return f"'sha256-{digest}'"


def when(value: str | None) -> str:
    """An ISO 8601 UTC moment as the page shows it before its script makes it relative."""
    if not value:
        return ""
    return value.replace("T", " ")[:19] + "Z"


def css_name(value: object) -> str:
    """A value as part of a CSS class name (as the script makes it too)."""
    return re.sub(r"[^a-z0-9_-]", "-", str(value).lower())


class StatusPage:
    """Renders the view as HTML and JSON; `routes()` are added to the endpoint's app."""

    def __init__(self, view: View) -> None:
        self._view = view
        env = jinja2.Environment(
            loader=jinja2.PackageLoader("watcher", "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        env.filters["when"] = when
        env.filters["duration"] = duration_of
        env.filters["css"] = css_name
        self._template = env.get_template("status.html")
        self._css = _asset("status.css")
        self._script = _asset("status.js")
        self.policy = (
            "default-src 'none'; "
            f"style-src {_csp_hash(self._css)}; script-src {_csp_hash(self._script)}; "
            "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'"
        )

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/", self._html), web.get("/api/status", self._json)]

    def render(self, view: dict[str, Any]) -> str:
        return self._template.render(
            view=view,
            css=Markup(self._css),
            script=Markup(self._script),
            refresh=REFRESH,
            event_types=" ".join(EVENT_TYPES),
        )

    def _headers(self) -> dict[str, str]:
        return {
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        }

    async def _html(self, request: web.Request) -> web.Response:
        headers = {**self._headers(), "Content-Security-Policy": self.policy}
        return web.Response(
            text=self.render(self._view()), content_type="text/html", headers=headers
        )

    async def _json(self, request: web.Request) -> web.Response:
        body = json.dumps(self._view(), ensure_ascii=False, separators=(",", ":"))
        return web.Response(text=body, content_type="application/json", headers=self._headers())
