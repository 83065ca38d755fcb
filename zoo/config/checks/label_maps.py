"""``label_map_path`` of every reader: the file, its ids, ``num_classes``."""

from __future__ import annotations

import re
from pathlib import Path

from zoo.config.checks.common import (
    LABEL_MAP_NOT_FOUND,
    Facts,
    Finding,
    LabelMapFacts,
    Severity,
    first_scalar,
    label_map_fields,
    path_hints,
    string_value,
)
from zoo.config.labelmap import LabelMap
from zoo.config.textproto import Document, Scalar


def label_map_rules(doc: Document, facts: Facts, arch: str | None) -> list[Finding]:
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
            hints = path_hints(value, facts.cwd)  # type: ignore[arg-type]
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
    node = first_scalar(doc, path)
    findings = []
    for source in {lm.source: (p, n, lm) for p, n, lm in loaded}.values():
        label_path, label_node, label_map = source
        if node is not None and node.kind == "number" and node.as_int() != label_map.num_classes:
            ours = node.as_int()
            # Observed: ids above num_classes one-hot encode as all-zero rows (their boxes silently
            # train as background); spare outputs are never positive and training runs normally.
            too_few = ours < label_map.num_classes
            effect = (f"ids above {ours} are encoded as no class: their boxes silently train as background"
                      if too_few else f"{ours - label_map.num_classes} output(s) are trained for classes no "
                      "example has (training runs normally; those outputs are never positive)")  # fmt: skip
            findings.append(Finding("num-classes-mismatch", Severity.ERROR if too_few else Severity.WARNING,
                                    path, node.line,
                                    f"num_classes is {ours} but the highest id in {label_map.source} "
                                    f"({label_path}) is {label_map.num_classes}: {effect}", None,
                                    f"num_classes: {label_map.num_classes}"))  # fmt: skip
        if label_map.missing_ids:
            findings.append(Finding("label-map-gaps", Severity.WARNING, label_path, label_node.line,
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
