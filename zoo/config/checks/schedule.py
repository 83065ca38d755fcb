"""Training settings: batch size, bfloat16, ``num_steps`` and the learning-rate schedule."""

from __future__ import annotations

import re

from zoo.config.checks.common import (
    BATCH_SIZE,
    NUM_STEPS,
    STEPS_PER_ITERATION,
    TPU_BATCH_SIZE,
    USE_BFLOAT16,
    WARMUP,
    Finding,
    Severity,
    as_bool,
    first_scalar,
    last_name,
)
from zoo.config.textproto import Document


def training_rules(doc: Document) -> list[Finding]:
    findings = []
    batch = first_scalar(doc, BATCH_SIZE)
    if batch is not None and batch.kind == "number" and batch.as_int() >= TPU_BATCH_SIZE:
        findings.append(Finding("batch-size-tpu", Severity.WARNING, BATCH_SIZE, batch.line,
                                f"batch_size {batch.as_int()} is sized for a TPU pod (the samples use 64 to 512); "
                                "on GPUs it is the global batch and rarely fits", "ResourceExhaustedError: OOM when "
                                "allocating tensor ... (on a GPU that cannot hold the batch)",
                                "batch_size: 8 or what your accelerators hold (`zoo config --batch-size N`)"))  # fmt: skip
    bfloat16 = first_scalar(doc, USE_BFLOAT16)
    if bfloat16 is not None and as_bool(bfloat16):
        findings.append(Finding("bfloat16-tpu", Severity.NOTE, USE_BFLOAT16, bfloat16.line,
                                "use_bfloat16 applies on TPU only; the trainer turns it off elsewhere"))  # fmt: skip
    steps = first_scalar(doc, NUM_STEPS)
    num_steps = _num_steps(doc)
    if num_steps == 0:
        findings.append(Finding("num-steps-unset", Severity.WARNING, NUM_STEPS, steps.line if steps else None,
                                "num_steps is not set: training needs --num_train_steps, else the loop fails",
                                "TypeError: 'NoneType' object cannot be interpreted as an integer (inference: "
                                "range(step, None, ...))", "num_steps: N (`zoo config --num-steps N`)"))  # fmt: skip
    findings += _schedule_rules(doc, num_steps)
    return findings


def iteration_rules(doc: Document) -> list[Finding]:
    """model_main_tf2.py only: its loop runs whole blocks of num_steps_per_iteration
    steps, so training stops at the next multiple (observed: num_steps 2 trains 100)."""
    num_steps = _num_steps(doc)
    if num_steps % STEPS_PER_ITERATION == 0:
        return []
    trained = -(-num_steps // STEPS_PER_ITERATION) * STEPS_PER_ITERATION
    steps = first_scalar(doc, NUM_STEPS)
    return [Finding("num-steps-per-iteration", Severity.NOTE, NUM_STEPS, steps.line if steps else None,
                    f"model_main_tf2.py trains in blocks of --num_steps_per_iteration ({STEPS_PER_ITERATION} by "
                    f"default): num_steps {num_steps} trains {trained} steps", None,
                    f"num_steps: {trained}, or pass --num_steps_per_iteration to the trainer")]  # fmt: skip


def _num_steps(doc: Document) -> int:
    steps = first_scalar(doc, NUM_STEPS)
    return steps.as_int() if steps is not None and steps.kind == "number" else 0


def _schedule_rules(doc: Document, num_steps: int) -> list[Finding]:
    schedule = {last_name(p): n for p, n in doc.walk()
                if re.search(r"cosine_decay_learning_rate\.(total_steps|warmup_steps)$", p) and n.kind == "number"}  # fmt: skip
    total, warmup = schedule.get("total_steps"), schedule.get("warmup_steps")
    if total is not None and warmup is not None and warmup.as_int() > total.as_int():
        return [Finding("schedule-steps", Severity.ERROR, "warmup_steps", warmup.line,
                        f"warmup_steps {warmup.as_int()} exceeds total_steps {total.as_int()}", WARMUP,
                        f"warmup_steps: {total.as_int()} or less")]  # fmt: skip
    if num_steps and warmup is not None and warmup.as_int() > num_steps:
        return [Finding("schedule-steps", Severity.WARNING, "warmup_steps", warmup.line,
                        f"training stops at num_steps {num_steps}, inside the {warmup.as_int()}-step warmup: "
                        "the learning rate never reaches its base", None,
                        f"warmup_steps below {num_steps} (and total_steps: {num_steps})")]  # fmt: skip
    if num_steps and total is not None and total.as_int() < num_steps:
        return [Finding("schedule-steps", Severity.WARNING, "total_steps", total.line,
                        f"the cosine schedule ends at total_steps {total.as_int()} and its learning rate is 0 "
                        f"for the remaining steps up to num_steps {num_steps}", None, f"total_steps: {num_steps}")]  # fmt: skip
    return []
