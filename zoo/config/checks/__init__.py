"""`zoo check`: what the trainer would reject at start, found before it starts.

``check(doc, facts)`` is a pure function of a parsed pipeline config and the
facts gathered at the edge by ``zoo.config.facts`` (the checkpoint's index, the
checkpoint's own pipeline.config, label maps, glob matches, model_dir
contents). Each ``Finding`` names the field and line, says what the trainer
would do, quoting its error where it raises one (strings from
tfod_reference.md and TensorFlow/protobuf as observed), and gives the fix.

Severities: ``error`` means training would not start, or would start and
silently train the wrong thing; ``warning`` means it depends on how training
is run; ``note`` is information (what was accepted, what could not be checked).

The rules live in one module per group, sharing the vocabulary of
``common`` (field paths, the trainer's words, ``Finding``, the facts):
``structure`` (file structure, placeholders), ``checkpoint_path``,
``version_type``, ``architecture`` (incl. feature extractors),
``label_maps`` (incl. num_classes), ``inputs``, ``model_dir`` and
``schedule`` (batch, steps, learning-rate schedule).

A config is checked for one trainer: TF2's ``model_main_tf2.py`` (the default)
or TF1's ``model_main.py`` (``tf1``), chosen by the caller or, when not given,
by its feature extractor type (``restore_rules.trainer_for``). TF1 replaces the
checkpoint rules (``tf1``: name-based restore, no version field) and the
extractor list, and has no model_dir rules here; the other groups are shared.
"""

from __future__ import annotations

from zoo.config.checks.architecture import extractor_rules
from zoo.config.checks.checkpoint_path import checkpoint_rules
from zoo.config.checks.common import (
    FINE_TUNE_CHECKPOINT,
    TF1_DETECTION_SCOPES,
    TRAINERS,
    CheckpointFacts,
    Facts,
    Finding,
    LabelMapFacts,
    ModelDirFacts,
    Severity,
    Unreachable,
    input_path_fields,
    is_remote,
    label_map_fields,
    string_value,
)
from zoo.config.checks.inputs import input_rules
from zoo.config.checks.label_maps import label_map_rules
from zoo.config.checks.model_dir import model_dir_rules
from zoo.config.checks.schedule import iteration_rules, training_rules
from zoo.config.checks.structure import placeholder_rules, structure_rules
from zoo.config.checks.tf1 import tf1_checkpoint_rules
from zoo.config.restore_rules import trainer_for
from zoo.config.textproto import Document, meta_architecture
from zoo.errors import ConfigError, UsageError


def check(doc: Document, facts: Facts, trainer: str | None = None) -> list[Finding]:
    """Every finding for ``doc`` under ``trainer`` ("tf1", "tf2"; None: as its
    feature extractor says), errors first, each group in file order."""
    if trainer is not None and trainer not in TRAINERS:
        raise UsageError(f"--trainer must be one of {', '.join(TRAINERS)}, got {trainer!r}")
    if _is_label_map(doc):
        return [_label_map_finding(doc)]  # every rule would only restate that it is no config
    trainer = trainer or trainer_for(doc)
    arch, no_model = _arch(doc)
    findings = [
        *structure_rules(doc),
        *placeholder_rules(doc),
        *(_tf1_rules(doc, facts, arch) if trainer == "tf1" else _tf2_rules(doc, facts, arch)),
        *label_map_rules(doc, facts, arch),
        *input_rules(doc, facts),
        *training_rules(doc),
    ]
    if no_model is not None:
        findings.append(_model_block_finding(no_model))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.line or 0))


def _tf2_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
    return [*checkpoint_rules(doc, facts, arch), *extractor_rules(doc, arch), *model_dir_rules(doc, facts),
            *iteration_rules(doc)]  # fmt: skip


def _tf1_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
    return [*tf1_checkpoint_rules(doc, facts, arch), *extractor_rules(doc, arch, "tf1")]


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(f.severity is s for f in findings) for s in Severity}
    return ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in counts.items())


def _arch(doc: Document) -> tuple[str | None, ConfigError | None]:
    """The meta-architecture, or why there is none (the rules needing it then skip)."""
    try:
        return meta_architecture(doc), None
    except ConfigError as exc:
        return None, exc


def _is_label_map(doc: Document) -> bool:
    names = {field.name for field in doc.root.fields}
    return names == {"item"}


def _label_map_finding(doc: Document) -> Finding:
    return Finding("label-map-not-config", Severity.ERROR, "item", doc.root.fields[0].line,
                   f"{doc.source} is a label map (item {{ id name }} blocks), not a pipeline config",
                   "ValueError: model_config not of type model_pb2.DetectionModel.",
                   "check the pipeline config; name this file in train_input_reader.label_map_path")  # fmt: skip


def _model_block_finding(problem: ConfigError) -> Finding:
    return Finding("model-missing", Severity.ERROR, "model", problem.line, str(problem),
                   "ValueError: model_config not of type model_pb2.DetectionModel.",
                   "a pipeline config needs one model { ssd|faster_rcnn|center_net { ... } } block")  # fmt: skip


__all__ = [
    "FINE_TUNE_CHECKPOINT", "TF1_DETECTION_SCOPES", "TRAINERS", "CheckpointFacts", "Facts", "Finding",
    "LabelMapFacts", "ModelDirFacts", "Severity", "Unreachable",
    "check", "input_path_fields", "is_remote", "label_map_fields", "string_value", "summary",
]  # fmt: skip
