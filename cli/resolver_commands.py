"""`zoo config` and `zoo check`: each parses, makes one library call, prints."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from zoo_cli.common import (
    CacheDirOption,
    JsonOption,
    MirrorOnlyOption,
    MirrorOption,
    OfflineOption,
    QuietOption,
    RegistryOption,
    emit,
    settings_from,
)
from zoo.errors import ConfigError, RejectedConfigError, UsageError

if TYPE_CHECKING:
    from zoo.configure import Configured

# The resolver modules (zoo.check, zoo.configure ...) are imported inside the
# commands: `zoo --help`, `zoo fetch` and the rest never pay for them.


def register(app: typer.Typer) -> None:
    """Add `zoo config` and `zoo check` to ``app``."""
    app.command("config")(config_command)
    app.command("check")(check_command)


def config_command(
    name: Annotated[str, typer.Argument(help="Model name or alias.", metavar="NAME", show_default=False)],
    template: Annotated[Optional[Path], typer.Option("--from", metavar="CONFIG", help="Start from this config instead of the model's sample config.")] = None,
    checkpoint_type: Annotated[Optional[str], typer.Option("--checkpoint-type", metavar="TYPE", help="classification, detection or full (default: what the checkpoint is made for).")] = None,
    label_map: Annotated[Optional[Path], typer.Option("--label-map", metavar="FILE", help="Label map: sets label_map_path in every reader and num_classes to its highest id.")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", min=1, help="Set num_classes.")] = None,
    train_records: Annotated[Optional[list[str]], typer.Option("--train-records", metavar="GLOB", help="TFRecord file or glob of the train reader (repeatable).")] = None,
    eval_records: Annotated[Optional[list[str]], typer.Option("--eval-records", metavar="GLOB", help="TFRecord file or glob of the first eval reader (repeatable).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", min=1, help="Set train_config.batch_size.")] = None,
    num_steps: Annotated[Optional[int], typer.Option("--num-steps", min=1, help="Set train_config.num_steps.")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the config here ('-' or default: stdout).")] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff against the template instead of writing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write even when `zoo check` finds errors, and over a read-only file.")] = False,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    mirror: MirrorOption = None,
    offline: OfflineOption = False,
    mirror_only: MirrorOnlyOption = False,
    as_json: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Write a pipeline config ready to train from a zoo model's checkpoint; refuse one that would fail."""
    from zoo.compat import CHECKPOINT_TYPES
    from zoo.configure import Request, configure

    if checkpoint_type is not None and checkpoint_type not in CHECKPOINT_TYPES:
        raise UsageError(f"--checkpoint-type must be one of {', '.join(CHECKPOINT_TYPES)}, got {checkpoint_type!r}")
    if quiet or as_json:
        logging.getLogger("zoo").setLevel(logging.ERROR)
    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only)
    request = Request(
        name, template, checkpoint_type, label_map, num_classes,
        tuple(train_records or ()), tuple(eval_records or ()), batch_size, num_steps,
    )  # fmt: skip
    result = configure(request, settings, progress=sys.stderr.isatty() and not (quiet or as_json))
    if output is not None and str(output) == "-":
        output = None  # stdout, where the config goes without -o
    target = str(output) if output else "<stdout>"
    refused = bool(result.blocking) and not force
    written = output is not None and not diff and not refused
    if written:
        result.write(output, force)  # type: ignore[arg-type]
    if as_json:
        emit(True, _config_json(result, output, written, refused, diff, target), "")
    else:
        _report_config(result, output, written, refused, diff, target, quiet)
    if refused:
        raise RejectedConfigError(
            f"refusing to write {target}: {len(result.blocking)} error(s) would stop or spoil training "
            "(fix them, or pass --force)"
        )


def check_command(
    config: Annotated[Path, typer.Argument(help="Pipeline config to check.", metavar="CONFIG", show_default=False)],
    model_dir: Annotated[Optional[Path], typer.Option("--model-dir", metavar="DIR", help="The model_dir training will write to: checked for a clash with the checkpoint and for resumption.")] = None,
    cache_dir: CacheDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find what would make TF2 training fail at start (or train the wrong thing), with the fix."""
    from zoo.check import Severity, summary
    from zoo.facts import check_document
    from zoo.textproto import parse_file

    try:
        doc = parse_file(config)
    except ConfigError as exc:
        if as_json:
            emit(True, {"ok": False, "config": str(config), "error": str(exc), "exit_code": exc.exit_code,
                              "line": exc.line, "column": exc.column}, "")  # fmt: skip
        raise
    findings = check_document(doc, Path.cwd(), model_dir=model_dir, cache_root=settings_from(cache_dir).cache_dir)
    errors = sum(f.severity is Severity.ERROR for f in findings)
    data = {"ok": not errors, "config": str(config), "summary": summary(findings),
            "findings": [f.to_dict() for f in findings]}  # fmt: skip
    text = "\n".join([*(f.render(str(config)) for f in findings), f"{config}: {summary(findings)}"])
    emit(as_json, data, text)
    if errors:
        raise RejectedConfigError(f"{config}: {errors} error(s): training would fail or go wrong")


# -- output -----------------------------------------------------------------------------


def _report_config(
    result: Configured, output: Path | None, written: bool, refused: bool, diff: bool, target: str, quiet: bool
) -> None:
    if diff:
        typer.echo(result.diff(target), nl=False)
    elif output is None and not refused:
        typer.echo(result.text, nl=False)
    shown = [f.render(target) for f in result.findings
             if f.id != "placeholder" and (not quiet or f.severity.value == "error")]  # fmt: skip
    if shown:
        typer.echo("\n".join(shown), err=True)
    placeholders = result.placeholders
    if placeholders:
        typer.echo(f"zoo: {len(placeholders)} placeholder(s) left to fill in {target}:", err=True)
        for found in placeholders:
            typer.echo(f"  line {found.line}: {found.path} = {found.node.text}", err=True)
    if written and not quiet:
        typer.echo(f"zoo: wrote {output} (fine_tune_checkpoint {result.fetched.checkpoint})", err=True)


def _config_json(
    result: Configured, output: Path | None, written: bool, refused: bool, diff: bool, target: str
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ok": not refused,
        "name": result.model.name,
        "checkpoint": str(result.fetched.checkpoint),
        "template": str(result.template),
        "output": str(output) if output else None,
        "written": written,
        "placeholders": [{"line": f.line, "path": f.path, "value": f.node.text} for f in result.placeholders],
        "findings": [f.to_dict() for f in result.findings],
    }
    if diff:
        data["diff"] = result.diff(target)
    elif output is None and not refused:
        data["config"] = result.text
    return data


# Last, on purpose: zoo_cli.main imports this module while it loads (see the docstring).
