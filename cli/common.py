"""What every command shares: option types, settings from options, output, and
the click classes that map errors to exit codes and keep help and start-up lean."""

from __future__ import annotations

import functools
import importlib
import json
import os
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Optional

import typer
from typer.core import TyperCommand, TyperGroup

from zoo.errors import ZooError


def complete_model_name(incomplete: str) -> list[str]:
    """Registry names and aliases for shell completion; reads the registry only
    (no download stack), and completes nothing when the environment is broken."""
    from zoo.catalog import model_names
    from zoo.registry import load_registry
    from zoo.settings import Settings

    try:
        names = model_names(load_registry(Settings.from_env().registry_files))
    except ZooError:
        return []
    return [name for name in names if name.lower().startswith(incomplete.lower())]


def at_least_one(value: Optional[int]) -> Optional[int]:
    # A callback, not typer's min=1, which would print "[x>=1]" in the help.
    if value is not None and value < 1:
        raise typer.BadParameter(f"must be at least 1, got {value}")
    return value


CacheDirOption = Annotated[
    Optional[str],  # not Path: Path("") is ".", and an empty --cache-dir "$UNSET" must not mean the current directory
    typer.Option("--cache-dir", metavar="DIR", help="Cache directory (default: $ZOO_CACHE_DIR, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo)."),
]
RegistryOption = Annotated[
    Optional[list[Path]],
    typer.Option("--registry", metavar="FILE", help="Extra registry file layered over the built-in one (repeatable; after $ZOO_REGISTRY)."),
]
MirrorOption = Annotated[
    Optional[list[str]],
    typer.Option("--mirror", metavar="URL|DIR", help="Mirror base URL or directory, tried before upstream (repeatable; before $ZOO_MIRROR)."),
]
OfflineOption = Annotated[
    bool, typer.Option("--offline", help="Open no network connection (also $ZOO_OFFLINE=1).")
]
MirrorOnlyOption = Annotated[
    bool, typer.Option("--mirror-only", help="Never fall back to the upstream URL (also $ZOO_MIRROR_ONLY=1).")
]
AllowHttpOption = Annotated[
    bool, typer.Option("--allow-http", help="Fetch the zoo's http:// URLs as plain HTTP, not HTTPS (also $ZOO_ALLOW_HTTP=1).")
]
RequireVerifiedOption = Annotated[
    bool,
    typer.Option("--require-verified", help="Refuse bytes no pin, mirror index or server hash vouches for "
                 "(also $ZOO_REQUIRE_VERIFIED=1)."),
]
ConnectionsOption = Annotated[
    Optional[int],
    typer.Option("--connections", metavar="N", help="Connections one download may open when its server serves byte ranges "
                 "(1 to 64; default $ZOO_CONNECTIONS, else up to 16 once one stream proves slow).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON object per line.")]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no notes on stderr.")]
ModelArgument = Annotated[
    str, typer.Argument(help="Model name or alias.", metavar="NAME", autocompletion=complete_model_name)
]


def settings_from(
    cache_dir: str | None = None,
    registry: list[Path] | None = None,
    mirror: list[str] | None = None,
    offline: bool = False,
    mirror_only: bool = False,
    allow_http: bool = False,
    require_verified: bool = False,
    connections: int | None = None,
) -> Any:
    from zoo.settings import Settings

    # A flag left off means "as the environment says", so it passes None.
    return Settings.from_env(
        cache_dir=cache_dir or None,  # empty: as if not given, like an empty ZOO_CACHE_DIR
        mirrors=mirror or (),
        offline=True if offline else None,
        mirror_only=True if mirror_only else None,
        allow_http=True if allow_http else None,
        require_verified=True if require_verified else None,
        registry_files=registry or (),
        connections=connections,  # range-checked there, as ZOO_CONNECTIONS is
    )


def emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, sort_keys=True) if as_json else text)


def note(text: str) -> None:
    """One line on stderr: what an empty result means, so stdout stays clean for pipes."""
    typer.echo(f"zoo: {text}", err=True)


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


INTERRUPTED = "zoo: interrupted; run the same command to resume"


def interrupted() -> None:
    # On a terminal the cursor may sit at the end of a progress bar (or of the
    # "^C" the terminal echoed): end that line so the message starts its own.
    typer.echo(("\n" if sys.stderr.isatty() else "") + INTERRUPTED, err=True)
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        # `--jobs N` workers are still downloading, and Python would wait for them
        # at exit. Their partials are on disk and the kernel drops their locks.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(130)


class ZooCommand(TyperCommand):
    """A command whose usage line and argument help show each argument's metavar
    as written (`zoo fetch [OPTIONS] NAME...`), without Typer's type labels."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        _plain_coercion(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def collect_usage_pieces(self, ctx: typer.Context) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        return pieces + [p.metavar or p.name.upper() for p in self.get_params(ctx) if p.param_type_name == "argument"]

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        arguments = [(p.metavar, p.help or "") for p in self.get_params(ctx) if p.param_type_name == "argument"]
        if arguments:
            with formatter.section("Arguments"):
                formatter.write_dl(arguments)
        options = [p.get_help_record(ctx) for p in self.get_params(ctx) if p.param_type_name == "option"]
        with formatter.section("Options"):
            formatter.write_dl([record for record in options if record])


class ZooGroup(TyperGroup):
    """A command group that maps a ZooError to its one-line message and exit code
    where the command runs, so the console script, ``python -m`` and
    ``CliRunner().invoke(app, ...)`` all exit alike, without a traceback.

    A subclass sets ``lazy``, command name -> the zoo_cli module defining it:
    only the module of the command being run is imported and turned into click
    commands; ``zoo --help`` and completion of command names load them all."""

    lazy: ClassVar[dict[str, str]] = {}

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return [*super().list_commands(ctx), *self.lazy]

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.commands.update(_module_commands(self.lazy[cmd_name]))
        return super().get_command(ctx, cmd_name)

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        _plain_coercion(self.get_params(ctx))
        return super().parse_args(ctx, args)

    def format_options(self, ctx: typer.Context, formatter: Any) -> None:
        # Typer's own lists each option with its type (`--version <bool>`).
        options = [p.get_help_record(ctx) for p in self.get_params(ctx)]
        with formatter.section("Options"):
            formatter.write_dl([record for record in options if record])
        self.format_commands(ctx, formatter)

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZooError as exc:
            report(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            interrupted()
            raise typer.Exit(130) from None


class ZooTyper(typer.Typer):
    """A Typer app for one module of commands: plain help (rich costs start-up
    time and draws boxes), and every command a ZooCommand."""

    def __init__(self, help: str | None = None) -> None:
        super().__init__(
            cls=ZooGroup, help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None,
            pretty_exceptions_enable=False,
        )  # fmt: skip

    def command(self, name: str | None = None, **kwargs: Any) -> Any:  # type: ignore[override]
        return super().command(name, cls=ZooCommand, **kwargs)


def _module_commands(module_name: str) -> dict[str, Any]:
    module = importlib.import_module(f"zoo_cli.{module_name}")
    return dict(typer.main.get_command(module.app).commands)


def _plain_coercion(params: Iterable[Any]) -> None:
    """typer >= 0.2x coerces every value through a pydantic TypeAdapter, and
    importing pydantic for it costs more than a whole cached `zoo fetch`. Our
    parameters are str, int, Path, bool or lists of them: those are converted
    here as typer would, anything else keeps typer's coercion. Older typer
    (click types, no pydantic) has no runtime parameters and is left alone."""
    plain_param = _plain_runtime_param_class()
    for param in params:
        descriptor = getattr(param, "type_descriptor", None)
        if plain_param and descriptor and descriptor.annotation in _CONVERTERS and param._runtime_param is None:
            param._runtime_param = plain_param(parameter_info=descriptor.parameter_info, annotation=descriptor.annotation)


def _flag(value: Any) -> bool:
    # Flags arrive as bools (typer skips coercion then) or None (the default).
    if not isinstance(value, bool):
        raise typer.BadParameter(f"{value!r} is not a flag value")
    return value


def _to_int(value: Any) -> int:
    try:
        return int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not a whole number") from None


# Annotation -> conversion of one value (of each item, for a list).
_CONVERTERS: dict[Any, Callable[[Any], Any]] = {
    str: str, int: _to_int, bool: _flag, Path: Path, list[str]: str, list[Path]: Path,
}


@functools.cache
def _plain_runtime_param_class() -> type | None:
    try:
        from typer._coercion import RuntimeParam
    except ImportError:
        return None

    class PlainRuntimeParam(RuntimeParam):  # type: ignore[misc]
        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            convert = _CONVERTERS[self.annotation]
            return [convert(item) for item in value] if isinstance(value, (list, tuple)) else convert(value)

    return PlainRuntimeParam
