"""Config problems: pydantic errors with our own wording, one line each, never the input.

Every problem names its key (`sources[0].base_url: not a URL`) and never repeats a configured
value, so no secret can leak through an error message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_core.core_schema import ErrorType

_T = TypeVar("_T")

Loc = tuple[str | int, ...]
"""Where a value sits in the config, e.g. ("sources", 0, "base_url")."""

WILDCARD = "*"
DIGITS = re.compile(r"[0-9]+")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


PROBLEM = "watcher_config"
_KNOWN_ERROR_TYPES = frozenset(get_args(ErrorType))


def problem(message: str) -> PydanticCustomError:
    """A validation error whose text is `message`, to raise from a validator."""
    return PydanticCustomError(PROBLEM, "{detail}", {"detail": message})


def problem_detail(loc: Loc, message: str) -> InitErrorDetails:
    """A validation error at `loc` (relative to the model or field being validated)."""
    return InitErrorDetails(type=problem(message), loc=loc, input=None)


def _reraisable(error: Mapping[str, Any]) -> InitErrorDetails:
    """Turn one entry of `ValidationError.errors()` back into something that can be raised."""
    ctx = error.get("ctx")
    error_type: str | PydanticCustomError = error["type"]
    if error_type == PROBLEM:
        error_type = problem(error["msg"])
        ctx = None
    elif error_type not in _KNOWN_ERROR_TYPES:
        error_type = PydanticCustomError(str(error_type), error["msg"])
        ctx = None
    details = InitErrorDetails(type=error_type, loc=tuple(error["loc"]), input=error.get("input"))
    if ctx:
        details["ctx"] = ctx
    return details


def validate_reporting_all(
    title: str, validate: Callable[[], _T], problems: list[InitErrorDetails]
) -> _T:
    """Run `validate` and raise its errors together with `problems`, so one pass reports all."""
    try:
        result = validate()
    except ValidationError as exc:
        errors = [_reraisable(error) for error in exc.errors()]
        raise ValidationError.from_exception_data(title, [*errors, *problems]) from None
    if problems:
        raise ValidationError.from_exception_data(title, problems)
    return result


def format_loc(loc: Iterable[str | int]) -> str:
    """("sources", 0, "base_url") -> "sources[0].base_url"."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or "config"


def _number(value: object) -> object:
    """A bound as a person writes it: 0 rather than 0.0."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


_FRIENDLY: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "missing": lambda ctx: "required",
    "extra_forbidden": lambda ctx: "unknown key",
    "literal_error": lambda ctx: f"must be one of {ctx['expected']}",
    "int_type": lambda ctx: "must be an integer",
    "int_parsing": lambda ctx: "must be an integer",
    "int_from_float": lambda ctx: "must be an integer",
    "float_type": lambda ctx: "must be a number",
    "float_parsing": lambda ctx: "must be a number",
    "finite_number": lambda ctx: "must be a finite number",
    "greater_than": lambda ctx: f"must be > {_number(ctx['gt'])}",
    "greater_than_equal": lambda ctx: f"must be >= {_number(ctx['ge'])}",
    "too_short": lambda ctx: f"must have at least {ctx.get('min_length', 1)} item(s)",
    "less_than": lambda ctx: f"must be < {_number(ctx['lt'])}",
    "less_than_equal": lambda ctx: f"must be <= {_number(ctx['le'])}",
    "bool_type": lambda ctx: "must be true or false",
    "bool_parsing": lambda ctx: "must be true or false",
    "string_type": lambda ctx: "must be a string",
    "list_type": lambda ctx: "must be a list",
    "model_type": lambda ctx: "must be a table",
    "model_attributes_type": lambda ctx: "must be a table",
    "dict_type": lambda ctx: "must be a table",
    "path_type": lambda ctx: "must be a path",
}


def describe(error: Mapping[str, Any]) -> str:
    """The text of one error, without the offending value (pydantic keeps it apart in `input`)."""
    friendly = _FRIENDLY.get(error["type"])
    if friendly is not None:
        return friendly(error.get("ctx") or {})
    message: str = error["msg"]
    return message.removeprefix("Value error, ")


def describe_validation_error(error: ValidationError) -> list[str]:
    """One line per problem, `key.path: what is wrong`, never showing a configured value.

    `load_settings` uses this; code that builds `Settings` or `SourceConfig` itself can use it to
    turn a `ValidationError` into `ConfigError(describe_validation_error(exc))`.
    """
    return [
        f"{format_loc(err['loc'])}: {describe(err)}"
        for err in error.errors(include_url=False, include_input=False)
    ]


def valid_name(value: str) -> str:
    """A source's or subscription's name: it appears in events, state and channel names."""
    if not _NAME.fullmatch(value):
        raise problem("must be 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def read_secret(path: Path) -> str:
    """A secret file's content without surrounding whitespace (`api_key_file`, `secret_file`);
    raises a problem naming the path, never the content."""
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise problem(f"cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise problem(f"cannot read {path}: not UTF-8 text") from None
    if not secret:
        raise problem(f"file is empty: {path}")
    return secret
