"""Hostile payloads never crash a source: each becomes a protocol error or a skipped record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from watcher.diff import diff_agent
from watcher.errors import SourceProtocolError
from watcher.models import Agent, RunSnapshot
from watcher.sources.http import HttpClient
from watcher.sources.sequentum_cloud import SequentumCloud
from watcher.store import Store

from .conftest import source_config

NOW = datetime(2026, 11, 23, tzinfo=UTC)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(
        [
            "2024-12-18T13:08:49.748151Z",
            "0001-01-01T00:00:00",
            "9999-12-31T23:59:59-10:00",
            "2025-08-12T02:40:33.7108431+10:00",
            "yesterday",
            "Completed",
            "Failure",
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)
FIELDS = ["id", "status", "configName", "startTime", "endTime", "runTimeSec", "pageCount",
          "dataCount", "errorCount", "requestCount", "exportCount", "message"]  # fmt: skip
runs = st.fixed_dictionaries({}, optional={f: values for f in FIELDS})
listings = st.one_of(values, st.lists(st.one_of(runs, values), max_size=6))


@pytest.fixture(scope="module")
def source() -> SequentumCloud:
    # Parsing needs no connection: the client is never used by parse_runs.
    return SequentumCloud(source_config("http://127.0.0.1:1"), HttpClient(None))  # type: ignore[arg-type]


@given(data=listings)
@settings(max_examples=400, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_payload_parses_or_is_a_protocol_error(
    source: SequentumCloud, data, tmp_path_factory
) -> None:
    try:
        snaps = source.parse_runs(Agent("7"), data, "/api/v1/agent/7/runs")
    except SourceProtocolError as err:
        assert "\n" not in str(err)
        return
    for snap in snaps:
        # Whatever was accepted can be serialised, fingerprinted, diffed and stored.
        assert RunSnapshot.from_dict(json.loads(json.dumps(snap.to_dict()))) == snap
        snap.digest()
    result = diff_agent({}, snaps, now=NOW, source_kind="sequentum_cloud")
    store = Store.open(":memory:")
    try:
        store.commit(source="cloud", changes=result.changes, events=result.events,
                     route=lambda e: ["eventlog"], now=NOW, now_ts=0)  # fmt: skip
    finally:
        store.close()


async def test_hostile_listing_over_http(world, cloud_url, http) -> None:
    world.add_agent(id=7, name="x")
    src = SequentumCloud(source_config(cloud_url), http)
    body = json.dumps([{"id": True}, {"id": 1, "status": 2**80, "startTime": "garbage"},
                       "nonsense", {"id": 2, "status": "Exploded", "pageCount": -5}])  # fmt: skip
    world.inject("/api/v1/agent/7/runs", kind="http", status=200, body=body, times=1)
    snaps = await src.runs(Agent("7"))
    assert [(s.run_id, s.phase.value, s.started_at, s.counts.pages) for s in snaps] == [
        ("2", "unknown", None, None),
        ("1", "unknown", None, None),
    ]
    world.inject("/api/v1/agent/7/runs", kind="http", status=200, body='{"runs": 5}', times=1)
    with pytest.raises(SourceProtocolError, match="expected a list of runs"):
        await src.runs(Agent("7"))
