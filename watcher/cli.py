"""The `watcher` command.

    watcher run        the daemon: poll on schedule, deliver events, until SIGTERM/SIGINT
    watcher once       poll every source once, deliver what it caused; exit 1 if a source failed
    watcher check      config, connectivity and auth of every source; non-zero on failure
    watcher status     sources, agents and their latest runs, the outbox (--json), from the
                       state file
    watcher notify-test  a clearly marked test message to every alert channel
    watcher fetch      the output files of one run, to disk (SOURCE AGENT_ID RUN_ID [--dest DIR])
    watcher silence    silence alerts for a while: add, list, expire (`watcher.noise.cli`)
    watcher demo       the daemon against a built-in simulator: no config, no account
    watcher completion a bash or zsh completion script (`source <(watcher completion bash)`)

Exit codes: 0 success, 1 a source or the state file failed, 2 the configuration is invalid.
Errors are one line each; no traceback reaches the user for a problem they can fix.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from watcher import __version__, cli_help, logs
from watcher.app import App, build_channels, utcnow
from watcher.checks import check_sources
from watcher.completion import SHELLS, script
from watcher.config import HttpSection, Settings, WatcherSection, find_config, load_settings
from watcher.errors import ConfigError, WatcherError
from watcher.noise import cli as silence_cli
from watcher.sources.http import HttpClient, make_session

if TYPE_CHECKING:
    from watcher.daemon import Loader

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2


def _common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the command (`watcher -c x once`, `watcher once -c x`).

    Each parser gets its own copy (argparse shares action objects between parents), and
    SUPPRESS keeps a subcommand from resetting what the top level set."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (default: $WATCHER_CONFIG, ./watcher.toml, /etc/watcher/watcher.toml)",
    )
    common.add_argument(
        "--log-format", choices=["auto", "json", "console"], default=argparse.SUPPRESS
    )
    common.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], default=argparse.SUPPRESS
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="watcher",
        description="Watches Sequentum and automation runs; alerts when they end.",
        parents=[common],
    )
    parser.set_defaults(config=None, log_format=None, log_level=None)
    common = _common_options()
    parser.add_argument("--version", action="version", version=f"watcher {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="run the daemon until SIGTERM/SIGINT")
    sub.add_parser(
        "once", parents=[common], help="poll every source once and deliver what it caused"
    )
    sub.add_parser(
        "check", parents=[common], help="check config, connectivity and auth of every source"
    )
    test = sub.add_parser(
        "notify-test", parents=[common], help="send a test message to every alert channel"
    )
    test.add_argument("--subscription", metavar="NAME", help="only this subscription")
    status = sub.add_parser(
        "status", parents=[common], help="sources, agents and their latest runs, the outbox"
    )
    status.add_argument("--source", metavar="NAME", help="only this source")
    status.add_argument("--agent", metavar="ID", help="only the agents this id, name or glob names")
    status.add_argument("--json", action="store_true", help="the view as JSON, for scripts")
    fetch = sub.add_parser("fetch", parents=[common], help="fetch the output files of one run")
    fetch.add_argument("source", help="the source's name")
    fetch.add_argument("agent_id")
    fetch.add_argument("run_id")
    fetch.add_argument(
        "--dest",
        metavar="DIR",
        type=Path,
        help="put the files in DIR (default: the [outputs] dir, under SOURCE/AGENT_ID/RUN_ID)",
    )
    fetch.add_argument("--all", action="store_true", help="every file: ignore include/exclude")
    silence_cli.add_parser(sub, common)
    demo = sub.add_parser(
        "demo", parents=[common], help="run against a built-in simulator (no config needed)"
    )
    demo.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    demo.add_argument(
        "--port",
        type=int,
        default=0,
        help="ports of the Cloud, ACC and automation-runs simulators: PORT, PORT+1, PORT+2 "
        "(default: any free)",
    )
    demo.add_argument(
        "--listen",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="the status page, metrics and event stream (default: a free port on 127.0.0.1, "
        'logged at start; "" for none)',
    )
    demo.add_argument("--seed", type=int, default=7, help="simulator random seed")
    demo.add_argument(
        "--tick", type=float, default=1.5, help="seconds per step of a simulated run (default 1.5)"
    )
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=SHELLS)
    cli_help.describe(parser)
    return parser


def entry() -> int:
    """The process's entry point (`watcher`, `python -m watcher`). What the imports built —
    modules, classes, schemas — lives as long as the process: frozen, the collector never
    walks it again, neither while watcher polls nor when it exits (0.2 s of a 1.2 s `watcher
    once`). Tests call `main`, whose objects must stay collectable."""
    gc.freeze()
    return main()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "completion":  # needs no config
        print(script(build_parser(), args.shell), end="")
        return EXIT_OK
    try:
        if args.command == "demo":
            return asyncio.run(_demo(args))
        settings = _settings(args)
        logs.configure(settings.watcher.log_format, settings.watcher.log_level)
        if args.command == "status":
            from watcher.status_cli import status_command

            return status_command(settings, source=args.source, agent=args.agent, as_json=args.json)
        if args.command == "silence":
            return silence_cli.command(settings, args, sys.stdout, sys.stderr)
        if args.command == "notify-test":
            return asyncio.run(_notify_test(settings, args.subscription))
        if args.command == "fetch":
            from watcher.fetch_cli import fetch_command

            run = (args.source, args.agent_id, args.run_id)
            fetching = fetch_command(settings, *run, dest=args.dest, everything=args.all)
            return asyncio.run(fetching)
        if args.command == "run":
            return asyncio.run(_run(settings, lambda path: _settings(args, path)))
        return asyncio.run(_COMMANDS[args.command](settings))
    except ConfigError as err:
        for problem in err.problems:
            print(f"watcher: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except (WatcherError, OSError) as err:
        print(f"watcher: {_one_line(err)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_FAILED


def _settings(args: argparse.Namespace, path: Path | None = None) -> Settings:
    """The settings from the config file (`path`, else the one the options name), with the
    command-line overrides applied: at start, and again on every reload of `watcher run`."""
    settings = load_settings(path or find_config(args.config))
    overrides = {
        k: v
        for k, v in (("log_format", args.log_format), ("log_level", args.log_level))
        if v is not None
    }
    if overrides:
        settings.watcher = settings.watcher.model_copy(update=overrides)
    if not settings.sources:
        raise ConfigError(["sources: no source configured (add a [[sources]] table)"])
    return settings


async def _run(settings: Settings, loader: Loader = load_settings) -> int:
    from watcher.daemon import Daemon  # the scheduler: only the daemon needs it

    async with App(settings) as app:
        code = await Daemon(app, loader=loader).run()
    if app.failure is not None:
        print(f"watcher: {_one_line(app.failure)}", file=sys.stderr)
    return _leave(app, code)


async def _once(settings: Settings) -> int:
    async with App(settings) as app:
        reports = await app.once()
    failed = [r for r in reports if not r.ok]
    for report in failed:
        print(
            f"watcher: {report.error_line or report.source + ': state write failed'}",
            file=sys.stderr,
        )
    if app.failure is not None:
        print(f"watcher: {_one_line(app.failure)}", file=sys.stderr)
    return _leave(app, EXIT_FAILED if failed or app.failure else EXIT_OK)


def _leave(app: App, code: int) -> int:
    """The exit code — or, when a delivery was abandoned at its deadline, exit right here:
    its send may still be running in one of apprise's threads, which the interpreter would
    otherwise wait for at exit (a minute for a slow channel), and which would then deliver an
    alert that the outbox still holds for the next start. The state file is closed by now."""
    if app.abandoned:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


async def _check(settings: Settings, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    width = max([8, *(len(source.name) for source in settings.sources)])
    print(f"{'config':<{width}} ok  {len(settings.sources)} source(s)", file=out)
    async with make_session() as session:
        results = await check_sources(settings, HttpClient(session))
    for result in results:
        for line in result.lines:
            mark = "ok  " if line.ok else "FAIL"
            print(f"{result.name:<{width}} {mark} {line.text}", file=out)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


async def _notify_test(settings: Settings, only: str | None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    names = [s.name for s in settings.subscriptions]
    if only is not None and only not in names:
        raise ConfigError([f"--subscription: no subscription named {only!r} (have: {names})"])
    if not names:
        raise ConfigError(["subscriptions: none configured (add a [[subscriptions]] table)"])
    channels = [
        c for c in build_channels(settings, clock=utcnow) if only in (None, c.subscription.name)
    ]
    results = await asyncio.gather(*(c.send_test() for c in channels))
    for channel, (ok, why) in zip(channels, results, strict=True):
        mark = "ok  " if ok else "FAIL"
        detail = f"  {why}" if why else ""
        print(f"{mark} {channel.subscription.name}: {channel.masked}{detail}", file=out)
    return EXIT_OK if all(ok for ok, _ in results) else EXIT_FAILED


async def _demo(args: argparse.Namespace) -> int:
    from watcher_sim.demo import start_platforms

    logs.configure(args.log_format or "console", args.log_level or "info")
    platforms = await start_platforms(seed=args.seed, tick=args.tick, port=args.port)
    try:
        with tempfile.TemporaryDirectory(prefix="watcher-demo-") as tmp:
            settings = Settings(
                watcher=WatcherSection(
                    state_path=Path(tmp) / "state.db",
                    events_path=Path(tmp) / "events.jsonl",
                    log_format=args.log_format or "console",
                ),
                sources=platforms.sources,
                rules=platforms.rules,
                http=HttpSection(listen=args.listen),
            )
            print(
                f"watcher demo: simulated {platforms.describe()}; state in {tmp}; Ctrl-C to stop",
                file=sys.stderr,
            )
            stop = asyncio.Event()
            if args.duration:
                asyncio.get_running_loop().call_later(args.duration, stop.set)
            from watcher.daemon import Daemon

            async with App(settings) as app:
                await Daemon(app).run(stop)
    finally:
        await platforms.close()
    return EXIT_OK


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


_COMMANDS = {"run": _run, "once": _once, "check": _check}
