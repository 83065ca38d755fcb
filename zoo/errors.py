"""The one exception hierarchy of zoo.

Every error a user can cause or meet (bad name, bad file, dead server, hostile
archive, full disk) is a ``ZooError`` whose message is one line that says what
went wrong and where. Each class carries the process exit code the CLI uses,
so the mapping lives here and nowhere else.

For library callers, each class also subclasses the standard exception that
fits (``ConnectionError``, ``FileNotFoundError``, ``ValueError`` ...), so
``except ConnectionError`` works as it would around requests, and carries
what the message says as attributes (``url``, ``status``, ``path``,
``model``, ``expected``/``actual``), so a caller never parses a message.
Attributes that do not apply to a given failure are None.
"""

from __future__ import annotations

from pathlib import Path


class ZooError(Exception):
    """Base class: anything zoo reports to the user."""

    exit_code = 1

    def __init__(self, message: str, *, path: Path | str | None = None) -> None:
        super().__init__(message)
        self.path = path


class UsageError(ZooError, ValueError):
    """The request itself is malformed (bad option value, bad path)."""

    exit_code = 2


class UnknownModelError(ZooError, LookupError):
    """No registry entry matches the requested name; ``suggestions`` are the closest."""

    exit_code = 3

    def __init__(self, name: str, suggestions: list[str]) -> None:
        hint = f"; did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown model {name!r}{hint} (see `zoo list`)")
        self.model = self.name = name
        self.suggestions = suggestions


class RegistryError(ZooError, ValueError):
    """A registry or lock file is unreadable or does not follow the schema."""

    exit_code = 4


class NetworkError(ZooError, ConnectionError):
    """No source could deliver the file; ``url`` is the last one tried, ``status``
    its HTTP status when it answered with one."""

    exit_code = 5

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.url = url
        self.status = status


class IntegrityError(ZooError, ValueError):
    """Bytes or files differ from what was pinned or what a checkpoint needs;
    ``expected``/``actual`` hold the two sha256 or sizes where it is a mismatch."""

    exit_code = 6

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        path: Path | str | None = None,
        expected: str | int | None = None,
        actual: str | int | None = None,
    ) -> None:
        super().__init__(message, path=path)
        self.url = url
        self.expected = expected
        self.actual = actual


class UnverifiedError(IntegrityError):
    """``--require-verified`` refused bytes that no pin, mirror index or server hash vouches for."""


class CheckpointError(IntegrityError):
    """A checkpoint's files are missing, truncated, malformed or corrupt."""


class UnsafeArchiveError(ZooError, ValueError):
    """An archive tries to write outside its target or to expand without bound."""

    exit_code = 7


class OfflineMissError(ZooError, FileNotFoundError):
    """Offline mode is on and ``model`` is neither cached nor on a local mirror."""

    exit_code = 8

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class DiskFullError(ZooError, OSError):
    """The disk (or a size limit) ran out while writing ``path``."""

    exit_code = 9


class NotCachedError(ZooError, FileNotFoundError):
    """A cache operation named a ``model`` that is not in the cache."""

    exit_code = 10

    def __init__(self, message: str, *, model: str | None = None) -> None:
        super().__init__(message)
        self.model = model


class ConfigError(ZooError, ValueError):
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
        super().__init__(message, path=source)
        self.source = source
        self.line = line
        self.column = column


class RejectedConfigError(ZooError, ValueError):
    """`zoo check` found errors, or `zoo config` refused to write a config that would fail."""

    exit_code = 12


class StoreAccessError(ZooError, PermissionError):
    """An object store (or a directory) refused access, or no credentials were
    found for it; the message names the variable to set. ``url`` is where."""

    exit_code = 13

    def __init__(self, message: str, *, url: str | None = None) -> None:
        super().__init__(message, path=url)
        self.url = url


EXIT_CODES: dict[str, int] = {
    cls.__name__: cls.exit_code
    for cls in (
        ZooError,
        UsageError,
        UnknownModelError,
        RegistryError,
        NetworkError,
        IntegrityError,
        UnverifiedError,
        CheckpointError,
        UnsafeArchiveError,
        OfflineMissError,
        DiskFullError,
        NotCachedError,
        ConfigError,
        RejectedConfigError,
        StoreAccessError,
    )
}
