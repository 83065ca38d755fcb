"""The OD API trainer's command lines, and `zoo train`: check, then run it.

``trainer_command`` is the one place a ``model_main_tf2`` command line is
built: the commands `zoo config --model-dir` prints and the one `zoo train`
runs come from it. ``prepare`` runs what `zoo doctor` and `zoo check` run (as
library calls) and says whether training may start; ``run`` starts the
trainer in the current interpreter, its output going straight to ours.
"""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from zoo.config.checks import Finding, Severity

if TYPE_CHECKING:
    from zoo.doctor import Report

TRAINER_MODULE = "object_detection.model_main_tf2"


def trainer_command(
    config: Path | str,
    model_dir: Path | str,
    *,
    checkpoint_dir: Path | str | None = None,
    extra: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """``python -m object_detection.model_main_tf2`` training into ``model_dir``,
    or, with ``checkpoint_dir``, evaluating the checkpoints training writes there
    (``eval_continuously``: it waits for each new ckpt-N, results in model_dir/eval)."""
    argv = [python or sys.executable, "-m", TRAINER_MODULE,
            f"--pipeline_config_path={config}", f"--model_dir={model_dir}"]  # fmt: skip
    if checkpoint_dir is not None:
        argv.append(f"--checkpoint_dir={checkpoint_dir}")
    return [*argv, "--alsologtostderr", *extra]


def commands(config: Path | str, model_dir: Path | str, python: str | None = None) -> dict[str, str]:
    """The shell lines to train into ``model_dir`` and to evaluate alongside it."""
    return {
        "train": shlex.join(trainer_command(config, model_dir, python=python)),
        "evaluate": shlex.join(trainer_command(config, model_dir, checkpoint_dir=model_dir, python=python)),
    }


@dataclass(frozen=True)
class Prepared:
    """What `zoo train` found before starting the trainer."""

    argv: list[str]
    findings: list[Finding] = field(default_factory=list)
    plan: str | None = None
    environment: Report | None = None  # None: the doctor was skipped

    @property
    def check_errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity is Severity.ERROR]

    @property
    def doctor_errors(self) -> list:
        return list(self.environment.errors) if self.environment is not None else []

    @property
    def ready(self) -> bool:
        return not self.check_errors and not self.doctor_errors


def prepare(
    config: Path,
    model_dir: Path,
    *,
    cwd: Path | None = None,
    cache_root: Path | None = None,
    extra: Sequence[str] = (),
    skip_doctor: bool = False,
) -> Prepared:
    """`zoo doctor` on this interpreter (unless skipped) and `zoo check --model-dir`
    on ``config`` for the TF2 trainer, and the command that would run."""
    from zoo.config.facts import check_and_plan
    from zoo.config.textproto import parse_file

    cwd = cwd or Path.cwd()
    doc = parse_file(config)
    findings, plan = check_and_plan(doc, cwd, model_dir=model_dir, cache_root=cache_root, trainer="tf2")
    environment = None
    if not skip_doctor:
        from zoo.doctor import doctor

        environment = doctor()
    return Prepared(trainer_command(config, model_dir, extra=extra), findings, plan, environment)


def run(argv: Sequence[str], env: Mapping[str, str] | None = None) -> int:
    """Run the trainer with our stdin, stdout and stderr (its output streams as
    it comes) and return its exit code; killed by a signal N: 128 + N, as a shell
    says. Ctrl-C reaches it as well (same process group): we wait for it to stop."""
    process = subprocess.Popen(list(argv), env=dict(env) if env is not None else None)
    while True:
        try:
            code = process.wait()
            break
        except KeyboardInterrupt:
            continue  # the trainer got the same SIGINT; its own exit code tells how it ended
    return 128 - code if code < 0 else code


__all__ = ["TRAINER_MODULE", "Prepared", "commands", "prepare", "run", "trainer_command"]
