"""Read-only views of the registry joined with the cache, for listing and info."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from zoo.cache import Cache, Entry
from zoo.errors import UsageError
from zoo.registry import FAMILIES, Model, Registry


@dataclass(frozen=True)
class Listing:
    model: Model
    cached: bool

    def to_dict(self) -> dict[str, Any]:
        return {**self.model.to_dict(), "cached": self.cached}


@dataclass(frozen=True)
class Info:
    model: Model
    variants: list[Model]
    entry: Entry | None

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.model.to_dict(),
            "variants": [v.name for v in self.variants],
            "cached": self.entry is not None,
            "checkpoint_path": str(self.entry.checkpoint_path) if self.entry else None,
            "config_path": str(self.entry.config_path) if self.entry and self.entry.config else None,
            "cached_sha256": self.entry.sha256 if self.entry else None,
            "verified": self.entry.verified if self.entry else _verified_on_download(self.model),
        }


def _verified_on_download(model: Model) -> str:
    """What will vouch for the bytes of a model not cached yet (every zoo host
    is Google Cloud Storage, which sends its hashes; a mirror's index may pin too)."""
    if model.sha256:
        return "not cached; on download: pinned sha256"
    return "not cached; on download: server crc32c+md5 where the server sends them, else none: recorded on first use"


def list_models(
    registry: Registry,
    cache: Cache,
    family: str | None = None,
    architecture: str | None = None,
    cached_only: bool = False,
) -> list[Listing]:
    """Models matching the filters; ``architecture`` matches meta-arch or extractor."""
    check_family(family)
    cached = {entry.name for entry in cache.all_entries()}
    rows = []
    for model in registry:
        if family and model.family != family:
            continue
        if architecture and architecture not in (model.meta_architecture or "") + " " + (
            model.feature_extractor or ""
        ):
            continue
        if cached_only and model.name not in cached:
            continue
        rows.append(Listing(model, model.name in cached))
    return rows


def check_family(family: str | None) -> None:
    """A family filter that matches no family is a mistake, not an empty result."""
    if family is not None and family not in FAMILIES:
        raise UsageError(f"unknown family {family!r}; choose from {', '.join(FAMILIES)}")


def model_names(registry: Registry) -> list[str]:
    """Every name a model can be asked for by: canonical names and aliases, sorted."""
    return sorted({name for model in registry for name in (model.name, *model.aliases)})


def model_info(registry: Registry, cache: Cache, name: str) -> Info:
    model = registry.resolve(cache.model_name(registry, name))
    return Info(model, registry.variants(model), next(cache.layered_entries(model.name), None))


def select_models(
    registry: Registry, names: Iterable[str] = (), *, all_models: bool = False, family: str | None = None
) -> list[Model]:
    """The models named, or all of one family, or all; each once, in registry order."""
    if not (names or all_models or family):
        raise UsageError("name models, or give --all or --family")
    check_family(family)
    wanted = {registry.resolve(name).name for name in names}
    return [
        model
        for model in registry
        if all_models or model.name in wanted or (family is not None and model.family == family)
    ]


def inspect_checkpoint(
    registry: Registry, cache: Cache, target: str, filter_prefix: str | None = None
) -> dict[str, Any]:
    """What a checkpoint holds: ``target`` is a path (prefix, .index, .data-*,
    directory) or the name of a cached model. A path that names no checkpoint
    is a CheckpointError, not an unknown model."""
    # Here, not at the top: `zoo list` and `zoo info` need no checkpoint reader (nor crc32c).
    from zoo.checkpoint import is_checkpoint_path, read_checkpoint, summarize

    if is_checkpoint_path(target):
        return summarize(read_checkpoint(target), filter_prefix)
    entry = cache.find_entry(cache.model_name(registry, target))
    return summarize(read_checkpoint(entry.checkpoint_path), filter_prefix)
