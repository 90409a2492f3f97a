"""Finding and loading the config file: TOML, `${NAME}` references, `WATCHER_*` overrides,
`*_file` secrets.

`load_settings` is what the CLI calls. From lowest to highest priority, a value comes from:

1. the model defaults;
2. the TOML file, after every `${NAME}` in a string value is replaced by that environment
   variable (`$${` stands for a literal `${`);
3. the environment, through pydantic-settings' env source: `WATCHER_<FIELD>` holds JSON
   (`WATCHER_SOURCES='[{...}]'` replaces the whole source list) and `WATCHER_<FIELD>__<KEY>`
   one nested key (`WATCHER_WATCHER__LOG_FORMAT=console`);
4. the shorthands for the `[watcher]` table, `WATCHER_STATE_PATH`, `WATCHER_EVENTS_PATH`,
   `WATCHER_LOG_FORMAT`, `WATCHER_LOG_LEVEL` and `WATCHER_SHUTDOWN_TIMEOUT`, which win over the
   nested form of the same key.

Environment variable names are matched case-insensitively, as pydantic-settings does. Values
taken from the environment are not `${NAME}`-expanded. `WATCHER_CONFIG` names the file (see
`find_config`) and is not a setting.

Building `Settings(...)` in code uses exactly the arguments given: the environment is read only
by `load_settings`, from the mapping passed to it, so a test or the demo never picks up a stray
variable from the developer's shell. (In code, a relative `api_key_file` or `secret_file` is
relative to the working directory; `load_settings` resolves it against $CREDENTIALS_DIRECTORY or
the file's directory.)
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsError
from pydantic_settings.sources.utils import parse_env_vars

from watcher.config.problems import Loc, describe, format_loc
from watcher.config.sections import WatcherSection
from watcher.config.settings import ENV_PREFIX, Settings
from watcher.errors import ConfigError

CONFIG_ENV_VAR = "WATCHER_CONFIG"
"""The environment variable that names the config file; it is not itself a setting."""

DEFAULT_SEARCH_PATHS: tuple[str, ...] = ("./watcher.toml", "/etc/watcher/watcher.toml")
"""Where `find_config` looks, in order, when neither --config nor WATCHER_CONFIG is given."""

_REFERENCE = re.compile(r"\$\$\{|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}|\$\{")


def find_config(
    cli_path: str | Path | None,
    env: Mapping[str, str] = os.environ,
    search_paths: Sequence[str | Path] = DEFAULT_SEARCH_PATHS,
) -> Path:
    """The config file to load: --config PATH, else $WATCHER_CONFIG, else the first search path
    that exists. An explicitly named file must exist. Returns an absolute path."""
    for explicit in (cli_path, env.get(CONFIG_ENV_VAR)):
        if explicit is not None and str(explicit) != "":
            path = Path(explicit)
            if not path.is_file():
                reason = "not a file" if path.exists() else "no such file"
                raise ConfigError([f"config: {path}: {reason}"])
            return path.absolute()
    for candidate in search_paths:
        if Path(candidate).is_file():
            return Path(candidate).absolute()
    tried = ", ".join(str(candidate) for candidate in search_paths)
    raise ConfigError(
        [
            f"config: no config file found (tried {tried}); "
            f"pass --config PATH or set {CONFIG_ENV_VAR}"
        ]
    )


def load_settings(path: Path, env: Mapping[str, str] = os.environ) -> Settings:
    """Read, expand, override and validate the config file at `path`.

    Raises `ConfigError` with one line per problem; see the module docstring for the order in
    which the file and the environment apply.
    """
    path = Path(path)
    data = _read_toml(path)
    expansion_problems = _expand_references(data, env, ())
    overrides, problems = _env_overrides(env)
    from_env = _leaf_paths(overrides)
    problems += [
        f"{format_loc(loc)}: {message}"
        for loc, message in expansion_problems
        if not _under_any(loc, from_env)
    ]
    unexpanded = [loc for loc, _ in expansion_problems]
    merged = _deep_merge(data, overrides)
    for key in [key for key in merged if key not in Settings.model_fields]:
        # Checked here: BaseSettings.__init__ would take a key like "_env_file" as an option.
        problems.append(f"{key}: unknown key")
        del merged[key]
    _resolve_key_files(merged, env, path.absolute().parent)
    try:
        settings = Settings(**merged)
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_input=False):
            loc = tuple(error["loc"])
            if _under_any(loc, unexpanded):
                continue  # the value still holds the `${NAME}` already reported
            origin = " (from the environment)" if _under_any(loc, from_env) else ""
            problems.append(f"{format_loc(loc)}: {describe(error)}{origin}")
    if problems:
        raise ConfigError(problems)
    settings._config_path = path
    return settings


def _resolve_key_files(data: dict[str, Any], env: Mapping[str, str], config_dir: Path) -> None:
    """Make each relative secret file (a source's `api_key_file`, a subscription's
    `secret_file`, `[http] token_file`) absolute, in place: under $CREDENTIALS_DIRECTORY when it
    is set (systemd's LoadCredential=, so `api_key_file = "sequentum"` names a credential), else
    under the config file's directory."""
    credentials = env.get("CREDENTIALS_DIRECTORY")
    base = Path(credentials) if credentials else config_dir
    keys: list[tuple[dict[str, Any], str]] = []
    for table, key in (("sources", "api_key_file"), ("subscriptions", "secret_file")):
        entries = data.get(table)
        if isinstance(entries, list):  # else validation reports it
            keys += [(entry, key) for entry in entries if isinstance(entry, dict)]
    http = data.get("http")
    if isinstance(http, dict):
        keys.append((http, "token_file"))
    for entry, key in keys:
        key_file = entry.get(key)
        if isinstance(key_file, str) and key_file.strip():
            entry[key] = str(base / key_file)  # an absolute file stays as it is


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([f"config: {path}: cannot read: {exc.strerror or exc}"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"config: {path}: not UTF-8 text"]) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise ConfigError([f"config: {path}: {exc}"]) from None


def _expand_references(node: Any, env: Mapping[str, str], loc: Loc) -> list[tuple[Loc, str]]:
    """Replace `${NAME}` in every string under `node`, in place; return the problems by location.

    A string with a problem keeps its text, and `load_settings` drops the validation errors it
    then causes, so each mistake is reported once.
    """
    problems: list[tuple[Loc, str]] = []
    children: Iterable[tuple[str | int, Any]]
    if isinstance(node, dict):
        children = list(node.items())
    elif isinstance(node, list):
        children = list(enumerate(node))
    else:
        return problems
    for key, value in children:
        if isinstance(value, str):
            expanded, missing = _expand_string(value, env)
            problems += [((*loc, key), message) for message in missing]
            if not missing:
                node[key] = expanded
        else:
            problems += _expand_references(value, env, (*loc, key))
    return problems


def _expand_string(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`value` with its references replaced, and a message for each one that cannot be."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        name = match.group("name")
        if name is None:
            problems.append("malformed ${...} reference (write $${ for a literal ${)")
            return ""
        if name not in env:
            problems.append(f"environment variable {name} is not set")
            return ""
        return env[name]

    return _REFERENCE.sub(replace, value), problems


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._env, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _env_overrides(env: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    """The values the environment sets, as a nested dict like the TOML's, and its problems."""
    problems: list[str] = []
    by_name = {name.lower(): name for name in env}
    env = dict(env)
    for field in Settings.model_fields:  # WATCHER_<FIELD> holds JSON for every top-level field
        name = by_name.get(f"{ENV_PREFIX}{field}".lower())
        if name is None:
            continue
        try:
            json.loads(env[name])
        except json.JSONDecodeError as exc:
            problems.append(
                f"{name}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
            )
            del env[name]
    try:
        overrides = _MappingEnvSource(Settings, env)()
    except SettingsError as exc:  # not expected after the JSON check; never show the value
        return {}, [*problems, f"environment: cannot read the {ENV_PREFIX}* variables: {exc}"]
    if isinstance(overrides.get("sources"), dict):
        problems.append(
            f"{ENV_PREFIX}SOURCES__*: per-source variables are not supported; set "
            f"{ENV_PREFIX}SOURCES to a JSON list, or use ${{NAME}} in the file"
        )
        del overrides["sources"]
    shorthands = {
        field: env[by_name[f"{ENV_PREFIX}{field}".lower()]]
        for field in WatcherSection.model_fields
        if f"{ENV_PREFIX}{field}".lower() in by_name
    }
    section = overrides.get("watcher")
    if shorthands and section is None:
        overrides["watcher"] = shorthands
    elif shorthands and isinstance(section, dict):
        section.update(shorthands)
    # else WATCHER_WATCHER is JSON but not an object: validation reports "must be a table"
    return overrides, problems


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `override` applied: tables merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaf_paths(tree: Mapping[str, Any], loc: Loc = ()) -> list[Loc]:
    """The locations of the non-table values in `tree`."""
    paths: list[Loc] = []
    for key, value in tree.items():
        if isinstance(value, Mapping):
            paths += _leaf_paths(value, (*loc, key))
        else:
            paths.append((*loc, key))
    return paths


def _under_any(loc: Loc, prefixes: Iterable[Loc]) -> bool:
    """Whether `loc` is one of `prefixes` or lies inside one."""
    return any(loc[: len(prefix)] == prefix for prefix in prefixes)
