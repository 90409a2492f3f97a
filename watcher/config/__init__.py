"""watcher's configuration: the models, the loader, the problems, the reload plan.

sources.py        one [[sources]] entry (its rules come from its kind: kinds.py)
subscriptions.py  one [[subscriptions]] entry
outputs.py        [outputs]
sections.py       [watcher] and [http]
settings.py       the root model, `Settings`
loader.py         the file, ${NAME}, WATCHER_* and *_file: `load_settings`
problems.py       one line per problem, naming its key, never a value
rules.py          [[rules]]: stuck runs, missed schedules, anomalies, retries
reload.py         what a reload changes
"""

from watcher.config.kinds import KindRules, kinds, register
from watcher.config.loader import CONFIG_ENV_VAR, DEFAULT_SEARCH_PATHS, find_config, load_settings
from watcher.config.outputs import (
    OUTPUT_FILE_KINDS,
    OUTPUT_OUTCOMES,
    OutputsConfig,
    OutputSourceRules,
)
from watcher.config.problems import describe_validation_error
from watcher.config.reload import ReloadPlan, plan_reload
from watcher.config.rules import RetryRule, RuleConfig
from watcher.config.sections import HttpSection, WatcherSection, parse_listen
from watcher.config.settings import ENV_PREFIX, Settings
from watcher.config.sources import DASHBOARD_URL_FIELDS, AuthScheme, SourceConfig
from watcher.config.subscriptions import (
    SUBSCRIPTION_EVENTS,
    SUBSCRIPTION_OUTCOMES,
    SubscriptionConfig,
)

__all__ = [
    "CONFIG_ENV_VAR",
    "DASHBOARD_URL_FIELDS",
    "DEFAULT_SEARCH_PATHS",
    "ENV_PREFIX",
    "OUTPUT_FILE_KINDS",
    "OUTPUT_OUTCOMES",
    "SUBSCRIPTION_EVENTS",
    "SUBSCRIPTION_OUTCOMES",
    "AuthScheme",
    "HttpSection",
    "KindRules",
    "OutputSourceRules",
    "OutputsConfig",
    "ReloadPlan",
    "RetryRule",
    "RuleConfig",
    "Settings",
    "SourceConfig",
    "SubscriptionConfig",
    "WatcherSection",
    "describe_validation_error",
    "find_config",
    "kinds",
    "load_settings",
    "parse_listen",
    "plan_reload",
    "register",
]
