"""The `zoo` command: each command parses, makes one library call, prints."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

import zoo
from zoo_cli import resolver_commands
from zoo_cli.common import (
    CacheDirOption,
    JsonOption,
    MirrorOnlyOption,
    MirrorOption,
    OfflineOption,
    QuietOption,
    RegistryOption,
    ZooGroup,
    emit,
    fail,
    for_each,
    human,
    plain,
    settings_from,
)
from zoo.errors import IntegrityError, UsageError, ZooError
from zoo.fsutil import write_output

app = typer.Typer(
    cls=ZooGroup,
    help="Fetch TensorFlow Object Detection API zoo checkpoints into a verified local cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
cache_app = typer.Typer(help="Inspect and clean the local cache.", no_args_is_help=True)
mirror_app = typer.Typer(help="Build, verify and serve a mirror for offline and CI use.", no_args_is_help=True)
bundle_app = typer.Typer(help="Carry cached models across an air gap in one file.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(mirror_app, name="mirror")
app.add_typer(bundle_app, name="bundle")

@app.command()
def fetch(
    names: Annotated[Optional[list[str]], typer.Argument(help="Model names or aliases.", metavar="NAME...", show_default=False)] = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="Fetch exactly the models a lock file pins.")] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Models fetched at once.")] = 1,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    mirror_only: MirrorOnlyOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download, verify and extract models; print each checkpoint prefix (fine_tune_checkpoint)."""
    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only)
    if lock:
        settings, locked = zoo.lockfile.with_lock(lock, settings)
        names = [*(names or []), *locked]
    if not names:
        raise UsageError("name at least one model, or give --lock FILE")
    if quiet:
        logging.getLogger("zoo").setLevel(logging.ERROR)
    show_bar = sys.stdout.isatty() and not quiet and not as_json
    first_failure = 0
    for name, outcome in zoo.fetch_many(list(dict.fromkeys(names)), settings=settings, jobs=jobs, progress=show_bar):
        if isinstance(outcome, ZooError):
            fail(name, outcome, as_json)
            first_failure = first_failure or outcome.exit_code
            continue
        emit(as_json, {"ok": True, **outcome.to_dict()}, str(outcome.checkpoint))
        state = "cached" if outcome.from_cache else "fetched"
        logging.getLogger("zoo").info("%s: %s (sha256:%s)", outcome.name, state, outcome.sha256)
    if first_failure:
        raise typer.Exit(first_failure)


@app.command("lock")
def lock_(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to pin.", metavar="[NAME...]", show_default=False)] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Lock file to write ('-': stdout).")] = Path("zoo.lock"),
    force: Annotated[bool, typer.Option("--force", help="Replace a read-only lock file.")] = False,
    key: Annotated[Optional[Path], typer.Option("--key", help="Print the CI cache key of this lock file instead.")] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    mirror_only: MirrorOnlyOption = False,
) -> None:
    """Pin models to their exact bytes (name, URL, sha256, size) in a lock file."""
    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only)
    if key:
        typer.echo(zoo.lockfile.lock_key(zoo.lockfile.read_lock(key, zoo.load_registry(settings.registry_files))))
        return
    if not names:
        raise UsageError("name the models to lock (or give --key FILE)")
    text = zoo.lockfile.render_lock(zoo.lockfile.lock_models(names, settings))
    write_output(output, text.encode(), force)
    if str(output) != "-":
        typer.echo(f"wrote {output}")


@app.command("list")
def list_(
    family: Annotated[Optional[str], typer.Option(help="tf2-detection, tf2-classification or tf1-detection.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="Substring of the meta-architecture or feature extractor.")] = None,
    cached: Annotated[bool, typer.Option("--cached", help="Only models in the cache.")] = False,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """List registry models; '*' marks cached ones."""
    settings = settings_from(cache_dir, registry)
    rows = zoo.list_models(
        zoo.load_registry(settings.registry_files), zoo.Cache(settings.cache_dir), family, arch, cached
    )
    for row in rows:
        model = row.model
        size = "x".join(map(str, model.input_size)) if model.input_size else "-"
        text = (
            f"{'*' if row.cached else ' '} {model.name:<72} {model.family:<18} "
            f"{model.meta_architecture or '-':<12} {size:>9} {model.coco_map or '-':>9}"
        )
        emit(as_json, row.to_dict(), text)


@app.command()
def info(
    name: Annotated[str, typer.Argument(help="Model name or alias.", metavar="NAME", show_default=False)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one model: URL, sample config, architecture, variants, cache state."""
    settings = settings_from(cache_dir, registry)
    details = zoo.model_info(zoo.load_registry(settings.registry_files), zoo.Cache(settings.cache_dir), name)
    data = details.to_dict()
    lines = [f"{key}: {plain(value)}" for key, value in data.items() if key != "variants"]
    lines.append("variants: " + (", ".join(data["variants"]) or "-"))
    emit(as_json, data, "\n".join(lines))


@app.command()
def verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to verify (default: every cached one).", metavar="[NAME...]", show_default=False)] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-hash cached archives and check every tensor against its CRC32C."""
    settings = settings_from(cache_dir, registry)
    results = zoo.verify_cached(
        zoo.Cache(settings.cache_dir), zoo.load_registry(settings.registry_files), names or ()
    )
    for result in results:
        status = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
        emit(as_json, result.to_dict(), f"{result.name}: {status}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise IntegrityError(f"{len(failed)} of {len(results)} cached model(s) failed verification")


@app.command()
def inspect(
    target: Annotated[str, typer.Argument(help="A cached model's name, or a checkpoint path (prefix, .index, .data-*, directory).", metavar="NAME|PATH")],
    filter_prefix: Annotated[Optional[str], typer.Option("--filter", help="List the variables whose names start with this.")] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a checkpoint holds, read without TensorFlow: format, objects, tensors, sizes."""
    settings = settings_from(cache_dir, registry)
    summary = zoo.inspect_checkpoint(
        zoo.load_registry(settings.registry_files), zoo.Cache(settings.cache_dir), target, filter_prefix
    )
    lines = [
        f"prefix: {summary['prefix']}",
        f"format: {summary['format']}",
        f"root objects: {plain(summary['root_objects'])}",
        f"model children: {plain(summary['model_children'])}",
        f"tensors: {summary['tensors']}  parameters: {summary['parameters']:,}  "
        f"bytes: {human(summary['bytes'])}  shards: {summary['shards']}",
        "dtypes: " + ", ".join(f"{k}={v}" for k, v in summary["dtypes"].items()),
    ]
    lines += [f"  {v['name']}  {v['dtype']}  {v['shape']}" for v in summary.get("variables", [])]
    emit(as_json, summary, "\n".join(lines))


@cache_app.command("ls")
def cache_ls(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """List cached models with their checkpoint prefixes."""
    for entry in zoo.Cache(settings_from(cache_dir).cache_dir).entries():
        data = {**entry.marker_dict(), "checkpoint_path": str(entry.checkpoint_path)}
        emit(as_json, data, f"{entry.name}  {human(entry.size)}  {entry.fetched_at}  {entry.checkpoint_path}")


@cache_app.command("du")
def cache_du(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Show disk use per cached model, of partial downloads, and in total."""
    usage = zoo.Cache(settings_from(cache_dir).cache_dir).disk_usage()
    for name, size in [*usage.items(), ("total", sum(usage.values()))]:
        emit(as_json, {"name": name, "bytes": size}, f"{human(size):>10}  {name}")


@cache_app.command("rm")
def cache_rm(
    names: Annotated[list[str], typer.Argument(help="Models to remove.", metavar="NAME...", show_default=False)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove models (and their partial downloads) from the cache."""
    settings = settings_from(cache_dir, registry)
    cache = zoo.Cache(settings.cache_dir)
    catalog = zoo.load_registry(settings.registry_files)

    def step(name: str) -> None:
        canonical = cache.model_name(catalog, name)
        freed = cache.remove(canonical)
        emit(as_json, {"name": canonical, "ok": True, "freed": freed}, f"removed {canonical} ({human(freed)})")

    for_each(names, as_json, step)


@cache_app.command("prune")
def cache_prune(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Remove partial downloads, unfinished entries and staging leftovers."""
    for path in zoo.Cache(settings_from(cache_dir).cache_dir).prune():
        emit(as_json, {"removed": str(path)}, f"removed {path}")


@mirror_app.command("build")
def mirror_build(
    directory: Annotated[str, typer.Argument(help="Mirror directory, file:// URL or s3://bucket/prefix.", metavar="DIR")],
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to mirror.", metavar="[NAME...]", show_default=False)] = None,
    all_models: Annotated[bool, typer.Option("--all", help="Every model of the registry.")] = False,
    family: Annotated[Optional[str], typer.Option("--family", help="Every model of one family.")] = None,
    lock: Annotated[Optional[Path], typer.Option("--lock", help="The models a lock file pins, verified against it.")] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download archives and sample configs into a mirror, incrementally, with its index."""
    settings = settings_from(cache_dir, registry, mirror)
    if lock:
        settings, locked = zoo.lockfile.with_lock(lock, settings)
        names = [*(names or []), *locked]
    catalog = zoo.load_registry(settings.registry_files)
    models = zoo.select_models(catalog, names or (), all_models=all_models, family=family)
    show_bar = sys.stdout.isatty() and not quiet and not as_json
    for item in zoo.build_mirror(directory, models, settings, progress=show_bar):
        state = "downloaded" if item.downloaded else "present"
        emit(as_json, {"path": item.path, "url": item.url, "sha256": item.sha256, "size": item.size,
                        "downloaded": item.downloaded}, f"{state:<10}  {item.path}")  # fmt: skip


@mirror_app.command("verify")
def mirror_verify(
    directory: Annotated[str, typer.Argument(help="Mirror directory, file:// URL or s3://bucket/prefix.", metavar="DIR")],
    cache_dir: CacheDirOption = None,
    as_json: JsonOption = False,
) -> None:
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
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port (0 picks a free one).")] = 8000,
    quiet: QuietOption = False,
) -> None:
    """Serve a mirror directory over HTTP (threaded, with Range support) until interrupted."""
    from zoo.mirror.serve import serve

    serve(directory, host, port, on_ready=lambda url: typer.echo(f"serving {directory} at {url}"), quiet=quiet)


@bundle_app.command("create")
def bundle_create(
    path: Annotated[Path, typer.Argument(help="Bundle file to write ('-' for standard output).", metavar="FILE.tar")],
    names: Annotated[list[str], typer.Argument(help="Cached models to pack.", metavar="NAME...", show_default=False)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a read-only bundle file.")] = False,
) -> None:
    """Pack cached models (archives, sample configs, an index) into one tar file."""
    settings = settings_from(cache_dir, registry)
    from zoo.mirror.bundle import create_bundle

    index = create_bundle(path, names, settings, zoo.load_registry(settings.registry_files), force)
    if str(path) != "-":
        typer.echo(f"wrote {path}: {len(index.models)} model(s), {len(index.files)} file(s)")


@bundle_app.command("import")
def bundle_import(
    path: Annotated[Path, typer.Argument(help="Bundle file to import.", metavar="FILE.tar")],
    into: Annotated[str, typer.Option("--into", help="'cache', or a mirror directory.")] = "cache",
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
) -> None:
    """Verify every file of a bundle, then install its models into the cache or a mirror."""
    from zoo.mirror.bundle import import_bundle

    for name in import_bundle(path, into, settings_from(cache_dir, registry)):
        typer.echo(f"imported {name}")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoo {zoo.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Fetch TensorFlow Object Detection API zoo checkpoints into a verified local cache."""


resolver_commands.register(app)


def main() -> None:
    """Console entry point: notes to stderr, then the app (ZooGroup maps errors to exit codes)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("zoo: %(message)s"))
    logger = logging.getLogger("zoo")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    app()
