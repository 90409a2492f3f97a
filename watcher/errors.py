"""The few typed errors watcher raises across module boundaries.

Every message is one line that names the problem (the source, the request, the HTTP status) and
never carries a secret: sources build them from the method, the URL path and the response, never
from headers.
"""

from __future__ import annotations


class WatcherError(Exception):
    """Base of every error watcher raises on purpose."""


class ConfigError(WatcherError):
    """The configuration is unusable; `problems` has one line per problem, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class SourceError(WatcherError):
    """A source could not produce a listing. A poll that raises this changes no state."""

    kind = "error"

    def __init__(
        self,
        source: str,
        message: str,
        *,
        agent_id: str | None = None,
        http_status: int | None = None,
    ) -> None:
        self.source = source
        self.agent_id = agent_id
        self.http_status = http_status
        self.detail = message
        super().__init__(f"{source}: {message}")


class SourceUnavailable(SourceError):
    """Temporary: the platform is down, slow, rate-limiting or unreachable. Try again later."""

    kind = "unavailable"

    def __init__(
        self,
        source: str,
        message: str,
        *,
        retry_after: float | None = None,
        agent_id: str | None = None,
        http_status: int | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(source, message, agent_id=agent_id, http_status=http_status)
        self.retry_after = retry_after
        self.timed_out = timed_out


class SourceThrottled(SourceUnavailable):
    """The platform answered 429 and its wait could not be sat out within the request: its
    request budget, not an outage. The poll goes on without this answer; never a failure."""

    kind = "throttled"

    @classmethod
    def of(cls, err: SourceUnavailable) -> SourceThrottled:
        return cls(
            err.source,
            err.detail,
            retry_after=err.retry_after,
            agent_id=err.agent_id,
            http_status=err.http_status,
        )


class BudgetSpent(SourceThrottled):
    """watcher's own request budget has no slot within the wait allowed (`watcher once` does
    not sit out a window a previous run spent): the request is not sent, the agent waits for
    the next run. Never a failure."""

    kind = "deferred"


class SourceAuthError(SourceError):
    """The platform refused our credentials (401/403). Retrying will not help."""

    kind = "auth"


class SourceProtocolError(SourceError):
    """The platform answered something we cannot read: HTML, truncated JSON, wrong shape, 4xx."""

    kind = "protocol"


class SourceTooLarge(SourceError):
    """A download grew past its size limit. Permanent for that file: trying again cannot help."""

    kind = "too_large"
