"""Fetch a zoo model into the cache: decide, download, verify, extract, publish."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cache import Cache, Entry
from zoo.errors import ZooError
from zoo.registry import Registry, load_registry
from zoo.settings import Settings
from zoo.sources import Pin

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class FetchResult:
    """A model ready to use: ``checkpoint`` is the ``fine_tune_checkpoint`` value."""

    name: str
    checkpoint: Path
    config: Path | None
    directory: Path
    archive: Path
    sha256: str
    size: int
    url: str
    from_cache: bool
    # The most connections the archive came over at once; 0 when nothing was downloaded.
    connections: int = 0

    @classmethod
    def from_entry(cls, entry: Entry, from_cache: bool, connections: int = 0) -> FetchResult:
        return cls(
            name=entry.name,
            checkpoint=entry.checkpoint_path,
            config=entry.config_path,
            directory=entry.directory,
            archive=entry.archive_path,
            sha256=entry.sha256,
            size=entry.size,
            url=entry.url,
            from_cache=from_cache,
            connections=connections,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            key: str(value) if isinstance(value, Path) else value
            for key, value in self.__dict__.items()
        }


def fetch_many(
    names: Sequence[str], *, settings: Settings | None = None, jobs: int = 1, progress: bool = False
) -> Iterator[tuple[str, FetchResult | ZooError]]:
    """Fetch several models, ``jobs`` at a time; yields each name with its
    result or its error in the order of ``names`` (so "the first failure" does
    not depend on timing); one failure does not stop the rest."""
    settings = settings or Settings.from_env()
    registry = load_registry(settings.registry_files)

    def one(name: str, position: int) -> FetchResult | ZooError:
        try:
            return fetch(name, settings=settings, registry=registry, progress=progress, position=position)
        except ZooError as exc:
            return exc

    if jobs <= 1:
        yield from ((name, one(name, 0)) for name in names)
        return
    from concurrent.futures import ThreadPoolExecutor  # only here: every command imports this module

    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zoo-fetch")
    try:
        futures = [pool.submit(one, name, i % jobs) for i, name in enumerate(names)]
        for name, future in zip(names, futures):
            yield name, future.result()
    finally:
        # Not `with`: on Ctrl-C (or a caller that stops early) it would wait for
        # every running download. Their partials stay on disk for the next run.
        pool.shutdown(wait=False, cancel_futures=True)


def fetch(
    name: str,
    *,
    settings: Settings | None = None,
    registry: Registry | None = None,
    progress: bool = False,
    position: int = 0,
) -> FetchResult:
    """Return the cached model ``name``, downloading and verifying it if needed.

    A cache hit opens no connection and reads no archive bytes.
    """
    settings = settings or Settings.from_env()
    registry = registry or load_registry(settings.registry_files)
    model = registry.resolve(name)
    cache = Cache.from_settings(settings)
    pin = Pin(model.sha256, model.size)
    # A hit in a read-only layer is a hit too: served in place, no lock taken
    # (a layer may not even allow lock files), nothing copied.
    hit = cache.serving(model.name, pin)
    if hit is not None:
        return FetchResult.from_entry(hit, from_cache=True)
    entry = cache.read_entry(model.name)
    if entry is not None and not entry.files_present():
        log.warning("%s: files of the cached entry are missing; fetching it again", model.name)
    # The download stack (requests, tar, CRC32C) is imported on a miss only,
    # so a cache hit stays a few milliseconds.
    from zoo.install import install

    entry, got = install(model, cache, pin, settings, progress, position)
    if got is None:
        return FetchResult.from_entry(entry, from_cache=True)
    return FetchResult.from_entry(entry, from_cache=False, connections=got.connections)
