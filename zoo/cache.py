"""The on-disk cache: published entries, partial downloads, staging, locks.

Layout under the cache root::

    models/<name>/zoo-entry.json    completion marker, written before publishing
    models/<name>/<archive>.tar.gz  the archive as downloaded
    models/<name>/files/...         its contents, as published
    models/<name>/sample.config     the registry's sample config, if any
    downloads/<name>@<file>.part    resumable partial downloads (+ .json sidecar)
    tmp/<name>@<random>/            staging directories (same file system)
    locks/<name>.lock               per-model inter-process locks

An entry is published by renaming a complete staging directory into
``models/``; a directory there without a readable marker is never served.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zoo.errors import NotCachedError
from zoo.fsutil import remove_tree, tree_size, writing

MARKER = "zoo-entry.json"
MARKER_FORMAT = 1

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class Entry:
    """What the completion marker records about a published model."""

    name: str
    url: str
    upstream_url: str
    sha256: str
    size: int
    fetched_at: str
    archive: str
    checkpoint: str
    config: str | None
    sample_config_url: str | None
    directory: Path

    @property
    def archive_path(self) -> Path:
        return self.directory / self.archive

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / self.checkpoint

    @property
    def config_path(self) -> Path | None:
        return self.directory / self.config if self.config else None

    def marker_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["directory"]
        return {"format": MARKER_FORMAT, **data}


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def entry_dir(self, name: str) -> Path:
        return self.models_dir / name

    def partial_path(self, name: str, url: str) -> Path:
        return self.root / "downloads" / f"{name}@{Path(url).name}.part"

    def read_entry(self, name: str) -> Entry | None:
        """The published entry, or None when absent or without a valid marker."""
        directory = self.entry_dir(name)
        try:
            data = json.loads((directory / MARKER).read_text(encoding="utf-8"))
            data.pop("format")
            return Entry(directory=directory, **data)
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None

    def require_entry(self, name: str) -> Entry:
        entry = self.read_entry(name)
        if entry is None:
            raise NotCachedError(f"{name} is not in the cache at {self.root} (run `zoo fetch {name}`)")
        return entry

    def entries(self) -> list[Entry]:
        if not self.models_dir.is_dir():
            return []
        found = (self.read_entry(d.name) for d in sorted(self.models_dir.iterdir()))
        return [entry for entry in found if entry is not None]

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the model's lock; the kernel drops it if this process dies."""
        path = self.root / "locks" / f"{name}.lock"
        with writing(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(path, "a+b")
        with handle:
            if not _try_lock(handle):
                log.info("waiting for another zoo process fetching %s", name)
                fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A fresh directory on the cache's file system, removed unless published."""
        tmp = self.root / "tmp"
        with writing(tmp):
            tmp.mkdir(parents=True, exist_ok=True)
            path = Path(tempfile.mkdtemp(prefix=f"{name}@", dir=tmp))
        try:
            yield path
        finally:
            remove_tree(path)

    def publish(self, staged: Path, entry: Entry) -> Entry:
        """Write the marker, then swap the staged directory in with one rename."""
        with writing(staged / MARKER):
            (staged / MARKER).write_text(json.dumps(entry.marker_dict(), indent=2) + "\n")
        target = self.entry_dir(entry.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            # A stale or unmarked entry: move it aside so the swap stays atomic.
            retired = staged.with_name(staged.name + ".old")
            os.rename(target, retired)
            os.rename(staged, target)
            remove_tree(retired)
        else:
            os.rename(staged, target)
        return self.require_entry(entry.name)

    def disk_usage(self) -> dict[str, int]:
        """Bytes per published entry, then for partial downloads and leftovers."""
        usage = {entry.name: tree_size(entry.directory) for entry in self.entries()}
        usage["(partial downloads)"] = tree_size(self.root / "downloads")
        usage["(unfinished and staging)"] = sum(tree_size(p) for p in self._prunable()
                                                if p.parent.name != "downloads")
        return usage

    def remove(self, name: str) -> int:
        """Delete one entry (and its partial downloads); returns the bytes freed."""
        with self.lock(name):
            directory = self.entry_dir(name)
            partials = list((self.root / "downloads").glob(f"{name}@*"))
            if not directory.exists() and not partials:
                raise NotCachedError(f"{name} is not in the cache at {self.root}")
            freed = tree_size(directory) + sum(p.stat().st_size for p in partials)
            for path in [directory, *partials]:
                remove_tree(path)
        return freed

    def prune(self) -> list[Path]:
        """Remove partial downloads, unmarked entries and staging leftovers.

        Each model's lock is taken without waiting, so a fetch in progress
        keeps its files.
        """
        removed = []
        for path in self._prunable():
            owner = path.name if path.parent == self.models_dir else path.name.split("@")[0]
            with self._lock_if_free(owner) as free:
                if free and path.exists():
                    remove_tree(path)
                    removed.append(path)
        return removed

    def _prunable(self) -> list[Path]:
        found: list[Path] = []
        for sub in ("downloads", "tmp"):
            if (self.root / sub).is_dir():
                found += sorted((self.root / sub).iterdir())
        if self.models_dir.is_dir():
            found += [d for d in sorted(self.models_dir.iterdir()) if self.read_entry(d.name) is None]
        return found

    @contextmanager
    def _lock_if_free(self, name: str) -> Iterator[bool]:
        path = self.root / "locks" / f"{name}.lock"
        if not path.exists():
            yield True
            return
        with open(path, "a+b") as handle:
            yield _try_lock(handle)


def _try_lock(handle: Any) -> bool:
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
