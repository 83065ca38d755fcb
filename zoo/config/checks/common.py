"""The vocabulary every rule of `zoo check` shares.

Field paths (zoo.config.facts gathers facts for exactly these), the trainer's
words as it raises them, ``Severity`` and ``Finding``, the facts the rules are
given, and the small helpers that read a parsed config.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.config.labelmap import LabelMap
from zoo.config.textproto import PLACEHOLDER, Document, Scalar
from zoo.errors import ConfigError

if TYPE_CHECKING:
    from zoo.checkpoint import CheckpointPath

# -- field paths (zoo.config.facts gathers facts for exactly these) --------------------

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

TRAINERS = ("tf1", "tf2")  # model_main.py under TF 1.15; model_main_tf2.py
# Where a TF1 detection checkpoint keeps its feature extractor (SSD; Faster R-CNN and R-FCN):
# the TF1 'detection' restore maps these names, 'classification' strips them.
TF1_DETECTION_SCOPES = ("FeatureExtractor/", "FirstStageFeatureExtractor/")

STEPS_PER_ITERATION = 100  # model_main_tf2.py's --num_steps_per_iteration default: the loop's block
TPU_BATCH_SIZE = 64  # the TPU sample configs use 64 to 512; one GPU rarely fits 64 large images
VERSIONS = ("UNKNOWN", "V1", "V2")


# -- the trainer's words ---------------------------------------------------------------

NOT_FOUND = "NotFoundError: Unsuccessful TensorSliceReader constructor: Failed to find any matching files for {}"
TABLE_ERROR = ("DataLossError: Unable to open table file {}: {}: perhaps your file is in a different file format "
               "and you need to use a different restore operator?")  # fmt: skip
BAD_INDEX = "OpError: not an sstable (bad magic number)"
SHARD_MISSING = "OpError: {}; No such file or directory"
SHARD_TRUNCATED = "IndexError: Read less bytes than requested"
# IOError is OSError's alias in Python 3: the traceback names OSError.
NOT_OBJECT_BASED = "OSError: Checkpoint is expected to be an object-based checkpoint."
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
# model_main_tf2.py always runs under a distribution strategy, where a shape mismatch is
# raised by the variable's assign (observed), not by the checkpoint reader.
RESTORE_MISMATCH = (
    "ValueError: Cannot assign value to variable '<variable>': Shape mismatch.The variable shape (<in the model>), "
    "and the assigned value shape (<in the checkpoint>) are incompatible., or AssertionError: Found N Python "
    "objects that were not bound to checkpointed values, likely due to changes in the Python program."
)
EXTRACTOR_UNSUPPORTED = ("ValueError: {} is not supported. See `model_builder.py` for features extractors "
                         "compatible with different versions of Tensorflow")  # fmt: skip
LABEL_MAP_NOT_FOUND = "NotFoundError: {}; No such file or directory"
NO_INPUT_FILES = "RuntimeError: Did not find any input files matching the glob pattern {}"
NO_INPUT_PATH = "ValueError: At least one input path must be specified in `input_reader_config`."
SAVE_INTO_DIRECTORY = "FailedPreconditionError: {}/checkpoint.tmp<hex>; Is a directory"
WARMUP = "ValueError: total_steps must be larger or equal to warmup_steps."
PARSE = "ParseError: {}:{} : {}"


# -- findings and facts ----------------------------------------------------------------


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
class Unreachable:
    """Why a remote value (gs://, s3:// ...) could not be read from here (naming
    it), and what would let zoo read it: a package, credentials, the network."""

    why: str
    fix: str


@dataclass(frozen=True)
class CheckpointFacts:
    """What is on disk, or in the object store, where ``fine_tune_checkpoint`` points."""

    value: str  # as written in the config (unescaped)
    path: CheckpointPath  # absolute: a relative value joined to the working directory
    kind: str  # prefix | directory | index | data | meta | other | missing | remote (not looked at)
    prefix: CheckpointPath | None = None  # the checkpoint found there (resolve_prefix)
    error: str | None = None  # why none was found, or why its index could not be read
    shards_error: str | None = None  # a data shard missing or truncated
    nearby: CheckpointPath | None = None  # a checkpoint next to a path that names none
    object_based: bool = False
    roots: tuple[str, ...] = ()
    model_children: tuple[str, ...] = ()
    feature_extractor_names: bool = False  # a name starts with "feature_extractor"
    detection_scopes: bool = False  # a name starts with a TF1_DETECTION_SCOPES scope
    reference: Document | None = None  # the checkpoint's own pipeline.config
    reference_path: CheckpointPath | None = None
    reference_error: str | None = None
    searched: tuple[CheckpointPath, ...] = ()  # where a pipeline.config was looked for
    zoo_model: str | None = None  # the cached zoo model holding the checkpoint
    named_model: str | None = None  # a zoo model named by a component of a path that holds no checkpoint
    unreachable: Unreachable | None = None  # kind "remote": why its store could not be read

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
    path: Path  # or a zoo.config.remote.RemotePath for gs://, s3:// ...
    latest: Path | None = None  # the checkpoint tf.train.latest_checkpoint would restore
    step: int | None = None  # its global step
    checkpoint_subdir: bool = False  # a *directory* named "checkpoint" sits where TF writes its state file
    cache: Path | None = None  # the zoo cache it lies inside, if it does
    error: str | None = None
    unreachable: Unreachable | None = None  # a store zoo could not ask


@dataclass(frozen=True)
class Facts:
    cwd: Path
    checkpoint: CheckpointFacts | None = None
    label_maps: Mapping[str, LabelMapFacts] = field(default_factory=dict)  # by value as written
    globs: Mapping[str, int] = field(default_factory=dict)  # matches per pattern as written (local or remote)
    unreachable_globs: Mapping[str, Unreachable] = field(default_factory=dict)  # remote patterns not globbed
    model_dir: ModelDirFacts | None = None


def is_remote(value: str) -> bool:
    """gs://, s3://, hdfs:// ...: TensorFlow reads them; zoo through fsspec, where it can."""
    return bool(_REMOTE.match(value))


def unreachable_finding(path: str, line: int | None, problem: Unreachable) -> Finding:
    """A remote value zoo could not read: a warning, as training may run where it can be read."""
    return Finding("remote-unreachable", Severity.WARNING, path, line, f"not checked: {problem.why}", None,
                   problem.fix)  # fmt: skip


def label_map_fields(doc: Document) -> list[tuple[str, Scalar]]:
    """``label_map_path`` of the train reader and of every eval reader."""
    return [(p, node) for p, node in doc.walk() if _LABEL_MAP_PATH.fullmatch(p)]


def input_path_fields(doc: Document) -> list[tuple[str, Scalar]]:
    """Every ``tf_record_input_reader.input_path`` of the train and eval readers."""
    return [(p, node) for p, node in doc.walk() if _INPUT_PATH.fullmatch(p)]


def string_value(node: Scalar) -> str | None:
    """The path a string field names, or None when it is a placeholder or not
    a quoted string (other rules report those)."""
    if node.kind != "string" or holds_placeholder(node):
        return None
    try:
        return node.as_str()
    except ConfigError:
        return None


def effective_type(written: str, legacy: Scalar | None) -> str:
    """The type both trainers use (config_util.update_fine_tune_checkpoint_type): the
    written one, else "detection" when from_detection_checkpoint is true, else "classification"."""
    return written or ("detection" if legacy is not None and as_bool(legacy) else "classification")


def holds_placeholder(node: Scalar) -> bool:
    return PLACEHOLDER in node.text  # on the literal text, as find_placeholders tests it


# -- small helpers ---------------------------------------------------------------------


def scalars(doc: Document, path: str) -> list[Scalar]:
    return [node for node in doc.nodes(path) if isinstance(node, Scalar)]


def first_scalar(doc: Document, path: str) -> Scalar | None:
    found = scalars(doc, path)
    return found[0] if found else None


def line_of(doc: Document, path: str) -> int | None:
    nodes = doc.nodes(path)
    return nodes[0].line if nodes else None


def last_name(path: str) -> str:
    return re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])


def as_bool(node: Scalar) -> bool:
    try:
        return node.as_bool()
    except ConfigError:
        return False


def literal(node: Scalar) -> str:
    """A string's value, or its text where it is a bare word or a broken escape."""
    try:
        return node.as_str() if node.kind == "string" else node.text
    except ConfigError:
        return node.text


def path_hints(value: str, cwd: Path) -> list[str]:
    if is_remote(value):
        return []  # a URL means the same wherever training starts
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
