"""The TF1 trainer (``model_main.py`` under TF 1.15): how it loads ``fine_tune_checkpoint``.

TF1 restores by variable name: the meta-architecture's ``restore_map`` names
the variables the checkpoint type covers, ``get_variables_available_in_checkpoint``
keeps those the checkpoint holds (logging a warning for each other one) and
``init_from_checkpoint`` loads them. A checkpoint whose names match nothing
therefore restores nothing and training starts from random weights without an
error: these rules report that case as an error. TF1 reads
``fine_tune_checkpoint_type`` (``classification`` or ``detection``; the
deprecated ``from_detection_checkpoint`` when the type is empty), ignores
``fine_tune_checkpoint_version``, and accepts a single-file V1 checkpoint.
"""

from __future__ import annotations

from zoo.config.checks.architecture import architecture_rules
from zoo.config.checks.checkpoint_path import is_unset, location_rules, no_checkpoint
from zoo.config.checks.common import (
    CHECKPOINT_TYPE,
    FINE_TUNE_CHECKPOINT,
    FROM_DETECTION,
    NOT_SUPPORTED_TYPE,
    TF1_DETECTION_SCOPES,
    CheckpointFacts,
    Facts,
    Finding,
    Severity,
    as_bool,
    effective_type,
    first_scalar,
    line_of,
    literal,
)
from zoo.config.restore_rules import TF1_CHECKPOINT_TYPES
from zoo.config.textproto import Document, Scalar

_SCOPES = " or ".join(scope.rstrip("/") + "/..." for scope in TF1_DETECTION_SCOPES)
_RETRAIN_TF2 = "fine-tune with model_main_tf2.py (`zoo check --trainer tf2`), or from a TF1 zoo model"


def tf1_checkpoint_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
    node = first_scalar(doc, FINE_TUNE_CHECKPOINT)
    if node is None or is_unset(node):
        return [no_checkpoint(doc, node)]
    checkpoint = facts.checkpoint
    findings: list[Finding] = []
    if checkpoint is not None and checkpoint.kind == "other" and checkpoint.prefix is None:
        findings.append(_v1_file(node, checkpoint))
        checkpoint = None  # its names cannot be read here
    elif checkpoint is not None:
        findings += location_rules(node, checkpoint, facts.cwd, doc.source, trainer="tf1")
    return findings + _type_rules(doc, checkpoint, arch)


def _v1_file(node: Scalar, checkpoint: CheckpointFacts) -> Finding:
    return Finding("checkpoint-v1-file", Severity.NOTE, FINE_TUNE_CHECKPOINT, node.line,
                   f"{checkpoint.value!r} is a file without an .index: TF1 reads it as a single-file V1 checkpoint; "
                   "zoo reads only V2 (.index) checkpoints and could not check its variables")  # fmt: skip


def _type_rules(doc: Document, checkpoint: CheckpointFacts | None, arch: str | None) -> list[Finding]:
    node = first_scalar(doc, CHECKPOINT_TYPE)
    written = literal(node) if node is not None else ""
    legacy = first_scalar(doc, FROM_DETECTION)
    effective = effective_type(written, legacy)
    line = node.line if node is not None else line_of(doc, "train_config")
    if written and written not in TF1_CHECKPOINT_TYPES:
        return [Finding("type-unknown", Severity.ERROR, CHECKPOINT_TYPE, line,
                        f"{written!r} is not a TF1 checkpoint type (classification, detection)",
                        NOT_SUPPORTED_TYPE.format(written), 'fine_tune_checkpoint_type: "detection"')]  # fmt: skip
    findings = _legacy_conflict(written, legacy)
    if not written and legacy is None:
        findings.append(Finding("type-missing", Severity.WARNING, CHECKPOINT_TYPE, line,
                                "neither fine_tune_checkpoint_type nor from_detection_checkpoint is set: the "
                                "trainer assumes 'classification'", None, 'fine_tune_checkpoint_type: "detection"'))  # fmt: skip
    if checkpoint is None or not checkpoint.readable:
        return findings
    if checkpoint.object_based:
        return findings + [_object_based(checkpoint, line)]
    mismatch = _names_mismatch(checkpoint, effective, written, legacy, line)
    if mismatch is not None:
        return findings + [mismatch]
    if effective == "detection" and arch is not None:
        findings += architecture_rules(doc, checkpoint, arch, effective)
    return findings


def _legacy_conflict(written: str, legacy: Scalar | None) -> list[Finding]:
    """The type wins over from_detection_checkpoint (config_util reads the latter only for an empty type)."""
    if not written or legacy is None or as_bool(legacy) == (written == "detection"):
        return []
    return [Finding("from-detection-ignored", Severity.WARNING, FROM_DETECTION, legacy.line,
                    f"from_detection_checkpoint: {legacy.text} is ignored: fine_tune_checkpoint_type is "
                    f"{written!r}, and the type decides", None, "delete from_detection_checkpoint")]  # fmt: skip


def _object_based(checkpoint: CheckpointFacts, line: int | None) -> Finding:
    return Finding("checkpoint-tf2", Severity.ERROR, FINE_TUNE_CHECKPOINT, line,
                   f"{checkpoint.prefix} is a TF2 object-based checkpoint (names like model/_feature_extractor/...): "
                   "the TF1 trainer restores by variable name, matches none of them and trains from random weights",
                   None, _RETRAIN_TF2)  # fmt: skip


def _why(written: str, legacy: Scalar | None) -> str:
    """Where the effective type comes from, for the message ("" when written as the type)."""
    if written:
        return ""
    if legacy is not None:
        return f" (from from_detection_checkpoint: {legacy.text}, as fine_tune_checkpoint_type is not set)"
    return " (fine_tune_checkpoint_type is not set, so the trainer assumes it)"


def _names_mismatch(
    checkpoint: CheckpointFacts, effective: str, written: str, legacy: Scalar | None, line: int | None
) -> Finding | None:
    """The names the type restores against the checkpoint's: a miss restores nothing, silently."""
    assumed = _why(written, legacy)
    finding_id = "type-missing" if not written and legacy is None else "type-mismatch"
    if effective == "detection" and not checkpoint.detection_scopes:
        return Finding(finding_id, Severity.ERROR, CHECKPOINT_TYPE, line,
                       f"'detection' restores variables named {_SCOPES}, which the checkpoint does not hold (a "
                       f"classification checkpoint?): nothing would be restored{assumed}", None,
                       'fine_tune_checkpoint_type: "classification" for a backbone checkpoint')  # fmt: skip
    if effective == "classification" and checkpoint.detection_scopes:
        return Finding(finding_id, Severity.ERROR, CHECKPOINT_TYPE, line,
                       f"'classification' looks for the backbone's names without the detection scope, but this "
                       f"detection checkpoint holds {_SCOPES}: nothing would be restored{assumed}", None,
                       'fine_tune_checkpoint_type: "detection"')  # fmt: skip
    return None
