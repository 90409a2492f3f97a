"""The command line as operators meet it: every command's help with examples, and shell
completion generated from the same parser (bash checked by bash itself)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from watcher.cli import build_parser, main
from watcher.cli_help import commands

from .processes import ROOT

COMMANDS_IN_ORDER = list(commands(build_parser()))
COMMANDS = sorted(COMMANDS_IN_ORDER)
WATCHER = f"{sys.executable} -m watcher"


def test_every_command_is_described() -> None:
    assert {"run", "once", "check", "status", "notify-test", "fetch", "demo", "completion"} <= set(
        COMMANDS
    )


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_help_with_examples(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as leaving:
        main([command, "--help"])
    assert leaving.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: watcher {command}")
    description = text.split("\n\n")[1]
    assert not description.startswith(("positional arguments", "options")), "no description"
    examples = text.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith("  ") for line in examples)
    assert any(f"watcher {command}" in line for line in examples)
    assert max(len(line) for line in text.splitlines()) <= 100


def test_the_top_level_help_has_examples(capsys) -> None:
    with pytest.raises(SystemExit) as leaving:
        main(["--help"])
    assert leaving.value.code == 0
    assert "\nexamples:\n  watcher check" in capsys.readouterr().out


def complete(*words: str) -> list[str]:
    """What bash offers for the last of `words` after `watcher`, with the script sourced."""
    line = " ".join(["watcher", *words])
    command = (
        f"source <({WATCHER} completion bash) || exit 3\n"
        f"COMP_WORDS=(watcher {' '.join(repr(w) for w in words)})\n"
        f"COMP_CWORD={len(words)}; COMP_LINE={line!r}; COMP_POINT={len(line)}\n"
        '_shtab_watcher && printf "%s\\n" "${COMPREPLY[@]}"'
    )
    done = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_bash_script_is_valid(tmp_path, capsys) -> None:
    assert main(["completion", "bash"]) == 0
    script = tmp_path / "watcher.bash"
    script.write_text(capsys.readouterr().out)
    checked = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "complete -o bashdefault -F _shtab_watcher watcher" in script.read_text()


def test_bash_completes_commands_options_and_choices() -> None:
    assert complete("") == COMMANDS_IN_ORDER
    assert complete("no") == ["notify-test"]
    assert complete("fetch", "--d") == ["--dest"]
    assert complete("run", "--log-level", "") == ["debug", "info", "warning", "error"]
    assert complete("completion", "") == ["bash", "zsh"]


def test_the_zsh_script_names_every_command(capsys) -> None:
    assert main(["completion", "zsh"]) == 0
    script = capsys.readouterr().out
    assert script.startswith("#compdef watcher")
    for command in COMMANDS:
        assert command in script
    if shutil.which("zsh"):
        checked = subprocess.run(["zsh", "-n"], input=script, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr
