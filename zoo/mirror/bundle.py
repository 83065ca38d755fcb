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
import tarfile
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

from zoo.cache import Cache
from zoo.errors import IntegrityError, ZooError
from zoo.extract import extract_stream
from zoo.fetch import FetchResult, fetch
from zoo.fsutil import file_digest, join_beneath, read_input, replacing
from zoo.mirror.build import merge_into_mirror
from zoo.registry import Registry, load_registry
from zoo.settings import Settings
from zoo.sources import INDEX_NAME, MirrorFile, MirrorIndex, Pin, mirror_relative


def create_bundle(
    path: Path | str, names: Iterable[str], settings: Settings, registry: Registry, force: bool = False
) -> MirrorIndex:
    """Pack the named cached models into ``path`` (``-``: standard output), a regular
    file replaced atomically (a read-only one only with ``force``), a device written through."""
    cache = Cache.from_settings(settings)  # a model in a read-only layer packs like any other
    index = MirrorIndex()
    members: list[tuple[str, Path]] = []
    for name in names:
        entry = cache.find_entry(registry.resolve(name).name)
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
    with replacing(path, force) as output:
        _write_tar(output, index, members)
    return index


def _write_tar(output: IO[bytes], index: MirrorIndex, members: list[tuple[str, Path]]) -> None:
    # A stream ("w|"): a pipe or a device can't seek.
    with tarfile.open(fileobj=output, mode="w|") as tar:
        data = index.to_json().encode()
        info = tarfile.TarInfo(INDEX_NAME)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        for relative, local in members:
            tar.add(local, arcname=relative, recursive=False)


def import_bundle(path: Path, into: str, settings: Settings) -> list[str]:
    """Verify every file of the bundle, then install its models into the cache
    (``into == "cache"``) or into the mirror at ``into``; returns the model names."""
    cache = Cache(settings.cache_dir)
    with cache.staging("bundle") as staged:
        unpacked = staged / "bundle"
        _unpack(path, unpacked)
        index = _verified_index(path, unpacked)
        if into == "cache":
            return [result.name for result in _install_into_cache(path, index, unpacked, staged, settings)]
        merge_into_mirror(into, index, unpacked, settings)
        return sorted(index.models)


def _unpack(path: Path, dest: Path) -> None:
    try:
        source = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise ZooError(f"cannot read bundle {path}: {exc.strerror}") from None
    with source:
        # A link in a bundle could make a key that looks inside resolve elsewhere: none at all.
        extract_stream(source, dest, label=str(path), archive_size=lambda: path.stat().st_size, links=False)


def _verified_index(path: Path, unpacked: Path) -> MirrorIndex:
    index_file = unpacked / INDEX_NAME
    if not index_file.is_file():
        raise IntegrityError(f"{path}: not a zoo bundle (no {INDEX_NAME})")
    index = MirrorIndex.parse(read_input(index_file, "mirror index", IntegrityError), f"{path}:{INDEX_NAME}")
    present = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    unlisted = sorted(present - set(index.files) - {INDEX_NAME})
    if unlisted:
        raise IntegrityError(f"{path}: holds files its index does not list: {', '.join(unlisted)}")
    for relative, expected in sorted(index.files.items()):
        local = join_beneath(unpacked, relative, str(path), IntegrityError)
        if not local.is_file():
            raise IntegrityError(f"{path}: {relative} is listed in the index but missing")
        if file_digest(local) != (expected.sha256, expected.size):
            raise IntegrityError(f"{path}: {relative} does not match its sha256 in the index (tampered?)")
    return index


def _install_into_cache(
    path: Path, index: MirrorIndex, unpacked: Path, staged: Path, settings: Settings
) -> list[FetchResult]:
    entries = _pinned_entries(path, index, load_registry(settings.registry_files))
    overlay = staged / "bundle-registry.json"
    overlay.write_text(json.dumps({"format": 1, "models": entries}))
    local = dataclasses.replace(
        settings,
        mirrors=(str(unpacked),),
        offline=True,
        mirror_only=True,
        registry_files=(*settings.registry_files, overlay),
    )
    return [fetch(name, settings=local) for name in sorted(index.models)]


def _pinned_entries(path: Path, index: MirrorIndex, registry: Registry) -> list[dict[str, Any]]:
    """The bundle's registry entries, pinned to the very files it carries.

    They are layered over the user's registry (and lock), so a pin the bundle
    left out would otherwise be wiped: a bundle may add models, never weaken
    or contradict a pin; one that contradicts a pin installs nothing.
    """
    entries = []
    for name, entry in sorted(index.models.items()):
        url = entry.get("url") if isinstance(entry, dict) else None
        carried = index.files.get(mirror_relative(url)) if isinstance(url, str) else None
        if carried is None:
            raise IntegrityError(f"{path}: {name}: its archive {url!r} is not in the bundle")
        known = registry.models.get(name)
        pin = Pin(known.sha256, known.size) if known else Pin()
        if pin.merge(Pin(carried.sha256, carried.size)) is None:
            raise IntegrityError(
                f"{path}: {name}: the bundle holds other bytes than your registry or lock pins "
                f"(sha256 {pin.sha256 or 'any'}, size {pin.size or 'any'}); nothing was installed"
            )
        entries.append({**entry, "name": name, "sha256": carried.sha256, "size": carried.size})
    return entries
