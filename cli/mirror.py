"""`zoo mirror build | verify | serve` and `zoo bundle create | import`: models
carried to machines without (or with little) network."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import zoo
from zoo.errors import IntegrityError
from zoo_cli.common import (
    AllowHttpOption,
    CacheDirOption,
    ConnectionsOption,
    JsonOption,
    MirrorOnlyOption,
    MirrorOption,
    OfflineOption,
    QuietOption,
    RegistryOption,
    RequireVerifiedOption,
    ZooTyper,
    complete_model_name,
    emit,
    settings_from,
)

app = ZooTyper()
mirror_app = ZooTyper(help="Build, verify and serve a mirror for offline and CI use.")
bundle_app = ZooTyper(help="Carry cached models across an air gap in one file.")
app.add_typer(mirror_app, name="mirror")
app.add_typer(bundle_app, name="bundle")

MirrorLocation = Annotated[str, typer.Argument(help="Mirror directory, file:// URL or s3://bucket/prefix.", metavar="DIR")]


@mirror_app.command("build")
def mirror_build(
    directory: MirrorLocation,
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to mirror.", metavar="[NAME...]", show_default=False, autocompletion=complete_model_name)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model of the registry.")] = False,
    family: Annotated[Optional[str], typer.Option("--family", metavar="FAMILY", help="Every model of one family.")] = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", metavar="FILE", help="The models a lock file pins, verified against it.")] = None,
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
    """Download archives and sample configs into a mirror, incrementally, with its index."""
    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only, allow_http, require_verified, connections)
    if lock:
        settings, names = zoo.lockfile.with_lock(lock, settings, names or ())
    catalog = zoo.load_registry(settings.registry_files)
    models = zoo.select_models(catalog, names or (), all_models=all_models, family=family)
    show_bar = sys.stdout.isatty() and not quiet and not as_json
    for item in zoo.build_mirror(directory, models, settings, progress=show_bar):
        state = "downloaded" if item.downloaded else "present"
        emit(as_json, {"path": item.path, "url": item.url, "sha256": item.sha256, "size": item.size,
                        "downloaded": item.downloaded}, f"{state:<10}  {item.path}")  # fmt: skip


@mirror_app.command("verify")
def mirror_verify(directory: MirrorLocation, cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Re-hash every file of a mirror against its index; report missing, corrupt and extra files."""
    report = zoo.verify_mirror(directory, settings_from(cache_dir))
    lines = [f"checked {report.checked} file(s)"]
    lines += [f"missing  {p}" for p in report.missing] + [f"corrupt  {p}" for p in report.corrupt]
    lines += [f"extra    {p}" for p in report.extra]
    emit(as_json, report.to_dict(), "\n".join(lines))
    if not report.ok:
        raise IntegrityError(f"{directory}: {len(report.missing)} missing and {len(report.corrupt)} corrupt file(s)")


@mirror_app.command("serve")
def mirror_serve(
    directory: Annotated[Path, typer.Argument(help="Mirror directory.", metavar="DIR")],
    host: Annotated[str, typer.Option("--host", metavar="ADDRESS", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port (0 picks a free one).")] = 8000,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Do not log each request on stderr.")] = False,
) -> None:
    """Serve a mirror directory over HTTP (threaded, with Range support) until interrupted."""
    from zoo.mirror.serve import serve

    serve(directory, host, port, on_ready=lambda url: typer.echo(f"serving {directory} at {url}"), quiet=quiet)


@bundle_app.command("create")
def bundle_create(
    path: Annotated[Path, typer.Argument(help="Bundle file to write ('-' for standard output).", metavar="FILE.tar")],
    names: Annotated[list[str], typer.Argument(help="Cached models to pack.", metavar="NAME...", show_default=False, autocompletion=complete_model_name)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a read-only bundle file.")] = False,
) -> None:
    """Pack cached models (archives, sample configs, an index) into one tar file."""
    from zoo.mirror.bundle import create_bundle

    settings = settings_from(cache_dir, registry)
    index = create_bundle(path, names, settings, zoo.load_registry(settings.registry_files), force)
    if str(path) != "-":
        typer.echo(f"wrote {path}: {len(index.models)} model(s), {len(index.files)} file(s)")


@bundle_app.command("import")
def bundle_import(
    path: Annotated[Path, typer.Argument(help="Bundle file to import.", metavar="FILE.tar")],
    into: Annotated[str, typer.Option("--into", metavar="cache|DIR", help="'cache', or a mirror directory.")] = "cache",
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
) -> None:
    """Verify every file of a bundle, then install its models into the cache or a mirror."""
    from zoo.mirror.bundle import import_bundle

    for name in import_bundle(path, into, settings_from(cache_dir, registry)):
        typer.echo(f"imported {name}")
