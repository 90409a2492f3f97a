"""The `[outputs]` table: which files of finished runs are fetched, and where to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from watcher.config.problems import DIGITS, problem

OUTPUT_OUTCOMES = ("success", "failure", "stopped", "skipped")
OUTPUT_FILE_KINDS = ("data", "log", "other")


def _check_outcomes(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    if not value:
        raise problem("must name at least one outcome")
    if any(item not in OUTPUT_OUTCOMES for item in value):
        raise problem(f"unknown outcome (each must be one of {', '.join(OUTPUT_OUTCOMES)})")
    return value


def _check_patterns(value: list[str] | None) -> list[str] | None:
    """File selectors: a name glob ("*.csv", matched in any case) or "type:KIND" (type:data,
    type:log, type:other, or type:N for a platform's numeric file type)."""
    if value is None:
        return None
    patterns = [item.strip() for item in value]
    for pattern in patterns:
        if not pattern:
            raise problem("a pattern must not be empty")
        if pattern.lower().startswith("type:"):
            kind = pattern[5:].strip().lower()
            if kind not in OUTPUT_FILE_KINDS and not DIGITS.fullmatch(kind):
                raise problem("unknown file type (type:data, type:log, type:other or type:N)")
    return patterns


class OutputSourceRules(BaseModel):
    """One `[outputs.sources.NAME]` table: what to fetch from one source. Each key left out
    takes the `[outputs]` value."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    """false: never fetch this source's outputs."""
    on: list[str] | None = None
    include: list[str] | None = None
    exclude: list[str] | None = None
    extract: bool | None = None

    _outcomes = field_validator("on")(_check_outcomes)
    _patterns = field_validator("include", "exclude")(_check_patterns)


class OutputsConfig(BaseModel):
    """The `[outputs]` table: fetch the files of finished runs to DIR/SOURCE/AGENT_ID/RUN_ID/."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    enabled: bool = False
    dir: Path = Path("/var/lib/watcher/outputs")
    on: list[str] = Field(default_factory=lambda: ["success"])
    """Outcomes of `run.finished` whose files are fetched; see OUTPUT_OUTCOMES."""
    include: list[str] = Field(default_factory=list)
    """Only files matching one of these (name globs or type:KIND); empty means every file."""
    exclude: list[str] = Field(default_factory=list)
    """Never files matching one of these; wins over include."""
    extract: bool = False
    """Unpack zip outputs (ACC run logs and backup data) beside the archive, safely."""
    max_file_bytes: int = Field(default=1 << 30, ge=1)
    """A larger file is not fetched (a permanent failure for that file); also caps each
    extracted entry."""
    concurrency: int = Field(default=4, ge=1, le=32)
    """Files downloaded at once, over all runs."""
    max_age: float = Field(default=24 * 3600.0, gt=0)
    """Seconds a failing fetch is retried (with backoff) before it is given up."""
    max_extract_bytes: int = Field(default=4 << 30, ge=1)
    max_extract_entries: int = Field(default=10_000, ge=1)
    max_extract_ratio: float = Field(default=200.0, gt=1)
    sources: dict[str, OutputSourceRules] = Field(default_factory=dict)
    """Per-source overrides, by source name."""

    _outcomes = field_validator("on")(_check_outcomes)
    _patterns = field_validator("include", "exclude")(_check_patterns)

    @field_validator("dir", mode="before")
    @classmethod
    def _dir_not_empty(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise problem("must not be empty")
        return value

    def for_source(self, name: str) -> OutputSourceRules:
        """The rules of source `name`, every key filled in from `[outputs]` where not set."""
        own = self.sources.get(name, OutputSourceRules())
        return OutputSourceRules(
            enabled=self.enabled and own.enabled,
            on=own.on if own.on is not None else list(self.on),
            include=own.include if own.include is not None else list(self.include),
            exclude=own.exclude if own.exclude is not None else list(self.exclude),
            extract=own.extract if own.extract is not None else self.extract,
        )
