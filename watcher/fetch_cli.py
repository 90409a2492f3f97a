"""`watcher fetch SOURCE AGENT_ID RUN_ID [--dest DIR] [--all]`: fetch one run's outputs by hand.

The same `Fetcher` as the daemon's outputs sink, so the files, their safe names, the manifest
and the skipping of what is already in place are the same. Without `--dest` the files go where
the daemon would put them (the `[outputs]` dir/SOURCE/AGENT_ID/RUN_ID/, whether or not outputs
are enabled); with it, straight into DIR. A progress bar per file on a terminal (tqdm), one plain
line per file otherwise. Nothing is recorded in the state file: this is a manual download, so
the App that builds the fetcher is never opened (no lease taken, no store, no poller).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from watcher.app import App
from watcher.config import Settings
from watcher.errors import ConfigError, WatcherError
from watcher.sinks.fetcher import FetchError, FileResult
from watcher.sources.http import HttpClient, make_session

EXIT_OK, EXIT_FAILED = 0, 1

_MARKS = {"fetched": "fetched", "present": "present", "absent": "absent ", "failed": "FAILED "}


class PlainProgress:
    """One line per file when it is done; for logs, pipes and CI."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def start(self, name: str, size: int | None) -> Callable[[int], None]:
        return lambda done: None

    def done(self, result: FileResult) -> None:
        print(_line(result), file=self.out, flush=True)


class BarProgress:
    """A tqdm bar per file while it downloads, and its line when it is done."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._bars: dict[str, tqdm] = {}

    def start(self, name: str, size: int | None) -> Callable[[int], None]:
        bar = tqdm(
            total=size, desc=name, unit="B", unit_scale=True, unit_divisor=1024, file=self.out,
            leave=False, dynamic_ncols=True,
        )  # fmt: skip
        self._bars[name] = bar

        def report(done: int) -> None:
            bar.update(done - bar.n)  # a retried download starts over: the bar goes back too

        return report

    def done(self, result: FileResult) -> None:
        bar = self._bars.pop(result.name, None)
        if bar is not None:
            bar.close()
        tqdm.write(_line(result), file=self.out)


def _line(result: FileResult) -> str:
    mark = _MARKS.get(result.status, result.status)
    if result.status == "fetched":
        return f"{mark} {result.name} ({result.size} bytes) -> {result.path}"
    if result.status == "present":
        return f"{mark} {result.name} (already fetched) -> {result.path}"
    return f"{mark} {result.name}: {result.reason}"


async def fetch_command(
    settings: Settings,
    source_name: str,
    agent_id: str,
    run_id: str,
    *,
    dest: Path | None = None,
    everything: bool = False,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Fetch one run's outputs; 0 when every selected file is in place, 1 otherwise (with one
    error line on `err`). An unknown source is a `ConfigError` (exit 2)."""
    out = out or sys.stdout
    err = err or sys.stderr
    config = next((sc for sc in settings.sources if sc.name == source_name), None)
    if config is None:
        names = ", ".join(sc.name for sc in settings.sources)
        raise ConfigError([f"fetch: no source named {source_name!r} (have: {names})"])
    progress = BarProgress(out) if out.isatty() else PlainProgress(out)
    async with make_session() as session:
        app = App(settings, http=HttpClient(session))  # never opened: no lease, no state file
        fetcher = app.fetcher(concurrency=1)  # one bar at a time reads best
        try:
            result = await fetcher.fetch(
                source_name, agent_id, run_id, dest=dest, everything=everything, progress=progress
            )
        except FetchError as e:
            raise WatcherError(str(e)) from None
    if result.path is None:
        print(f"no file of the {result.listed} listed matched the outputs rules "
              "(--all fetches every file)", file=out)  # fmt: skip
        return EXIT_OK
    placed = result.in_place
    size = sum(f.size for f in placed)
    print(f"{len(placed)} file(s), {size} bytes in {result.path}", file=out)
    if result.failed:
        first = result.failed[0]
        more = f" (and {len(result.failed) - 1} more)" if len(result.failed) > 1 else ""
        print(f"watcher: fetch incomplete: {first.name}: {first.reason}{more}", file=err)
        return EXIT_FAILED
    return EXIT_OK
