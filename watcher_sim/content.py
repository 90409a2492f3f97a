"""Made-up but plausible content for simulated runs: counts, records, output files, diagnostics.

Everything here is a pure function of its arguments (mostly the run id), so a simulated world
produces the same bytes every time it is built from the same seed.
"""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

# Output file types, as the seed's file listing shows them: 1 = data (CSV), 6 = log.
FILE_TYPE_DATA = 1
FILE_TYPE_LOG = 6

# Realistic failure messages; the first is the demo's canonical one.
FAILURE_MESSAGES: tuple[str, ...] = (
    "Timeout waiting for page to load",
    "Element not found: div.price",
    "Proxy connection failed: 407 Proxy Authentication Required",
    "Success criteria not met: data count 0 is below the minimum of 1",
    "Navigation failed: net::ERR_NAME_NOT_RESOLVED",
)

# What the diagnostics endpoint says about each message: (possible causes, suggested actions).
_ADVICE: dict[str, tuple[list[str], list[str]]] = {
    FAILURE_MESSAGES[0]: (
        ["The target site responded slowly", "The page waits on a resource that never loads"],
        ["Increase the page load timeout", "Wait for a specific element instead of page load"],
    ),
    FAILURE_MESSAGES[1]: (
        ["The site layout changed", "The content is rendered after the selector was evaluated"],
        ["Update the selector in the agent", "Add a wait step before extracting"],
    ),
    FAILURE_MESSAGES[2]: (
        ["The proxy pool credentials expired", "The proxy provider is unavailable"],
        ["Check the proxy pool settings", "Run the agent with another proxy pool"],
    ),
    FAILURE_MESSAGES[3]: (
        ["The site returned no results", "The agent was blocked and saw a challenge page"],
        ["Review the run log and screenshots", "Relax the success criteria"],
    ),
    FAILURE_MESSAGES[4]: (
        ["The start URL is wrong", "A DNS outage at the target"],
        ["Check the agent's start URL", "Retry the run later"],
    ),
}
_GENERIC_ADVICE = (
    ["The agent hit an unexpected error"],
    ["Open the run log for details", "Restart the run"],
)

SERVER_NAMES: tuple[str, ...] = ("172.31.28.159:80", "172.31.30.12:80", "172.31.17.88:80")


def failure_message(run_id: int) -> str:
    """A failure message chosen by run id (stable for a given run)."""
    return FAILURE_MESSAGES[run_id % len(FAILURE_MESSAGES)]


def server_name(run_id: int) -> str:
    """The worker that ran a run."""
    return SERVER_NAMES[run_id % len(SERVER_NAMES)]


def advice(message: str | None) -> tuple[list[str], list[str]]:
    """Possible causes and suggested actions for a failure message."""
    causes, actions = _ADVICE.get(message or "", _GENERIC_ADVICE)
    return list(causes), list(actions)


# The counters `count_values` fills, in its order.
COUNT_FIELDS: tuple[str, ...] = (
    "actionCount", "pageCount", "dynamicPageCount", "requestCount", "dataCount", "inputCount",
    "traffic",
)  # fmt: skip


def count_values(run_id: int, fraction: float = 1.0) -> tuple[int, ...]:
    """The `COUNT_FIELDS` values of a run that got `fraction` of the way (deterministic by id).

    A tuple rather than a dict because bulk worlds call this for hundreds of thousands of runs.
    """
    return _count_values(run_id % _COUNT_PERIOD, fraction)


_COUNT_PERIOD = 120  # the formulas below repeat with this period in the run id


@functools.lru_cache(maxsize=4 * _COUNT_PERIOD)
def _count_values(residue: int, fraction: float) -> tuple[int, ...]:
    pages = 1 + (residue * 7) % 40
    values = (
        pages * 3,
        pages,
        (residue * 3) % 5,
        pages + (residue * 5) % 30,
        5 + (residue * 13) % 120,
        0,
        4_000 + pages * 5_463,
    )
    return tuple(int(v * fraction) for v in values)


def final_counts(run_id: int) -> dict[str, int]:
    """The counts a run reaches when it completes normally."""
    return dict(zip(COUNT_FIELDS, count_values(run_id), strict=True))


def partial_counts(run_id: int, fraction: float) -> dict[str, int]:
    """The counts of a run still running, or cut short, `fraction` of the way through."""
    return dict(zip(COUNT_FIELDS, count_values(run_id, fraction), strict=True))


def make_records(agent_name: str, run_id: int, count: int) -> list[dict[str, Any]]:
    """`count` extracted records (capped at 100) as the synchronous start returns them."""
    return [
        {
            "Name": f"{agent_name} item {run_id}-{i}",
            "Url": f"https://example.com/{agent_name}/{i}",
            "Price": round(5 + ((run_id + i) * 37) % 500 / 7, 2),
            "Qty": (run_id * 11 + i * 17) % 100,
        }
        for i in range(min(count, 100))
    ]


def records_csv(records: Sequence[dict[str, Any]]) -> bytes:
    """The records as the CSV data file of a run (every value quoted, like the seed's sample)."""
    if not records:
        return b""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(records[0]), quoting=csv.QUOTE_ALL)
    writer.writeheader()
    writer.writerows(records)
    return out.getvalue().encode()


def run_log(config_name: str, run_id: int, lines: Sequence[tuple[datetime, str, str]]) -> bytes:
    """A run log: one `timestamp LEVEL text` line per entry."""
    head = f"Run {run_id} of agent {config_name}\n"
    body = "".join(f"{ts:%Y-%m-%d %H:%M:%S} {level:<5} {text}\n" for ts, level, text in lines)
    return (head + body).encode()
