"""`zoo check`: what the TF2 trainer would reject at start, found before it starts.

``check(doc, facts)`` is a pure function of a parsed pipeline config and the
facts gathered at the edge by ``zoo.facts`` (the checkpoint's index, the
checkpoint's own pipeline.config, label maps, glob matches, model_dir
contents). Each ``Finding`` names the field and line, says what the trainer
would do, quoting its error where it raises one (strings from
tfod_reference.md and TensorFlow/protobuf as observed), and gives the fix.

Severities: ``error`` means training would not start, or would start and
silently train the wrong thing; ``warning`` means it depends on how training
is run; ``note`` is information (what was accepted, what could not be checked).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from zoo import compat
from zoo.errors import ConfigError
from zoo.labelmap import LabelMap
from zoo.textproto import (
    PLACEHOLDER,
    Document,
    Message,
    Scalar,
    find_placeholders,
    meta_architecture,
)

# -- field paths (zoo.facts gathers facts for exactly these) ----------------------------

FINE_TUNE_CHECKPOINT = "train_config.fine_tune_checkpoint"
CHECKPOINT_TYPE = "train_config.fine_tune_checkpoint_type"
CHECKPOINT_VERSION = "train_config.fine_tune_checkpoint_version"
LOAD_ALL_VARS = "train_config.load_all_detection_checkpoint_vars"
FROM_DETECTION = "train_config.from_detection_checkpoint"
BATCH_SIZE = "train_config.batch_size"
NUM_STEPS = "train_config.num_steps"
USE_BFLOAT16 = "train_config.use_bfloat16"
TRAIN_READER = "train_input_reader"

_LABEL_MAP_PATH = re.compile(r"(train_input_reader|eval_input_reader(\[\d+\])?)\.label_map_path")
_INPUT_PATH = re.compile(r"(train_input_reader|eval_input_reader(\[\d+\])?)\.tf_record_input_reader\.input_path(\[\d+\])?")
_REMOTE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_ZOO_DETECTION_LAYOUT = re.compile(r"(^|[/\\])checkpoint[/\\]ckpt-\d+$")

TPU_BATCH_SIZE = 64  # the TPU sample configs use 64 to 512; one GPU rarely fits 64 large images
VERSIONS = ("UNKNOWN", "V1", "V2")
# Fields that only train_config has; anywhere else protobuf refuses the file.
_TRAIN_CONFIG_ONLY = frozenset({
    "fine_tune_checkpoint", "fine_tune_checkpoint_type", "fine_tune_checkpoint_version",
    "load_all_detection_checkpoint_vars", "from_detection_checkpoint",
})  # fmt: skip
# Message types of the usual parents, for protobuf's own wording.
_PROTO_TYPES = {
    "": "TrainEvalPipelineConfig", "model": "DetectionModel", "model.ssd": "Ssd",
    "model.faster_rcnn": "FasterRcnn", "model.center_net": "CenterNet", "train_config": "TrainConfig",
    "train_input_reader": "InputReader", "eval_input_reader": "InputReader", "eval_config": "EvalConfig",
}  # fmt: skip
_STRING_FIELDS = (FINE_TUNE_CHECKPOINT, CHECKPOINT_TYPE)

# -- the trainer's words ----------------------------------------------------------------

NOT_FOUND = "NotFoundError: Unsuccessful TensorSliceReader constructor: Failed to find any matching files for {}"
TABLE_ERROR = ("DataLossError: Unable to open table file {}: {}: perhaps your file is in a different file format "
               "and you need to use a different restore operator?")  # fmt: skip
BAD_INDEX = "OpError: not an sstable (bad magic number)"
SHARD_MISSING = "OpError: {}; No such file or directory"
SHARD_TRUNCATED = "IndexError: Read less bytes than requested"
NOT_OBJECT_BASED = "IOError: Checkpoint is expected to be an object-based checkpoint."
VERSION_V2 = "ValueError: Checkpoint version should be V2"
LOAD_ALL_UNSUPPORTED = "ValueError: train_pb2.load_all_detection_checkpoint_vars unsupported in TF2"
FEATURE_EXTRACTOR_NAMES = (
    "RuntimeError: The checkpoint type 'detection' is not supported when it contains variable names with "
    "'feature_extractor'. Please download the new checkpoint file from model zoo."
)
SAME_DIR = ("RuntimeError: Checkpoint dir ({}) and model_dir ({}) cannot be same. "
            "Please set model_dir to a different path.")  # fmt: skip
NOT_SUPPORTED_TYPE = "ValueError: Not supported fine_tune_checkpoint_type: {}"
CENTERNET_UNKNOWN_TYPE = "ValueError: Unknown fine tune checkpoint type {}"
CENTERNET_FINE_TUNE = (
    'ValueError: "fine_tune" is no longer supported for CenterNet. Please set fine_tune_checkpoint_type to '
    '"detection" which has the same functionality. If you are using the ExtremeNet checkpoint, download the '
    "new version from the model zoo."
)
UNBOUND = ("AssertionError: Found {} Python objects that were not bound to checkpointed values, likely due to "
           "changes in the Python program.")  # fmt: skip
RESTORE_MISMATCH = (
    "ValueError: Received incompatible tensor with shape <in the checkpoint> when attempting to restore variable "
    "with shape <in the model> and name <variable>., or AssertionError: Found N Python objects that were not bound "
    "to checkpointed values, likely due to changes in the Python program."
)
EXTRACTOR_UNSUPPORTED = ("ValueError: {} is not supported. See `model_builder.py` for features extractors "
                         "compatible with different versions of Tensorflow")  # fmt: skip
LABEL_MAP_NOT_FOUND = "NotFoundError: {}; No such file or directory"
NO_INPUT_FILES = "RuntimeError: Did not find any input files matching the glob pattern {}"
NO_INPUT_PATH = "ValueError: At least one input path must be specified in `input_reader_config`."
WARMUP = "ValueError: total_steps must be larger or equal to warmup_steps."
PARSE = "ParseError: {}:{} : {}"


# -- findings and facts -----------------------------------------------------------------


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    id: str
    severity: Severity
    path: str  # the field, e.g. train_config.fine_tune_checkpoint ("" for the whole file)
    line: int | None
    message: str
    trainer_error: str | None = None  # what the trainer raises, quoted; None when it says nothing
    fix: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "severity": self.severity.value}

    def render(self, source: str) -> str:
        where = f"{source}:{self.line}" if self.line else source
        field_ = f" {self.path}:" if self.path else ""
        lines = [f"{where}: {self.severity.value} [{self.id}]{field_} {self.message}"]
        if self.trainer_error:
            lines.append(f"    trainer: {self.trainer_error}")
        if self.fix:
            lines.append(f"    fix: {self.fix}")
        return "\n".join(lines)


@dataclass(frozen=True)
class CheckpointFacts:
    """What is on disk where ``fine_tune_checkpoint`` points."""

    value: str  # as written in the config (unescaped)
    path: Path  # absolute: a relative value joined to the working directory
    kind: str  # prefix | directory | index | data | meta | other | missing | remote
    prefix: Path | None = None  # the checkpoint found there (resolve_prefix)
    error: str | None = None  # why none was found, or why its index could not be read
    shards_error: str | None = None  # a data shard missing or truncated
    nearby: Path | None = None  # a checkpoint next to a path that names none
    object_based: bool = False
    roots: tuple[str, ...] = ()
    model_children: tuple[str, ...] = ()
    feature_extractor_names: bool = False  # a name starts with "feature_extractor"
    reference: Document | None = None  # the checkpoint's own pipeline.config
    reference_path: Path | None = None
    reference_error: str | None = None
    searched: tuple[Path, ...] = ()  # where a pipeline.config was looked for
    zoo_model: str | None = None  # the cached zoo model holding the checkpoint

    @property
    def readable(self) -> bool:
        """Its index was read, so its structure is known (shards may still be broken)."""
        return self.prefix is not None and self.error is None


@dataclass(frozen=True)
class LabelMapFacts:
    path: Path
    exists: bool
    label_map: LabelMap | None = None
    error: str | None = None  # ConfigError text: parse error, bad or duplicate ids


@dataclass(frozen=True)
class ModelDirFacts:
    path: Path
    latest: Path | None = None  # the checkpoint tf.train.latest_checkpoint would restore
    step: int | None = None  # its global step
    checkpoint_subdir: bool = False  # a *directory* named "checkpoint" sits where TF writes its state file
    error: str | None = None


@dataclass(frozen=True)
class Facts:
    cwd: Path
    checkpoint: CheckpointFacts | None = None
    label_maps: Mapping[str, LabelMapFacts] = field(default_factory=dict)  # by value as written
    globs: Mapping[str, int] = field(default_factory=dict)  # matches per local pattern as written
    model_dir: ModelDirFacts | None = None


def is_remote(value: str) -> bool:
    """gs://, s3://, hdfs:// ...: TensorFlow reads them, we cannot check them here."""
    return bool(_REMOTE.match(value))


def label_map_fields(doc: Document) -> list[tuple[str, Scalar]]:
    """``label_map_path`` of the train reader and of every eval reader."""
    return [(p, node) for p, node in doc.walk() if _LABEL_MAP_PATH.fullmatch(p)]


def input_path_fields(doc: Document) -> list[tuple[str, Scalar]]:
    """Every ``tf_record_input_reader.input_path`` of the train and eval readers."""
    return [(p, node) for p, node in doc.walk() if _INPUT_PATH.fullmatch(p)]


def string_value(node: Scalar) -> str | None:
    """The path a string field names, or None when it is a placeholder or not
    a quoted string (other rules report those)."""
    if node.kind != "string" or _holds_placeholder(node):
        return None
    try:
        return node.as_str()
    except ConfigError:
        return None


def _holds_placeholder(node: Scalar) -> bool:
    return PLACEHOLDER in node.text  # on the literal text, as find_placeholders tests it


# -- the check --------------------------------------------------------------------------


def check(doc: Document, facts: Facts) -> list[Finding]:
    """Every finding for ``doc``, errors first, each group in file order."""
    arch, no_model = _arch(doc)
    findings = [
        *_structure_rules(doc),
        *_placeholder_rules(doc),
        *_checkpoint_rules(doc, facts, arch),
        *_extractor_rules(doc, arch),
        *_label_map_rules(doc, facts, arch),
        *_input_rules(doc, facts),
        *_model_dir_rules(doc, facts),
        *_training_rules(doc),
    ]
    if no_model is not None:
        findings.append(_model_block_finding(no_model))
    order = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}
    return sorted(findings, key=lambda f: (order[f.severity], f.line or 0))


def summary(findings: list[Finding]) -> str:
    counts = {s: sum(f.severity is s for f in findings) for s in Severity}
    return ", ".join(f"{n} {s.value}{'s' if n != 1 else ''}" for s, n in counts.items())


# -- file structure ---------------------------------------------------------------------


def _arch(doc: Document) -> tuple[str | None, ConfigError | None]:
    """The meta-architecture, or why there is none (the rules needing it then skip)."""
    try:
        return meta_architecture(doc), None
    except ConfigError as exc:
        return None, exc


def _model_block_finding(problem: ConfigError) -> Finding:
    return Finding("model-missing", Severity.ERROR, "model", problem.line, str(problem),
                   "ValueError: model_config not of type model_pb2.DetectionModel.",
                   "a pipeline config needs one model { ssd|faster_rcnn|center_net { ... } } block")  # fmt: skip


def _structure_rules(doc: Document) -> list[Finding]:
    """What protobuf's parser rejects before the trainer runs at all."""
    findings: list[Finding] = []
    for path, node in doc.walk():
        name, parent = _last_name(path), path.rpartition(".")[0]
        if name in _TRAIN_CONFIG_ONLY and not path.startswith("train_config."):
            proto = _PROTO_TYPES.get(re.sub(r"\[\d+\]", "", parent), parent)
            error = f'Message type "object_detection.protos.{proto}" has no field named "{name}".'
            column = max(doc.text.splitlines()[node.line - 1].find(name) + 1, 1)  # protobuf points at the name
            findings.append(Finding(
                "misplaced-field", Severity.ERROR, path, node.line,
                f"'{name}' belongs in train_config, not in {parent or 'the top level'}",
                PARSE.format(node.line, column, error), "move it into train_config { ... }"))  # fmt: skip
    for path in (*_STRING_FIELDS, "model.ssd.feature_extractor.type", "model.faster_rcnn.feature_extractor.type",
                 "model.center_net.feature_extractor.type"):  # fmt: skip
        findings += _duplicate(doc, path)
        for node in _scalars(doc, path):
            if node.kind != "string" and not _holds_placeholder(node):
                findings.append(_unquoted(path, node))
    findings += _duplicate(doc, CHECKPOINT_VERSION)
    return findings


def _duplicate(doc: Document, path: str) -> list[Finding]:
    nodes = doc.nodes(path)
    if len(nodes) < 2:
        return []
    name = path.rsplit(".", 1)[-1]
    proto = _PROTO_TYPES.get(path.rsplit(".", 1)[0], "")
    error = f'Message type "object_detection.protos.{proto}" should not have multiple "{name}" fields.'
    return [Finding("duplicate-field", Severity.ERROR, path, nodes[1].line,
                    f"'{name}' is given {len(nodes)} times (lines {', '.join(str(n.line) for n in nodes)})",
                    PARSE.format(nodes[1].line, nodes[1].column, error), "keep one")]  # fmt: skip


def _unquoted(path: str, node: Scalar) -> Finding:
    return Finding("unquoted-string", Severity.ERROR, path, node.line,
                   f"{node.text} is not quoted; this field is a string",
                   _expected_string(path, node), f'{_last_name(path)}: "{node.text}"')  # fmt: skip


def _expected_string(path: str, node: Scalar) -> str:
    """protobuf's words for a bare word where a string field needs quotes."""
    error = f"'{_last_name(path)}: {node.text}': Expected string but found: '{node.text}'"
    return PARSE.format(node.line, node.column, error)


def _placeholder_rules(doc: Document) -> list[Finding]:
    """Every PATH_TO_BE_CONFIGURED left; eval readers only stop the eval job."""
    findings = []
    for found in find_placeholders(doc):
        node, path = found.node, found.path
        value = _literal(node)
        error = _expected_string(path, node) if node.kind == "identifier" else _missing_file_error(path, value)
        eval_only = path.startswith("eval_input_reader")
        findings.append(Finding(
            "placeholder", Severity.WARNING if eval_only else Severity.ERROR, path, node.line,
            f"still the placeholder {value!r}" + (" (read by the evaluation job)" if eval_only else ""),
            error, _placeholder_fix(path)))  # fmt: skip
    return findings


def _literal(node: Scalar) -> str:
    """A string's value, or its text where it is a bare word or a broken escape."""
    try:
        return node.as_str() if node.kind == "string" else node.text
    except ConfigError:
        return node.text


def _missing_file_error(path: str, value: str) -> str | None:
    if path == FINE_TUNE_CHECKPOINT:
        return NOT_FOUND.format(value)
    if path.endswith("label_map_path"):
        return LABEL_MAP_NOT_FOUND.format(value)
    if ".input_path" in path:
        return NO_INPUT_FILES.format([value])
    return None


def _placeholder_fix(path: str) -> str:
    if path == FINE_TUNE_CHECKPOINT:
        return "write the checkpoint prefix (`zoo fetch NAME` prints it; `zoo config NAME` writes it)"
    if path.endswith("label_map_path"):
        return "write your label map's path (`zoo config --label-map FILE` sets it and num_classes)"
    if ".input_path" in path:
        return "write your TFRecord files or glob (`zoo config --train-records/--eval-records`)"
    return "replace it with a real path"


# -- fine_tune_checkpoint ---------------------------------------------------------------


def _checkpoint_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
    node = _first_scalar(doc, FINE_TUNE_CHECKPOINT)
    if node is None or (node.kind == "string" and node.as_str() == ""):
        return [_no_checkpoint(doc, node)]
    # A value is set (placeholders included): the trainer will try to fine-tune.
    checkpoint = facts.checkpoint
    findings = _legacy_rules(doc) + _version_rules(doc)
    if checkpoint is not None:
        findings += _location_rules(node, checkpoint, facts.cwd)
    if checkpoint is not None and checkpoint.readable and not checkpoint.object_based:
        findings.append(Finding(
            "checkpoint-tf1", Severity.ERROR, FINE_TUNE_CHECKPOINT, node.line,
            f"{checkpoint.prefix} is a TF1 name-based checkpoint (written by tf.compat.v1.train.Saver); "
            "the TF2 trainer restores object-based checkpoints only", NOT_OBJECT_BASED,
            "fine-tune from the TF2 zoo model of this architecture (`zoo list --family tf2-detection`), "
            "or train with TF1's model_main.py"))  # fmt: skip
    if arch is not None:
        findings += _type_rules(doc, node, checkpoint, arch)
    return findings


def _no_checkpoint(doc: Document, node: Scalar | None) -> Finding:
    typed = _first_scalar(doc, CHECKPOINT_TYPE)
    why = f" although fine_tune_checkpoint_type is {typed.text}" if typed is not None else ""
    return Finding("checkpoint-missing", Severity.WARNING, FINE_TUNE_CHECKPOINT, node.line if node else None,
                   f"no fine_tune_checkpoint{why}: training starts from random weights", None,
                   "write a checkpoint prefix to fine-tune (`zoo config NAME` writes a zoo model's)")  # fmt: skip


def _location_rules(node: Scalar, checkpoint: CheckpointFacts, cwd: Path) -> list[Finding]:
    value, line = checkpoint.value, node.line
    if checkpoint.kind == "remote":
        return [Finding("checkpoint-remote", Severity.NOTE, FINE_TUNE_CHECKPOINT, line,
                        f"{value} is remote; zoo cannot check it from here")]  # fmt: skip
    relative = not os.path.isabs(value)
    if checkpoint.prefix is None:
        return [_not_found(node, checkpoint, cwd, relative)]  # its hints say how relative paths resolve
    findings = []
    if relative:
        findings.append(Finding(
            "relative-path", Severity.WARNING, FINE_TUNE_CHECKPOINT, line,
            f"{value!r} is relative: the trainer resolves it against the directory training starts in "
            f"(here checked against {cwd})", None, f'an absolute prefix: "{checkpoint.prefix}"'))  # fmt: skip
    if checkpoint.kind in ("directory", "index", "data", "meta"):
        findings.append(_not_a_prefix(node, checkpoint, cwd, relative))
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


def _not_found(node: Scalar, checkpoint: CheckpointFacts, cwd: Path, relative: bool) -> Finding:
    hints = _path_hints(checkpoint.value, cwd)
    if checkpoint.value.endswith(("saved_model.pb", "saved_model", "saved_model/")):
        hints.append("a SavedModel is not a checkpoint: the zoo's checkpoint is <model>/checkpoint/ckpt-0")
    fix = (f'fine_tune_checkpoint: "{_styled(checkpoint.nearby, cwd, relative)}"' if checkpoint.nearby
           else "write the prefix of an existing checkpoint (the path without .index)")  # fmt: skip
    message = f"no checkpoint at {checkpoint.value!r}: {_without_path(checkpoint.error or '', checkpoint.path)}"
    if hints:
        message += " (" + "; ".join(hints) + ")"
    return Finding("checkpoint-not-found", Severity.ERROR, FINE_TUNE_CHECKPOINT, node.line, message,
                   NOT_FOUND.format(checkpoint.value), fix)  # fmt: skip


def _not_a_prefix(node: Scalar, checkpoint: CheckpointFacts, cwd: Path, relative: bool) -> Finding:
    value = checkpoint.value
    what = {"directory": "a directory", "index": "the checkpoint's .index file",
            "data": "a data shard", "meta": "the TF1 .meta graph file"}[checkpoint.kind]  # fmt: skip
    if checkpoint.kind == "directory":
        error = TABLE_ERROR.format(value, f"FAILED_PRECONDITION: {value}; Is a directory")
    elif checkpoint.kind == "index":
        error = NOT_OBJECT_BASED  # list_variables reads no variable from an .index path
    else:
        error = TABLE_ERROR.format(value, "DATA_LOSS: not an sstable (bad magic number)")
    return Finding("checkpoint-not-prefix", Severity.ERROR, FINE_TUNE_CHECKPOINT, node.line,
                   f"{value!r} names {what}, not a checkpoint prefix", error,
                   f'fine_tune_checkpoint: "{_styled(checkpoint.prefix, cwd, relative)}"')  # fmt: skip


def _without_path(error: str, path: Path) -> str:
    """A zoo.checkpoint error without its leading path, which the message already names."""
    return error.removeprefix(f"{path}: ")


def _path_hints(value: str, cwd: Path) -> list[str]:
    hints = []
    if _WINDOWS_DRIVE.match(value):
        hints.append("a Windows drive path; on this machine it is a relative path")
    if "\\" in value:
        hints.append("backslashes are not directory separators here; write '/'")
    if value.startswith("~"):
        hints.append("the trainer does not expand '~'")
    elif not os.path.isabs(value) and not _WINDOWS_DRIVE.match(value):
        hints.append(f"relative to the working directory {cwd}")
    return hints


def _styled(path: Path | None, cwd: Path, relative: bool) -> str:
    """``path`` spelled as the user spells theirs: relative stays relative."""
    if path is None:
        return ""
    return os.path.relpath(path, cwd) if relative else str(path)


def _legacy_rules(doc: Document) -> list[Finding]:
    findings = []
    load_all = _first_scalar(doc, LOAD_ALL_VARS)
    if load_all is not None and _as_bool(load_all):
        findings.append(Finding("load-all-vars", Severity.ERROR, LOAD_ALL_VARS, load_all.line,
                                "load_all_detection_checkpoint_vars: true is a TF1 setting the TF2 trainer refuses",
                                LOAD_ALL_UNSUPPORTED, "delete the line (or set it to false)"))  # fmt: skip
    legacy = _first_scalar(doc, FROM_DETECTION)
    if legacy is not None:
        findings.append(Finding("from-detection-checkpoint", Severity.NOTE, FROM_DETECTION, legacy.line,
                                "from_detection_checkpoint is deprecated: the TF2 trainer reads it only to pick "
                                "'detection' when fine_tune_checkpoint_type is empty", None,
                                'replace it with fine_tune_checkpoint_type: "detection"'))  # fmt: skip
    return findings


def _version_rules(doc: Document) -> list[Finding]:
    node = _first_scalar(doc, CHECKPOINT_VERSION)
    fix = "fine_tune_checkpoint_version: V2"
    if node is None:
        return [Finding("version-missing", Severity.ERROR, CHECKPOINT_VERSION, _line_of(doc, "train_config"),
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


# -- fine_tune_checkpoint_type and architecture ------------------------------------------


def _type_rules(doc: Document, ftc: Scalar, checkpoint: CheckpointFacts | None, arch: str) -> list[Finding]:
    node = _first_scalar(doc, CHECKPOINT_TYPE)
    written = _literal(node) if node is not None else ""  # an unquoted type is reported, and meant
    legacy = _first_scalar(doc, FROM_DETECTION)
    effective = written or ("detection" if legacy is not None and _as_bool(legacy) else compat.DEFAULT_TYPE)
    line = node.line if node is not None else _line_of(doc, "train_config")
    if written and written not in compat.CHECKPOINT_TYPES:
        return [_unknown_type(written, arch, line)]
    findings = []
    if arch == "faster_rcnn" and effective == "full":
        findings.append(Finding("type-full-faster-rcnn", Severity.WARNING, CHECKPOINT_TYPE, line,
                                "'full' for Faster R-CNN depends on the Object Detection API version: the "
                                "restore_from_objects read (commit 0ba5a72) has no 'full' branch; newer versions may",
                                NOT_SUPPORTED_TYPE.format("full"), 'fine_tune_checkpoint_type: "detection"'))  # fmt: skip
    if checkpoint is None or not checkpoint.readable or not checkpoint.object_based:
        return findings + _type_missing(written, effective, line, None) + _type_suspect(ftc, effective, line)
    mismatch = _type_mismatch(checkpoint, effective, written, line)
    if mismatch is not None:
        return findings + [mismatch]
    findings += _type_missing(written, effective, line, checkpoint)
    architecture = _architecture_rules(doc, checkpoint, arch, effective)
    structure = _structure_mismatch(checkpoint, arch, effective, line)
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
    root = compat.ROOT_FOR_TYPE[effective]
    if root in checkpoint.roots:
        return None
    natural = _natural_type(checkpoint)
    fix = f'fine_tune_checkpoint_type: "{natural}"' if natural else "a checkpoint of the kind the type names"
    return Finding(finding_id, Severity.ERROR, CHECKPOINT_TYPE, line,
                   f"{effective!r} restores the root object {root!r}, but the checkpoint's root objects are: "
                   f"{', '.join(checkpoint.roots) or 'none'}{assumed}", UNBOUND.format("N"), fix)  # fmt: skip


def _structure_mismatch(checkpoint: CheckpointFacts, arch: str, effective: str, line: int | None) -> Finding | None:
    """The ``model/`` children the meta-architecture restores, against the checkpoint's."""
    missing = compat.structure_problems(arch, effective, checkpoint.roots, checkpoint.model_children)
    if not missing:
        return None
    children = ", ".join(checkpoint.model_children) or "nothing"
    guess = compat.guess_architecture(checkpoint.model_children)
    return Finding("arch-mismatch", Severity.ERROR, "model", line,
                   f"the config's meta-architecture is {arch}, whose {effective!r} restore needs {', '.join(missing)}, "
                   f"but the checkpoint's model/ holds {children}" + (f" (a {guess} checkpoint)" if guess else ""),
                   UNBOUND.format("N"), f"a {arch} checkpoint, or a config for the checkpoint's architecture")  # fmt: skip


def _architecture_rules(doc: Document, checkpoint: CheckpointFacts, arch: str, checkpoint_type: str) -> list[Finding]:
    reference = checkpoint.reference
    if reference is None:
        return [_unchecked(checkpoint, arch)]
    try:
        comparison = compat.compare(doc, reference, checkpoint_type)
    except ConfigError as exc:
        return [_unchecked(checkpoint, arch, str(exc))]
    return _comparison_findings(comparison, checkpoint)


def _unchecked(checkpoint: CheckpointFacts, arch: str, why: str | None = None) -> Finding:
    if why is None and checkpoint.reference_error is not None:
        why = f"the checkpoint's pipeline.config cannot be parsed ({checkpoint.reference_error})"
    if why is None:
        places = ", ".join(str(p) for p in checkpoint.searched) or "nowhere"
        why = f"no pipeline.config found for this checkpoint (looked at {places})"
    children = ", ".join(checkpoint.model_children) or "-"
    return Finding("arch-unchecked", Severity.NOTE, f"model.{arch}", None,
                   f"{why}: the feature extractor's type and settings could not be compared; checked only "
                   f"the checkpoint's structure (root objects: {', '.join(checkpoint.roots)}; model/: {children})")  # fmt: skip


def _comparison_findings(comparison: compat.Comparison, checkpoint: CheckpointFacts) -> list[Finding]:
    ours, theirs, kind = comparison.ours, comparison.theirs, comparison.checkpoint_type
    owner = f"cached zoo model {checkpoint.zoo_model}: " if checkpoint.zoo_model else ""
    source = f"the checkpoint's pipeline.config ({owner}{checkpoint.reference_path})"
    fix = (f"fine-tune from a {ours.meta_architecture} checkpoint, or start from a config for the checkpoint's "
           f"{theirs.meta_architecture} ({theirs.extractor})")  # fmt: skip
    if comparison.meta_architecture_differs:
        return [Finding("arch-mismatch", Severity.ERROR, "model", ours.line,
                        f"the config's meta-architecture is {ours.meta_architecture} ({ours.extractor}) but {source} "
                        f"is {theirs.meta_architecture} ({theirs.extractor})", UNBOUND.format("N"), fix)]  # fmt: skip
    path = f"model.{ours.meta_architecture}.feature_extractor.type"
    if comparison.extractor_differs:
        what = "backbone" if kind == "classification" else "feature extractor"
        sides = (f"{compat.backbone(ours.extractor or '')} ({ours.extractor})" if kind == "classification"
                 else ours.extractor, compat.backbone(theirs.extractor or "") if kind == "classification"
                 else theirs.extractor)  # fmt: skip
        return [Finding("extractor-mismatch", Severity.ERROR, path, ours.line,
                        f"{kind!r} restores the {what}: the config's is {sides[0]}, the checkpoint's is "
                        f"{sides[1]} ({source})",
                        RESTORE_MISMATCH,
                        f'type: "{theirs.extractor}" (the checkpoint\'s), or a {ours.extractor} checkpoint')]  # fmt: skip
    arch_path = f"model.{ours.meta_architecture}."
    findings = [
        Finding("arch-setting-mismatch", Severity.ERROR, arch_path + d.path, _setting_line(d),
                f"{d.describe()}; {kind!r} restores this part and the setting changes its variables",
                RESTORE_MISMATCH,
                f"{_last_name(d.path)}: {d.theirs.spelled() if d.theirs else '(remove it)'}")
        for d in comparison.blocking
    ]  # fmt: skip
    findings += [
        Finding("arch-setting-unknown", Severity.WARNING, arch_path + d.path, _setting_line(d),
                f"{d.describe()}; zoo cannot tell whether it changes the restored variables", None,
                f"{_last_name(d.path)}: {d.theirs.spelled() if d.theirs else '(remove it)'}, unless you know it "
                "changes no variable")
        for d in comparison.uncertain
    ]  # fmt: skip
    if comparison.accepted:
        shown = "; ".join(d.describe() for d in comparison.accepted[:6])
        more = f"; and {len(comparison.accepted) - 6} more" if len(comparison.accepted) > 6 else ""
        findings.append(Finding("arch-accepted", Severity.NOTE, arch_path.rstrip("."), None,
                                f"differences from {source} that {kind!r} does not restore or that change no "
                                f"weights, accepted: {shown}{more}"))  # fmt: skip
    return findings


def _setting_line(difference: compat.Difference) -> int | None:
    return difference.ours.line if difference.ours and difference.ours.line else None


def _extractor_rules(doc: Document, arch: str | None) -> list[Finding]:
    known = compat.TF2_EXTRACTORS.get(arch or "")
    node = _first_scalar(doc, f"model.{arch}.feature_extractor.type") if known else None
    if node is None or node.kind != "string" or node.as_str() in known:  # type: ignore[operator]
        return []
    name = node.as_str()
    keras = f"{name}_keras"
    fix = (f'type: "{keras}" (its TF2 Keras version) with a TF2 checkpoint' if keras in known  # type: ignore[operator]
           else "a TF2 feature extractor (see `zoo list --family tf2-detection`), or TF1's model_main.py")  # fmt: skip
    return [Finding("extractor-unsupported", Severity.ERROR, f"model.{arch}.feature_extractor.type", node.line,
                    f"{name!r} is not a TF2 feature extractor for {arch} (a TF1-only or custom type)",
                    EXTRACTOR_UNSUPPORTED.format(name), fix)]  # fmt: skip


# -- label maps, inputs -----------------------------------------------------------------


def _label_map_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
    findings: list[Finding] = []
    seen_maps: list[tuple[str, Scalar, LabelMapFacts]] = []
    for path, node in label_map_fields(doc):
        value = string_value(node)
        seen = facts.label_maps.get(value) if value is not None else None
        if seen is None:
            continue
        seen_maps.append((path, node, seen))
        severity = Severity.WARNING if path.startswith("eval") else Severity.ERROR
        if not seen.exists:
            hints = _path_hints(value, facts.cwd)  # type: ignore[arg-type]
            findings.append(Finding("label-map-missing", severity, path, node.line,
                                    f"no file at {value!r}" + (f" ({'; '.join(hints)})" if hints else ""),
                                    LABEL_MAP_NOT_FOUND.format(value), "write the path of your label map"))  # fmt: skip
        elif seen.error is not None:
            findings.append(Finding("label-map-invalid", severity, path, node.line, seen.error,
                                    _label_map_error(seen.error), "fix the label map (ids start at 1, unique)"))  # fmt: skip
    loaded = [(p, n, f.label_map) for p, n, f in seen_maps if f.label_map is not None]
    findings += _num_classes_rules(doc, loaded, arch)
    findings += _label_maps_differ(seen_maps)
    return findings


def _label_map_error(error: str) -> str | None:
    """What TensorFlow's label_map_util does with what labelmap.py refused."""
    if "duplicate id" in error:
        return None  # TensorFlow keeps the first item silently; the other class is never trained
    if "negative" in error:
        return "ValueError: Label map ids should be >= 0."
    if "id 0" in error:
        return "ValueError: Label map id 0 is reserved for the background label"
    return "ParseError (google.protobuf.text_format) while reading the label map"


def _num_classes_rules(doc: Document, loaded: list[tuple[str, Scalar, LabelMap]], arch: str | None) -> list[Finding]:
    if arch is None:
        return []
    path = f"model.{arch}.num_classes"
    node = _first_scalar(doc, path)
    findings = []
    for source in {lm.source: (p, lm) for p, _, lm in loaded}.values():
        label_path, label_map = source
        if node is not None and node.kind == "number" and node.as_int() != label_map.num_classes:
            ours = node.as_int()
            effect = (f"ids above {ours} are encoded as no class and silently never learned"
                      if ours < label_map.num_classes
                      else f"{ours - label_map.num_classes} output(s) are trained for classes no example has")  # fmt: skip
            findings.append(Finding("num-classes-mismatch", Severity.ERROR, path, node.line,
                                    f"num_classes is {ours} but the highest id in {label_map.source} "
                                    f"({label_path}) is {label_map.num_classes}: {effect}", None,
                                    f"num_classes: {label_map.num_classes}"))  # fmt: skip
        if label_map.missing_ids:
            findings.append(Finding("label-map-gaps", Severity.WARNING, label_path, None,
                                    f"{label_map.source} has no id {', '.join(map(str, label_map.missing_ids))}: "
                                    "num_classes counts them anyway, so those outputs never see an example",
                                    None, "number the ids 1..N without gaps"))  # fmt: skip
    return findings


def _label_maps_differ(seen_maps: list[tuple[str, Scalar, LabelMapFacts]]) -> list[Finding]:
    """Eval readers whose label map is not the train one: by content when both
    could be read, else by path."""
    train = [entry for entry in seen_maps if entry[0].startswith("train")]
    if not train:
        return []
    reference = train[0][2]
    return [
        Finding("label-map-differs", Severity.WARNING, path, node.line,
                f"the eval label map {facts.path} is not the train one ({reference.path}): evaluation would "
                "name classes differently from training", None, "use the train label map for evaluation too")
        for path, node, facts in seen_maps
        if path.startswith("eval") and _differ(facts, reference)
    ]  # fmt: skip


def _differ(one: LabelMapFacts, other: LabelMapFacts) -> bool:
    if one.label_map is not None and other.label_map is not None:
        return _classes(one.label_map) != _classes(other.label_map)
    return _same_file_key(one.path) != _same_file_key(other.path)


def _same_file_key(path: Path) -> str:
    return re.sub(r"^//+", "/", str(path))  # Linux reads a leading '//' as '/'


def _classes(label_map: LabelMap) -> list[tuple[int, str]]:
    return sorted((item.id, item.name) for item in label_map.items)


def _input_rules(doc: Document, facts: Facts) -> list[Finding]:
    by_reader: dict[str, list[tuple[str, Scalar]]] = {}
    for path, node in input_path_fields(doc):
        by_reader.setdefault(path.split(".", 1)[0], []).append((path, node))
    findings = _train_reader_without_input(doc, TRAIN_READER in by_reader)
    for reader, fields in by_reader.items():
        findings += _reader_inputs(reader, fields, facts)
    return findings + _eval_on_train(by_reader)


def _train_reader_without_input(doc: Document, has_input: bool) -> list[Finding]:
    train = doc.nodes(TRAIN_READER)
    if has_input or not train or not isinstance(train[0], Message) or doc.nodes(f"{TRAIN_READER}.external_input_reader"):
        return []
    return [Finding("input-missing", Severity.ERROR, f"{TRAIN_READER}.tf_record_input_reader.input_path",
                    train[0].line, "the train reader names no input file", NO_INPUT_PATH,
                    'tf_record_input_reader { input_path: "..." } (`zoo config --train-records`)')]  # fmt: skip


def _eval_on_train(by_reader: dict[str, list[tuple[str, Scalar]]]) -> list[Finding]:
    train = {string_value(node) for _, node in by_reader.get(TRAIN_READER, [])} - {None}
    return [
        Finding("eval-on-train", Severity.WARNING, path, node.line,
                f"the evaluation reads the training records {string_value(node)!r}: its metrics will flatter the "
                "model", None, "evaluate on held-out records")
        for reader, fields in by_reader.items() if reader.startswith("eval")
        for path, node in fields if string_value(node) in train
    ]  # fmt: skip


def _reader_inputs(reader: str, fields: list[tuple[str, Scalar]], facts: Facts) -> list[Finding]:
    """TensorFlow globs all patterns of a reader together and fails only when
    none matches; patterns that match nothing beside others are just skipped."""
    values = [(path, node, string_value(node)) for path, node in fields]
    local = [(p, n, v) for p, n, v in values if v is not None and v in facts.globs]
    if not local or any(v is None for _, _, v in values):
        return []  # placeholders (reported) or remote patterns: nothing to conclude
    empty = [(p, n, v) for p, n, v in local if facts.globs[v] == 0]
    if not empty:
        return []
    path, node, _ = empty[0]
    hints = sorted({h for _, _, v in empty for h in _path_hints(v, facts.cwd)})
    shown = ", ".join(repr(v) for _, _, v in empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
    where = f" ({'; '.join(hints)})" if hints else ""
    if len(empty) < len(local):
        return [Finding("input-partial", Severity.WARNING, path, node.line,
                        f"{shown} match no file{where}; the reader's other patterns do, so these are skipped "
                        "silently", None, "fix or remove the patterns that match nothing")]  # fmt: skip
    severity = Severity.WARNING if reader.startswith("eval") else Severity.ERROR
    job = " (read by the evaluation job)" if reader.startswith("eval") else ""
    return [Finding("input-no-match", severity, path, node.line, f"{shown} match no file{where}{job}",
                    NO_INPUT_FILES.format(_short_list([v for _, _, v in local])),
                    "write the path or glob of your TFRecord files")]  # fmt: skip


def _short_list(values: list[str]) -> str:
    """A Python list as the trainer prints it, cut after three items."""
    if len(values) <= 3:
        return repr(values)
    return repr(values[:3])[:-1] + f", ... ({len(values)} patterns)]"


# -- model_dir, steps, batch ---------------------------------------------------------


def _model_dir_rules(doc: Document, facts: Facts) -> list[Finding]:
    model_dir, checkpoint = facts.model_dir, facts.checkpoint
    if model_dir is None:
        return []
    findings = []
    if checkpoint is not None and checkpoint.kind != "remote":
        given_dir = os.path.dirname(checkpoint.value)
        if os.path.abspath(os.path.join(facts.cwd, given_dir)) == os.path.abspath(model_dir.path):
            findings.append(Finding("model-dir-is-checkpoint-dir", Severity.ERROR, FINE_TUNE_CHECKPOINT, None,
                                    f"model_dir {model_dir.path} is the fine-tune checkpoint's directory",
                                    SAME_DIR.format(given_dir, model_dir.path),
                                    "train into a new, empty directory"))  # fmt: skip
    if model_dir.checkpoint_subdir:
        findings.append(Finding("model-dir-zoo-layout", Severity.WARNING, "", None,
                                f"{model_dir.path} holds a directory named 'checkpoint' where TensorFlow writes "
                                "its checkpoint state file (a zoo model's top directory?); saving would fail",
                                None, "train into a new, empty directory"))  # fmt: skip
    if model_dir.error:
        findings.append(Finding("model-dir-unreadable", Severity.WARNING, "", None,
                                f"{model_dir.path}: {model_dir.error}; training would try to resume from it"))  # fmt: skip
    if model_dir.latest is not None:
        findings.append(_resume_finding(doc, model_dir))
    return findings


def _resume_finding(doc: Document, model_dir: ModelDirFacts) -> Finding:
    node = _first_scalar(doc, NUM_STEPS)
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


def _training_rules(doc: Document) -> list[Finding]:
    findings = []
    batch = _first_scalar(doc, BATCH_SIZE)
    if batch is not None and batch.kind == "number" and batch.as_int() >= TPU_BATCH_SIZE:
        findings.append(Finding("batch-size-tpu", Severity.WARNING, BATCH_SIZE, batch.line,
                                f"batch_size {batch.as_int()} is sized for a TPU pod (the samples use 64 to 512); "
                                "on GPUs it is the global batch and rarely fits", "ResourceExhaustedError: OOM when "
                                "allocating tensor ... (on a GPU that cannot hold the batch)",
                                "batch_size: 8 or what your accelerators hold (`zoo config --batch-size N`)"))  # fmt: skip
    bfloat16 = _first_scalar(doc, USE_BFLOAT16)
    if bfloat16 is not None and _as_bool(bfloat16):
        findings.append(Finding("bfloat16-tpu", Severity.NOTE, USE_BFLOAT16, bfloat16.line,
                                "use_bfloat16 applies on TPU only; the trainer turns it off elsewhere"))  # fmt: skip
    steps = _first_scalar(doc, NUM_STEPS)
    num_steps = steps.as_int() if steps is not None and steps.kind == "number" else 0
    if num_steps == 0:
        findings.append(Finding("num-steps-unset", Severity.WARNING, NUM_STEPS, steps.line if steps else None,
                                "num_steps is not set: training needs --num_train_steps, else the loop fails",
                                "TypeError: 'NoneType' object cannot be interpreted as an integer (inference: "
                                "range(step, None, ...))", "num_steps: N (`zoo config --num-steps N`)"))  # fmt: skip
    findings += _schedule_rules(doc, num_steps)
    return findings


def _schedule_rules(doc: Document, num_steps: int) -> list[Finding]:
    schedule = {_last_name(p): n for p, n in doc.walk()
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


# -- small helpers ----------------------------------------------------------------------


def _scalars(doc: Document, path: str) -> list[Scalar]:
    return [node for node in doc.nodes(path) if isinstance(node, Scalar)]


def _first_scalar(doc: Document, path: str) -> Scalar | None:
    found = _scalars(doc, path)
    return found[0] if found else None


def _line_of(doc: Document, path: str) -> int | None:
    nodes = doc.nodes(path)
    return nodes[0].line if nodes else None


def _last_name(path: str) -> str:
    return re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])


def _as_bool(node: Scalar) -> bool:
    try:
        return node.as_bool()
    except ConfigError:
        return False


__all__ = [
    "CheckpointFacts", "Facts", "Finding", "LabelMapFacts", "ModelDirFacts", "Severity", "check",
    "input_path_fields", "is_remote", "label_map_fields", "string_value", "summary",
]  # fmt: skip
