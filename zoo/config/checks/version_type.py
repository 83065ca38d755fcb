"""``fine_tune_checkpoint_version`` and ``fine_tune_checkpoint_type`` (and
the TF1 settings they replace), against the checkpoint's root objects."""

from __future__ import annotations

import re

from zoo.config import restore_rules
from zoo.config.checks.architecture import architecture_rules, structure_mismatch
from zoo.config.checks.common import (
    CENTERNET_FINE_TUNE,
    CENTERNET_UNKNOWN_TYPE,
    CHECKPOINT_TYPE,
    CHECKPOINT_VERSION,
    FEATURE_EXTRACTOR_NAMES,
    FROM_DETECTION,
    LOAD_ALL_UNSUPPORTED,
    LOAD_ALL_VARS,
    NOT_SUPPORTED_TYPE,
    PARSE,
    UNBOUND,
    VERSION_V2,
    VERSIONS,
    CheckpointFacts,
    Finding,
    Severity,
    as_bool,
    effective_type,
    first_scalar,
    line_of,
    literal,
    string_value,
)
from zoo.config.textproto import Document, Scalar

_ZOO_DETECTION_LAYOUT = re.compile(r"(^|[/\\])checkpoint[/\\]ckpt-\d+$")


def legacy_rules(doc: Document) -> list[Finding]:
    findings = []
    load_all = first_scalar(doc, LOAD_ALL_VARS)
    if load_all is not None and as_bool(load_all):
        findings.append(Finding("load-all-vars", Severity.ERROR, LOAD_ALL_VARS, load_all.line,
                                "load_all_detection_checkpoint_vars: true is a TF1 setting the TF2 trainer refuses",
                                LOAD_ALL_UNSUPPORTED, "delete the line (or set it to false)"))  # fmt: skip
    legacy = first_scalar(doc, FROM_DETECTION)
    if legacy is not None:
        findings.append(Finding("from-detection-checkpoint", Severity.NOTE, FROM_DETECTION, legacy.line,
                                "from_detection_checkpoint is deprecated: the TF2 trainer reads it only to pick "
                                "'detection' when fine_tune_checkpoint_type is empty", None,
                                'replace it with fine_tune_checkpoint_type: "detection"'))  # fmt: skip
    return findings


def version_rules(doc: Document) -> list[Finding]:
    node = first_scalar(doc, CHECKPOINT_VERSION)
    fix = "fine_tune_checkpoint_version: V2"
    if node is None:
        return [Finding("version-missing", Severity.ERROR, CHECKPOINT_VERSION, line_of(doc, "train_config"),
                        "fine_tune_checkpoint_version is not set; its proto default is V1, which the TF2 "
                        "trainer rejects", VERSION_V2, fix)]  # fmt: skip
    if node.kind != "identifier" or node.text not in VERSIONS:
        error = (f"'fine_tune_checkpoint_version: {node.text}': Enum type "
                 f'"object_detection.protos.CheckpointVersion" has no value named {node.text}.')  # fmt: skip
        return [Finding("version-invalid", Severity.ERROR, CHECKPOINT_VERSION, node.line,
                        f"{node.text} is not a CheckpointVersion (UNKNOWN, V1, V2; unquoted)",
                        PARSE.format(node.line, node.column, error), fix)]  # fmt: skip
    if node.text == "V1":
        return [Finding("version-v1", Severity.ERROR, CHECKPOINT_VERSION, node.line,
                        "V1 (TF1 name-based) is rejected by the TF2 trainer", VERSION_V2, fix)]  # fmt: skip
    if node.text == "UNKNOWN":
        return [Finding("version-unknown", Severity.WARNING, CHECKPOINT_VERSION, node.line,
                        "UNKNOWN passes the trainer's V1 test but says nothing; the zoo's TF2 checkpoints are V2",
                        None, fix)]  # fmt: skip
    return []


def type_rules(doc: Document, ftc: Scalar, checkpoint: CheckpointFacts | None, arch: str) -> list[Finding]:
    node = first_scalar(doc, CHECKPOINT_TYPE)
    written = literal(node) if node is not None else ""  # an unquoted type is reported, and meant
    legacy = first_scalar(doc, FROM_DETECTION)
    effective = effective_type(written, legacy)
    line = node.line if node is not None else line_of(doc, "train_config")
    if written and written not in restore_rules.CHECKPOINT_TYPES:
        return [_unknown_type(written, arch, line)]
    # 'full' is judged alike for every meta-architecture: Faster R-CNN restores its whole
    # model for 'full' since the OD API change of 2021-05-06 (aa3e639, observed); only
    # versions before it raised "Not supported fine_tune_checkpoint_type: full".
    findings: list[Finding] = []
    if checkpoint is None or not checkpoint.readable or not checkpoint.object_based:
        return findings + _type_missing(written, effective, line, None) + _type_suspect(ftc, effective, line)
    mismatch = _type_mismatch(checkpoint, effective, written, line)
    if mismatch is not None:
        return findings + [mismatch]
    findings += _type_missing(written, effective, line, checkpoint)
    architecture = architecture_rules(doc, checkpoint, arch, effective)
    structure = structure_mismatch(checkpoint, arch, effective, line)
    if structure is not None and not any(f.id == "arch-mismatch" for f in architecture):
        findings.append(structure)  # the checkpoint itself contradicts the config (and its pipeline.config)
    return findings + architecture


def _type_suspect(ftc: Scalar, effective: str, line: int | None) -> list[Finding]:
    """Without the checkpoint, its path can still tell: ``<model>/checkpoint/ckpt-N``
    is the TF2 detection zoo's layout, which 'classification' cannot restore."""
    value = string_value(ftc)
    if effective != "classification" or value is None or not _ZOO_DETECTION_LAYOUT.search(value):
        return []
    return [Finding("type-suspect", Severity.WARNING, CHECKPOINT_TYPE, line,
                    f"{effective!r} with a path in the TF2 detection zoo's layout (<model>/checkpoint/ckpt-N): "
                    "a detection checkpoint has no 'feature_extractor' root object to restore",
                    UNBOUND.format("N"), 'fine_tune_checkpoint_type: "detection" if it is a zoo detection model')]  # fmt: skip


def _unknown_type(written: str, arch: str, line: int | None) -> Finding:
    fix = 'fine_tune_checkpoint_type: "detection" (a zoo detection checkpoint) or "classification" (a backbone)'
    if arch == "center_net" and written == "fine_tune":
        return Finding("type-fine-tune", Severity.ERROR, CHECKPOINT_TYPE, line,
                       "'fine_tune' was accepted by older CenterNet versions (restore_from_objects returned "
                       "get_sub_model('fine_tune'), e.g. commit a2da9a6); the current CenterNet rejects it, and "
                       "'detection' restores the same feature extractor", CENTERNET_FINE_TUNE,
                       'fine_tune_checkpoint_type: "detection"')  # fmt: skip
    error = (CENTERNET_UNKNOWN_TYPE if arch == "center_net" else NOT_SUPPORTED_TYPE).format(written)
    where = "CenterNet only" if written == "fine_tune" else "any meta-architecture"
    return Finding("type-unknown", Severity.ERROR, CHECKPOINT_TYPE, line,
                   f"{written!r} is not a TF2 checkpoint type for {arch} (classification, detection, full; "
                   f"'fine_tune' was {where})", error, fix)  # fmt: skip


def _type_missing(written: str, effective: str, line: int | None, checkpoint: CheckpointFacts | None) -> list[Finding]:
    if written:
        return []
    return [Finding("type-missing", Severity.WARNING, CHECKPOINT_TYPE, line,
                    f"fine_tune_checkpoint_type is not set: the trainer assumes {effective!r}", None,
                    f'fine_tune_checkpoint_type: "{_natural_type(checkpoint) or effective}"')]  # fmt: skip


def _natural_type(checkpoint: CheckpointFacts | None) -> str | None:
    """The type a checkpoint's layout is made for: its root object says."""
    if checkpoint is None:
        return None
    if "model" in checkpoint.roots:
        return "detection"
    if "feature_extractor" in checkpoint.roots:
        return "classification"
    return None


def _type_mismatch(checkpoint: CheckpointFacts, effective: str, written: str, line: int | None) -> Finding | None:
    """The type against the checkpoint's root objects: what the restore would miss."""
    assumed = "" if written else f" (fine_tune_checkpoint_type is not set, so the trainer assumes {effective!r})"
    finding_id = "type-mismatch" if written else "type-missing"
    if effective == "detection" and checkpoint.feature_extractor_names:
        return Finding(finding_id, Severity.ERROR, CHECKPOINT_TYPE, line,
                       f"the checkpoint has variables named feature_extractor/... (a classification layout); "
                       f"'detection' refuses it{assumed}", FEATURE_EXTRACTOR_NAMES,
                       'fine_tune_checkpoint_type: "classification", or a TF2 zoo detection checkpoint')  # fmt: skip
    root = restore_rules.ROOT_FOR_TYPE[effective]
    if root in checkpoint.roots:
        return None
    natural = _natural_type(checkpoint)
    fix = f'fine_tune_checkpoint_type: "{natural}"' if natural else "a checkpoint of the kind the type names"
    return Finding(finding_id, Severity.ERROR, CHECKPOINT_TYPE, line,
                   f"{effective!r} restores the root object {root!r}, but the checkpoint's root objects are: "
                   f"{', '.join(checkpoint.roots) or 'none'}{assumed}", UNBOUND.format("N"), fix)  # fmt: skip
