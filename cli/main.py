"""The `zoo` command: each command parses, makes one library call, prints."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

import zoo
from zoo.errors import IntegrityError, ZooError

app = typer.Typer(
    help="Fetch TensorFlow Object Detection API zoo checkpoints into a verified local cache.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
cache_app = typer.Typer(help="Inspect and clean the local cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

CacheDirOption = Annotated[
    Optional[Path],
    typer.Option("--cache-dir", help="Cache directory (default: $ZOO_CACHE_DIR, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo)."),
]
RegistryOption = Annotated[
    Optional[list[Path]],
    typer.Option("--registry", help="Extra registry file layered over the built-in one (repeatable; after $ZOO_REGISTRY)."),
]
MirrorOption = Annotated[
    Optional[list[str]],
    typer.Option("--mirror", help="Mirror base URL or directory, tried before upstream (repeatable; before $ZOO_MIRROR)."),
]
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="Open no network connection (also $ZOO_OFFLINE=1).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no notes on stderr.")]


def _settings(
    cache_dir: Path | None = None,
    registry: list[Path] | None = None,
    mirror: list[str] | None = None,
    offline: bool = False,
) -> zoo.Settings:
    return zoo.Settings.from_env(
        cache_dir=cache_dir,
        mirrors=mirror or (),
        offline=True if offline else None,
        registry_files=registry or (),
    )


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, sort_keys=True) if as_json else text)


def _for_each(names: Iterable[str], as_json: bool, step: Callable[[str], None]) -> None:
    """Run ``step`` per name; report failures per name and exit with the first one's code."""
    first_failure = 0
    for name in names:
        try:
            step(name)
        except ZooError as exc:
            if as_json:
                _emit(True, {"name": name, "ok": False, "error": str(exc), "exit_code": exc.exit_code}, "")
            _report(exc)
            first_failure = first_failure or exc.exit_code
    if first_failure:
        raise typer.Exit(first_failure)


@app.command()
def fetch(
    names: Annotated[list[str], typer.Argument(help="Model names or aliases.", metavar="NAME...", show_default=False)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Download, verify and extract models; print each checkpoint prefix (fine_tune_checkpoint)."""
    settings = _settings(cache_dir, registry, mirror, offline)
    show_bar = sys.stdout.isatty() and not quiet and not as_json
    if quiet:
        logging.getLogger("zoo").setLevel(logging.ERROR)

    def step(name: str) -> None:
        result = zoo.fetch(name, settings=settings, progress=show_bar)
        _emit(as_json, {"ok": True, **result.to_dict()}, str(result.checkpoint))
        logging.getLogger("zoo").info(
            "%s: %s (sha256:%s)", result.name, "cached" if result.from_cache else "fetched", result.sha256
        )

    _for_each(names, as_json, step)


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
    settings = _settings(cache_dir, registry)
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
        _emit(as_json, row.to_dict(), text)


@app.command()
def info(
    name: Annotated[str, typer.Argument(help="Model name or alias.", metavar="NAME", show_default=False)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show one model: URL, sample config, architecture, variants, cache state."""
    settings = _settings(cache_dir, registry)
    details = zoo.model_info(zoo.load_registry(settings.registry_files), zoo.Cache(settings.cache_dir), name)
    data = details.to_dict()
    lines = [f"{key}: {_plain(value)}" for key, value in data.items() if key != "variants"]
    lines.append("variants: " + (", ".join(data["variants"]) or "-"))
    _emit(as_json, data, "\n".join(lines))


@app.command()
def verify(
    names: Annotated[Optional[list[str]], typer.Argument(help="Models to verify (default: every cached one).", metavar="[NAME...]", show_default=False)] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Re-hash cached archives and check their checkpoint files."""
    settings = _settings(cache_dir, registry)
    results = zoo.verify_cached(
        zoo.Cache(settings.cache_dir), zoo.load_registry(settings.registry_files), names or ()
    )
    for result in results:
        status = "ok" if result.ok else "FAILED: " + "; ".join(result.problems)
        _emit(as_json, result.to_dict(), f"{result.name}: {status}")
    failed = [r for r in results if not r.ok]
    if failed:
        raise IntegrityError(f"{len(failed)} of {len(results)} cached model(s) failed verification")


@cache_app.command("ls")
def cache_ls(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """List cached models with their checkpoint prefixes."""
    for entry in zoo.Cache(_settings(cache_dir).cache_dir).entries():
        data = {**entry.marker_dict(), "checkpoint_path": str(entry.checkpoint_path)}
        _emit(as_json, data, f"{entry.name}  {_human(entry.size)}  {entry.fetched_at}  {entry.checkpoint_path}")


@cache_app.command("du")
def cache_du(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Show disk use per cached model, of partial downloads, and in total."""
    usage = zoo.Cache(_settings(cache_dir).cache_dir).disk_usage()
    for name, size in [*usage.items(), ("total", sum(usage.values()))]:
        _emit(as_json, {"name": name, "bytes": size}, f"{_human(size):>10}  {name}")


@cache_app.command("rm")
def cache_rm(
    names: Annotated[list[str], typer.Argument(help="Models to remove.", metavar="NAME...", show_default=False)],
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove models (and their partial downloads) from the cache."""
    settings = _settings(cache_dir, registry)
    cache = zoo.Cache(settings.cache_dir)
    catalog = zoo.load_registry(settings.registry_files)

    def step(name: str) -> None:
        canonical = name if cache.entry_dir(name).exists() else catalog.resolve(name).name
        freed = cache.remove(canonical)
        _emit(as_json, {"name": canonical, "ok": True, "freed": freed}, f"removed {canonical} ({_human(freed)})")

    _for_each(names, as_json, step)


@cache_app.command("prune")
def cache_prune(cache_dir: CacheDirOption = None, as_json: JsonOption = False) -> None:
    """Remove partial downloads, unfinished entries and staging leftovers."""
    for path in zoo.Cache(_settings(cache_dir).cache_dir).prune():
        _emit(as_json, {"removed": str(path)}, f"removed {path}")


def _plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"zoo {zoo.__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Fetch TensorFlow Object Detection API zoo checkpoints into a verified local cache."""


def _report(exc: ZooError) -> None:
    typer.echo(f"zoo: error: {exc}", err=True)


def main() -> None:
    """Console entry point: map ZooError to its message and exit code, no traceback."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("zoo: %(message)s"))
    logger = logging.getLogger("zoo")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        app()
    except ZooError as exc:
        _report(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        typer.echo("zoo: interrupted", err=True)
        sys.exit(130)
