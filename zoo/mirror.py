"""Mirrors: build one, verify one, and read a mirror's index to pin downloads.

A mirror is a directory (or an s3:// prefix) holding each file at
``<host>/<path>`` of its upstream URL, plus ``zoo-mirror.json``: for every
file its upstream URL, sha256 and size, and the registry entries it covers.
A client that finds the index pins what it downloads from that mirror, so a
download through a mirror is verified end to end even for models the
registry does not pin.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.download import download
from zoo.errors import IntegrityError
from zoo.fsutil import digest, writing
from zoo.registry import Model
from zoo.settings import Settings
from zoo.sources import Pin, Source, candidate_urls, is_local, local_path, mirror_relative
from zoo.store import FsspecStore, LocalStore, open_store

INDEX_NAME = "zoo-mirror.json"
INDEX_FORMAT = 1

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class MirrorFile:
    url: str
    sha256: str
    size: int


@dataclass
class MirrorIndex:
    files: dict[str, MirrorFile] = field(default_factory=dict)
    models: dict[str, dict[str, Any]] = field(default_factory=dict)

    def pin(self, relative: str) -> Pin:
        known = self.files.get(relative)
        return Pin(known.sha256, known.size) if known else Pin()

    def to_json(self) -> str:
        data = {
            "format": INDEX_FORMAT,
            "files": {path: vars(f) for path, f in sorted(self.files.items())},
            "models": dict(sorted(self.models.items())),
        }
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    @classmethod
    def parse(cls, text: str | bytes, where: str) -> MirrorIndex:
        try:
            data = json.loads(text)
            if data.get("format") != INDEX_FORMAT:
                raise ValueError(f"format must be {INDEX_FORMAT}")
            files = {
                str(path): MirrorFile(str(f["url"]), str(f["sha256"]), int(f["size"]))
                for path, f in data["files"].items()
            }
            return cls(files, dict(data.get("models", {})))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{where}: not a valid mirror index: {exc}") from None


# -- clients -------------------------------------------------------------------


def plan_sources(upstream: str, pin: Pin, settings: Settings) -> list[Source]:
    """Where to fetch ``upstream`` from, in order, each with what its bytes must be.

    A mirror whose index contradicts the caller's pin is skipped: it serves
    other bytes than the ones asked for.
    """
    sources = []
    for url in candidate_urls(upstream, settings.mirrors, settings.offline, settings.mirror_only):
        base = _mirror_base(url, settings.mirrors)
        index = read_index(base, settings) if base else None
        merged = pin.merge(index.pin(mirror_relative(upstream))) if index else pin
        if merged is None:
            log.warning("%s: its index pins other bytes than expected for %s; skipping it", base, upstream)
            continue
        sources.append(Source(url, merged))
    return sources


def _mirror_base(url: str, mirrors: Iterable[str]) -> str | None:
    return next((base for base in mirrors if url.startswith(base.rstrip("/") + "/")), None)


def read_index(base: str, settings: Settings) -> MirrorIndex | None:
    """A mirror's index, or None when it has none or cannot be reached (then
    the download itself reports what is wrong)."""
    return _read_index(base.rstrip("/"), settings.connect_timeout)


@functools.lru_cache(maxsize=None)
def _read_index(base: str, timeout: float) -> MirrorIndex | None:
    where = f"{base}/{INDEX_NAME}"
    text = _fetch_small(where, timeout)
    return MirrorIndex.parse(text, where) if text is not None else None


def _fetch_small(url: str, timeout: float) -> bytes | None:
    try:
        if is_local(url):
            return local_path(url).read_bytes()
        if url.startswith(("http://", "https://")):
            import requests

            response = requests.get(url, timeout=(timeout, timeout))
            return response.content if response.status_code == 200 else None
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        return bytes(fs.cat_file(path))
    except Exception:  # noqa: BLE001 - no index is a normal state for a mirror
        return None


# -- building and verifying ----------------------------------------------------


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
    store = open_store(location, settings.cache_dir / "tmp" / "mirror-build")
    built = []
    with store.lock():
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
    partial = store.scratch() / (hashlib.sha256(relative.encode()).hexdigest()[:32] + ".part")
    sources = [Source(u, pin) for u in candidate_urls(url, settings.mirrors, settings.offline, settings.mirror_only)]
    got = download(sources, partial, settings=settings, label=f"{model.name}: {Path(url).name}", progress=progress)
    store.put(got.path, relative)
    index.files[relative] = MirrorFile(url, got.sha256, got.size)
    store.write_bytes(INDEX_NAME, index.to_json().encode())
    return BuiltFile(relative, url, got.sha256, got.size, downloaded=True)


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
    store = open_store(location, settings.cache_dir / "tmp" / "mirror-build")
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
    store = open_store(location, settings.cache_dir / "tmp" / "mirror-build")
    with store.lock():
        index = _load_index(store)
        for relative, expected in sorted(incoming.files.items()):
            known = index.files.get(relative)
            if known == expected and store.size(relative) == expected.size:
                continue
            staged = store.scratch() / (hashlib.sha256(relative.encode()).hexdigest()[:32] + ".part")
            with writing(staged):
                shutil.copyfile(files_root / relative, staged)
            store.put(staged, relative)
            index.files[relative] = expected
        index.models.update(incoming.models)
        store.write_bytes(INDEX_NAME, index.to_json().encode())
