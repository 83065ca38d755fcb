"""`zoo config`: a zoo model's sample config (or the user's), made ready to train.

A TF2 model's config is written for model_main_tf2.py (``fine_tune_checkpoint_version:
V2``); a TF1 model's for TF1's model_main.py, whose name-based checkpoints the TF2
trainer cannot restore: no version field, and the type written the way the
config already spells it (``from_detection_checkpoint`` in older configs).

``configure`` fetches the model (a cache hit opens no connection), takes its
sample config or ``--from``, writes the fine-tune fields and whatever the user
asked for through zoo.config.textproto (so every other byte stays as it was),
then runs zoo.config.checks on the result exactly as the trainer would see it.
A checkpoint named by path (``is_checkpoint_path``, as `zoo inspect` decides)
is read where it is instead: another project's checkpoint or training
model_dir, its template the pipeline.config beside it, its type from its
structure (``_type_from_structure``).
Refusing to write is the caller's business (``Configured.blocking`` says what
would stop training); ``Configured.write`` writes it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from zoo.checkpoint import Checkpoint, is_checkpoint_path, read_checkpoint
from zoo.config.checks import FINE_TUNE_CHECKPOINT, Finding, Severity, is_remote
from zoo.config.checks.common import (
    CHECKPOINT_TYPE,
    CHECKPOINT_VERSION,
    FROM_DETECTION,
    TF1_DETECTION_SCOPES,
)
from zoo.config.facts import check_and_plan
from zoo.config.labelmap import LabelMap, read_label_map
from zoo.config.restore_rules import guess_architecture
from zoo.config.textproto import (
    Document,
    Found,
    Identifier,
    find_placeholders,
    num_classes_path,
    parse,
    read_text,
)
from zoo.errors import UsageError
from zoo.fetch import FetchResult, fetch
from zoo.fsutil import write_output
from zoo.registry import Model, load_registry
from zoo.settings import Settings
from zoo.stage import stage

# The checkpoint type each family's checkpoints are made for (tfod_reference.md (b)).
TYPE_FOR_FAMILY = {"tf2-detection": "detection", "tf2-classification": "classification", "tf1-detection": "detection"}
# Placeholders are the user's to fill: listed with their lines, they do not block writing.
NOT_BLOCKING = frozenset({"placeholder"})


@dataclass(frozen=True)
class Request:
    """What ``zoo config`` was asked for; None and () leave the template's value."""

    name: str
    template: Path | None = None
    checkpoint_type: str | None = None
    label_map: Path | None = None
    num_classes: int | None = None
    train_records: Sequence[str] = ()
    eval_records: Sequence[str] = ()
    batch_size: int | None = None
    num_steps: int | None = None
    model_dir: Path | None = None  # where training will write: checked, never written into the config
    checkpoint_root: str | None = None  # stage the model here (zoo.stage) and train from the staged copy


@dataclass(frozen=True)
class Edits:
    """The field values to write, resolved: absolute paths, a checkpoint type."""

    fine_tune_checkpoint: str
    checkpoint_type: str
    trainer: str = "tf2"  # the trainer the checkpoint is for (Model.trainer)
    label_map_path: str | None = None
    label_map: LabelMap | None = None  # as read from label_map_path, for the check to reuse
    num_classes: int | None = None
    train_records: tuple[str, ...] = ()
    eval_records: tuple[str, ...] = ()
    batch_size: int | None = None
    num_steps: int | None = None


@dataclass(frozen=True)
class Configured:
    model: Model | None  # None: a checkpoint named by path (another project's, a model_dir)
    fetched: FetchResult | None
    template: Path
    template_text: str
    document: Document
    findings: list[Finding] = field(default_factory=list)
    checkpoint: Path | str | None = None  # the prefix written as fine_tune_checkpoint (a URL when staged)
    plan: str | None = None  # what training in --model-dir will do (zoo check --model-dir's line)
    structure: str | None = None  # a path's checkpoint: what its layout says it is

    @property
    def name(self) -> str:
        """The zoo model's name, or the checkpoint's prefix."""
        return self.model.name if self.model is not None else str(self.checkpoint)

    @property
    def text(self) -> str:
        return self.document.text

    @property
    def placeholders(self) -> list[Found]:
        return find_placeholders(self.document)

    @property
    def blocking(self) -> list[Finding]:
        """Errors that would stop or spoil training, placeholders aside."""
        return [f for f in self.findings if f.severity is Severity.ERROR and f.id not in NOT_BLOCKING]

    def write(self, path: Path | str, force: bool = False) -> None:
        """Write the config to ``path``: ``-`` is stdout, a device is written
        through, a file is replaced in one rename (a read-only one only with ``force``)."""
        write_output(path, self.text.encode("utf-8"), force)

    def diff(self, target: str) -> str:
        lines = difflib.unified_diff(
            self.template_text.splitlines(keepends=True), self.text.splitlines(keepends=True),
            fromfile=str(self.template), tofile=target,
        )  # fmt: skip
        return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def configure(request: Request, settings: Settings, *, cwd: Path | None = None, progress: bool = False) -> Configured:
    """Fetch the model (or read the checkpoint ``request.name`` names by path),
    patch its config as requested, and check the result."""
    cwd = cwd or Path.cwd()
    if is_checkpoint_path(request.name):
        if request.checkpoint_root is not None:
            raise UsageError(f"--checkpoint-root stages a zoo model; {request.name} is a checkpoint path "
                             "(copy it to the store yourself and pass that config with --from)")  # fmt: skip
        return _configure_path(request, settings, cwd)
    registry = load_registry(settings.registry_files)
    model = registry.resolve(request.name)
    fetched = fetch(model.name, settings=settings, registry=registry, progress=progress)
    template = _template(request, fetched)
    text = read_text(template)
    document = parse(text, str(template))
    checkpoint = _staged(request, model, settings, progress) or fetched.checkpoint
    edits = resolve_edits(request, model, checkpoint, cwd)
    apply_edits(document, edits)
    findings, plan = _check(document, edits, request, settings, cwd)
    return Configured(model, fetched, template, text, document, findings, checkpoint, plan)


def _staged(request: Request, model: Model, settings: Settings, progress: bool) -> str | None:
    """The remote checkpoint prefix once the model is staged at --checkpoint-root (None without it)."""
    if request.checkpoint_root is None:
        return None
    return stage(model.name, request.checkpoint_root, settings=settings, progress=progress).checkpoint


def _check(document: Document, edits: Edits, request: Request, settings: Settings, cwd: Path) -> tuple[list[Finding], str | None]:
    read = {edits.label_map_path: edits.label_map} if edits.label_map_path and edits.label_map else {}
    return check_and_plan(document, cwd, model_dir=request.model_dir, cache_root=settings.cache_dir,
                          label_maps=read, trainer=edits.trainer)  # fmt: skip


def _configure_path(request: Request, settings: Settings, cwd: Path) -> Configured:
    """Another project's checkpoint: a prefix, its .index, a directory or a
    training model_dir (its ``checkpoint`` state file names the newest ckpt-N).
    The template is the pipeline.config beside it (or --from); the type follows
    the checkpoint's structure; the check compares with that project's config."""
    checkpoint = read_checkpoint(_absolute(request.name, cwd))
    trainer = "tf2" if checkpoint.is_object_based else "tf1"
    structure = _structure(checkpoint)
    template = request.template or _template_beside(checkpoint.prefix, structure)
    text = read_text(template)
    document = parse(text, str(template))
    checkpoint_type = request.checkpoint_type or _type_from_structure(checkpoint, str(request.name))
    edits = _edits(request, str(checkpoint.prefix), checkpoint_type, trainer, cwd)
    apply_edits(document, edits)
    findings, plan = _check(document, edits, request, settings, cwd)
    return Configured(None, None, template, text, document, findings, checkpoint.prefix, plan, structure)


def _structure(checkpoint: Checkpoint) -> str:
    """What the checkpoint's layout says it holds (restore_rules' reading of it)."""
    if not checkpoint.is_object_based:
        found = any(checkpoint.has_name_prefix(scope) for scope in TF1_DETECTION_SCOPES)
        return "a TF1 name-based " + ("detection checkpoint" if found else "checkpoint (no detection scopes)")
    roots = checkpoint.root_objects()
    if "model" in roots:
        arch = guess_architecture(checkpoint.model_children())
        training = " saved by training (step, optimizer)" if "step" in roots else ""
        return f"a detection model's checkpoint ({arch or 'meta-architecture unknown'}){training}"
    if "feature_extractor" in roots:
        return "a backbone's checkpoint (root feature_extractor)"
    return f"a checkpoint with root objects {', '.join(roots) or 'none'}"


def _type_from_structure(checkpoint: Checkpoint, given: str) -> str:
    """``detection`` for a detection model's checkpoint (``full`` only on request:
    it also restores the heads, so num_classes must match), ``classification``
    for a backbone saved under ``feature_extractor``."""
    if not checkpoint.is_object_based:
        detection = any(checkpoint.has_name_prefix(scope) for scope in TF1_DETECTION_SCOPES)
        return "detection" if detection else "classification"
    roots = checkpoint.root_objects()
    if "model" in roots:
        return "detection"
    if "feature_extractor" in roots:
        return "classification"
    raise UsageError(f"{given}: {checkpoint.prefix} holds neither a model nor a feature_extractor "
                     f"(root objects: {', '.join(roots) or 'none'}): no fine_tune_checkpoint_type restores it; "
                     "pass --checkpoint-type to try one")  # fmt: skip


def _template_beside(prefix: Path, structure: str) -> Path:
    """The project's pipeline.config: beside the checkpoint, or one level up
    from a ``checkpoint/`` directory (a zoo model's or an exported model's layout)."""
    candidates = [prefix.parent / "pipeline.config"]
    if prefix.parent.name == "checkpoint":
        candidates.append(prefix.parent.parent / "pipeline.config")
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"{prefix}: no pipeline.config beside it ({' or '.join(map(str, candidates))}); "
                     f"it is {structure}: pass the config it was trained with, or yours, with --from CONFIG")  # fmt: skip


def _template(request: Request, fetched: FetchResult) -> Path:
    if request.template is not None:
        return request.template
    if fetched.config is None:
        raise UsageError(f"{fetched.name} comes with no sample config; pass your own with --from CONFIG")
    return fetched.config


def resolve_edits(request: Request, model: Model, checkpoint: Path | str, cwd: Path) -> Edits:
    """Turn the request into values: absolute paths (the trainer resolves
    relative ones against wherever it is started) and num_classes from the label map."""
    checkpoint_type = request.checkpoint_type or TYPE_FOR_FAMILY.get(model.family, "detection")
    return _edits(request, str(checkpoint), checkpoint_type, model.trainer, cwd)


def _edits(request: Request, checkpoint: str, checkpoint_type: str, trainer: str, cwd: Path) -> Edits:
    label_map_path, label_map, num_classes = None, None, request.num_classes
    if request.label_map is not None:
        label_map_path = _absolute(str(request.label_map), cwd)
        label_map = read_label_map(label_map_path)
        highest = label_map.num_classes
        if num_classes is not None and num_classes != highest:
            raise UsageError(f"--num-classes {num_classes} contradicts --label-map {request.label_map}, "
                             f"whose highest id is {highest}")  # fmt: skip
        num_classes = highest
    return Edits(
        fine_tune_checkpoint=checkpoint,
        checkpoint_type=checkpoint_type,
        trainer=trainer,
        label_map_path=label_map_path,
        label_map=label_map,
        num_classes=num_classes,
        train_records=tuple(_absolute(p, cwd) for p in request.train_records),
        eval_records=tuple(_absolute(p, cwd) for p in request.eval_records),
        batch_size=request.batch_size,
        num_steps=request.num_steps,
    )


def _absolute(value: str, cwd: Path) -> str:
    return value if is_remote(value) or os.path.isabs(value) else os.path.abspath(os.path.join(cwd, value))


def apply_edits(doc: Document, edits: Edits) -> None:
    """Write ``edits`` into ``doc``; fields not named keep their bytes."""
    doc.set(FINE_TUNE_CHECKPOINT, edits.fine_tune_checkpoint)
    if edits.trainer == "tf1":
        _set_tf1_type(doc, edits.checkpoint_type)
    else:
        doc.set(CHECKPOINT_TYPE, edits.checkpoint_type)
        doc.set(CHECKPOINT_VERSION, Identifier("V2"))
    if edits.num_classes is not None:
        doc.set(num_classes_path(doc), edits.num_classes)
    if edits.batch_size is not None:
        doc.set("train_config.batch_size", edits.batch_size)
    if edits.num_steps is not None:
        doc.set("train_config.num_steps", edits.num_steps)
    if edits.label_map_path is not None:
        for reader in _readers(doc):
            doc.set(f"{reader}.label_map_path", edits.label_map_path)
    if edits.train_records:
        doc.set_all("train_input_reader.tf_record_input_reader.input_path", edits.train_records)
    if edits.eval_records:
        doc.set_all(f"{_eval_reader(doc)}.tf_record_input_reader.input_path", edits.eval_records)


def _set_tf1_type(doc: Document, checkpoint_type: str) -> None:
    """TF1 reads the type, or from_detection_checkpoint when the type is empty:
    an older config keeps its own field; the version field means nothing to TF1."""
    if FROM_DETECTION in doc and CHECKPOINT_TYPE not in doc and checkpoint_type in ("detection", "classification"):
        doc.set(FROM_DETECTION, checkpoint_type == "detection")
    else:
        doc.set(CHECKPOINT_TYPE, checkpoint_type)
    doc.delete(CHECKPOINT_VERSION)


def _readers(doc: Document) -> list[str]:
    """The train reader and every eval reader, as paths ``Document.set`` takes."""
    evals = len(doc.nodes("eval_input_reader"))
    return ["train_input_reader", *(f"eval_input_reader[{i}]" for i in range(evals))]


def _eval_reader(doc: Document) -> str:
    # --eval-records feeds the first eval reader; one is created when there is none.
    return "eval_input_reader[0]" if doc.nodes("eval_input_reader") else "eval_input_reader"
