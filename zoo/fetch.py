"""Fetch a zoo model into the cache: decide, download, verify, extract, publish."""

from __future__ import annotations

import enum
import logging
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cache import Cache, Entry, now
from zoo.download import Transfer, download
from zoo.errors import IntegrityError, NetworkError, OfflineMissError, UsageError, ZooError
from zoo.checkpoint import verify_checkpoint
from zoo.extract import extract_stream, find_checkpoint, find_pipeline_config
from zoo.fsutil import writing
from zoo.registry import Model, Registry, load_registry
from zoo.settings import Settings
from zoo.mirror import plan_sources
from zoo.sources import Pin, Source

log = logging.getLogger("zoo")


class Action(enum.Enum):
    USE_CACHE = "use-cache"
    DOWNLOAD = "download"
    OFFLINE_MISS = "offline-miss"


def decide(entry: Entry | None, pin: Pin, sources: list[Source]) -> Action:
    """What to do for one model, from what the cache holds and what is pinned."""
    if entry is not None and pin.sha256 in (None, entry.sha256) and pin.size in (None, entry.size):
        return Action.USE_CACHE
    return Action.DOWNLOAD if sources else Action.OFFLINE_MISS


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

    @classmethod
    def from_entry(cls, entry: Entry, from_cache: bool) -> FetchResult:
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
    result or its error as it completes, so one failure does not stop the rest."""
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
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="zoo-fetch") as pool:
        futures = {pool.submit(one, name, i % jobs): name for i, name in enumerate(names)}
        for future in as_completed(futures):
            yield futures[future], future.result()


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
    cache = Cache(settings.cache_dir)
    pin = Pin(model.sha256, model.size)
    entry = cache.read_entry(model.name)
    if decide(entry, pin, [Source(model.url)]) is Action.USE_CACHE:
        return FetchResult.from_entry(entry, from_cache=True)  # type: ignore[arg-type]
    sources = plan_sources(model.url, pin, settings)
    _require_sources(model, sources, settings)
    with cache.lock(model.name):
        entry = cache.read_entry(model.name)  # another process may have finished it
        if decide(entry, pin, sources) is Action.USE_CACHE:
            return FetchResult.from_entry(entry, from_cache=True)  # type: ignore[arg-type]
        return FetchResult.from_entry(_install(model, cache, pin, sources, settings, progress, position), False)


def _require_sources(model: Model, sources: list[Source], settings: Settings) -> None:
    if not sources and not settings.offline:
        raise UsageError("mirror-only mode is on (ZOO_MIRROR_ONLY or --mirror-only) but no mirror is set")
    if not sources:
        raise OfflineMissError(
            f"{model.name} is not in the cache at {settings.cache_dir} and offline mode is on; "
            "fetch it on a connected machine, or set ZOO_MIRROR (or --mirror) to a "
            "file:// mirror or directory that holds it"
        )


def _install(
    model: Model,
    cache: Cache,
    pin: Pin,
    sources: list[Source],
    settings: Settings,
    progress: bool,
    position: int,
) -> Entry:
    archive_name = Path(model.url).name
    with cache.staging(model.name) as staged:
        with Transfer(
            sources, cache.partial_path(model.name, model.url),
            settings=settings, label=model.name, progress=progress, position=position,
        ) as transfer:  # fmt: skip
            extract_stream(
                transfer, staged / "files", label=model.url,
                archive_size=lambda: transfer.total or transfer.delivered,
            )  # fmt: skip
            got = transfer.finish()
        with writing(staged):
            shutil.move(got.path, staged / archive_name)
        checkpoint = _verified_checkpoint(model, staged / "files")
        archive_config = _archive_config(model, staged)
        sample = _sample_config(model, cache, staged, settings, progress)
        config = sample or archive_config
        entry = Entry(
            name=model.name,
            url=got.url,
            upstream_url=model.url,
            sha256=got.sha256,
            size=got.size,
            fetched_at=now(),
            archive=archive_name,
            checkpoint=str(checkpoint.relative_to(staged)),
            config=str(config.relative_to(staged)) if config else None,
            sample_config_url=model.sample_config.url if sample and model.sample_config else None,
            directory=cache.entry_dir(model.name),
        )
        return cache.publish(staged, entry)


def _verified_checkpoint(model: Model, files: Path) -> Path:
    """The archive's checkpoint prefix, once every tensor matches its CRC32C."""
    try:
        checkpoint = find_checkpoint(files, model.checkpoint)
        verify_checkpoint(checkpoint)
    except IntegrityError as exc:
        # The staging directory means nothing to the user; the archive's URL does.
        raise type(exc)(f"{model.url}: " + str(exc).replace(f"{files}/", "")) from None
    return checkpoint.prefix


def _sample_config(
    model: Model, cache: Cache, staged: Path, settings: Settings, progress: bool
) -> Path | None:
    """The registry's sample config, fetched by the same rules as the archive.

    A config that cannot be reached does not block the checkpoint: the
    archive's own pipeline.config serves instead, with a warning.
    """
    if model.sample_config is None:
        return None
    url = model.sample_config.url
    sources = plan_sources(url, Pin(), settings)
    if not sources:
        log.warning("offline: no local mirror holds %s; using the archive's pipeline.config", url)
        return None
    try:
        got = download(
            sources, cache.partial_path(model.name, url),
            settings=settings, label=f"{model.name} sample config", progress=progress,
        )  # fmt: skip
    except NetworkError as exc:
        log.warning("%s; using the archive's pipeline.config instead", exc)
        return None
    with writing(staged):
        shutil.move(got.path, staged / "sample.config")
    return staged / "sample.config"


def _archive_config(model: Model, staged: Path) -> Path | None:
    config = find_pipeline_config(staged / "files")
    if config is None and model.is_detection:
        raise IntegrityError(f"{model.url}: the archive holds no pipeline.config")
    return config
