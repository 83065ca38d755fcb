"""The on-disk cache: published entries, partial downloads, staging, locks.

Layout under the cache root::

    models/<name>/zoo-entry.json    completion marker, written before publishing
    models/<name>/<archive>.tar.gz  the archive as downloaded
    models/<name>/files/...         its contents, as published
    models/<name>/sample.config     the registry's sample config, if any
    downloads/<name>@<file>.part    resumable partial downloads (+ .json sidecar); <name>@<host>.<pid>@<file>.part
                                    when locks are lock files: one per process, never shared
    tmp/<name>@<random>/            staging directories (same file system)
    locks/<name>.lock               per-model inter-process locks
    locks/tmp/<name>@<random>.lock  one per staging directory, held while it is in use
    locks/...lock.held              the same locks as O_EXCL files (ZOO_LOCKS=none: no flock)
    CACHEDIR.TAG                    marks the directory as zoo's (and as a cache, for backup tools)

Read-only layers (ZOO_CACHE_LAYERS: a site cache, a read-only NFS export, an
image layer) have the same ``models/`` layout and are searched after the
writable cache. They are ``CacheLayer``s, a class with no method that writes,
locks or deletes, so no code path can touch them; their entries are read with
the same checks (marker, name, no symlinks, files present) as the cache's.

An entry is published by renaming a complete staging directory into
``models/``; a directory there without a readable marker is never served.
Every path zoo writes or deletes is guarded by a lock its owner holds, and
``models/``, ``downloads/``, ``tmp/`` and ``locks/`` must be real directories
of this user: a planted symlink is refused, never followed. ``rm`` and
``prune`` delete only in a directory zoo has tagged as its cache, and only
paths named as zoo names them, so a cache directory set to the wrong place
(a project folder, ``$HOME``) loses nothing.
"""

from __future__ import annotations

import enum
import errno
import functools
import json
import logging
import os
import re
import secrets
import socket
import stat
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.errors import NotCachedError, UnknownModelError, ZooError
from zoo.fsutil import (
    file_lock,
    fsync_dir,
    fsync_tree,
    private_dir,
    read_input,
    remove_tree,
    tree_size,
    uses_lock_files,
    writing,
)
from zoo.settings import LockPolicy, lock_policy
from zoo.sources import Pin

if TYPE_CHECKING:
    from zoo.registry import Registry
    from zoo.settings import Settings

MARKER = "zoo-entry.json"
MARKER_FORMAT = 1

# The rule registry names follow: one plain path component, no '@' (the
# separator in downloads/ and tmp/), nothing a shell or glob treats specially.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# What zoo names the paths it may delete: staging dirs and partial downloads.
_STAGING = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*@[0-9a-f]{16}")
_PARTIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*@.+\.part(\.json)?")
TAG_NAME = "CACHEDIR.TAG"
# https://bford.info/cachedir/: backup tools skip a directory holding this file.
TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# This directory is zoo's model cache: https://pypi.org/project/tfod-zoo/\n"
_HOST = re.compile(r"[^A-Za-z0-9.-]")  # a host name as a partial's name may hold it
_SHARD = re.compile(r"\.data-(\d{5})-of-(\d{5})")

log = logging.getLogger("zoo")


def checked_name(name: str) -> str:
    """``name`` if it can name a cache path, else UnknownModelError: every path
    the cache builds from a model name goes through here."""
    if not _NAME.fullmatch(name):
        raise UnknownModelError(name, [])
    return name


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
    # How the archive's bytes were verified (zoo.sources PINNED ...); None in
    # markers older zoo versions wrote.
    verified: str | None = None

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

    def satisfies(self, pin: Pin) -> bool:
        """Whether this entry serves: it has the pinned bytes (or nothing is
        pinned) and its checkpoint and config files are still there."""
        return pin.sha256 in (None, self.sha256) and pin.size in (None, self.size) and self.files_present()

    def files_present(self) -> bool:
        """Whether the checkpoint's index, every data shard and the config are
        still on disk: names only, no hashing, so a cache hit stays cheap."""
        prefix = self.checkpoint_path
        try:
            names = set(os.listdir(prefix.parent))
        except OSError:
            return False
        counts = {match[2] for n in names if n.startswith(prefix.name)
                  and (match := _SHARD.fullmatch(n, len(prefix.name)))}  # fmt: skip
        if len(counts) != 1 or f"{prefix.name}.index" not in names:
            return False
        count = counts.pop()
        shards = (f"{prefix.name}.data-{i:05d}-of-{count}" for i in range(int(count)))
        config = self.config_path
        return all(s in names for s in shards) and (config is None or config.is_file())


class Action(enum.Enum):
    USE_CACHE = "use-cache"
    DOWNLOAD = "download"
    OFFLINE_MISS = "offline-miss"


def decide(entry: Entry | None, pin: Pin, sources: Sequence[object]) -> Action:
    """What to do for one model, from what the cache holds, what is pinned and
    where the file could come from."""
    if entry is not None and entry.satisfies(pin):
        return Action.USE_CACHE
    return Action.DOWNLOAD if sources else Action.OFFLINE_MISS


class CacheLayer:
    """A cache read as hostile input and never written: what a read-only layer
    is, and what the writable ``Cache`` builds on."""

    def __init__(self, root: Path) -> None:
        self.root = root.expanduser().absolute()

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def entry_dir(self, name: str) -> Path:
        return self.models_dir / checked_name(name)

    def holds(self, name: str) -> bool:
        """Whether ``models/<name>`` exists here (published or not)."""
        return _NAME.fullmatch(name) is not None and os.path.lexists(self.models_dir / name)

    def read_entry(self, name: str) -> Entry | None:
        """The published entry, or None when absent or without a valid marker.

        A marker from a newer zoo is refused (ZooError), so that entry is
        neither served nor replaced. Keys this version does not know are ignored.
        """
        directory = self.entry_dir(name)
        data = _marker(directory)
        if data is None:
            return None
        if data["format"] > MARKER_FORMAT:
            raise ZooError(
                f"{directory}: written by a newer zoo (marker format {data['format']}); "
                "upgrade zoo or use another cache directory"
            )
        required = {f.name for f in fields(Entry) if f.default is MISSING} - {"directory"}
        if not required <= data.keys():
            return None
        known = {f.name for f in fields(Entry)} - {"directory"}
        return Entry(directory=directory, **{key: data[key] for key in known & data.keys()})

    def require_entry(self, name: str) -> Entry:
        entry = self.read_entry(name)
        if entry is None:
            raise NotCachedError(f"{name} is not in the cache at {self.root} (run `zoo fetch {name}`)", model=name)
        return entry

    def entries(self) -> list[Entry]:
        """Published entries; one a newer zoo wrote is reported and skipped."""
        found = []
        for name in self._entry_names():
            try:
                entry = self.read_entry(name)
            except ZooError as exc:
                log.warning("%s", exc)
                continue
            if entry is not None:
                found.append(entry)
        return found

    def _entry_names(self) -> list[str]:
        if not self.models_dir.is_dir():
            return []
        return sorted(d.name for d in self.models_dir.iterdir() if _NAME.fullmatch(d.name))


class Cache(CacheLayer):
    """The writable cache, and the read-only layers searched after it."""

    def __init__(self, root: Path, layers: Sequence[Path] = (), locks: LockPolicy | None = None) -> None:
        super().__init__(root)
        self.locks = locks or lock_policy(os.environ)
        # A layer that is the writable cache itself would list every entry twice.
        roots = dict.fromkeys(CacheLayer(path).root for path in layers)
        self.layers = tuple(CacheLayer(path) for path in roots if path != self.root)

    @classmethod
    def from_settings(cls, settings: Settings) -> Cache:
        return cls(settings.cache_dir, settings.cache_layers, settings.locks)

    @property
    def search_path(self) -> tuple[CacheLayer, ...]:
        """Where a lookup looks, in order: this cache, then each read-only layer."""
        return (self, *self.layers)

    def partial_path(self, name: str, url: str) -> Path:
        """Where ``url``'s bytes for ``name`` wait. Without working locks two
        hosts could append to one partial, so each process gets its own."""
        checked_name(name)
        owner = f"@{_HOST.sub('_', socket.gethostname())}.{os.getpid()}" if self._lock_files() else ""
        filename = f"{name}{owner}@{Path(url).name}.part"
        return self._private("downloads") / filename

    def model_name(self, registry: Registry, name: str) -> str:
        """The canonical model name a user's ``name`` stands for: an entry
        present in the cache or a layer (which may have left the registry),
        else a registry name or alias. Anything else, a path or ``..``
        included, is UnknownModelError with suggestions."""
        if any(layer.holds(name) for layer in self.search_path):
            return name
        return registry.resolve(name).name

    def layered_entries(self, name: str) -> Iterator[Entry]:
        """The published entries for ``name``, in search order (lazily: a hit in
        this cache reads no layer). A newer zoo's marker stops a lookup in the
        writable cache, as there it could be replaced; in a read-only layer,
        which zoo never writes, it is reported and the search goes on."""
        for layer in self.search_path:
            try:
                entry = layer.read_entry(name)
            except ZooError as exc:
                if layer is self:
                    raise
                log.warning("%s", exc)
                continue
            if entry is not None:
                yield entry

    def serving(self, name: str, pin: Pin) -> Entry | None:
        """The first entry, in search order, that serves ``pin``: a cache hit."""
        return next((entry for entry in self.layered_entries(name) if entry.satisfies(pin)), None)

    def find_entry(self, name: str) -> Entry:
        """The first published entry for ``name`` in search order, else NotCachedError."""
        entry = next(self.layered_entries(name), None)
        if entry is None:
            where = ", ".join(str(layer.root) for layer in self.search_path)
            raise NotCachedError(f"{name} is not in the cache at {where} (run `zoo fetch {name}`)", model=name)
        return entry

    def all_entries(self) -> list[Entry]:
        """Every layer's published entries, in search order (a name may repeat)."""
        return [entry for layer in self.search_path for entry in layer.entries()]

    def read_only_layer(self, directory: Path) -> CacheLayer | None:
        """The read-only layer an entry's ``directory`` is in; None for this cache."""
        return next((layer for layer in self.layers if directory.parent == layer.models_dir), None)

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold the model's lock; the kernel drops it if this process dies."""
        notice = functools.partial(log.info, "waiting for another zoo process using %s", name)
        with file_lock(self._lock_path(name), on_wait=notice, policy=self.locks):
            yield

    @contextmanager
    def staging(self, name: str) -> Iterator[Path]:
        """A fresh directory on the cache's file system, removed unless published.

        Its own lock is taken before the directory exists and held until it is
        gone, so `prune` never deletes work in progress.
        """
        tmp = self._private("tmp")
        dirname = f"{checked_name(name)}@{secrets.token_hex(8)}"
        lock = self._staging_lock(dirname)
        with file_lock(lock, policy=self.locks):
            path = tmp / dirname
            with writing(path):
                path.mkdir(mode=0o700)
            try:
                yield path
            finally:
                remove_tree(path)
                lock.unlink(missing_ok=True)  # unique to this directory, which is gone

    def publish(self, staged: Path, entry: Entry) -> Entry:
        """Flush the staged files, write the marker, then swap the directory in
        with one rename: after a power loss a marker never sits over truncated files.

        Correctness does not rest on the model's lock (a shared file system may
        not honour it): an entry with the same bytes already published is never
        replaced, and when another process publishes first the rename fails (a
        directory is not renamed over a non-empty one), so this one's staging
        directory is discarded and the winner's entry, its marker checked, returned.
        """
        marker = staged / MARKER
        with writing(marker):
            fsync_tree(staged)
            with open(marker, "x", encoding="utf-8") as handle:
                handle.write(json.dumps(entry.marker_dict(), indent=2) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
            fsync_dir(staged)
        models = self._private("models")
        target = self.entry_dir(entry.name)
        with self.staging(f"{entry.name}.old") as retired, writing(target):
            if os.path.lexists(target) and not self._same_entry(entry):
                # A stale or unmarked entry: moved aside so the swap stays atomic.
                os.rename(target, retired / "entry")
            try:
                os.rename(staged, target)
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                log.info("%s: another process published it first; using its entry", entry.name)
            fsync_dir(models)
        return self.require_entry(entry.name)

    def _same_entry(self, entry: Entry) -> bool:
        """Whether the published entry is already ``entry``'s bytes, whole: then
        it stays, as other processes may be reading it."""
        try:
            current = self.read_entry(entry.name)
        except ZooError:
            return True  # a newer zoo's entry is never replaced; the rename fails on it
        return current is not None and current.sha256 == entry.sha256 and current.files_present()

    def disk_usage(self) -> dict[str, int]:
        """Bytes per published entry, then for partial downloads and leftovers."""
        usage = {entry.name: tree_size(entry.directory) for entry in self.entries()}
        usage["(partial downloads)"] = tree_size(self.root / "downloads")
        usage["(unfinished and staging)"] = sum(tree_size(p) for p in self._leftovers()
                                                if p.parent.name != "downloads")
        return usage

    def remove(self, name: str) -> int:
        """Delete one entry (and its partial downloads); returns the bytes freed."""
        self._require_tag()
        with self.lock(name):
            self._private("models")
            directory = self.entry_dir(name)
            partials = sorted(self._private("downloads").glob(f"{name}@*"))
            if not os.path.lexists(directory) and not partials:
                raise NotCachedError(f"{name} is not in the cache at {self.root}{self._layer_note(name)}", model=name)
            freed = sum(_size(path) for path in [directory, *partials])
            for path in [directory, *partials]:
                remove_tree(path)
        return freed

    def prune(self) -> list[Path]:
        """Remove partial downloads, unmarked entries and staging leftovers.

        Each path is removed only under the lock its owner holds while using
        it, taken without waiting: work in progress is skipped, and so is
        whatever no zoo process could have locked.
        """
        self._require_tag()
        removed = []
        for path in self._leftovers():
            lock = self._guard(path)
            if lock is None:
                continue
            with file_lock(lock, wait=False, policy=self.locks) as free:
                if free and self._leftover(path):
                    remove_tree(path)
                    removed.append(path)
                if free and path.parent.name == "tmp":
                    lock.unlink(missing_ok=True)  # its directory is gone
        return removed

    def _private(self, sub: str) -> Path:
        path = private_dir(self.root / sub)
        self._tag()
        return path

    def _tag(self) -> None:
        with writing(self.root / TAG_NAME), suppress(FileExistsError):
            fd = os.open(self.root / TAG_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as handle:
                handle.write(TAG)

    def _require_tag(self) -> None:
        """Refuse to delete anywhere zoo has not made its cache. A cache from
        before the tag is adopted when it holds a published entry."""
        if os.path.isfile(self.root / TAG_NAME):
            return
        if not any(_marker(self.models_dir / name) for name in self._entry_names()):
            raise ZooError(f"{self.root} is not a zoo cache (no {TAG_NAME}, no cached model); "
                           "nothing was removed (check --cache-dir / ZOO_CACHE_DIR)")  # fmt: skip
        self._tag()

    def _layer_note(self, name: str) -> str:
        """Why a name ``zoo cache ls`` shows may still not be removable."""
        held = [str(layer.root) for layer in self.layers if layer.holds(name)]
        return f" (only in read-only layer {', '.join(held)}, which zoo never changes)" if held else ""

    def _lock_files(self) -> bool:
        return uses_lock_files(self.locks, self.root / "locks")

    def _lock_path(self, name: str) -> Path:
        return self.root / "locks" / f"{checked_name(name)}.lock"

    def _staging_lock(self, dirname: str) -> Path:
        return self.root / "locks" / "tmp" / f"{dirname}.lock"

    def _guard(self, path: Path) -> Path | None:
        """The lock whose holder may be using ``path``; None for a name zoo never uses."""
        if path.parent.name == "tmp":
            return self._staging_lock(path.name)
        owner = path.name.split("@")[0]
        return self._lock_path(owner) if _NAME.fullmatch(owner) else None

    def _leftovers(self) -> list[Path]:
        found: list[Path] = []
        for sub in ("downloads", "tmp", "models"):
            if os.path.lexists(self.root / sub):
                found += sorted(self._private(sub).iterdir())
        return [path for path in found if self._leftover(path)]

    def _leftover(self, path: Path) -> bool:
        """Whether ``path`` is still there and not a published entry (checked
        again under its lock: a fetch may have published it since)."""
        if not os.path.lexists(path):
            return False
        if path.parent.name == "tmp":
            return _STAGING.fullmatch(path.name) is not None
        if path.parent.name == "downloads":
            return _PARTIAL.fullmatch(path.name) is not None
        if not (path / "files").is_dir() or path.is_symlink():
            return path.is_symlink()  # an unfinished entry holds files/; a link is removed as a link
        try:
            return self.read_entry(path.name) is None
        except ZooError:
            return False  # a newer zoo's entry, or a name zoo never gives one: not ours to delete


def _marker(directory: Path) -> dict[str, Any] | None:
    """The marker's fields; None when ``directory`` is missing or a symlink, or
    holds no readable marker (an unfinished entry)."""
    try:
        if not stat.S_ISDIR(os.lstat(directory).st_mode):
            return None
        data = json.loads(read_input(directory / MARKER, "completion marker", error=ZooError))
    except (OSError, ZooError, ValueError):
        return None
    valid = isinstance(data, dict) and type(data.get("format")) is int
    return data if valid else None


def _size(path: Path) -> int:
    """Bytes under ``path``; a symlink counts as itself, never as what it points at."""
    return path.lstat().st_size if path.is_symlink() or path.is_file() else tree_size(path)


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
