"""File structure and placeholders: what protobuf's parser rejects before
the trainer runs at all, and every PATH_TO_BE_CONFIGURED left."""

from __future__ import annotations

import re

from zoo.config.checks.common import (
    CHECKPOINT_TYPE,
    CHECKPOINT_VERSION,
    FINE_TUNE_CHECKPOINT,
    LABEL_MAP_NOT_FOUND,
    NO_INPUT_FILES,
    NOT_FOUND,
    PARSE,
    Finding,
    Severity,
    holds_placeholder,
    last_name,
    literal,
    scalars,
)
from zoo.config.textproto import Document, Scalar, find_placeholders

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


def structure_rules(doc: Document) -> list[Finding]:
    """What protobuf's parser rejects before the trainer runs at all."""
    findings: list[Finding] = []
    for path, node in doc.walk():
        name, parent = last_name(path), path.rpartition(".")[0]
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
        for node in scalars(doc, path):
            if node.kind != "string" and not holds_placeholder(node):
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
                   _expected_string(path, node), f'{last_name(path)}: "{node.text}"')  # fmt: skip


def _expected_string(path: str, node: Scalar) -> str:
    """protobuf's words for a bare word where a string field needs quotes."""
    error = f"'{last_name(path)}: {node.text}': Expected string but found: '{node.text}'"
    return PARSE.format(node.line, node.column, error)


def placeholder_rules(doc: Document) -> list[Finding]:
    """Every PATH_TO_BE_CONFIGURED left; eval readers only stop the eval job."""
    findings = []
    for found in find_placeholders(doc):
        node, path = found.node, found.path
        value = literal(node)
        error = _expected_string(path, node) if node.kind == "identifier" else _missing_file_error(path, value)
        eval_only = path.startswith("eval_input_reader")
        findings.append(Finding(
            "placeholder", Severity.WARNING if eval_only else Severity.ERROR, path, node.line,
            f"still the placeholder {value!r}" + (" (read by the evaluation job)" if eval_only else ""),
            error, _placeholder_fix(path)))  # fmt: skip
    return findings


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
