"""The gate: what of an alert channel's due outbox rows goes out now, decided at delivery time.

The dispatcher asks before it hands a channel its rows (`Dispatcher._deliver`); the rules of
the channel's subscription apply to each row in turn, the first that has a say deciding:

    1. an active silence matching the event   → suppressed ("silenced", with the silence id)
    2. a mute window open now                 → held until it closes ("muted"), or suppressed
    3. the agent flapping                     → held until it is stable ("flapping"); the
                                                first hold says so once (`agent.flapping`)
    4. a failure before the `after`-th in a row,
       or a streak already alerted (`repeat`) → suppressed ("after", "repeat")
    5. otherwise                              → sent, with notes: "3 failures in a row since …",
                                                "note: source cloud is failing since …"

A held row stays in the outbox with its `next_at` at the end of the hold; when it comes due it
is decided again, and the held rows that pass then go out together as one digest. A suppressed
row leaves the outbox with its `notification.suppressed` event in one transaction, so it is
never sent later. Decisions are per channel: the same event may be silenced for one
subscription's channels and not another's (silences are global, their effect per channel).

Deciding reads the state file (silences — re-read only when they changed —, the marks of what
the channel said about each agent, the agent's recent finishes) and writes nothing: the
dispatcher records the `Verdict` in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import pairwise
from typing import TYPE_CHECKING

from watcher.durations import duration_of
from watcher.events import Event, EventType, follow_up, with_data
from watcher.noise.records import AgentKey, Hold, Mark
from watcher.noise.silences import Silence
from watcher.noise.windows import Mute
from watcher.outbox import Pending
from watcher.runs import Outcome

if TYPE_CHECKING:
    from watcher.config import SubscriptionConfig
    from watcher.sinks.base import Sink
    from watcher.store import Store


@dataclass(slots=True)
class Verdict:
    """What one delivery pass of one channel decided."""

    send: list[Event] = field(default_factory=list)
    """To deliver now (annotated copies: same ids)."""
    release: list[Event] = field(default_factory=list)
    """Held before, going out now: delivered together, as one digest."""
    drop: list[Pending] = field(default_factory=list)
    hold: list[Hold] = field(default_factory=list)
    produced: list[Event] = field(default_factory=list)
    """To record: a `notification.suppressed` per dropped row, `agent.flapping` messages."""
    for_channel: list[str] = field(default_factory=list)
    """Ids of produced events that this channel delivers too (`agent.flapping`)."""
    marks: dict[tuple[str, AgentKey], Mark | None] = field(default_factory=dict)

    @property
    def passed(self) -> set[str]:
        return {e.id for e in (*self.send, *self.release)}

    @property
    def records(self) -> bool:
        """Is there anything to write?"""
        return bool(self.drop or self.hold or self.produced or self.marks)


class Gate:
    """Decides for every channel (`Sink.noise` set) of one state file."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._silences: list[Silence] = []
        self._version: tuple[int, int] | None = None
        self._mutes: dict[tuple[tuple[str, ...], str], Mute] = {}

    def silences(self, now: datetime) -> list[Silence]:
        """The silences not over at `now`, read from the state file again only when it says
        they may have changed (a `watcher silence` in another process, the HTTP API)."""
        version = self.store.silences_version()
        if version != self._version:
            self._silences = self.store.silences(ending_after=now)
            self._version = version
        return [s for s in self._silences if s.active(now)]

    def decide(self, sink: Sink, items: list[Pending], now: datetime) -> Verdict:
        rules = sink.noise
        assert rules is not None, "only channels are gated"
        mute = None
        if rules.mute:
            key = (tuple(rules.mute), rules.timezone)
            mute = self._mutes.get(key) or self._mutes.setdefault(key, Mute(*key))
        run = _Pass(self.store, sink, rules, mute, self.silences(now), now)
        for item in items:
            run.one(item)
        return run.finished()


class _Pass:
    """One decision over a batch of rows; remembers what it changed of the marks."""

    def __init__(
        self,
        store: Store,
        sink: Sink,
        rules: SubscriptionConfig,
        mute: Mute | None,
        silences: list[Silence],
        now: datetime,
    ) -> None:
        self.store = store
        self.sink = sink
        self.rules = rules
        self.mute = mute
        self.silences = silences
        self.now = now
        self.ts = now.timestamp()
        self.label = str(getattr(sink, "masked", sink.name))
        self.verdict = Verdict()
        self._marks: dict[AgentKey, Mark | None] = {}
        self._changed: set[AgentKey] = set()
        self._history: dict[AgentKey, list[float]] = {}

    def finished(self) -> Verdict:
        self.verdict.marks = {(self.sink.name, k): self._marks[k] for k in self._changed}
        return self.verdict

    def one(self, item: Pending) -> None:
        event = item.event
        silence = next((s for s in self.silences if s.matches(event)), None)
        if silence is not None:
            why = f"silenced by {silence.id[:8]} ({silence.comment})"
            self._drop(item, "silenced", why, silence_id=silence.id)
            return
        if self.mute is not None and self.mute.active(self.now):
            if self.rules.mute_action == "drop":
                self._drop(item, "muted", f"muted ({self.mute.text})")
            else:
                self.verdict.hold.append(Hold(item, self.mute.until(self.now).timestamp(), "muted"))
            return
        if self._flapping(item):
            return
        notes: list[str] = []
        if self.rules.streaks and event.type == EventType.RUN_FINISHED:
            if item.held == "flapping":  # its summary lists it whatever the streak says
                self._streak(event)
            else:
                reason, why, notes = self._streak(event)
                if reason is not None:
                    self._drop(item, reason, why)
                    return
        self._send(item, notes)

    # --- outcomes ------------------------------------------------------------------------------

    def _send(self, item: Pending, notes: list[str]) -> None:
        event = item.event
        since = event.get("source_failing_since")
        if since:
            notes = [*notes, f"note: source {event.source} is failing since {since}"]
        if notes:
            event = with_data(event, notes=notes)
        if item.held:
            self.verdict.release.append(with_data(event, held=item.held))
        else:
            self.verdict.send.append(event)

    def _drop(self, item: Pending, reason: str, why: str, **data: object) -> None:
        self.verdict.drop.append(item)
        self.verdict.produced.append(
            follow_up(
                item.event,
                EventType.NOTIFICATION_SUPPRESSED,
                by=self.sink.name,
                ts=self.now,
                message=f"not sent: {why}",
                subscription=self.rules.name,
                channel=self.label,
                reason=reason,
                **data,
            )
        )

    # --- flapping --------------------------------------------------------------------------------

    def _flapping(self, item: Pending) -> bool:
        """Hold the row if its agent flaps (announcing it the first time); True if held."""
        threshold, window = self.rules.flap_threshold, self.rules.flap_window
        event = item.event
        if threshold is None or event.agent_id is None or event.type == EventType.AGENT_FLAPPING:
            return False
        key = (event.source, event.agent_id)
        recent = [t for t in self._changes(key) if t > self.ts - window]
        mark = self._mark(key)
        if mark is not None and mark.flapping is not None:
            if not recent:  # a whole window without a change: stable
                self._set(key, replace(mark, flapping=None))
                return False
        elif len(recent) < threshold:
            return False
        else:
            self._set(key, replace(mark or Mark(), flapping=self.ts))
            self._announce(event, len(recent))
        self.verdict.hold.append(Hold(item, max(recent) + window, "flapping"))
        return True

    def _changes(self, key: AgentKey) -> list[float]:
        """When the agent's outcome changed between failure and success (Unix times)."""
        if key not in self._history:
            finishes = self.store.finishes_of(key)
            self._history[key] = [
                ended.timestamp()
                for (_, before), (ended, outcome) in pairwise(finishes)
                if outcome != before
            ]
        return self._history[key]

    def _announce(self, event: Event, changes: int) -> None:
        window = duration_of(self.rules.flap_window)
        agent = event.agent_name or event.agent_id
        flap = follow_up(  # about the agent, not the run that tipped it: run_id is data
            replace(event, run_id=None, status=None, outcome=None),
            EventType.AGENT_FLAPPING,
            by=self.sink.name,
            ts=self.now,
            message=f"{agent} changed between failure and success {changes} times within "
            f"{window}; its alerts are held until it goes {window} without a change, then "
            "sent as one summary",
            subscription=self.rules.name,
            channel=self.label,
            changes=changes,
            window_s=self.rules.flap_window,
            last_run_id=event.run_id,
        )
        self.verdict.produced.append(flap)
        self.verdict.for_channel.append(flap.id)

    # --- streaks ---------------------------------------------------------------------------------

    def _streak(self, event: Event) -> tuple[str | None, str, list[str]]:
        """(reason to suppress or None, why, notes) for a finish, by `after` and `repeat`."""
        if event.outcome is Outcome.FAILURE:
            return self._failure(event)
        if event.outcome is Outcome.SUCCESS and event.get("agent_previous_outcome") == "failure":
            return self._recovery(event)
        return None, "", []

    def _failure(self, event: Event) -> tuple[str | None, str, list[str]]:
        count, since = event.get("failures_in_a_row"), event.get("failing_since")
        if not isinstance(count, int) or count < 1 or event.agent_id is None:
            return None, "", []  # not annotated: an alert as any other
        key = (event.source, event.agent_id)
        mark, after = self._mark(key), self.rules.after or 1
        notes = [_in_a_row(count, since)] if count > 1 else []
        if mark is not None and mark.event_id == event.id:
            return None, "", notes  # this very alert, delivered again after a failed attempt
        if count < after:
            return "after", f"{count} failure(s) in a row, fewer than after = {after}", []
        if mark is None or mark.alerted is None or not _same_streak(mark, since, count):
            self._alerted(key, mark, event, count)
            return None, "", notes
        return self._again(key, mark, event, count, notes)

    def _again(
        self, key: AgentKey, mark: Mark, event: Event, count: int, notes: list[str]
    ) -> tuple[str | None, str, list[str]]:
        """The `count`-th failure of a streak this channel alerted already: sent again once
        `repeat` has passed since that alert (saying how many it did not send), else
        suppressed."""
        repeat, alerted = self.rules.repeat, mark.alerted
        assert alerted is not None, "only an alerted streak is alerted again"
        if repeat is not None and self.ts - alerted >= repeat:
            self._alerted(key, mark, event, count)
            unsent = count - mark.failures - 1
            return None, "", notes + ([f"{unsent} not sent since the last alert"] if unsent else [])
        every = f"repeat = {duration_of(repeat)}" if repeat is not None else "once per streak"
        ago = duration_of(self.ts - alerted)
        return "repeat", f"{count} failures in a row, alerted {ago} ago ({every})", []

    def _alerted(self, key: AgentKey, mark: Mark | None, event: Event, count: int) -> None:
        """Mark `event`, the `count`-th failure in a row, as its streak's latest alert here."""
        since = event.get("failing_since")
        alerted = replace(
            mark or Mark(), streak=since, failures=count, alerted=self.ts, event_id=event.id
        )
        self._set(key, alerted)

    def _recovery(self, event: Event) -> tuple[str | None, str, list[str]]:
        ended = event.get("recovered_after")
        if event.agent_id is not None:
            key = (event.source, event.agent_id)
            mark = self._mark(key)
            if mark is not None and mark.alerted is not None:
                self._set(key, replace(mark, streak=None, failures=0, alerted=None, event_id=None))
        if not isinstance(ended, int):
            return None, "", []
        after = self.rules.after or 1
        if ended < after:
            return "after", f"recovered from {ended} failure(s) in a row, fewer than after = " \
                            f"{after}", []  # fmt: skip
        return None, "", [f"recovered after {ended} failures in a row"] if ended > 1 else []

    # --- marks -----------------------------------------------------------------------------------

    def _mark(self, key: AgentKey) -> Mark | None:
        if key not in self._marks:
            self._marks[key] = self.store.mark(self.sink.name, key)
        return self._marks[key]

    def _set(self, key: AgentKey, mark: Mark | None) -> None:
        self._marks[key] = mark
        self._changed.add(key)


def _same_streak(mark: Mark, since: object, count: int) -> bool:
    """Is a failure `count` in a row, failing since `since`, of the streak `mark` alerted?"""
    return mark.streak == since and count > mark.failures


def _in_a_row(count: int, since: object) -> str:
    return f"{count} failures in a row" + (f" since {since}" if since else "")
