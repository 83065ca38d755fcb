"""``--model-dir``: the fine-tune checkpoint's own directory, a zoo model's
top directory, a directory inside the zoo cache, or a training that would
resume (or has already finished) there."""

from __future__ import annotations

import os
from pathlib import Path

from zoo.config.checks.common import (
    CHECKPOINT_TYPE,
    FINE_TUNE_CHECKPOINT,
    NUM_STEPS,
    SAME_DIR,
    SAVE_INTO_DIRECTORY,
    Facts,
    Finding,
    ModelDirFacts,
    Severity,
    first_scalar,
    is_remote,
    string_value,
    unreachable_finding,
)
from zoo.config.textproto import Document


def model_dir_rules(doc: Document, facts: Facts) -> list[Finding]:
    model_dir, checkpoint = facts.model_dir, facts.checkpoint
    if model_dir is None:
        return []
    if model_dir.unreachable is not None:
        return [unreachable_finding("model_dir", None, model_dir.unreachable)]
    findings = []
    if checkpoint is not None:
        given_dir = os.path.dirname(checkpoint.value)
        if _same_directory(given_dir, str(model_dir.path), facts.cwd):
            findings.append(Finding("model-dir-is-checkpoint-dir", Severity.ERROR, FINE_TUNE_CHECKPOINT, None,
                                    f"model_dir {model_dir.path} is the fine-tune checkpoint's directory",
                                    SAME_DIR.format(given_dir, model_dir.path),
                                    "train into a new, empty directory"))  # fmt: skip
    if model_dir.checkpoint_subdir:
        # Observed: CheckpointManager writes ckpt-1.* and train/ there, then fails to
        # replace its state file "checkpoint", a directory in a zoo model's layout.
        findings.append(Finding("model-dir-zoo-layout", Severity.ERROR, "", None,
                                f"{model_dir.path} holds a directory named 'checkpoint' where TensorFlow writes "
                                "its checkpoint state file (a zoo model's top directory?): training fails at its "
                                "first checkpoint save, after writing ckpt-1.* and train/ there",
                                SAVE_INTO_DIRECTORY.format(model_dir.path),
                                "a fresh, empty directory outside the model's (e.g. --model_dir runs/exp1)"))  # fmt: skip
    if model_dir.cache is not None:
        findings.append(_in_cache(model_dir))
    if model_dir.error:
        findings.append(Finding("model-dir-unreadable", Severity.WARNING, "", None,
                                f"{model_dir.path}: {model_dir.error}; training would try to resume from it"))  # fmt: skip
    if model_dir.latest is not None:
        findings.append(_resume_finding(doc, model_dir))
    return findings


def _in_cache(model_dir: ModelDirFacts) -> Finding:
    # zoo refuses this itself: the trainer would mix its checkpoints and summaries
    # into entries that `zoo verify` and the fetch's verification vouch for.
    return Finding("model-dir-in-cache", Severity.ERROR, "", None,
                   f"{model_dir.path} is inside the zoo cache {model_dir.cache}: training would write ckpt-N, "
                   "train/ and pipeline.config among the cached models' files", None,
                   "a fresh, empty directory outside the zoo cache")  # fmt: skip


def _resume_finding(doc: Document, model_dir: ModelDirFacts) -> Finding:
    node = first_scalar(doc, NUM_STEPS)
    num_steps = node.as_int() if node is not None and node.kind == "number" else 0
    at = f"{model_dir.latest.name}" + (f" (step {model_dir.step})" if model_dir.step is not None else "")  # type: ignore[union-attr]
    if model_dir.step is not None and num_steps and model_dir.step >= num_steps:
        return Finding("model-dir-finished", Severity.ERROR, NUM_STEPS, node.line if node else None,
                       f"{model_dir.path} already holds {at}, at or past num_steps {num_steps}: training restores "
                       "it and exits without a step", None,
                       "a new, empty model_dir to fine-tune again, or a higher num_steps to continue")  # fmt: skip
    return Finding("model-dir-resumes", Severity.WARNING, "", None,
                   f"{model_dir.path} already holds {at}: training resumes from it (weights, step, optimizer) and "
                   "the fine-tune checkpoint's weights are overwritten", None,
                   "a new, empty model_dir to fine-tune from the checkpoint; keep this one to continue training")  # fmt: skip


def _same_directory(one: str, other: str, cwd: Path) -> bool:
    if is_remote(one) or is_remote(other):
        return one.rstrip("/") == other.rstrip("/")
    return os.path.abspath(os.path.join(cwd, one)) == os.path.abspath(other)


def training_plan(doc: Document, facts: Facts) -> str | None:
    """What the trainer will do with ``--model-dir``, in one line (None without one):
    train_loop restores tf.train.latest_checkpoint(model_dir) over the fine-tuned
    weights when there is one (tfod_reference.md (f), as observed)."""
    model_dir = facts.model_dir
    if model_dir is None:
        return None
    if model_dir.error:
        return f"model_dir {model_dir.path} cannot be read ({model_dir.error}): training would try to resume from it"
    if model_dir.latest is not None:
        node = first_scalar(doc, NUM_STEPS)
        num_steps = node.as_int() if node is not None and node.kind == "number" else 0
        at = f"step {model_dir.step}" if model_dir.step is not None else "step unknown"
        of = f"of num_steps {num_steps}" if num_steps else "num_steps unset"
        if model_dir.step is not None and num_steps and model_dir.step >= num_steps:
            return (f"training restores {model_dir.latest} ({at}, at or past num_steps {num_steps}) "
                    "and stops without a step")  # fmt: skip
        return f"training resumes from {model_dir.latest} ({at} {of}); fine_tune_checkpoint is ignored"
    checkpoint = facts.checkpoint
    if checkpoint is None:
        return f"fresh start in {model_dir.path}: trains from scratch (no fine_tune_checkpoint)"
    source = checkpoint.prefix or checkpoint.value
    type_node = first_scalar(doc, CHECKPOINT_TYPE)
    spelled = string_value(type_node) if type_node is not None else None
    kind = f" ({spelled} restore)" if spelled else ""
    return f"fresh start in {model_dir.path}: fine-tunes from {source}{kind}"
