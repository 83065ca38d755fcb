"""Checkpoints and input files in object stores, as `zoo check` looks at them.

``RemotePath`` answers the checkpoint reader's questions about a key in a store
(gs://, s3://, az:// ...) the way ``pathlib.Path`` answers them about a file,
so one code path reads local and remote checkpoints. ``Stores`` remembers,
for one check, what each store said: an object's metadata is asked once, and
a store that could not be asked (no backend, no credentials, no answer) is not
asked again.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, NamedTuple, TypeVar

from zoo.config.checks import Unreachable
from zoo.errors import CheckpointError, NetworkError, StoreAccessError, ZooError
from zoo.fsutil import MAX_INPUT_BYTES, check_key, read_limited

_MAGIC = re.compile(r"[*?[]")
_T = TypeVar("_T")


class StoreUnreachable(Exception):
    """A store that could not be asked. Deliberately no OSError, which the checkpoint
    reader would take for a missing file; ``gather`` turns it into an Unreachable fact."""

    def __init__(self, problem: Unreachable) -> None:
        super().__init__(problem.why)
        self.problem = problem


class Stores:
    """The object stores one check asks. A store that failed once (no package, no
    credentials, no answer) is not asked again: a dead network costs the backend's
    retries once, not once per field. What an object is (``info``) is asked once
    per check too: the reader asks ``is_dir``/``is_file`` of a path repeatedly."""

    def __init__(self) -> None:
        self._failed: dict[str, tuple[str, Unreachable]] = {}  # by store: the URL that failed, why
        self.infos: dict[str, dict[str, Any] | None] = {}  # by URL; None: no such object

    def path(self, url: str) -> RemotePath:
        """The object or prefix ``url`` names, or StoreUnreachable."""
        from zoo.objectstore import (
            open_filesystem,  # fsspec and the backend: for remote values only
        )

        store = _store_of(url)
        if store in self._failed:
            first, problem = self._failed[store]
            raise StoreUnreachable(Unreachable(f"{url}: not asked, as {store} failed for {first}", problem.fix))
        try:
            fs, key = open_filesystem(url)
        except ZooError as exc:
            raise self.failed(url, exc) from None
        return RemotePath(fs, key, f"{_scheme(url)}://{key}", self)

    def failed(self, url: str, exc: Exception) -> StoreUnreachable:
        """What ``exc`` (from fsspec or a backend) says is missing; remembered for the store."""
        from zoo.objectstore import CREDENTIALS, EXTRAS, store_error

        scheme = _scheme(url)
        error = exc if isinstance(exc, ZooError) else store_error(exc, url, scheme)
        extra = EXTRAS.get(scheme)
        if isinstance(error, StoreAccessError):
            fix = CREDENTIALS.get(extra or "", "give zoo the store's credentials")
        elif isinstance(error, NetworkError):
            fix = "check the network and the store's address, then run zoo check again"
        else:
            fix = f"pip install 'tfod-zoo[{extra}]'" if extra else f"install the fsspec backend for {scheme}://"
        problem = Unreachable(str(error or exc), fix)
        self._failed[_store_of(url)] = (url, problem)
        return StoreUnreachable(problem)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _store_of(url: str) -> str:
    """``scheme://bucket``: what one set of credentials and one endpoint reach."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest.split('/', 1)[0]}"


class _Stat(NamedTuple):
    st_size: int


class RemotePath:
    """A key in an object store, spelled as a URL (``gs://bucket/key``), with the
    methods of ``pathlib.Path`` the checkpoint reader uses (CheckpointPath). Each
    question is one fsspec call; ``read_bytes`` is capped, and a name from a
    listing or a state file that is not a plain relative key names nothing."""

    def __init__(self, fs: Any, key: str | None, shown: str, stores: Stores) -> None:
        self._fs, self._key, self._shown, self._stores = fs, key, shown, stores

    def __str__(self) -> str:
        return self._shown

    def __repr__(self) -> str:
        return f"RemotePath({self._shown!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and str(other) == self._shown

    def __hash__(self) -> int:
        return hash(self._shown)

    @property
    def name(self) -> str:
        return self._shown.rsplit("/", 1)[-1]

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> RemotePath:
        if self._key is None or "/" not in self._key:
            return self  # a bucket is its own parent, as / is
        return RemotePath(self._fs, self._key.rsplit("/", 1)[0], self._shown.rsplit("/", 1)[0], self._stores)

    def __truediv__(self, key: Any) -> RemotePath:
        key = str(key)
        joined = f"{self._key}/{key}" if self._key is not None and _plain(key) else None  # None: names nothing
        return RemotePath(self._fs, joined, f"{self._shown}/{key}", self._stores)

    def with_name(self, name: str) -> RemotePath:
        return self.parent / name

    def with_suffix(self, suffix: str) -> RemotePath:
        return self.with_name(PurePosixPath(self.name).with_suffix(suffix).name)

    def is_dir(self) -> bool:
        return self._type() == "directory"

    def is_file(self) -> bool:
        return self._type() == "file"

    def stat(self) -> _Stat:
        return _Stat(int(self._info()["size"]))

    def glob(self, pattern: str) -> Iterator[RemotePath]:
        """Objects directly below matching ``pattern``; keys that are not plain are left out."""
        if self._key is None:
            return iter(())
        below = self._key + "/"
        names = (key[len(below) :] for key in self._glob(below + pattern) if key.startswith(below))
        return (self / name for name in names if "/" not in name and _plain(name))

    def matches(self) -> int:
        """How many objects this path, taken as a glob pattern, matches."""
        if self._key is None:
            return 0
        if not _MAGIC.search(self._key):
            return int(self.is_file())
        return len(self._glob(self._key))

    def read_bytes(self) -> bytes:
        def read() -> bytes:
            with self._fs.open(self._key, "rb") as handle:
                return read_limited(handle, MAX_INPUT_BYTES, self._shown, CheckpointError)

        if self._key is None:
            raise FileNotFoundError(self._shown)
        return self._ask(read)

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset``: one ranged read."""
        if self._key is None:
            raise FileNotFoundError(self._shown)
        # By keyword: s3fs's third positional parameter is a version id.
        return self._ask(lambda: self._fs.cat_file(self._key, start=offset, end=offset + size))

    def read_text(self, *, errors: str | None = None) -> str:
        return self.read_bytes().decode("utf-8", errors or "strict")

    def _glob(self, pattern: str) -> list[str]:
        try:
            return list(self._ask(self._fs.glob, pattern))
        except FileNotFoundError:  # no such bucket: as Path.glob, nothing matches
            return []

    def _type(self) -> str | None:
        try:
            return self._info().get("type")
        except FileNotFoundError:
            return None

    def _info(self) -> dict[str, Any]:
        if self._key is not None and self._shown not in self._stores.infos:
            try:
                self._stores.infos[self._shown] = self._ask(self._fs.info, self._key)
            except FileNotFoundError:
                self._stores.infos[self._shown] = None
        info = self._stores.infos.get(self._shown)
        if info is None:
            raise FileNotFoundError(self._shown)
        return info

    def _ask(self, call: Callable[..., _T], *args: Any) -> _T:
        try:
            return call(*args)
        except (FileNotFoundError, ZooError):
            raise  # a missing object, or read_limited's refusal: the reader reports both
        except Exception as exc:  # noqa: BLE001 - each backend raises its own types
            raise self._stores.failed(self._shown, exc) from None


def _plain(key: str) -> bool:
    """A relative key without "..", empty parts or control characters (fsutil.check_key)."""
    try:
        check_key(key, "", CheckpointError)
    except CheckpointError:
        return False
    return True
