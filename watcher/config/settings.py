"""The whole configuration: `Settings`, the root of the models."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import (
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from watcher.config.outputs import OutputsConfig
from watcher.config.problems import problem_detail, validate_reporting_all
from watcher.config.rules import RuleConfig
from watcher.config.sections import HttpSection, WatcherSection
from watcher.config.sources import SourceConfig
from watcher.config.subscriptions import SubscriptionConfig

ENV_PREFIX = "WATCHER_"
"""Prefix of every environment variable that overrides a setting."""


class Settings(BaseSettings):
    """The whole configuration. Build it with `load_settings`, or in code (tests, the demo).

    In code the arguments are used as given: the environment is applied by `load_settings` only
    (`settings_customise_sources` keeps just the init arguments).
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid"
    )

    watcher: WatcherSection = Field(default_factory=WatcherSection)
    sources: list[SourceConfig] = Field(default_factory=list)
    subscriptions: list[SubscriptionConfig] = Field(default_factory=list)
    http: HttpSection = Field(default_factory=HttpSection)
    outputs: OutputsConfig = Field(default_factory=OutputsConfig)
    rules: list[RuleConfig] = Field(default_factory=list)

    _config_path: Path | None = PrivateAttr(default=None)

    @property
    def config_path(self) -> Path | None:
        """The file these settings were loaded from; None when built in code."""
        return self._config_path

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the init arguments: `load_settings` applies the environment it is given."""
        return (init_settings,)

    @field_validator("sources", "subscriptions", "rules", mode="wrap")
    @classmethod
    def _unique_names(
        cls, value: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo
    ) -> Any:
        """Names are unique; checked on the raw list so other errors are reported too."""
        what = {"sources": "source", "subscriptions": "subscription"}.get(
            info.field_name or "", "rule"
        )
        problems: list[InitErrorDetails] = []
        if isinstance(value, list):
            seen: set[str] = set()
            for index, item in enumerate(value):
                name = (
                    item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)
                )
                if isinstance(name, str) and name in seen:
                    problems.append(
                        problem_detail((index, "name"), f'duplicate {what} name "{name}"')
                    )
                elif isinstance(name, str):
                    seen.add(name)
        return validate_reporting_all(cls.__name__, lambda: handler(value), problems)

    @model_validator(mode="after")
    def _subscriptions_and_rules_name_known_sources(self) -> Settings:
        known = {source.name for source in self.sources}
        tables: tuple[tuple[str, Sequence[SubscriptionConfig | RuleConfig]], ...] = (
            ("subscriptions", self.subscriptions),
            ("rules", self.rules),
        )
        problems = [
            problem_detail((table, i, "sources"), f'unknown source "{name}"')
            for table, entries in tables
            for i, entry in enumerate(entries)
            for name in entry.sources
            if name not in known
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self

    @model_validator(mode="after")
    def _source_failed_after(self) -> Settings:
        """A source without its own `source_failed_after` takes the `[watcher]` one."""
        for source in self.sources:
            if source.source_failed_after is None:
                source.source_failed_after = self.watcher.source_failed_after
        return self

    @model_validator(mode="after")
    def _outputs_name_known_sources(self) -> Settings:
        known = {source.name for source in self.sources}
        problems = [
            problem_detail(("outputs", "sources", name), f'unknown source "{name}"')
            for name in self.outputs.sources
            if name not in known
        ]
        if problems:
            raise ValidationError.from_exception_data(type(self).__name__, problems)
        return self
