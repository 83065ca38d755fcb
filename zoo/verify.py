"""Re-check cached models on demand: archive hash and size, every tensor's CRC32C."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from zoo.cache import Cache, Entry
from zoo.fsutil import file_digest
from zoo.errors import ZooError
from zoo.checkpoint import read_checkpoint, verify_checkpoint
from zoo.registry import Registry


@dataclass(frozen=True)
class VerifyResult:
    name: str
    sha256: str
    size: int
    problems: list[str] = field(default_factory=list)
    # Where the entry lives: with read-only layers, one name can be verified twice.
    directory: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "sha256": self.sha256,
                "size": self.size, "problems": self.problems, "directory": self.directory}  # fmt: skip


def verify_cached(cache: Cache, registry: Registry, names: Iterable[str] = ()) -> list[VerifyResult]:
    """Verify the named models (all cached ones when none are named), in
    every layer that holds them: a shadowed layer entry can still be served
    when the one above it goes stale."""
    names = list(names)
    if not names:
        return [verify_entry(entry, registry) for entry in cache.all_entries()]
    return [verify_entry(entry, registry) for name in names for entry in _every_layer(cache, registry, name)]


def _every_layer(cache: Cache, registry: Registry, name: str) -> list[Entry]:
    """``name``'s entry in every layer that holds one; NotCachedError when none does."""
    canonical = cache.model_name(registry, name)
    cache.find_entry(canonical)  # raises, naming every layer searched, when no layer holds it
    return list(cache.layered_entries(canonical))


def verify_entry(entry: Entry, registry: Registry) -> VerifyResult:
    sha256, size = _hash_file(entry)
    problems = []
    if (sha256, size) != (entry.sha256, entry.size):
        problems.append(
            f"{entry.archive_path}: sha256 {sha256} ({size} bytes) differs from the "
            f"recorded {entry.sha256} ({entry.size} bytes)"
        )
    pinned = registry.models.get(entry.name)
    if pinned and pinned.sha256 and pinned.sha256 != sha256:
        problems.append(f"{entry.archive_path}: sha256 {sha256} differs from the pinned {pinned.sha256}")
    try:
        verify_checkpoint(read_checkpoint(entry.checkpoint_path))
    except ZooError as exc:
        problems.append(str(exc))
    return VerifyResult(entry.name, sha256, size, problems, str(entry.directory))


def _hash_file(entry: Entry) -> tuple[str, int]:
    try:
        return file_digest(entry.archive_path)
    except FileNotFoundError:
        return "missing", 0
