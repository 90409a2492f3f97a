"""Silences over HTTP, on the daemon's endpoint (`[http] listen`):

    GET    /api/silences        every silence kept (active, pending, expired), newest first
    POST   /api/silences        a new one: {"matchers": {"source", "agent", "outcome", "type"},
                                "for": "2h" | "ends_at": ISO, "starts_at"?, "comment",
                                "created_by"} → 201 with the silence and its `id`
    DELETE /api/silences/{id}   expire it now → 200 with the silence

Reading is open like the rest of the endpoint. Writing silences alerts, so it takes
`Authorization: Bearer <token>` with the token in `[http] token_file`: 401 without one, 403
with a wrong one (compared in constant time), 403 for every write when no token_file is
configured. A bad request is 422 naming the field (`{"error": "matchers.outcome: …", "field":
"matchers.outcome"}`). The daemon writes with its own connection, from its event loop, like
every other write of the state file; the gate sees the change at its next decision.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Collection
from datetime import datetime
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web

from watcher.noise.silences import SilenceError, new_silence

if TYPE_CHECKING:
    from watcher.store import Store

log = structlog.get_logger("watcher.silences")

_FIELDS = {"matchers", "for", "ends_at", "starts_at", "comment", "created_by"}


class SilenceApi:
    def __init__(
        self,
        store: Callable[[], Store | None],
        *,
        token: str | None,
        sources: Callable[[], Collection[str]],
        clock: Callable[[], datetime],
    ) -> None:
        self._store = store
        self._token = token
        self._sources = sources
        self._clock = clock

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/silences", self._list)
        router.add_post("/api/silences", self._add)
        router.add_delete("/api/silences/{id}", self._expire)

    def _store_or_503(self) -> Store:
        store = self._store()
        if store is None:
            raise _error(503, "the state file is closed (shutting down)")
        return store

    async def _list(self, request: web.Request) -> web.Response:
        now = self._clock()
        silences = self._store_or_503().silences()
        return web.json_response({"silences": [s.to_dict(now) for s in silences]})

    async def _add(self, request: web.Request) -> web.Response:
        self._authorise(request)
        try:
            body = await request.json(loads=json.loads)
        except ValueError:
            raise _error(400, "the body must be JSON") from None
        now = self._clock()
        try:
            silence = new_silence(**_arguments(body), now=now, sources=self._sources())
        except SilenceError as err:
            raise _error(422, str(err), field=err.field) from None
        self._store_or_503().add_silence(silence)
        shown = silence.to_dict(now)
        log.info("silence added", silence_id=silence.id, matchers=silence.describe(),
                 ends_at=shown["ends_at"], created_by=silence.created_by)  # fmt: skip
        response = web.json_response(shown, status=201)
        response.headers["Location"] = f"/api/silences/{silence.id}"
        return response

    async def _expire(self, request: web.Request) -> web.Response:
        self._authorise(request)
        now = self._clock()
        wanted = request.match_info["id"]
        try:
            silence = self._store_or_503().expire_silence(wanted, now)
        except SilenceError as err:
            raise _error(422, str(err), field=err.field) from None
        if silence is None:
            raise _error(404, f"no silence {wanted[:40]}")
        log.info("silence expired", silence_id=silence.id)
        return web.json_response(silence.to_dict(now))

    def _authorise(self, request: web.Request) -> None:
        if self._token is None:
            raise _error(403, "silences are read-only here: set [http] token_file to allow writes")
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise _error(401, "Authorization: Bearer <token> required", bearer=True)
        if not hmac.compare_digest(given.strip().encode(), self._token.encode()):
            raise _error(403, "wrong token")


def _arguments(body: Any) -> dict[str, Any]:
    """The keyword arguments of `new_silence` from a request body."""
    if not isinstance(body, dict):
        raise _error(422, "body: must be a JSON object", field="body")
    unknown = sorted(set(body) - _FIELDS)
    if unknown:
        raise _error(422, f"{unknown[0]}: unknown field", field=unknown[0])
    return {
        "matchers": body.get("matchers"),
        "duration": body.get("for"),
        "ends_at": body.get("ends_at"),
        "starts_at": body.get("starts_at"),
        "comment": body.get("comment"),
        "created_by": body.get("created_by"),
    }


def _error(
    status: int, message: str, *, field: str | None = None, bearer: bool = False
) -> web.HTTPException:
    """An HTTP error with a JSON body saying what is wrong (and which field)."""
    body: dict[str, str] = {"error": message}
    if field is not None:
        body["field"] = field
    headers = {"WWW-Authenticate": 'Bearer realm="watcher"'} if bearer else None
    return _CLASSES[status](text=json.dumps(body), content_type="application/json", headers=headers)


_CLASSES: dict[int, type[web.HTTPException]] = {
    400: web.HTTPBadRequest,
    401: web.HTTPUnauthorized,
    403: web.HTTPForbidden,
    404: web.HTTPNotFound,
    422: web.HTTPUnprocessableEntity,
    503: web.HTTPServiceUnavailable,
}
