"""`zoo config`, `zoo check` and `zoo inspect`: pipeline configs and the
checkpoints they restore."""

from __future__ import annotations

import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

import zoo
from zoo.errors import ConfigError, RejectedConfigError, UsageError
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
    at_least_one,
    complete_model_name,
    emit,
    human,
    plain,
    settings_from,
)

if TYPE_CHECKING:
    from zoo.config.configure import Configured

# The config modules (zoo.config.*) are imported inside the
# commands: `zoo inspect` never pays for them.

app = ZooTyper()


@app.command("config")
def config_command(
    name: Annotated[str, typer.Argument(help="A zoo model's name or alias, or a checkpoint path: a prefix, its .index, a directory or a training model_dir (its newest ckpt-N).", metavar="NAME|PATH", autocompletion=complete_model_name)],
    template: Annotated[Optional[Path], typer.Option("--from", metavar="CONFIG", help="Start from this config instead of the model's sample config.")] = None,
    checkpoint_type: Annotated[Optional[str], typer.Option("--checkpoint-type", metavar="TYPE", help="classification, detection or full (default: what the checkpoint is made for).")] = None,
    label_map: Annotated[Optional[Path], typer.Option("--label-map", metavar="FILE", help="Label map: sets label_map_path in every reader and num_classes to its highest id.")] = None,
    num_classes: Annotated[Optional[int], typer.Option("--num-classes", metavar="N", callback=at_least_one, help="Set num_classes.")] = None,
    train_records: Annotated[Optional[list[str]], typer.Option("--train-records", metavar="GLOB", help="TFRecord file or glob of the train reader (repeatable).")] = None,
    eval_records: Annotated[Optional[list[str]], typer.Option("--eval-records", metavar="GLOB", help="TFRecord file or glob of the first eval reader (repeatable).")] = None,
    batch_size: Annotated[Optional[int], typer.Option("--batch-size", metavar="N", callback=at_least_one, help="Set train_config.batch_size.")] = None,
    num_steps: Annotated[Optional[int], typer.Option("--num-steps", metavar="N", callback=at_least_one, help="Set train_config.num_steps.")] = None,
    model_dir: Annotated[Optional[Path], typer.Option("--model-dir", metavar="DIR", help="The model_dir training will write to: checked as `zoo check --model-dir` does; with -o, the commands to train and evaluate are printed.")] = None,
    checkpoint_root: Annotated[Optional[str], typer.Option("--checkpoint-root", metavar="URL|DIR", help="Stage the model at URL/NAME/ (gs://, s3://, az://, any fsspec URL, or a directory), as `zoo fetch --to` does, and write that remote prefix as fine_tune_checkpoint (for TPUs and clusters).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="FILE", help="Write the config here ('-' or default: stdout).")] = None,
    diff: Annotated[bool, typer.Option("--diff", help="Print a unified diff against the template instead of writing.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Write even when `zoo check` finds errors, and over a read-only file.")] = False,
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
    """Write a pipeline config ready to train from a zoo model's checkpoint (or any checkpoint); refuse one that would fail."""
    from zoo.config.restore_rules import CHECKPOINT_TYPES
    from zoo.config.configure import Request, configure
    from zoo.config.trainer import commands as trainer_commands
    from zoo.doctor import doctor

    if checkpoint_type is not None and checkpoint_type not in CHECKPOINT_TYPES:
        raise UsageError(f"--checkpoint-type must be one of {', '.join(CHECKPOINT_TYPES)}, got {checkpoint_type!r}")
    if quiet or as_json:
        logging.getLogger("zoo").setLevel(logging.ERROR)
    settings = settings_from(cache_dir, registry, mirror, offline, mirror_only, allow_http, require_verified, connections)
    request = Request(
        name, template, checkpoint_type, label_map, num_classes,
        tuple(train_records or ()), tuple(eval_records or ()), batch_size, num_steps, model_dir, checkpoint_root,
    )  # fmt: skip
    result = configure(request, settings, progress=sys.stderr.isatty() and not (quiet or as_json))
    environment = doctor()  # the interpreter zoo runs in: most likely the one that will train
    if output is not None and str(output) == "-":
        output = None  # stdout, where the config goes without -o
    target = str(output) if output else "<stdout>"
    refused = bool(result.blocking) and not force
    written = output is not None and not diff and not refused
    if written:
        result.write(output, force)  # type: ignore[arg-type]
    # The commands name the written file: a config on stdout has no path to name.
    commands = trainer_commands(output, model_dir) if written and model_dir is not None else None
    if as_json:
        emit(True, {**_config_json(result, output, written, refused, diff, target), "plan": result.plan,
                    "commands": commands, "environment": environment.headline()}, "")  # fmt: skip
    else:
        _report_config(result, output, written, refused, diff, target, quiet)
        if environment.errors or not quiet:
            typer.echo(f"zoo: {environment.headline()}", err=True)
        if commands:
            typer.echo(f"# train\n{commands['train']}\n# evaluate (alongside, or after training)\n{commands['evaluate']}")
    if refused:
        raise RejectedConfigError(
            f"refusing to write {target}: {len(result.blocking)} error(s) would stop or spoil training "
            "(fix them, or pass --force)"
        )


@app.command("check")
def check_command(
    config: Annotated[Path, typer.Argument(help="Pipeline config to check.", metavar="CONFIG", show_default=False)],
    model_dir: Annotated[Optional[str], typer.Option("--model-dir", metavar="DIR|URL", help="The model_dir training will write to (a directory, or gs://... on a TPU): checked for a clash with the checkpoint and for resumption.")] = None,
    trainer: Annotated[Optional[str], typer.Option("--trainer", metavar="tf1|tf2", help="The trainer the config is for (default: tf1 when its feature extractor exists only in TF1, else tf2).")] = None,
    env: Annotated[bool, typer.Option("--env", help="Also check the Python environment the trainer runs in, as `zoo doctor` does.")] = False,
    cache_dir: CacheDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Find what would make training fail at start (or train the wrong thing), with the fix."""
    from zoo.config.checks import Severity, summary
    from zoo.config.facts import check_and_plan
    from zoo.config.textproto import parse_file
    from zoo.doctor import doctor

    try:
        doc = parse_file(config)
    except ConfigError as exc:
        if as_json:
            emit(True, {"ok": False, "config": str(config), "error": str(exc), "exit_code": exc.exit_code,
                              "line": exc.line, "column": exc.column}, "")  # fmt: skip
        raise
    findings, plan = check_and_plan(doc, Path.cwd(), model_dir=model_dir or None,
                                    cache_root=settings_from(cache_dir).cache_dir, trainer=trainer)  # fmt: skip
    environment = doctor() if env else None
    errors = sum(f.severity is Severity.ERROR for f in findings) + (len(environment.errors) if environment else 0)
    data = {"ok": not errors, "config": str(config), "summary": summary(findings),
            "findings": [f.to_dict() for f in findings]}  # fmt: skip
    lines = [*(f.render(str(config)) for f in findings), f"{config}: {summary(findings)}"]
    if plan is not None:
        data["plan"] = plan
        lines.append(f"{config}: {plan}")
    text = "\n".join(lines)
    if environment:
        data["environment"] = environment.to_dict()
        text += "\n" + environment.render_findings()
    emit(as_json, data, text)
    if errors:
        raise RejectedConfigError(f"{config}: {errors} error(s): training would fail or go wrong")


@app.command("train")
def train_command(
    config: Annotated[Path, typer.Argument(help="Pipeline config to train with.", metavar="CONFIG", show_default=False)],
    model_dir: Annotated[Path, typer.Option("--model-dir", metavar="DIR", help="Where training writes ckpt-N and train/ (and resumes from, if it holds a checkpoint).", show_default=False)],
    trainer_args: Annotated[Optional[list[str]], typer.Argument(help="Extra flags for model_main_tf2, after `--` (e.g. -- --num_workers=2).", metavar="[TRAINER_ARG...]", show_default=False)] = None,
    skip_doctor: Annotated[bool, typer.Option("--skip-doctor", help="Start even when `zoo doctor` finds errors in this environment (they are still printed).")] = False,
    cache_dir: CacheDirOption = None,
) -> None:
    """Check the environment and the config, then run the OD API trainer (model_main_tf2) in this Python."""
    from zoo.config.checks import summary
    from zoo.config.trainer import prepare, run

    prepared = prepare(config, model_dir, cache_root=settings_from(cache_dir).cache_dir,
                       extra=tuple(trainer_args or ()))  # fmt: skip
    environment = prepared.environment
    for finding in prepared.findings:
        typer.echo(finding.render(str(config)), err=True)
    typer.echo(f"zoo: {config}: {summary(prepared.findings)}", err=True)
    if environment is not None:
        for problem in environment.findings:
            typer.echo(problem.render(environment.env.python), err=True)
        typer.echo(f"zoo: {environment.headline()}", err=True)
    if prepared.plan:
        typer.echo(f"zoo: {prepared.plan}", err=True)
    problems = []
    if prepared.check_errors:
        problems.append(f"{len(prepared.check_errors)} error(s) in {config}")
    if prepared.doctor_errors and not skip_doctor:
        problems.append(f"{len(prepared.doctor_errors)} error(s) in the environment (--skip-doctor to start anyway)")
    if problems:
        raise RejectedConfigError(f"not starting the trainer: {'; '.join(problems)}")
    typer.echo(f"zoo: running {shlex.join(prepared.argv)}", err=True)
    code = run(prepared.argv)
    if code:
        typer.echo(f"zoo: the trainer exited with {code}", err=True)
    raise typer.Exit(code)


@app.command()
def inspect(
    target: Annotated[str, typer.Argument(help="A cached model's name, or a checkpoint path (prefix, .index, .data-*, directory).", metavar="NAME|PATH")],
    filter_prefix: Annotated[Optional[str], typer.Option("--filter", metavar="PREFIX", help="List the variables whose names start with this.")] = None,
    cache_dir: CacheDirOption = None,
    registry: RegistryOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show what a checkpoint holds, read without TensorFlow: format, objects, tensors, sizes."""
    settings = settings_from(cache_dir, registry)
    summary = zoo.inspect_checkpoint(
        zoo.load_registry(settings.registry_files), zoo.Cache.from_settings(settings), target, filter_prefix
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
    if result.structure is not None and not quiet:
        typer.echo(f"zoo: {result.checkpoint} is {result.structure}", err=True)
    if result.plan is not None and not quiet:
        typer.echo(f"zoo: {result.plan}", err=True)
    if written and not quiet:
        typer.echo(f"zoo: wrote {output} (fine_tune_checkpoint {result.checkpoint})", err=True)


def _config_json(
    result: Configured, output: Path | None, written: bool, refused: bool, diff: bool, target: str
) -> dict[str, Any]:
    data: dict[str, Any] = {
        "ok": not refused,
        "name": result.model.name if result.model is not None else None,  # None: a checkpoint given by path
        "checkpoint": str(result.checkpoint),
        "structure": result.structure,
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
