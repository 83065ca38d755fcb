"""What every command shares: option types, settings from options, output."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from typer.core import TyperGroup

import zoo
from zoo.errors import ZooError

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
MirrorOnlyOption = Annotated[
    bool, typer.Option("--mirror-only", help="Never fall back to the upstream URL (also $ZOO_MIRROR_ONLY=1).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no notes on stderr.")]


def settings_from(
    cache_dir: Path | None = None,
    registry: list[Path] | None = None,
    mirror: list[str] | None = None,
    offline: bool = False,
    mirror_only: bool = False,
) -> zoo.Settings:
    # A flag left off means "as the environment says", so it passes None.
    return zoo.Settings.from_env(
        cache_dir=cache_dir,
        mirrors=mirror or (),
        offline=True if offline else None,
        mirror_only=True if mirror_only else None,
        registry_files=registry or (),
    )


def emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, sort_keys=True) if as_json else text)


def fail(name: str, exc: ZooError, as_json: bool) -> None:
    if as_json:
        emit(True, {"name": name, "ok": False, "error": str(exc), "exit_code": exc.exit_code}, "")
    report(exc)


def for_each(names: Iterable[str], as_json: bool, step: Callable[[str], None]) -> None:
    """Run ``step`` per name; report failures per name and exit with the first one's code."""
    first_failure = 0
    for name in names:
        try:
            step(name)
        except ZooError as exc:
            fail(name, exc, as_json)
            first_failure = first_failure or exc.exit_code
    if first_failure:
        raise typer.Exit(first_failure)


def plain(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def report(exc: ZooError) -> None:
    typer.echo(f"zoo: error: {exc}", err=True)


class ZooGroup(TyperGroup):
    """The root command: a ZooError becomes its one-line message and exit code
    where the command runs, so the console script, ``python -m`` and
    ``CliRunner().invoke(app, ...)`` all exit alike, without a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("zoo: interrupted", err=True)
            raise typer.Exit(130) from None
