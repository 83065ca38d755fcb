"""Building, verifying and merging mirrors: a directory or an object-store prefix
holding each file at ``<host>/<path>`` of its upstream URL, with its index
(the format and its reader live in zoo.sources, which every fetch uses)."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cache import Cache
from zoo.download import download
from zoo.errors import IntegrityError
from zoo.fsutil import digest, join_beneath, writing
from zoo.mirror.stores import FsspecStore, LocalStore, open_store
from zoo.registry import Model
from zoo.settings import Settings
from zoo.sources import INDEX_NAME, MirrorFile, MirrorIndex, Pin, Source, candidate_urls, mirror_relative


@dataclass(frozen=True)
class BuiltFile:
    path: str
    url: str
    sha256: str
    size: int
    downloaded: bool


def build_mirror(
    location: str, models: Iterable[Model], settings: Settings, progress: bool = False
) -> list[BuiltFile]:
    """Download each model's archive and sample config into the mirror, incrementally.

    Files the index already lists with the same size (and matching any pin)
    are skipped; partial downloads resume; the index is rewritten after every
    file, so an interrupted build keeps what it finished.
    """
    built = []
    with open_store(location, Cache(settings.cache_dir)) as store, store.lock():
        index = _load_index(store)
        for model in models:
            for url, pin in _files_of(model):
                built.append(_add_file(store, index, url, pin, model, settings, progress))
            index.models[model.name] = {k: v for k, v in model.to_dict().items() if k != "source"}
            store.write_bytes(INDEX_NAME, index.to_json().encode())
    return built


def _files_of(model: Model) -> list[tuple[str, Pin]]:
    files = [(model.url, Pin(model.sha256, model.size))]
    if model.sample_config:
        files.append((model.sample_config.url, Pin()))
    return files


def _load_index(store: LocalStore | FsspecStore) -> MirrorIndex:
    text = store.read_bytes(INDEX_NAME)
    return MirrorIndex.parse(text, f"{store.location}/{INDEX_NAME}") if text is not None else MirrorIndex()


def _add_file(
    store: LocalStore | FsspecStore,
    index: MirrorIndex,
    url: str,
    pin: Pin,
    model: Model,
    settings: Settings,
    progress: bool,
) -> BuiltFile:
    relative = mirror_relative(url)
    known = index.files.get(relative)
    if known and store.size(relative) == known.size and pin.merge(Pin(known.sha256, known.size)):
        return BuiltFile(relative, url, known.sha256, known.size, downloaded=False)
    partial = _scratch_path(store, relative)
    urls = candidate_urls(url, settings.mirrors, settings.offline, settings.mirror_only, settings.allow_http)
    sources = [Source(u, pin) for u in urls]
    got = download(
        sources, partial, settings=settings, label=f"{model.name}: {Path(url).name}", progress=progress,
        expect_archive=url == model.url,  # a login page in place of a tarball must not enter the mirror
    )  # fmt: skip
    store.put(got.path, relative)
    # The server's hashes, checked during the download, let the mirror's
    # clients inherit upstream's verification.
    index.files[relative] = MirrorFile(url, got.sha256, got.size, got.declared.crc32c, got.declared.md5)
    store.write_bytes(INDEX_NAME, index.to_json().encode())
    return BuiltFile(relative, url, got.sha256, got.size, downloaded=True)


def _scratch_path(store: LocalStore | FsspecStore, relative: str) -> Path:
    """Where ``relative`` waits before it is put; stable, so a partial download resumes."""
    return store.scratch() / (hashlib.sha256(relative.encode()).hexdigest()[:32] + ".part")


@dataclass(frozen=True)
class MirrorReport:
    checked: int
    missing: list[str]
    corrupt: list[str]
    extra: list[str]

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checked": self.checked, "missing": self.missing,
                "corrupt": self.corrupt, "extra": self.extra}  # fmt: skip


def verify_mirror(location: str, settings: Settings) -> MirrorReport:
    """Re-hash every file the index lists; name missing, corrupt and extra files."""
    with open_store(location, Cache(settings.cache_dir)) as store:
        text = store.read_bytes(INDEX_NAME)
        if text is None:
            raise IntegrityError(f"{store.location}: no {INDEX_NAME}; not a zoo mirror (build it with `zoo mirror build`)")
        index = MirrorIndex.parse(text, f"{store.location}/{INDEX_NAME}")
        missing, corrupt = [], []
        for relative, expected in sorted(index.files.items()):
            if store.size(relative) is None:
                missing.append(relative)
            elif _store_digest(store, relative) != (expected.sha256, expected.size):
                corrupt.append(relative)
        extra = sorted(set(store.files()) - set(index.files) - {INDEX_NAME})
    return MirrorReport(len(index.files), missing, corrupt, extra)


def _store_digest(store: LocalStore | FsspecStore, relative: str) -> tuple[str, int]:
    with store.open_read(relative) as handle:
        return digest(handle)


def merge_into_mirror(location: str, incoming: MirrorIndex, files_root: Path, settings: Settings) -> None:
    """Add verified files (laid out under ``files_root``) and their index entries to a mirror."""
    with open_store(location, Cache(settings.cache_dir)) as store, store.lock():
        index = _load_index(store)
        for relative, expected in sorted(incoming.files.items()):
            known = index.files.get(relative)
            if known == expected and store.size(relative) == expected.size:
                continue
            staged = _scratch_path(store, relative)
            with writing(staged):
                shutil.copyfile(join_beneath(files_root, relative, str(files_root), IntegrityError), staged)
            store.put(staged, relative)
            index.files[relative] = expected
        index.models.update(incoming.models)
        store.write_bytes(INDEX_NAME, index.to_json().encode())
