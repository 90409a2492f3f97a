"""The platforms a source can be, as the config sees them.

Each platform declares its rules on its source class (`watcher.sources`): how to read one of
its agent ids, which credential schemes it takes, its default request budget, whether it can
list every agent (`"*"`), and the config keys that mean something for it alone. Declaring a
`Source` subclass registers them, so adding a platform is one new module in `watcher/sources/`
— the config learns of it from there, and `kinds()` loads the built-in ones on first use.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

AgentParser = Callable[[object], str | None]


@dataclass(frozen=True, slots=True)
class KindRules:
    """What the config of a source of one kind may say."""

    name: str
    """The `kind` value, e.g. "sequentum_cloud"."""
    parse_agent: AgentParser
    """One configured agent as text, or None when it is not one of this platform's ids."""
    agent_complaint: str
    """What to say of an agent that `parse_agent` refuses."""
    auth_schemes: tuple[str, ...]
    """The credential schemes the platform takes; the first is the default."""
    requests_per_minute: int = 0
    """The default request budget (0: no limit)."""
    wildcard: bool = True
    """Can it watch every agent (`agents = ["*"]`)?"""
    agents_required: str = ""
    """Without a wildcard: what `agents` must list instead, and why."""
    keys: tuple[str, ...] = field(default=())
    """Config keys that mean something for this kind only."""


_KINDS: dict[str, KindRules] = {}


def register(rules: KindRules) -> None:
    _KINDS[rules.name] = rules


def kinds() -> Mapping[str, KindRules]:
    """Every known kind. The first call loads the built-in sources, which register theirs."""
    _load_builtin()
    return _KINDS


@functools.cache
def _load_builtin() -> None:
    import watcher.sources as package

    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
