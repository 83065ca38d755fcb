"""Install a model into the cache on a miss: sources, lock, download while
extracting, verify every tensor, publish with one rename."""

from __future__ import annotations

import logging
import shutil
from dataclasses import replace
from pathlib import Path

from zoo.cache import Action, Cache, Entry, decide, now
from zoo.checkpoint import verify_checkpoint
from zoo.download import Downloaded, Transfer, download
from zoo.errors import IntegrityError, NetworkError, OfflineMissError, UsageError, UnverifiedError
from zoo.extract import extract_stream, find_checkpoint, find_pipeline_config
from zoo.fsutil import writing
from zoo.registry import Model
from zoo.settings import Settings
from zoo.sources import Pin, Source, plan_sources

log = logging.getLogger("zoo")

# The sample config is optional (the archive holds a pipeline.config), so a
# transient failure gets a shorter retry budget than the archive's.
SAMPLE_CONFIG_RETRIES = 1


def install(
    model: Model, cache: Cache, pin: Pin, settings: Settings, progress: bool, position: int
) -> tuple[Entry, Downloaded | None]:
    """The model's entry, and the download this call installed it from (None:
    another process finished it while this one waited for the lock)."""
    sources = plan_sources(model.url, pin, settings)
    if decide(None, pin, sources) is Action.OFFLINE_MISS:
        raise _no_source(model, settings)
    with cache.lock(model.name):
        entry = cache.serving(model.name, pin)  # another process may have installed it meanwhile
        if entry is not None:
            return entry, None
        return _install(model, cache, sources, settings, progress, position)


def _no_source(model: Model, settings: Settings) -> UsageError | OfflineMissError:
    if not settings.offline:
        return UsageError("mirror-only mode is on (ZOO_MIRROR_ONLY or --mirror-only) but no mirror is set")
    return OfflineMissError(
        f"{model.name} is not in the cache at {settings.cache_dir} and offline mode is on; "
        "fetch it on a connected machine, or set ZOO_MIRROR (or --mirror) to a "
        "file:// mirror or directory that holds it",
        model=model.name,
    )


def _install(
    model: Model,
    cache: Cache,
    sources: list[Source],
    settings: Settings,
    progress: bool,
    position: int,
) -> tuple[Entry, Downloaded]:
    archive_name = Path(model.url).name
    with cache.staging(model.name) as staged:
        with Transfer(
            sources, cache.partial_path(model.name, model.url),
            settings=settings, label=model.name, progress=progress, position=position, expect_archive=True,
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
            verified=got.verified,
        )
        return cache.publish(staged, entry), got


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

    A config that cannot be reached, or that --require-verified refuses (no
    pin, no server hash), does not block the checkpoint: the archive's own
    pipeline.config serves instead, with a warning. A source that lacks it
    (404) or whose host does not resolve is skipped at once.
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
            settings=replace(settings, retries=min(settings.retries, SAMPLE_CONFIG_RETRIES)),
            label=f"{model.name} sample config", progress=progress,
        )  # fmt: skip
    except (NetworkError, UnverifiedError) as exc:
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
