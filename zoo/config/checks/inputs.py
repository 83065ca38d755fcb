"""``tf_record_input_reader.input_path`` of every reader: what its patterns match."""

from __future__ import annotations

from zoo.config.checks.common import (
    NO_INPUT_FILES,
    NO_INPUT_PATH,
    TRAIN_READER,
    Facts,
    Finding,
    Severity,
    input_path_fields,
    path_hints,
    string_value,
    unreachable_finding,
)
from zoo.config.textproto import Document, Message, Scalar


def input_rules(doc: Document, facts: Facts) -> list[Finding]:
    by_reader: dict[str, list[tuple[str, Scalar]]] = {}
    for path, node in input_path_fields(doc):
        by_reader.setdefault(path.split(".", 1)[0], []).append((path, node))
    findings = [f for reader in _readers(doc) if reader not in by_reader for f in _reader_without_input(doc, reader)]
    for reader, fields in by_reader.items():
        findings += _reader_inputs(reader, fields, facts)
    return findings + _eval_on_train(by_reader)


def _readers(doc: Document) -> list[str]:
    """The train reader and each eval reader, named as input_path_fields' paths begin."""
    evals = doc.nodes("eval_input_reader")
    return [TRAIN_READER, *(f"eval_input_reader[{i}]" if len(evals) > 1 else "eval_input_reader"
                            for i in range(len(evals)))]  # fmt: skip


def _reader_without_input(doc: Document, reader: str) -> list[Finding]:
    """A reader naming no input file: training fails at start; an eval reader fails
    only the evaluation job (a separate model_main_tf2.py run), so it is a warning."""
    node = doc.nodes(reader)
    if not node or not isinstance(node[0], Message) or doc.nodes(f"{reader}.external_input_reader"):
        return []
    evaluation = reader != TRAIN_READER
    return [Finding("input-missing", Severity.WARNING if evaluation else Severity.ERROR,
                    f"{reader}.tf_record_input_reader.input_path", node[0].line,
                    f"the {'eval' if evaluation else 'train'} reader names no input file"
                    + (" (read by the evaluation job; training runs)" if evaluation else ""), NO_INPUT_PATH,
                    'tf_record_input_reader { input_path: "..." } '
                    f"(`zoo config --{'eval' if evaluation else 'train'}-records`)")]  # fmt: skip


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
    unreachable = [unreachable_finding(p, n.line, facts.unreachable_globs[v])
                   for p, n, v in values if v in facts.unreachable_globs]  # fmt: skip
    if any(v is None or v not in facts.globs for _, _, v in values):
        return unreachable  # placeholders (reported) or patterns not globbed: nothing to conclude
    globbed = [(p, n, v) for p, n, v in values if v is not None]
    empty = [(p, n, v) for p, n, v in globbed if facts.globs[v] == 0]
    if not empty:
        return []
    path, node, _ = empty[0]
    hints = sorted({h for _, _, v in empty for h in path_hints(v, facts.cwd)})
    shown = ", ".join(repr(v) for _, _, v in empty[:3]) + (f" and {len(empty) - 3} more" if len(empty) > 3 else "")
    where = f" ({'; '.join(hints)})" if hints else ""
    verb = "matches" if len(empty) == 1 else "match"
    if len(empty) < len(globbed):
        return [Finding("input-partial", Severity.WARNING, path, node.line,
                        f"{shown} {verb} no file{where}; the reader's other patterns do, so these are skipped "
                        "silently", None, "fix or remove the patterns that match nothing")]  # fmt: skip
    severity = Severity.WARNING if reader.startswith("eval") else Severity.ERROR
    job = " (read by the evaluation job)" if reader.startswith("eval") else ""
    return [Finding("input-no-match", severity, path, node.line, f"{shown} {verb} no file{where}{job}",
                    NO_INPUT_FILES.format(_short_list([v for _, _, v in globbed])),
                    "write the path or glob of your TFRecord files")]  # fmt: skip


def _short_list(values: list[str]) -> str:
    """A Python list as the trainer prints it, cut after three items."""
    if len(values) <= 3:
        return repr(values)
    return repr(values[:3])[:-1] + f", ... ({len(values)} patterns)]"
