"""What the tests of the simulated Sequentum Cloud share: its key, a world of two agents, and
JSON read from it through aiohttp's test client."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiohttp.test_utils import TestClient

from watcher_sim import World

API = "/api/v1"
KEY = {"Authorization": "ApiKey sim-key"}
ClientFactory = Callable[..., Awaitable[TestClient[Any, Any]]]


def two_agents(clock: Callable[[], datetime], **amazon: Any) -> World:
    """A world on `clock` with the agents 2537 "steam" and 1596 "amazon-prices" (`amazon`:
    fields of the second)."""
    world = World(now=clock)
    world.add_agent(2537, "steam")
    world.add_agent(1596, "amazon-prices", **amazon)
    return world


async def get_json(client: TestClient[Any, Any], path: str, status: int = 200) -> Any:
    """GET `path` with the simulator's key; its JSON, once its status is `status`."""
    resp = await client.get(path, headers=KEY)
    assert resp.status == status, await resp.text()
    return await resp.json()
