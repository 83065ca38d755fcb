"""The one exception hierarchy of zoo.

Every error a user can cause or meet (bad name, bad file, dead server, hostile
archive, full disk) is a ``ZooError`` whose message is one line that says what
went wrong and where. Each class carries the process exit code the CLI uses,
so the mapping lives here and nowhere else.
"""

from __future__ import annotations


class ZooError(Exception):
    """Base class: anything zoo reports to the user."""

    exit_code = 1


class UsageError(ZooError):
    """The request itself is malformed (bad option value, bad path)."""

    exit_code = 2


class UnknownModelError(ZooError):
    """No registry entry matches the requested name."""

    exit_code = 3

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint} (see `zoo list`)")
        self.name = name
        self.suggestions = suggestions


class RegistryError(ZooError):
    """A registry file is unreadable or does not follow the schema."""

    exit_code = 4


class NetworkError(ZooError):
    """A source could not be reached or refused the request."""

    exit_code = 5


class IntegrityError(ZooError):
    """Bytes or files differ from what was pinned or what a checkpoint needs."""

    exit_code = 6


class CheckpointError(IntegrityError):
    """A checkpoint's files are missing, truncated, malformed or corrupt."""


class UnsafeArchiveError(ZooError):
    """An archive tries to write outside its target or to expand without bound."""

    exit_code = 7


class OfflineMissError(ZooError):
    """Offline mode is on and the model is neither cached nor on a local mirror."""

    exit_code = 8


class DiskFullError(ZooError):
    """The disk (or a size limit) ran out while writing."""

    exit_code = 9


class NotCachedError(ZooError):
    """A cache operation named a model that is not in the cache."""

    exit_code = 10


class ConfigError(ZooError):
    """A pipeline config or label map cannot be parsed or is malformed.

    ``source``, ``line`` and ``column`` (1-based) locate the problem when it
    has a place in a file, so callers such as ``zoo check --json`` can report
    it without parsing the message.
    """

    exit_code = 11

    def __init__(
        self,
        message: str,
        source: str | None = None,
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.line = line
        self.column = column


class RejectedConfigError(ZooError):
    """`zoo check` found errors, or `zoo config` refused to write a config that would fail."""

    exit_code = 12


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        ZooError,
        UsageError,
        UnknownModelError,
        RegistryError,
        NetworkError,
        IntegrityError,
        CheckpointError,
        UnsafeArchiveError,
        OfflineMissError,
        DiskFullError,
        NotCachedError,
        ConfigError,
        RejectedConfigError,
    )
}
