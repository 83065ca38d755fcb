"""Mirrors: build one, verify one, and read a mirror's index to pin downloads.

A mirror is a directory (or an s3:// prefix) holding each file at
``<host>/<path>`` of its upstream URL, plus ``zoo-mirror.json``: for every
file its upstream URL, sha256 and size, and the registry entries it covers.
A client that finds the index pins what it downloads from that mirror, so a
download through a mirror is verified end to end even for models the
registry does not pin.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.cache import Cache
from zoo.download import download
from zoo.errors import IntegrityError
from zoo.fsutil import MAX_INPUT_BYTES, check_key, digest, join_beneath, read_input, read_limited, writing
from zoo.registry import Model
from zoo.settings import Settings
from zoo.sources import Pin, Source, candidate_urls, is_local, local_path, mirror_relative
from zoo.store import FsspecStore, LocalStore, open_store

INDEX_NAME = "zoo-mirror.json"
INDEX_FORMAT = 1
INDEX_TTL = 60.0
"""Seconds a mirror's index (or the fact that it has none) is reused before it is
read again, so a long-running process sees a mirror that gained or changed one."""

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
                path: MirrorFile(str(f["url"]), str(f["sha256"]), int(f["size"]))
                for path, f in data["files"].items()
            }
            models = dict(data.get("models", {}))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IntegrityError(f"{where}: not a valid mirror index: {exc}") from None
        # Keys become paths on whichever side reads or writes the files.
        for path in files:
            check_key(path, where, IntegrityError)
        return cls(files, models)


# -- clients -------------------------------------------------------------------


def plan_sources(upstream: str, pin: Pin, settings: Settings) -> list[Source]:
    """Where to fetch ``upstream`` from, in order, each with what its bytes must be.

    A mirror whose index is broken, or contradicts the caller's pin (it
    serves other bytes than the ones asked for), is skipped with a warning.
    """
    relative = mirror_relative(upstream)
    candidates = candidate_urls(upstream, settings.mirrors, settings.offline, settings.mirror_only)
    sources = []
    for url in candidates:
        base = _mirror_base(url, settings.mirrors)
        if base is None:
            sources.append(Source(url, pin))
            continue
        check_key(relative, upstream, IntegrityError)  # it is joined under the mirror's base
        index = read_index(base, settings)
        if isinstance(index, IntegrityError):
            continue  # read_index said why
        merged = pin.merge(index.pin(relative)) if index else pin
        if merged is None:
            log.warning("%s: its index pins other bytes than expected for %s; skipping it", base, upstream)
            continue
        sources.append(Source(url, merged))
    if candidates and not sources:
        raise IntegrityError(f"{upstream}: every mirror was skipped and upstream is off (offline or mirror-only)")
    return sources


def _mirror_base(url: str, mirrors: Iterable[str]) -> str | None:
    return next((base for base in mirrors if url.startswith(base.rstrip("/") + "/")), None)


_indexes: dict[str, tuple[float, MirrorIndex | IntegrityError | None]] = {}


def read_index(base: str, settings: Settings) -> MirrorIndex | IntegrityError | None:
    """A mirror's index; None when it has none or cannot be reached (then the
    download itself reports what is wrong); the error when it is broken.

    What was read is reused for INDEX_TTL seconds; a broken index is reported
    on stderr when it is read, once per mirror, not once per file.
    """
    base = base.rstrip("/")
    read_at, index = _indexes.get(base, (float("-inf"), None))
    if time.monotonic() - read_at < INDEX_TTL:
        return index
    where = f"{base}/{INDEX_NAME}"
    try:
        text = _fetch_small(where, settings.connect_timeout)
        index = MirrorIndex.parse(text, where) if text is not None else None
    except IntegrityError as exc:
        log.warning("%s; skipping this mirror", exc)
        index = exc
    _indexes[base] = (time.monotonic(), index)
    return index


def _fetch_small(url: str, timeout: float) -> bytes | None:
    """The bytes at ``url``, None when there are none or it can't be reached, an
    IntegrityError when what is there can't be an index (too large, not a file)."""
    if is_local(url):
        path = local_path(url)
        return read_input(path, "mirror index", IntegrityError) if path.exists() else None
    try:
        if url.startswith(("http://", "https://")):
            return _fetch_http(url, timeout)
        from fsspec.core import url_to_fs

        fs, path = url_to_fs(url)
        with fs.open(path, "rb") as handle:
            return read_limited(handle, MAX_INPUT_BYTES, url, IntegrityError)
    except IntegrityError:
        raise
    except Exception:  # noqa: BLE001 - an unreachable mirror: the download says why
        return None


def _fetch_http(url: str, timeout: float) -> bytes | None:
    import requests

    with requests.get(url, timeout=(timeout, timeout), stream=True) as response:
        if response.status_code != 200:
            return None
        response.raw.decode_content = True
        return read_limited(response.raw, MAX_INPUT_BYTES, url, IntegrityError)


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
    sources = [Source(u, pin) for u in candidate_urls(url, settings.mirrors, settings.offline, settings.mirror_only)]
    got = download(
        sources, partial, settings=settings, label=f"{model.name}: {Path(url).name}", progress=progress,
        expect_archive=url == model.url,  # a login page in place of a tarball must not enter the mirror
    )  # fmt: skip
    store.put(got.path, relative)
    index.files[relative] = MirrorFile(url, got.sha256, got.size)
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
