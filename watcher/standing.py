"""Where each agent stands: its last outcome, its streak of failures, when it last succeeded.

Pure: a fold over an agent's finishes in the order they ended. The poller keeps one `Standing`
per agent — rebuilt from the state file at start, updated with every finish — and puts what an
alert needs into each `run.finished` event: the outcome before (for "recovered"), the failures
in a row and since when, the last success. The status page, `watcher status` and the per-agent
metrics read the same standings.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from watcher.codec import iso
from watcher.rules import HISTORY, Success
from watcher.runs import Outcome


@dataclass(slots=True)
class Standing:
    last_outcome: str | None = None
    last_finish: datetime | None = None
    last_success: datetime | None = None
    failures: int = 0
    """Failures in a row, up to now (stopped and skipped runs neither count nor break it)."""
    failing_since: datetime | None = None
    """When the first failure of the current streak ended."""
    successes: deque[Success] = field(default_factory=lambda: deque(maxlen=HISTORY))
    """The last successes' durations and record counts (what rules compare against)."""
    recovered_after: int = 0
    """The failures in a row that the last finish, a success, ended (0: it ended none)."""

    def copy(self) -> Standing:
        return replace(self, successes=deque(self.successes, maxlen=HISTORY))

    def finished(
        self,
        outcome: str,
        ended: datetime | None,
        duration: float | None = None,
        records: int | None = None,
    ) -> None:
        """Take one finish, in the order they ended."""
        self.last_outcome = outcome
        self.last_finish = ended or self.last_finish
        self.recovered_after = 0
        if outcome == Outcome.SUCCESS:
            self.recovered_after = self.failures
            self.failures, self.failing_since = 0, None
            self.last_success = ended or self.last_success
            self.successes.append(Success(duration, records))
        elif outcome == Outcome.FAILURE:
            self.failures += 1
            if self.failing_since is None:
                self.failing_since = ended

    def fields(self) -> dict[str, Any]:
        """What a `run.finished` event carries of it, once taken; a recovery also the length of
        the streak it ended (`recovered_after`: an alert that waits for `after` failures
        sends the recovery only of a streak that long)."""
        fields: dict[str, Any] = {
            "failures_in_a_row": self.failures,
            "failing_since": iso(self.failing_since),
            "last_success": iso(self.last_success),
        }
        if self.recovered_after:
            fields["recovered_after"] = self.recovered_after
        return fields


Finish = tuple[str, str, datetime | None, float | None, int | None]
"""(agent id, outcome, ended at, duration, records) of one finished run."""


def standings(finishes: Iterable[Finish]) -> dict[str, Standing]:
    """Each agent's standing from its finishes, in the order they ended."""
    out: dict[str, Standing] = {}
    for agent_id, outcome, ended, duration, records in finishes:
        out.setdefault(agent_id, Standing()).finished(outcome, ended, duration, records)
    return out
