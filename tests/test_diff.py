"""The diff engine: tables over every Cloud status, and hypothesis properties."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from watcher.diff import diff_agent
from watcher.events import EventType
from watcher.runs import Counts, Outcome, Phase, RunSnapshot, RunState
from watcher.status import CLOUD_CODES, CLOUD_NAMES, cloud_status

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
KIND = "sequentum_cloud"


def snap(run_id: str, status: object, *, agent: str = "2537", pages: int = 0) -> RunSnapshot:
    info = cloud_status(status)
    return RunSnapshot(
        source="cloud",
        agent_id=agent,
        run_id=run_id,
        status=info.status,
        status_code=info.status_code,
        phase=info.phase,
        outcome=info.outcome,
        with_errors=info.with_errors,
        agent_name="steam",
        counts=Counts(pages=pages),
    )


class Feed:
    """Feeds listings to the diff engine as the poller does, remembering state between them."""

    def __init__(self, baseline: list[RunSnapshot] | None = None) -> None:
        self.state: dict[str, RunState] | None = None if baseline is not None else {}
        self.events: list = []
        self.now = T0
        if baseline is not None:
            assert self.feed(baseline) == []

    def feed(self, listing: list[RunSnapshot]) -> list:
        self.now += timedelta(seconds=15)
        result = diff_agent(self.state, listing, now=self.now, source_kind=KIND)
        self.state = dict(self.state or {})
        for change in result.changes:
            self.state[change.snapshot.run_id] = change.state
        self.events.extend(result.events)
        return result.events

    def types(self, events: list | None = None) -> list[str]:
        return [e.type for e in (self.events if events is None else events)]

    def finishes(self) -> list[tuple[str, Outcome, int]]:
        return [(e.run_id, e.outcome, e.attempt) for e in self.events if e.type == "run.finished"]


# --- the status map ---------------------------------------------------------------------------

EXPECTED_CODES = {
    0: (Phase.UNKNOWN, None),
    1: (Phase.RUNNING, None),
    2: (Phase.RUNNING, None),
    3: (Phase.PENDING, None),
    4: (Phase.PENDING, None),
    5: (Phase.RUNNING, None),
    6: (Phase.FINISHED, Outcome.FAILURE),
    7: (Phase.FINISHED, Outcome.FAILURE),
    8: (Phase.FINISHED, Outcome.STOPPED),
    9: (Phase.FINISHED, Outcome.SUCCESS),
    10: (Phase.FINISHED, Outcome.SUCCESS),
    11: (Phase.FINISHED, Outcome.SKIPPED),
    12: (Phase.PENDING, None),
}

EXPECTED_NAMES = {
    "Queuing": (Phase.PENDING, None),
    "Queued": (Phase.PENDING, None),
    "Starting": (Phase.PENDING, None),
    "Waiting": (Phase.PENDING, None),
    "WaitingOnFailure": (Phase.PENDING, None),
    "Running": (Phase.RUNNING, None),
    "Exporting": (Phase.RUNNING, None),
    "Stopping": (Phase.RUNNING, None),
    "Completed": (Phase.FINISHED, Outcome.SUCCESS),
    "Success": (Phase.FINISHED, Outcome.SUCCESS),
    "CompletedWithErrors": (Phase.FINISHED, Outcome.SUCCESS),
    "Failure": (Phase.FINISHED, Outcome.FAILURE),
    "Failed": (Phase.FINISHED, Outcome.FAILURE),
    "FailedToStart": (Phase.FINISHED, Outcome.FAILURE),
    "Stopped": (Phase.FINISHED, Outcome.STOPPED),
    "Skipped": (Phase.FINISHED, Outcome.SKIPPED),
    "Invalid": (Phase.UNKNOWN, None),
    "Unknown": (Phase.UNKNOWN, None),
}


@pytest.mark.parametrize("code", sorted(EXPECTED_CODES))
def test_every_cloud_code_maps_per_design(code: int) -> None:
    info = cloud_status(code)
    assert (info.phase, info.outcome) == EXPECTED_CODES[code]
    assert info.status == CLOUD_CODES[code][0]
    assert info.status_code == code


@pytest.mark.parametrize("name", sorted(EXPECTED_NAMES))
def test_every_cloud_name_maps_per_design(name: str) -> None:
    info = cloud_status(name)
    assert (info.phase, info.outcome) == EXPECTED_NAMES[name]
    assert info.status == name  # the platform's own spelling is kept
    assert info.with_errors == (name == "CompletedWithErrors")


def test_names_cover_the_whole_table() -> None:
    assert {n.lower() for n in EXPECTED_NAMES} == set(CLOUD_NAMES)


@pytest.mark.parametrize("raw", [13, -1, 99, 2**40, "Exploded", "", None, 3.5, True, [], {}])
def test_values_outside_the_map_are_unknown_not_errors(raw: object) -> None:
    assert cloud_status(raw).phase is Phase.UNKNOWN


@pytest.mark.parametrize("raw", ["9", " 9 ", "completed", "COMPLETED"])
def test_numeric_strings_and_any_case(raw: str) -> None:
    assert cloud_status(raw).outcome is Outcome.SUCCESS


# --- one status at a time: every code and name, as a new run and as a change --------------------

ALL_STATUSES: list[object] = sorted(EXPECTED_CODES) + sorted(EXPECTED_NAMES)


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_new_run_first_seen_at_each_status(status: object) -> None:
    feed = Feed(baseline=[])
    events = feed.feed([snap("1", status)])
    phase, outcome = cloud_status(status).phase, cloud_status(status).outcome
    expected = ["run.discovered"]
    if phase is Phase.FINISHED:
        expected.append("run.finished")
    elif phase is Phase.UNKNOWN:
        expected.append("run.unknown_status")
    assert feed.types(events) == expected
    if outcome:
        assert events[-1].outcome is outcome


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_running_run_moving_to_each_status(status: object) -> None:
    feed = Feed(baseline=[snap("1", 1)])
    events = feed.feed([snap("1", status)])
    info = cloud_status(status)
    if (info.status, info.status_code) == ("Running", 1):
        assert events == []
        return
    expected = ["run.status_changed"]
    if info.phase is Phase.FINISHED:
        expected.append("run.finished")
    elif info.phase is Phase.UNKNOWN:
        expected.append("run.unknown_status")
    assert feed.types(events) == expected
    assert events[0].previous_status == "Running"


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_failed_run_moving_to_each_status(status: object) -> None:
    feed = Feed(baseline=[snap("1", 6)])
    events = feed.feed([snap("1", status)])
    info = cloud_status(status)
    types = feed.types(events)
    if (info.status, info.status_code) == ("Failure", 6):
        assert types == []
    elif info.phase.active:
        assert types == ["run.status_changed", "run.reopened"]
        assert events[-1].attempt == 1
    elif info.outcome is Outcome.FAILURE:
        assert types == ["run.status_changed"]  # Failure → Failed: one outcome, one finish
    elif info.phase is Phase.FINISHED:
        assert types == ["run.status_changed", "run.finished"]
        assert events[-1].attempt == 1
    else:
        assert types == ["run.status_changed", "run.unknown_status"]


# --- the scenarios the product promises ---------------------------------------------------------


def test_run_moving_4_3_1_2_9() -> None:
    feed = Feed(baseline=[])
    for status in (4, 3, 1, 2, 9):
        feed.feed([snap("22552", status)])
    assert feed.types() == [
        "run.discovered",
        "run.status_changed",
        "run.status_changed",
        "run.status_changed",
        "run.status_changed",
        "run.finished",
    ]
    assert feed.finishes() == [("22552", Outcome.SUCCESS, 0)]
    finished = feed.events[-1]
    assert (finished.status, finished.status_code, finished.previous_status) == (
        "Completed",
        9,
        "Exporting",
    )


def test_new_run_first_seen_at_failure_then_archived() -> None:
    feed = Feed(baseline=[])
    feed.feed([snap("1", 6)])
    feed.feed([snap("1", 7)])
    assert feed.finishes() == [("1", Outcome.FAILURE, 0)]


def test_failure_restarted_in_place_finishes_again() -> None:
    feed = Feed(baseline=[])
    for status in (6, 1, 10):
        feed.feed([snap("1", status)])
    assert feed.types() == [
        "run.discovered",
        "run.finished",
        "run.status_changed",
        "run.reopened",
        "run.status_changed",
        "run.finished",
    ]
    assert feed.finishes() == [("1", Outcome.FAILURE, 0), ("1", Outcome.SUCCESS, 1)]


def test_history_at_first_start_emits_nothing() -> None:
    listing = [snap(str(i), s) for i, s in enumerate((9, 6, 7, 8, 11, 1, 4))]
    result = diff_agent(None, listing, now=T0, source_kind=KIND)
    assert result.events == []
    assert len(result.changes) == len(listing)


def test_same_listing_twice_and_counts_only_changes() -> None:
    feed = Feed(baseline=[snap("1", 1, pages=3)])
    assert feed.feed([snap("1", 1, pages=3)]) == []
    result = diff_agent(feed.state, [snap("1", 1, pages=9)], now=T0, source_kind=KIND)
    assert result.events == []  # details moved: remembered quietly
    assert len(result.changes) == 1
    result = diff_agent(feed.state, [snap("1", 1, pages=3)], now=T0, source_kind=KIND)
    assert result.changes == []


def test_run_leaving_the_listing_emits_nothing() -> None:
    feed = Feed(baseline=[snap("1", 9), snap("2", 1)])
    assert feed.feed([snap("2", 1)]) == []


def test_unknown_status_then_back_to_the_same_finish_is_not_a_second_finish() -> None:
    feed = Feed(baseline=[])
    for status in (6, 13, 6, 7):
        feed.feed([snap("1", status)])
    assert feed.finishes() == [("1", Outcome.FAILURE, 0)]
    assert feed.types().count("run.unknown_status") == 1


def test_event_ids_are_stable_across_replays() -> None:
    a, b = Feed(baseline=[]), Feed(baseline=[])
    for status in (4, 1, 6):
        a.feed([snap("1", status)])
        b.feed([snap("1", status)])
    assert [e.id for e in a.events] == [e.id for e in b.events]
    assert len({e.id for e in a.events}) == len(a.events)


def test_repeated_run_in_one_listing_counts_once() -> None:
    feed = Feed(baseline=[])
    events = feed.feed([snap("1", 9), snap("1", 1)])
    assert feed.types(events) == ["run.discovered", "run.finished"]


def test_acc_job_in_progress_with_failure_warns_once_before_the_finish() -> None:
    from watcher.status import acc_job_status

    def job(status: int) -> RunSnapshot:
        info = acc_job_status(status)
        return RunSnapshot("acc", "42", "j1", info.status, info.status_code, info.phase,
                           info.outcome, warning=info.warning)  # fmt: skip

    feed = Feed(baseline=[])
    for status in (1, 2, 2, 4):
        feed.feed([job(status)])
    assert feed.types() == [
        "run.discovered",
        "run.status_changed",
        "run.warning",
        "run.status_changed",
        "run.finished",
    ]
    assert feed.finishes() == [("j1", Outcome.FAILURE, 0)]


def test_with_errors_flag_reaches_the_event() -> None:
    feed = Feed(baseline=[])
    events = feed.feed([snap("1", "CompletedWithErrors")])
    assert events[-1].outcome is Outcome.SUCCESS
    assert events[-1].get("with_errors") is True


# --- properties ----------------------------------------------------------------------------------

statuses = st.one_of(st.sampled_from(ALL_STATUSES), st.integers(-3, 20))
run_ids = st.sampled_from(["1", "2", "3", "4"])
listings = st.lists(st.tuples(run_ids, statuses), max_size=5).map(
    lambda pairs: [snap(r, s) for r, s in pairs]
)


@given(st.lists(listings, min_size=1, max_size=8), listings)
def test_same_listing_twice_gives_no_events(history: list, listing: list) -> None:
    feed = Feed(baseline=[])
    for item in history:
        feed.feed(item)
    feed.feed(listing)
    assert feed.feed(listing) == []


def _finish_outcomes_are_never_repeated(feed: Feed) -> None:
    """Between two finishes of one run there is a reopen or a different outcome."""
    last: dict[str, tuple[Outcome, int]] = {}
    for e in feed.events:
        if e.type == "run.finished":
            prev = last.get(e.run_id)
            assert prev is None or prev != (e.outcome, e.attempt)
            assert prev is None or e.attempt > prev[1]
            last[e.run_id] = (e.outcome, e.attempt)


@given(st.lists(st.lists(statuses, min_size=1, max_size=6), min_size=1, max_size=4), st.data())
@settings(max_examples=200)
def test_skipping_listings_never_doubles_a_finish(paths: list, data: st.DataObject) -> None:
    """Each run follows a path of statuses; any poll may miss intermediate steps."""
    full, skipping = Feed(baseline=[]), Feed(baseline=[])
    longest = max(len(p) for p in paths)
    for step in range(longest):
        listing = [snap(str(i), p[min(step, len(p) - 1)]) for i, p in enumerate(paths)]
        full.feed(listing)
        if step == longest - 1 or data.draw(st.booleans(), label=f"poll {step}"):
            skipping.feed(listing)
    for feed in (full, skipping):
        _finish_outcomes_are_never_repeated(feed)
        # Finishes and reopens are distinct facts with distinct ids. (A status the run returns to
        # within one attempt repeats its status_changed id on purpose: the store keeps it once.)
        alerts = [e.id for e in feed.events if e.type in ("run.finished", "run.reopened")]
        assert len(set(alerts)) == len(alerts)
    # The polls that were skipped can hide finishes but never invent one.
    assert len(skipping.finishes()) <= len(full.finishes())
    # Both end agreeing on how every finished run ended.
    last_full = {e.run_id: e.outcome for e in full.events if e.type == "run.finished"}
    last_skip = {e.run_id: e.outcome for e in skipping.events if e.type == "run.finished"}
    for i, path in enumerate(paths):
        final = cloud_status(path[-1])
        if final.phase is Phase.FINISHED:
            assert last_full[str(i)] == last_skip[str(i)] == final.outcome


class DiffModel(RuleBasedStateMachine):
    """Stateful test: the engine against a plain dict model of what each run's events must be."""

    @initialize()
    def start(self) -> None:
        self.feed = Feed(baseline=[])
        self.current: dict[str, object] = {}
        # model: run → (outcome this attempt, attempt, status, status code)
        self.model: dict[str, tuple[Outcome | None, int, str, int | None]] = {}
        self.expected: Counter[str] = Counter()

    @rule(run_id=run_ids, status=statuses)
    def move(self, run_id: str, status: object) -> None:
        self.current[run_id] = status
        self._poll()

    @rule(run_id=run_ids)
    def drop(self, run_id: str) -> None:
        self.current.pop(run_id, None)
        self._poll()

    @rule()
    def poll_again(self) -> None:
        self._poll()

    def _poll(self) -> None:
        listing = [snap(r, s) for r, s in sorted(self.current.items())]
        for s in listing:
            self._model_step(s)
        self.feed.feed(listing)

    def _model_step(self, s: RunSnapshot) -> None:
        prev = self.model.get(s.run_id)
        if prev is None:
            self.expected["run.discovered"] += 1
            if s.phase is Phase.FINISHED:
                self.expected["run.finished"] += 1
            elif s.phase is Phase.UNKNOWN:
                self.expected["run.unknown_status"] += 1
            self.model[s.run_id] = (s.outcome, 0, s.status, s.status_code)
            return
        outcome, attempt, status, code = prev
        if (status, code) == (s.status, s.status_code):
            return
        self.expected["run.status_changed"] += 1
        if s.phase is Phase.FINISHED:
            if outcome != s.outcome:
                if outcome is not None:
                    attempt += 1
                self.expected["run.finished"] += 1
            outcome = s.outcome
        elif s.phase.active:
            if outcome is not None:
                attempt += 1
                self.expected["run.reopened"] += 1
            outcome = None
        else:
            self.expected["run.unknown_status"] += 1
        self.model[s.run_id] = (outcome, attempt, s.status, s.status_code)

    @invariant()
    def events_match_the_model(self) -> None:
        assert Counter(self.feed.types()) == self.expected
        assert self.feed.state is not None
        for run_id, (outcome, attempt, _, _) in self.model.items():
            state = self.feed.state[run_id]
            assert (state.outcome, state.attempt) == (outcome, attempt)

    @invariant()
    def ids_are_unique_per_finish(self) -> None:
        finishes = [e.id for e in self.feed.events if e.type == EventType.RUN_FINISHED]
        assert len(finishes) == len(set(finishes))


TestDiffModel = DiffModel.TestCase
TestDiffModel.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)
