"""Where a mirror's files live: a local directory, or any fsspec URL (s3://...).

Keys come from indexes, lock files and bundles, so every one is checked as a
plain relative ``host/path`` before it is joined to the store's root, and a
local store neither reads nor writes through a symlink that leads outside it.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import IO, Any, ContextManager

from zoo.cache import Cache
from zoo.errors import IntegrityError, UsageError, ZooError
from zoo.fsutil import (
    MAX_INPUT_BYTES,
    check_key,
    file_lock,
    join_beneath,
    open_beneath,
    private_dir,
    read_limited,
    write_output,
    writing,
)
from zoo.objectstore import open_filesystem
from zoo.sources import Scheme, local_path, scheme_of

LOCK_NAME = ".zoo-mirror.lock"
# A symlink at any level (ELOOP for the file, ENOTDIR for a directory) is not followed:
# the file counts as absent.
_ABSENT = {errno.ENOENT, errno.ELOOP, errno.ENOTDIR}


class LocalStore:
    """A directory; files are published by rename, so readers never see half a file."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()
        self.location = str(self.root)

    def size(self, relative: str) -> int | None:
        fd = self._open(relative)
        if fd is None:
            return None
        with os.fdopen(fd, "rb"):
            return os.fstat(fd).st_size

    def open_read(self, relative: str) -> IO[bytes]:
        fd = self._open(relative)
        if fd is None:
            raise ZooError(f"{self.root / relative}: no such file")
        return os.fdopen(fd, "rb")

    def read_bytes(self, relative: str) -> bytes | None:
        """A small file such as the index, at most MAX_INPUT_BYTES."""
        fd = self._open(relative)
        if fd is None:
            return None
        with os.fdopen(fd, "rb") as handle:
            return read_limited(handle, MAX_INPUT_BYTES, str(self.root / relative), IntegrityError)

    def _open(self, relative: str) -> int | None:
        """The regular file at ``relative``, opened without following a symlink at any
        level, or None when there is none."""
        path = self.root / check_key(relative, self.location, IntegrityError)
        try:
            # O_NONBLOCK: a FIFO planted in the mirror must not hang the open.
            fd = open_beneath(self.root, relative, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in _ABSENT:
                return None
            raise ZooError(f"cannot read {path}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            return None
        os.set_blocking(fd, True)
        return fd

    def _target(self, relative: str) -> Path:
        """Where ``relative`` is written: checked, and still inside the mirror once
        symlinks already in it are resolved."""
        return join_beneath(self.root, relative, self.location, IntegrityError)

    def put(self, local: Path, relative: str) -> None:
        target = self._target(relative)
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(local, target)

    def write_bytes(self, relative: str, data: bytes) -> None:
        target = self._target(relative)
        with writing(target):
            target.parent.mkdir(parents=True, exist_ok=True)
        write_output(target, data, force=True)  # the mirror's own file: replaced even if read-only

    def files(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = (p.relative_to(self.root) for p in self.root.rglob("*") if p.is_file() and not p.is_symlink())
        return sorted(p.as_posix() for p in found if not any(part.startswith(".zoo-") for part in p.parts))

    def scratch(self) -> Path:
        """Where partial downloads wait: inside the mirror, on its file system (builders
        take turns under the lock, so one directory serves them all)."""
        return private_dir(self.root / ".zoo-partial")

    def lock(self) -> ContextManager[bool]:
        """One builder at a time; a second one waits, then finds the work done."""
        return file_lock(self.root / LOCK_NAME)


class FsspecStore:
    """An fsspec location such as s3://bucket/prefix (the `s3`, `gcs` and `azure` extras install the backends)."""

    def __init__(self, url: str, scratch: Path) -> None:
        self.location = url.rstrip("/")
        self.fs, self.base = open_filesystem(self.location)
        self._scratch = scratch

    def _path(self, relative: str) -> str:
        return f"{self.base}/{check_key(relative, self.location, IntegrityError)}"

    def size(self, relative: str) -> int | None:
        try:
            return int(self.fs.info(self._path(relative))["size"])
        except FileNotFoundError:
            return None

    def open_read(self, relative: str) -> IO[bytes]:
        return self.fs.open(self._path(relative), "rb", block_size=1 << 22)

    def read_bytes(self, relative: str) -> bytes | None:
        """A small file such as the index, at most MAX_INPUT_BYTES."""
        try:
            with self.fs.open(self._path(relative), "rb") as handle:
                return read_limited(handle, MAX_INPUT_BYTES, f"{self.location}/{relative}", IntegrityError)
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
        """Where files wait before upload: this build's own staging directory."""
        return self._scratch

    def lock(self) -> ContextManager[Any]:
        return nullcontext()  # object stores have no locks; concurrent builds write identical objects


@contextmanager
def open_store(location: str, cache: Cache) -> Iterator[LocalStore | FsspecStore]:
    """The store for a directory, file:// URL, or fsspec URL such as s3://bucket/prefix.

    Files bound for an object store wait in a staging directory of ``cache``
    of their own, so concurrent builds never share one and `cache prune`
    leaves it alone while it is in use.
    """
    scheme = scheme_of(location)
    if scheme is Scheme.LOCAL:
        yield LocalStore(local_path(location))
        return
    if scheme is Scheme.HTTP:
        raise UsageError(f"{location}: a mirror is built into a directory or an s3:// location, not over HTTP")
    with cache.staging("mirror-build") as scratch:
        yield FsspecStore(location, scratch)
