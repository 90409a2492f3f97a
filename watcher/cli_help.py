"""What `watcher COMMAND --help` says beyond the options: what the command is for, and examples.

Kept apart from the parser in cli.py, where the options stay easy to read; `describe(parser)`
attaches a description and an epilog of examples to every command, printed as written
(RawDescriptionHelpFormatter). A command missing here gets no examples, which a test catches.
"""

from __future__ import annotations

import argparse
import textwrap

OVERVIEW = """\
examples:
  watcher check                     is the config valid, can every source be reached?
  watcher once                      poll every source once, deliver what changed
  watcher run                       the daemon (systemd, a container)
  watcher status --source cloud     what watcher knows, without touching the daemon
  watcher COMMAND --help            more on one command

The config file is --config PATH, else $WATCHER_CONFIG, else ./watcher.toml, else
/etc/watcher/watcher.toml. Exit codes: 0 ok, 1 a source or the state file failed, 2 invalid
configuration."""

COMMANDS: dict[str, tuple[str, str, str]] = {
    # name: (summary — the first line, shown by zsh beside the name; details; examples)
    "run": (
        "Run the daemon until SIGTERM or SIGINT.",
        "Every source is polled on its schedule; each change is recorded as an event, "
        "alerted to the subscribed channels and its outputs fetched. SIGHUP re-reads the "
        "config file; SIGTERM lets a poll in flight commit and deliveries drain.",
        """\
  watcher run
  watcher --config /etc/watcher/watcher.toml run --log-format json
  systemctl reload watcher          # SIGHUP: re-read the config""",
    ),
    "once": (
        "Poll every source once and deliver what it caused.",
        "The alerts and outputs the poll caused are delivered within shutdown_timeout; "
        "the exit code is 1 if a source could not be read. The first poll of a source "
        "records its history without alerting.",
        """\
  watcher once
  watcher once --log-level debug    # every request and decision""",
    ),
    "check": (
        "Check the config, connectivity and auth of every source.",
        "Each source is asked for its agents with its credentials, and the request budget "
        "says how soon a change is seen. Nothing is written; the exit code is 1 if a "
        "source fails.",
        """\
  watcher check
  WATCHER_CONFIG=./staging.toml watcher check""",
    ),
    "status": (
        "The watched agents, their latest runs and the outbox.",
        "Read from the state file, per channel too: what waits, since when, and the last "
        "error. Safe while the daemon runs: nothing is written.",
        """\
  watcher status
  watcher status --source cloud""",
    ),
    "notify-test": (
        "Send a test message to every alert channel.",
        "The message is clearly marked as a test. One line per channel says whether it "
        "worked (and why not); the exit code is 1 if one failed.",
        """\
  watcher notify-test
  watcher notify-test --subscription oncall""",
    ),
    "fetch": (
        "Fetch the output files of one run.",
        "To disk, as the [outputs] section would: verified, resumable, never a partial file "
        "under its final name. The exit code is 1 if a file could not be fetched.",
        """\
  watcher fetch cloud 2537 22552
  watcher fetch cloud 2537 22552 --dest ./run-22552
  watcher fetch cloud 2537 22552 --all      # every file: ignore include/exclude""",
    ),
    "silence": (
        "Silence alerts for a while: add, list, expire.",
        "A silence matches events by source, agent, outcome and type (globs allowed) from "
        "its start to its end; what it matches is recorded as notification.suppressed and "
        "never sent, not even later. It applies to a running daemon at its next delivery; "
        "the same is served at /api/silences.",
        """\
  watcher silence add --agent 'amazon-*' --for 2h --comment 'new parser, known to fail'
  watcher silence add --source acc --type 'run.*' --until 2026-12-24T08:00 --comment freeze
  watcher silence list --json
  watcher silence expire 3f2a9c1d""",
    ),
    "demo": (
        "Run against simulated platforms: no config, no account.",
        "Sequentum Cloud, the Agent Control Center and the automation-runs API are "
        "simulated on 127.0.0.1 and watched by the daemon; events appear on the console.",
        """\
  watcher demo
  watcher demo --duration 30 --seed 3""",
    ),
    "completion": (
        "Print a shell completion script (bash or zsh).",
        "The script is generated from watcher's own commands and options, so it completes "
        "what this version has.",
        """\
  source <(watcher completion bash)                          # this shell only
  watcher completion bash > ~/.local/share/bash-completion/completions/watcher
  watcher completion zsh > "${fpath[1]}/_watcher"            # then: compinit""",
    ),
}


def describe(parser: argparse.ArgumentParser) -> None:
    """Attach the overview to `parser` and a description and examples to each command."""
    parser.epilog = OVERVIEW
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    for name, command in commands(parser).items():
        if name in COMMANDS:
            summary, details, examples = COMMANDS[name]
            command.description = f"{summary}\n\n{textwrap.fill(details, width=79)}"
            command.epilog = f"examples:\n{examples}"
            command.formatter_class = argparse.RawDescriptionHelpFormatter


def commands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """The commands of `parser` by name."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}
