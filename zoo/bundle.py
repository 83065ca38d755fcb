"""Bundles: cached models packed into one tar file to carry across an air gap.

A bundle is a mirror in a tar file: the archives and sample configs at their
mirror paths plus the mirror index. Importing verifies every file against
the index before installing anything, then installs through the ordinary
fetch (into the cache) or into a mirror directory.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable
from pathlib import Path

from zoo.cache import Cache
from zoo.errors import IntegrityError, ZooError
from zoo.extract import extract_stream
from zoo.fetch import FetchResult, fetch
from zoo.fsutil import file_digest, writing
from zoo.mirror import INDEX_NAME, MirrorFile, MirrorIndex, merge_into_mirror
from zoo.registry import Registry
from zoo.settings import Settings
from zoo.sources import mirror_relative


def create_bundle(path: Path, names: Iterable[str], settings: Settings, registry: Registry) -> MirrorIndex:
    """Pack the named cached models into ``path``, written atomically."""
    cache = Cache(settings.cache_dir)
    index = MirrorIndex()
    members: list[tuple[str, Path]] = []
    for name in names:
        entry = cache.require_entry(registry.resolve(name).name)
        files = [(entry.upstream_url, entry.archive_path, (entry.sha256, entry.size))]
        if entry.sample_config_url and entry.config_path:
            files.append((entry.sample_config_url, entry.config_path, file_digest(entry.config_path)))
        for url, local, (sha256, size) in files:
            relative = mirror_relative(url)
            index.files[relative] = MirrorFile(url, sha256, size)
            members.append((relative, local))
        model = registry.models.get(entry.name)
        if model:
            index.models[entry.name] = {k: v for k, v in model.to_dict().items() if k != "source"}
    _write_tar(path, index, members)
    return index


def _write_tar(path: Path, index: MirrorIndex, members: list[tuple[str, Path]]) -> None:
    path = path.absolute()
    with writing(path):
        fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
                data = index.to_json().encode()
                info = tarfile.TarInfo(INDEX_NAME)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                for relative, local in members:
                    tar.add(local, arcname=relative, recursive=False)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


def import_bundle(path: Path, into: str, settings: Settings) -> list[str]:
    """Verify every file of the bundle, then install its models into the cache
    (``into == "cache"``) or into the mirror at ``into``; returns the model names."""
    cache = Cache(settings.cache_dir)
    with cache.staging("bundle") as staged:
        unpacked = staged / "bundle"
        _unpack(path, unpacked)
        index = _verified_index(path, unpacked)
        if into == "cache":
            return [result.name for result in _install_into_cache(index, unpacked, staged, settings)]
        merge_into_mirror(into, index, unpacked, settings)
        return sorted(index.models)


def _unpack(path: Path, dest: Path) -> None:
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ZooError(f"cannot read bundle {path}: {exc.strerror}") from None
    with source:
        extract_stream(source, dest, label=str(path), archive_size=lambda: path.stat().st_size)


def _verified_index(path: Path, unpacked: Path) -> MirrorIndex:
    index_file = unpacked / INDEX_NAME
    if not index_file.is_file():
        raise IntegrityError(f"{path}: not a zoo bundle (no {INDEX_NAME})")
    index = MirrorIndex.parse(index_file.read_bytes(), f"{path}:{INDEX_NAME}")
    present = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    unlisted = sorted(present - set(index.files) - {INDEX_NAME})
    if unlisted:
        raise IntegrityError(f"{path}: holds files its index does not list: {', '.join(unlisted)}")
    for relative, expected in sorted(index.files.items()):
        local = unpacked / relative
        if not local.is_file():
            raise IntegrityError(f"{path}: {relative} is listed in the index but missing")
        if file_digest(local) != (expected.sha256, expected.size):
            raise IntegrityError(f"{path}: {relative} does not match its sha256 in the index (tampered?)")
    return index


def _install_into_cache(index: MirrorIndex, unpacked: Path, staged: Path, settings: Settings) -> list[FetchResult]:
    overlay = staged / "bundle-registry.json"
    overlay.write_text(json.dumps({"format": 1, "models": list(index.models.values())}))
    local = dataclasses.replace(
        settings,
        mirrors=(str(unpacked),),
        offline=True,
        mirror_only=True,
        registry_files=(*settings.registry_files, overlay),
    )
    return [fetch(name, settings=local) for name in sorted(index.models)]
