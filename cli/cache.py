"""`zoo cache ls | du | rm | prune` and `zoo verify`: the local cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

import zoo
from zoo.errors import IntegrityError
from zoo_cli.common import (
    CacheDirOption,
    JsonOption,
    RegistryOption,
    ZooTyper,
    complete_model_name,
    emit,
    for_each,
    human,
    note,
    settings_from,
)

app = ZooTyper()
cache_app = ZooTyper(help="Inspect and clean the local cache.")
app.add_typer(cache_app, name="cache")


@app.command()
def verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to verify (default: every cached one).", metavar="[NAME...]", show_default=False, autocompletion=complete_model_name)] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-hash cached archives and check every tensor against its CRC32C."""
    settings = settings_from(cache_dir, registry)
    cache = zoo.Cache.from_settings(settings)
    results = zoo.verify_cached(cache, zoo.load_registry(settings.registry_files), names or ())
    if not results:
        note(f"nothing to verify: no model this zoo can use in the cache at {settings.cache_dir}{_and_layers(cache)}")
    for result in results:
        status = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
        emit(as_json, result.to_dict(), f"{result.name}{_layer_label(cache, Path(result.directory))}: {status}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise IntegrityError(f"{len(failed)} of {len(results)} cached model(s) failed verification")


@cache_app.command("ls")
def cache_ls(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """List cached models with their checkpoint prefixes."""
    cache = zoo.Cache.from_settings(settings_from(cache_dir))
    entries = cache.all_entries()
    if not entries:
        note(f"no model this zoo can use in the cache at {cache.root}{_and_layers(cache)}")
    for entry in entries:
        layer = cache.read_only_layer(entry.directory)
        data = {**entry.marker_dict(), "checkpoint_path": str(entry.checkpoint_path),
                "layer": str((layer or cache).root), "read_only": layer is not None}  # fmt: skip
        text = f"{entry.name}  {human(entry.size)}  {entry.fetched_at}  {entry.checkpoint_path}"
        emit(as_json, data, text + _layer_label(cache, entry.directory))


def _layer_label(cache: zoo.Cache, directory: Path) -> str:
    """Names the read-only layer an entry comes from; nothing for the writable cache."""
    layer = cache.read_only_layer(directory)
    return f"  (read-only layer {layer.root})" if layer else ""


def _and_layers(cache: zoo.Cache) -> str:
    return "".join(f" or {layer.root}" for layer in cache.layers)


@cache_app.command("du")
def cache_du(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Show disk use per cached model, of partial downloads, and in total."""
    usage = zoo.Cache(settings_from(cache_dir).cache_dir).disk_usage()
    for name, size in [*usage.items(), ("total", sum(usage.values()))]:
        emit(as_json, {"name": name, "bytes": size}, f"{human(size):>10}  {name}")


@cache_app.command("rm")
def cache_rm(
    names: Annotated[list[str], typer.Argument(help="Models to remove.", metavar="NAME...", show_default=False, autocompletion=complete_model_name)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove models (and their partial downloads) from the cache."""
    settings = settings_from(cache_dir, registry)
    cache = zoo.Cache.from_settings(settings)  # removes from its root only; layers just explain a miss
    catalog = zoo.load_registry(settings.registry_files)

    def step(name: str) -> None:
        canonical = cache.model_name(catalog, name)
        freed = cache.remove(canonical)
        emit(as_json, {"name": canonical, "ok": True, "freed": freed}, f"removed {canonical} ({human(freed)})")

    for_each(names, as_json, step)


@cache_app.command("prune")
def cache_prune(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Remove partial downloads, unfinished entries and staging leftovers."""
    cache = zoo.Cache(settings_from(cache_dir).cache_dir)
    removed = cache.prune()
    if not removed:
        note(f"nothing to prune in {cache.root}")
    for path in removed:
        emit(as_json, {"removed": str(path)}, f"removed {path}")
