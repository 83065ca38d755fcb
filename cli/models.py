"""`zoo fetch`, `zoo list`, `zoo info`, `zoo lock`: the registry's models."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import zoo
from zoo.errors import UsageError, ZooError
from zoo_cli.common import (
    AllowHttpOption,
    CacheDirOption,
    ConnectionsOption,
    JsonOption,
    MirrorOnlyOption,
    MirrorOption,
    ModelArgument,
    OfflineOption,
    QuietOption,
    RegistryOption,
    RequireVerifiedOption,
    ZooTyper,
    at_least_one,
    complete_model_name,
    emit,
    fail,
    for_each,
    note,
    plain,
    settings_from,
)

app = ZooTyper()

ModelsArgument = Annotated[
    Optional[list[str]],
    typer.Argument(help="Model names or aliases.", metavar="NAME...", show_default=False, autocompletion=complete_model_name),
]


@app.command()
def fetch(
    names: ModelsArgument = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", metavar="FILE", help="Fetch exactly the models a lock file pins.")] = None,
    jobs: Annotated[Optional[int], typer.Option("--jobs", "-j", metavar="N", callback=at_least_one, help="Models fetched at once (default 1); with --to, files uploaded at once (default 8).", show_default=False)] = None,
    to: Annotated[Optional[str], typer.Option("--to", metavar="URL|DIR", help="Also stage each model at URL/NAME/ (gs://, s3://, az://, any fsspec URL, or a directory) and print its remote checkpoint prefix.")] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    mirror_only: MirrorOnlyOption = False,
    allow_http: AllowHttpOption = False,
    require_verified: RequireVerifiedOption = False,
    connections: ConnectionsOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download, verify and extract models; print each checkpoint prefix (fine_tune_checkpoint), or with --to the staged one."""
    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only, allow_http, require_verified, connections)
    if lock:
        settings, names = zoo.lockfile.with_lock(lock, settings, names or ())
    if not names:
        raise UsageError("name at least one model, or give --lock FILE")
    if quiet:
        logging.getLogger("zoo").setLevel(logging.ERROR)
    show_bar = sys.stdout.isatty() and not quiet and not as_json
    if to is not None:
        for_each(dict.fromkeys(names), as_json, lambda name: _stage(name, to, settings, jobs or 8, show_bar, as_json))
        return
    first_failure = 0
    for name, outcome in zoo.fetch_many(list(dict.fromkeys(names)), settings=settings, jobs=jobs or 1, progress=show_bar):
        if isinstance(outcome, ZooError):
            fail(name, outcome, as_json)
            first_failure = first_failure or outcome.exit_code
            continue
        emit(as_json, {"ok": True, **outcome.to_dict()}, str(outcome.checkpoint))
        state = "cached" if outcome.from_cache else "fetched"
        logging.getLogger("zoo").info("%s: %s (sha256:%s)", outcome.name, state, outcome.sha256)
    if first_failure:
        raise typer.Exit(first_failure)


def _stage(name: str, dest: str, settings: zoo.Settings, jobs: int, progress: bool, as_json: bool) -> None:
    staged = zoo.stage(name, dest, settings=settings, jobs=jobs, progress=progress)
    emit(as_json, {"ok": True, **staged.to_dict()}, staged.checkpoint)
    logging.getLogger("zoo").info("%s: staged at %s (%d file(s) uploaded, %d already there)",
                                  staged.name, staged.destination, len(staged.uploaded), len(staged.skipped))  # fmt: skip


@app.command("lock")
def lock_(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to pin.", metavar="[NAME...]", show_default=False, autocompletion=complete_model_name)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE", help="Lock file to write ('-': stdout).")] = Path("zoo.lock"),
    force: Annotated[bool, typer.Option("--force", help="Replace a read-only lock file.")] = False,
    key: Annotated[Optional[Path], typer.Option("--key", metavar="FILE", help="Print the CI cache key of this lock file instead.")] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    mirror_only: MirrorOnlyOption = False,
    allow_http: AllowHttpOption = False,
    require_verified: RequireVerifiedOption = False,
    connections: ConnectionsOption = None,
) -> None:
    """Pin models to their exact bytes (name, URL, sha256, size) in a lock file."""
    from zoo.fsutil import write_output

    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only, allow_http, require_verified, connections)
    if key:
        typer.echo(zoo.lockfile.lock_key(zoo.lockfile.read_lock(key, zoo.load_registry(settings.registry_files))))
        return
    if not names:
        raise UsageError("name the models to lock (or give --key FILE)")
    text = zoo.lockfile.render_lock(zoo.lockfile.lock_models(names, settings))
    write_output(output, text.encode(), force)
    if str(output) != "-":
        typer.echo(f"wrote {output}")


# `zoo list` columns: header (with units), then how each row is laid out.
LIST_HEADER = (f"  {'NAME':<72} {'FAMILY':<18} {'ARCHITECTURE':<12} {'INPUT px':>9} {'SPEED ms':>8} {'COCO mAP':>9}"
               "  MEASURED ON")


@app.command("list")
def list_(
    family: Annotated[Optional[str], typer.Option("--family", metavar="FAMILY", help="tf2-detection, tf2-classification or tf1-detection.")] = None,
    arch: Annotated[Optional[str], typer.Option("--arch", metavar="ARCH", help="Substring of the meta-architecture or feature extractor.")] = None,
    cached: Annotated[bool, typer.Option("--cached", help="Only models in the cache.")] = False,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registry models; '*' marks cached ones."""
    settings = settings_from(cache_dir, registry)
    rows = zoo.list_models(
        zoo.load_registry(settings.registry_files), zoo.Cache.from_settings(settings), family, arch, cached
    )
    if not rows:
        note("no model in the cache matches" if cached else "no model matches")
        return
    if not as_json:
        typer.echo(LIST_HEADER)
    for row in rows:
        model = row.model
        size = "x".join(map(str, model.input_size)) if model.input_size else "-"
        text = (
            f"{'*' if row.cached else ' '} {model.name:<72} {model.family:<18} "
            f"{model.meta_architecture or '-':<12} {size:>9} {f'{model.speed_ms:g}' if model.speed_ms else '-':>8} {model.coco_map or '-':>9}"
            # Phone latencies and other mAP columns must not read as the desktop GPU's numbers.
            f"  {'; '.join(filter(None, (model.speed_device, model.metric)))}"
        ).rstrip()
        emit(as_json, row.to_dict(), text)


@app.command()
def info(
    name: ModelArgument,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one model: URL, sample config, architecture, variants, cache state."""
    settings = settings_from(cache_dir, registry)
    details = zoo.model_info(zoo.load_registry(settings.registry_files), zoo.Cache.from_settings(settings), name)
    data = details.to_dict()
    lines = [f"{key}: {plain(value)}" for key, value in data.items() if key != "variants"]
    lines.append("variants: " + (", ".join(data["variants"]) or "-"))
    emit(as_json, data, "\n".join(lines))
