"""`watcher silence add | list | expire`, in the shape of amtool, and the noise-control section
of `watcher status`.

    watcher silence add --agent 'amazon-*' [--source S] [--outcome failure] [--type run.stuck]
                        --for 2h | --until ISO [--start ISO] --comment TEXT [--by NAME]
    watcher silence list [--json]
    watcher silence expire ID

These commands write the state file while the daemon runs, without taking its lease. That does
not break "one writer": the lease makes one process at a time poll and deliver — run states and
the outbox, which must never be worked by two processes at once. A silence is user input: one
row written in one short SQLite transaction, which SQLite's own locking (WAL, a busy timeout)
serialises with the daemon's transactions, and nothing the lease guards is touched. The daemon
sees the change at its next delivery decision (SQLite's `data_version` moves when another
connection commits), so a silence applies within a second.
"""

from __future__ import annotations

import argparse
import getpass
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TextIO

from watcher.codec import iso
from watcher.config import Settings
from watcher.noise.silences import Silence, SilenceError, new_silence
from watcher.store import Store

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
FLAGS = {
    "matchers": "--source/--agent/--outcome/--type",
    "matchers.source": "--source",
    "matchers.agent": "--agent",
    "matchers.outcome": "--outcome",
    "matchers.type": "--type",
    "for": "--for",
    "ends_at": "--until",
    "starts_at": "--start",
    "comment": "--comment",
    "created_by": "--by",
    "id": "ID",
}
"""The option that gave each field of a silence, to name it in an error."""


def add_parser(
    commands: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    """`watcher silence …` on the command's parser."""
    silence = commands.add_parser(
        "silence", parents=[common], help="silence alerts for a while: add, list, expire"
    )
    actions = silence.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser("add", parents=[common], help="add a silence; prints its id")
    add.add_argument("--source", help="only events of this source (a name or a glob)")
    add.add_argument("--agent", help="only this agent: an id, a name or a glob ('amazon-*')")
    add.add_argument("--outcome", help="only runs with this outcome (failure, stopped, …)")
    add.add_argument("--type", dest="event_type", help="only this event type or glob (run.*)")
    ends = add.add_mutually_exclusive_group(required=True)
    ends.add_argument("--for", dest="duration", metavar="DURATION", help='how long: "2h", "1d"')
    ends.add_argument("--until", metavar="ISO", help="when it ends (ISO 8601; UTC if no zone)")
    add.add_argument("--start", metavar="ISO", help="when it starts (default: now)")
    add.add_argument("--comment", required=True, help="why (shown with the silence)")
    add.add_argument("--by", metavar="NAME", help="who (default: the user running this)")
    listing = actions.add_parser("list", parents=[common], help="silences, expired ones too")
    listing.add_argument("--json", action="store_true", help="one JSON array")
    expire = actions.add_parser("expire", parents=[common], help="end a silence now")
    expire.add_argument("id", help="the silence's id (or its first 8 characters or more)")


def command(settings: Settings, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Run `watcher silence ACTION`; bad input is one line naming the option, exit 2."""
    now = datetime.now(UTC)
    try:
        if args.action == "list":
            return _list(settings, args.json, now, out)
        if args.action == "expire":
            return _expire(settings, args.id, now, out, err)
        return _add(settings, args, now, out)
    except SilenceError as error:
        print(f"watcher: {FLAGS.get(error.field, error.field)}: {error.message}", file=err)
        return EXIT_USAGE


def _add(settings: Settings, args: argparse.Namespace, now: datetime, out: TextIO) -> int:
    silence = new_silence(
        matchers={
            "source": args.source,
            "agent": args.agent,
            "outcome": args.outcome,
            "type": args.event_type,
        },
        duration=args.duration,
        ends_at=args.until,
        starts_at=args.start,
        comment=args.comment,
        created_by=args.by or _user(),
        now=now,
        sources=[s.name for s in settings.sources],
    )
    store = Store.open(settings.watcher.state_path)
    try:
        store.add_silence(silence)
    finally:
        store.close(checkpoint=False)
    print(silence.id, file=out)
    return EXIT_OK


def _user() -> str:
    """Who runs the command, for `created_by` (a container's uid may have no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _expire(settings: Settings, wanted: str, now: datetime, out: TextIO, err: TextIO) -> int:
    path = settings.watcher.state_path
    if not path.exists():
        print(f"watcher: silence {wanted}: no such silence (no state yet at {path})", file=err)
        return EXIT_FAILED
    store = Store.open(path)
    try:
        silence = store.expire_silence(wanted, now)
    finally:
        store.close(checkpoint=False)
    if silence is None:
        print(f"watcher: silence {wanted}: no such silence", file=err)
        return EXIT_FAILED
    print(f"expired {silence.id}", file=out)
    return EXIT_OK


def _list(settings: Settings, as_json: bool, now: datetime, out: TextIO) -> int:
    path = settings.watcher.state_path
    silences: list[Silence] = []
    if path.exists():
        store = Store.open(path, readonly=True)
        try:
            silences = store.silences()
        finally:
            store.close(checkpoint=False)
    if as_json:
        print(json.dumps([s.to_dict(now) for s in silences], indent=2), file=out)
        return EXIT_OK
    if not silences:
        print("no silences", file=out)
        return EXIT_OK
    _table(_silence_rows(silences, now, started=True), out)
    return EXIT_OK


def _silence_rows(
    silences: Sequence[Silence], now: datetime, *, started: bool
) -> list[tuple[str, ...]]:
    head = ("ID", "STATE", "MATCHERS", *(("STARTS",) if started else ()), "ENDS", "BY", "COMMENT")
    rows: list[tuple[str, ...]] = [head]
    for s in silences:
        starts = (iso(s.starts_at) or "",) if started else ()
        ends = iso(s.ends_at) or ""
        rows.append((s.id, s.state(now), s.describe(), *starts, ends, s.created_by, s.comment))
    return rows


def _lines(rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows
    ]


def _table(rows: Sequence[Sequence[str]], out: TextIO) -> None:
    for line in _lines(rows):
        print(line, file=out)
