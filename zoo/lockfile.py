"""Lock files: the exact bytes a CI job may fetch, per model.

A lock file is a registry file that only pins: ``{"format": 1, "models":
[{"name", "url", "sha256", "size"}, ...]}``, sorted by name, one key per line,
so it diffs well and layers over the registry like any other registry file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from zoo.errors import RegistryError
from zoo.fetch import fetch
from zoo.fsutil import check_key
from zoo.registry import Registry, load_registry, read_registry_file
from zoo.settings import Settings
from zoo.sources import mirror_relative

LOCK_FORMAT = 1


@dataclass(frozen=True)
class LockedModel:
    name: str
    url: str
    sha256: str
    size: int


def render_lock(models: Iterable[LockedModel]) -> str:
    rows = [asdict(m) for m in sorted(models, key=lambda m: m.name)]
    return json.dumps({"format": LOCK_FORMAT, "models": rows}, indent=2) + "\n"


def read_lock(path: Path, registry: Registry) -> list[LockedModel]:
    """The pinned models of a lock file; each must be a model the registry knows."""
    entries, _defaults = read_registry_file(path)
    locked = []
    for index, entry in enumerate(entries):
        where = f"{path}: models[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"name", "url", "sha256", "size"}:
            raise RegistryError(f"{where}: a lock entry has exactly name, url, sha256 and size")
        if entry["name"] not in registry.models:
            raise RegistryError(f"{where} ({entry['name']}): not a model of the registry")
        # Where a mirror build stores the URL, and where a fetch looks for it in a mirror.
        check_key(mirror_relative(str(entry["url"])), f"{where} ({entry['name']})", RegistryError)
        locked.append(LockedModel(str(entry["name"]), str(entry["url"]), str(entry["sha256"]), int(entry["size"])))
    return locked


def lock_key(models: Iterable[LockedModel]) -> str:
    """A cache key that changes exactly when a pinned byte would change."""
    canonical = json.dumps([asdict(m) for m in sorted(models, key=lambda m: m.name)], sort_keys=True)
    return "zoo-" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


def lock_models(names: Iterable[str], settings: Settings) -> list[LockedModel]:
    """Pin the named models to the bytes they have, fetching those not cached."""
    registry = load_registry(settings.registry_files)
    locked = []
    for name in names:
        result = fetch(name, settings=settings, registry=registry)
        locked.append(LockedModel(result.name, registry.models[result.name].url, result.sha256, result.size))
    return locked


def with_lock(path: Path, settings: Settings, names: Iterable[str] = ()) -> tuple[Settings, list[str]]:
    """Settings that layer the lock's pins over the registry, and ``names``
    followed by the names it locks."""
    locked = read_lock(path, load_registry(settings.registry_files))
    layered = dataclasses.replace(settings, registry_files=(*settings.registry_files, path))
    return layered, [*names, *(model.name for model in locked)]
