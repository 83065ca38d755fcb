"""File-system helpers shared by the downloader, the extractor and the cache."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from zoo.errors import DiskFullError, ZooError

# RLIMIT_FSIZE and quotas end a write the same way a full disk does.
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a one-line ZooError."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise  # not a file-system error (requests' errors are OSErrors too)
        reason = exc.strerror or str(exc)
        if exc.errno in _FULL:
            raise DiskFullError(f"disk full while writing {path}: {reason}") from None
        where = exc.filename or path
        raise ZooError(f"cannot write {where}: {reason}") from None


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree if present; never fails on a missing path."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def digest(handle: IO[bytes]) -> tuple[str, int]:
    """sha256 and size of what ``handle`` reads, in 1 MiB blocks."""
    hasher = hashlib.sha256()
    size = 0
    while block := handle.read(1 << 20):
        hasher.update(block)
        size += len(block)
    return hasher.hexdigest(), size


def file_digest(path: Path) -> tuple[str, int]:
    with open(path, "rb") as handle:
        return digest(handle)


def tree_size(path: Path) -> int:
    """Bytes used by the regular files under ``path`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(root, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total
