"""Where a mirror's files live: a local directory, or any fsspec URL (s3://...)."""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any, ContextManager

from zoo.errors import UsageError
from zoo.fsutil import writing
from zoo.sources import is_local, local_path

LOCK_NAME = ".zoo-mirror.lock"


class LocalStore:
    """A directory; files are published by rename, so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.location = str(self.root)

    def size(self, relative: str) -> int | None:
        path = self.root / relative
        return path.stat().st_size if path.is_file() else None

    def open_read(self, relative: str) -> IO[bytes]:
        return open(self.root / relative, "rb")

    def read_bytes(self, relative: str) -> bytes | None:
        path = self.root / relative
        return path.read_bytes() if path.is_file() else None

    def put(self, local: Path, relative: str) -> None:
        target = self.root / relative
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, target)

    def write_bytes(self, relative: str, data: bytes) -> None:
        target = self.root / relative
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".zoo-", dir=target.parent)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(temporary, target)

    def files(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = (path.relative_to(self.root) for path in self.root.rglob("*") if path.is_file())
        return sorted(p.as_posix() for p in found if not any(part.startswith(".zoo-") for part in p.parts))

    def scratch(self) -> Path:
        """Where partial downloads wait: inside the mirror, on its file system."""
        path = self.root / ".zoo-partial"
        with writing(path):
            path.mkdir(parents=True, exist_ok=True)
        return path

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One builder at a time; a second one waits, then finds the work done."""
        with writing(self.root):
            self.root.mkdir(parents=True, exist_ok=True)
            handle = open(self.root / LOCK_NAME, "a+b")  # noqa: SIM115 - closed below
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield


class FsspecStore:
    """An fsspec location such as s3://bucket/prefix (the `s3` extra installs s3fs)."""

    def __init__(self, url: str, scratch_root: Path) -> None:
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            raise UsageError(f"{url}: install zoo with the 's3' extra to use this mirror") from None
        self.location = url.rstrip("/")
        self.fs, self.base = url_to_fs(self.location)
        self._scratch = scratch_root

    def _path(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def size(self, relative: str) -> int | None:
        try:
            return int(self.fs.info(self._path(relative))["size"])
        except FileNotFoundError:
            return None

    def open_read(self, relative: str) -> IO[bytes]:
        return self.fs.open(self._path(relative), "rb", block_size=1 << 22)

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            return bytes(self.fs.cat_file(self._path(relative)))
        except FileNotFoundError:
            return None

    def put(self, local: Path, relative: str) -> None:
        # An object store's PUT is atomic: readers see the old object or the new one.
        self.fs.put_file(str(local), self._path(relative))
        local.unlink()

    def write_bytes(self, relative: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(relative), data)

    def files(self) -> list[str]:
        found = self.fs.find(self.base)
        prefix = self.base.rstrip("/") + "/"
        relative = (p[len(prefix):] for p in found)
        return sorted(p for p in relative if not any(part.startswith(".zoo-") for part in p.split("/")))

    def scratch(self) -> Path:
        self._scratch.mkdir(parents=True, exist_ok=True)
        return self._scratch

    def lock(self) -> ContextManager[Any]:
        return nullcontext()  # object stores have no locks; concurrent builds write identical objects


def open_store(location: str, scratch_root: Path) -> LocalStore | FsspecStore:
    """The store for a directory, file:// URL, or fsspec URL such as s3://bucket/prefix."""
    if is_local(location):
        return LocalStore(local_path(location))
    if location.startswith(("http://", "https://")):
        raise UsageError(f"{location}: a mirror is built into a directory or an s3:// location, not over HTTP")
    return FsspecStore(location, scratch_root)
