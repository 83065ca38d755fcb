"""``fine_tune_checkpoint``: is there a checkpoint where it points, spelled as a prefix.

``checkpoint_rules`` is the entry point for everything the checkpoint decides:
it runs the version and type rules (zoo.config.checks.version_type) too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.config.checks.common import (
    BAD_INDEX,
    CHECKPOINT_TYPE,
    FINE_TUNE_CHECKPOINT,
    NOT_FOUND,
    NOT_OBJECT_BASED,
    SHARD_MISSING,
    SHARD_TRUNCATED,
    TABLE_ERROR,
    CheckpointFacts,
    Facts,
    Finding,
    Severity,
    first_scalar,
    is_remote,
    path_hints,
    unreachable_finding,
)
from zoo.config.checks.version_type import legacy_rules, type_rules, version_rules
from zoo.config.textproto import Document, Scalar

if TYPE_CHECKING:
    from zoo.checkpoint import CheckpointPath


def checkpoint_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
    node = first_scalar(doc, FINE_TUNE_CHECKPOINT)
    if node is None or is_unset(node):
        return [no_checkpoint(doc, node)]
    # A value is set (placeholders included): the trainer will try to fine-tune.
    checkpoint = facts.checkpoint
    findings = legacy_rules(doc) + version_rules(doc)
    if checkpoint is not None:
        findings += location_rules(node, checkpoint, facts.cwd, doc.source)
    if checkpoint is not None and checkpoint.readable and not checkpoint.object_based:
        findings.append(Finding(
            "checkpoint-tf1", Severity.ERROR, FINE_TUNE_CHECKPOINT, node.line,
            f"{checkpoint.prefix} is a TF1 name-based checkpoint (written by tf.compat.v1.train.Saver); "
            "the TF2 trainer restores object-based checkpoints only", NOT_OBJECT_BASED,
            "fine-tune from the TF2 zoo model of this architecture (`zoo list --family tf2-detection`), "
            "or train with TF1's model_main.py"))  # fmt: skip
    if arch is not None:
        findings += type_rules(doc, node, checkpoint, arch)
    return findings


def is_unset(node: Scalar | None) -> bool:
    """No fine_tune_checkpoint, or an empty one: both trainers start from random weights."""
    return node is None or (node.kind == "string" and node.as_str() == "")


def no_checkpoint(doc: Document, node: Scalar | None) -> Finding:
    typed = first_scalar(doc, CHECKPOINT_TYPE)
    why = f" although fine_tune_checkpoint_type is {typed.text}" if typed is not None else ""
    return Finding("checkpoint-missing", Severity.WARNING, FINE_TUNE_CHECKPOINT, node.line if node else None,
                   f"no fine_tune_checkpoint{why}: training starts from random weights", None,
                   "write a checkpoint prefix to fine-tune (`zoo config NAME` writes a zoo model's)")  # fmt: skip


def location_rules(node: Scalar, checkpoint: CheckpointFacts, cwd: Path, source: str,
                   trainer: str = "tf2") -> list[Finding]:  # fmt: skip
    """Is there a readable, complete checkpoint where the value points, named by its
    prefix; ``source`` is the config's file, for the command a fix suggests."""
    value, line = checkpoint.value, node.line
    if checkpoint.unreachable is not None:
        return [unreachable_finding(FINE_TUNE_CHECKPOINT, line, checkpoint.unreachable)]
    if checkpoint.kind == "remote":
        return [Finding("checkpoint-remote", Severity.NOTE, FINE_TUNE_CHECKPOINT, line,
                        f"{value} is remote; zoo reads object stores (gs://, s3://, az:// ...), not this")]  # fmt: skip
    relative = not os.path.isabs(value) and not is_remote(value)
    if checkpoint.prefix is None:
        return [_not_found(node, checkpoint, cwd, relative, source)]  # its hints say how relative paths resolve
    findings = []
    if relative:
        findings.append(Finding(
            "relative-path", Severity.WARNING, FINE_TUNE_CHECKPOINT, line,
            f"{value!r} is relative: the trainer resolves it against the directory training starts in "
            f"(here checked against {cwd})", None, f'an absolute prefix: "{checkpoint.prefix}"'))  # fmt: skip
    if checkpoint.kind in ("directory", "index", "data", "meta"):
        findings.append(_not_a_prefix(node, checkpoint, cwd, relative, trainer))
    refetch = "fetch the checkpoint again (`zoo cache rm NAME && zoo fetch NAME` for a zoo model)"
    if checkpoint.error:
        error = BAD_INDEX if "magic" in checkpoint.error else None
        findings.append(Finding("checkpoint-unreadable", Severity.ERROR, FINE_TUNE_CHECKPOINT, line,
                                checkpoint.error, error, refetch))  # fmt: skip
    if checkpoint.shards_error:
        missing = re.match(r"(.*): data shard is missing$", checkpoint.shards_error)
        error = SHARD_MISSING.format(missing[1]) if missing else SHARD_TRUNCATED
        findings.append(Finding("checkpoint-incomplete", Severity.ERROR, FINE_TUNE_CHECKPOINT, line,
                                f"{checkpoint.shards_error}; the index reads, the restore would not",
                                error, refetch))  # fmt: skip
    return findings


def _not_found(node: Scalar, checkpoint: CheckpointFacts, cwd: Path, relative: bool, source: str) -> Finding:
    value = checkpoint.value
    hints = path_hints(value, cwd)
    if value.endswith(("saved_model.pb", "saved_model", "saved_model/")):
        hints.append("a SavedModel is not a checkpoint: the zoo's checkpoint is <model>/checkpoint/ckpt-0")
    elif value.endswith(("/checkpoint", "/")):
        hints.append("a checkpoint prefix names its files, not their directory: it has the form "
                     ".../checkpoint/ckpt-N (ckpt-0 in a zoo model)")  # fmt: skip
    message = f"no checkpoint at {value!r}: {_without_path(checkpoint.error or '', checkpoint.path)}"
    if hints:
        message += " (" + "; ".join(hints) + ")"
    return Finding("checkpoint-not-found", Severity.ERROR, FINE_TUNE_CHECKPOINT, node.line, message,
                   NOT_FOUND.format(value), _not_found_fix(checkpoint, cwd, relative, source))  # fmt: skip


def _not_found_fix(checkpoint: CheckpointFacts, cwd: Path, relative: bool, source: str) -> str:
    """The checkpoint that is there, else the zoo model the path names (zoo config
    fetches it and writes its prefix), else what a prefix is."""
    if checkpoint.nearby:
        return f'fine_tune_checkpoint: "{_styled(checkpoint.nearby, cwd, relative)}"'
    if checkpoint.named_model:
        return (f"the path names the zoo model {checkpoint.named_model}: `zoo config {checkpoint.named_model} "
                f"--from {source} -o {source}` fetches it and writes its checkpoint prefix into this config")  # fmt: skip
    return "write the prefix of an existing checkpoint (the path without .index)"


def _not_a_prefix(node: Scalar, checkpoint: CheckpointFacts, cwd: Path, relative: bool, trainer: str) -> Finding:
    value = checkpoint.value
    what = {"directory": "a directory", "index": "the checkpoint's .index file",
            "data": "a data shard", "meta": "the TF1 .meta graph file"}[checkpoint.kind]  # fmt: skip
    if checkpoint.kind == "directory":
        # An object store has no directories to refuse opening: what TF says there was not observed.
        error = None if is_remote(value) else TABLE_ERROR.format(value, f"FAILED_PRECONDITION: {value}; Is a directory")
    elif checkpoint.kind == "index":
        # TF2: list_variables reads no variable from an .index path; TF1's reader fails
        # in a way not observed here, so no words are put in its mouth.
        error = NOT_OBJECT_BASED if trainer == "tf2" else None
    else:
        error = TABLE_ERROR.format(value, "DATA_LOSS: not an sstable (bad magic number)")
    return Finding("checkpoint-not-prefix", Severity.ERROR, FINE_TUNE_CHECKPOINT, node.line,
                   f"{value!r} names {what}, not a checkpoint prefix", error,
                   f'fine_tune_checkpoint: "{_styled(checkpoint.prefix, cwd, relative)}"')  # fmt: skip


def _without_path(error: str, path: CheckpointPath) -> str:
    """A zoo.checkpoint error without its leading path, which the message already names."""
    return error.removeprefix(f"{path}: ")


def _styled(path: CheckpointPath | None, cwd: Path, relative: bool) -> str:
    """``path`` spelled as the user spells theirs: relative stays relative."""
    if path is None:
        return ""
    return os.path.relpath(path, cwd) if relative else str(path)
