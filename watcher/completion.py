"""`watcher completion bash|zsh`: a shell completion script, generated from the argument parser
by shtab, so it never drifts from the commands, options and choices it completes.

Options that take a path are marked for the shell's file (or directory) completion here, by
their destination, so the parser in cli.py needs to know nothing of shells.
"""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")

_FILES = {"config"}
"""Destinations completed with file names."""
_DIRECTORIES = {"dest"}
"""Destinations completed with directory names."""


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script of `parser` for `shell` (one of SHELLS)."""
    import shtab

    for each in _parsers(parser):
        for action in each._actions:
            if action.dest in _FILES:
                action.complete = shtab.FILE  # type: ignore[attr-defined]
            elif action.dest in _DIRECTORIES:
                action.complete = shtab.DIRECTORY  # type: ignore[attr-defined]
    text: str = shtab.complete(parser, shell=shell)
    return text


def _parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """`parser` and its subcommands' parsers, at any depth."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found
