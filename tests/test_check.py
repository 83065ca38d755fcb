"""`zoo check` rules against real files: real TF checkpoints in the zoo's key
layouts, real sample configs as their pipeline.config, real label maps and
record files. Each rule has a failing case; `test_a_ready_config_passes` is
the passing case of all of them, and near misses are tested beside the rules.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SAMPLE_CONFIGS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zoo_checkpoints import (
    classification_checkpoint,
    tf1_checkpoint,
    training_checkpoint,
    zoo_model_dir,
)

from zoo.config.checks import FINE_TUNE_CHECKPOINT, Finding, Severity, check
from zoo.config.facts import gather
from zoo.config.textproto import Document, Identifier, num_classes_path, parse, parse_file
from zoo.errors import ConfigError

SSD_R50 = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config"
SSD_R50_1024 = "ssd_resnet50_v1_fpn_1024x1024_coco17_tpu-8.config"
SSD_MOBILENET = "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.config"
FRCNN_R50 = "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
FRCNN_R101 = "faster_rcnn_resnet101_v1_640x640_coco17_tpu-8.config"
CENTERNET = "centernet_resnet50_v2_512x512_coco17_tpu-8.config"
LABEL_MAP = "item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\nitem { id: 3 name: 'bird' }\n"
TYPE = "train_config.fine_tune_checkpoint_type"
VERSION = "train_config.fine_tune_checkpoint_version"
TRAIN_INPUT = "train_input_reader.tf_record_input_reader.input_path"
EVAL_INPUT = "eval_input_reader.tf_record_input_reader.input_path"


@dataclass(frozen=True)
class World:
    """Files a ready config points at; every path absolute."""

    root: Path
    ssd: Path  # zoo layout, pipeline.config = the SSD ResNet50 640 sample
    ssd_bare: Path  # zoo layout without pipeline.config
    frcnn: Path  # zoo layout, pipeline.config = the Faster R-CNN ResNet50 sample
    centernet: Path  # zoo layout, pipeline.config = the CenterNet ResNet50 v2 sample
    classification: Path  # root `feature_extractor`
    tf1: Path  # model.ckpt
    label_map: Path
    records: Path


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    records = root / "records"
    records.mkdir()
    for name in ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val.tfrecord"):
        (records / name).write_bytes(b"\0" * 16)
    (root / "label_map.pbtxt").write_text(LABEL_MAP)
    return World(
        root=root,
        ssd=zoo_model_dir(root / "ssd_resnet50", "ssd", (SAMPLE_CONFIGS / SSD_R50).read_text()),
        ssd_bare=zoo_model_dir(root / "ssd_bare", "ssd"),
        frcnn=zoo_model_dir(root / "frcnn_resnet50", "faster_rcnn", (SAMPLE_CONFIGS / FRCNN_R50).read_text()),
        centernet=zoo_model_dir(root / "centernet", "center_net", (SAMPLE_CONFIGS / CENTERNET).read_text()),
        classification=classification_checkpoint(root / "classification"),
        tf1=tf1_checkpoint(root / "tf1"),
        label_map=root / "label_map.pbtxt",
        records=records,
    )


def ready(world: World, template: str = SSD_R50, checkpoint: Path | None = None) -> Document:
    """A sample config with every field filled for ``world``: what `zoo config` writes."""
    doc = parse_file(SAMPLE_CONFIGS / template)
    doc.set(FINE_TUNE_CHECKPOINT, str(checkpoint or world.ssd))
    doc.set(TYPE, "detection")
    doc.set(VERSION, Identifier("V2"))
    doc.set(num_classes_path(doc), 3)
    doc.set("train_config.batch_size", 8)
    for reader in ("train_input_reader", "eval_input_reader"):
        doc.set(f"{reader}.label_map_path", str(world.label_map))
    doc.set_all(TRAIN_INPUT, [str(world.records / "train-?????-of-00002.tfrecord")])
    doc.set_all(EVAL_INPUT, [str(world.records / "val.tfrecord")])
    return doc


def edit(doc: Document, values: Mapping[str, object] = {}, deletes: Iterable[str] = ()) -> Document:
    for path, value in values.items():
        if isinstance(value, list):
            doc.set_all(path, value)
        else:
            doc.set(path, value)  # type: ignore[arg-type]
    for path in deletes:
        doc.delete(path)
    return doc


def run(doc: Document, world: World, cwd: Path | None = None, trainer: str | None = None,
        **kwargs: object) -> list[Finding]:
    return check(doc, gather(doc, cwd or world.root, **kwargs), trainer)  # type: ignore[arg-type]


def only(findings: Sequence[Finding], finding_id: str) -> Finding:
    found = [f for f in findings if f.id == finding_id]
    assert len(found) == 1, (finding_id, [(f.id, f.message) for f in findings])
    return found[0]


def ids(findings: Sequence[Finding], severity: Severity | None = None) -> set[str]:
    return {f.id for f in findings if severity is None or f.severity is severity}


# -- the passing case of every rule -----------------------------------------------------


def test_a_ready_config_passes(world: World):
    findings = run(ready(world), world)
    assert ids(findings) <= {"arch-accepted", "bfloat16-tpu"}, [f.render("cfg") for f in findings]
    accepted = only(findings, "arch-accepted")
    assert "num_classes: 3 here, 90 in the checkpoint's config" in accepted.message


# -- fine_tune_checkpoint ---------------------------------------------------------------


def test_an_empty_checkpoint_means_training_from_scratch(world: World):
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: ""}), world), "checkpoint-missing")
    assert finding.severity is Severity.WARNING and "random weights" in finding.message
    absent = run(edit(ready(world), deletes=[FINE_TUNE_CHECKPOINT]), world)
    assert only(absent, "checkpoint-missing").line is None


def test_placeholders_are_errors_for_training_and_warnings_for_evaluation(world: World):
    doc = edit(ready(world), {FINE_TUNE_CHECKPOINT: "PATH_TO_BE_CONFIGURED/ckpt-0", EVAL_INPUT: ["PATH_TO_BE_CONFIGURED"]})
    findings = [f for f in run(doc, world) if f.id == "placeholder"]
    train, evaluation = findings
    assert train.severity is Severity.ERROR and train.line == doc.nodes(FINE_TUNE_CHECKPOINT)[0].line
    assert train.trainer_error == (
        "NotFoundError: Unsuccessful TensorSliceReader constructor: Failed to find any matching files for "
        "PATH_TO_BE_CONFIGURED/ckpt-0"
    )
    assert evaluation.severity is Severity.WARNING and evaluation.path == EVAL_INPUT


def test_an_unquoted_placeholder_is_a_parse_error_for_tensorflow(world: World):
    doc = parse_file(SAMPLE_CONFIGS / "centernet_hg104_512x512_coco17_tpu-8.config")
    finding = next(f for f in run(doc, world) if f.path == FINE_TUNE_CHECKPOINT)
    assert finding.id == "placeholder" and finding.line == 116
    assert finding.trainer_error == (
        "ParseError: 116:25 : 'fine_tune_checkpoint: PATH_TO_BE_CONFIGURED': "
        "Expected string but found: 'PATH_TO_BE_CONFIGURED'"
    )


@pytest.mark.parametrize(
    ("value", "model"),
    [("./ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8/checkpoint", "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"),
     ("efficientdet_d0_coco17_tpu-32/checkpoint0/ckpt-0", "efficientdet_d0_coco17_tpu-32")],
)  # fmt: skip
def test_a_missing_path_naming_a_zoo_model_gets_the_command_that_fetches_it(world: World, value: str, model: str):
    doc = edit(parse((SAMPLE_CONFIGS / SSD_R50).read_text(), "runs/pipeline.config"), {FINE_TUNE_CHECKPOINT: value})
    finding = only(run(doc, world), "checkpoint-not-found")
    assert f"zoo config {model} --from runs/pipeline.config -o runs/pipeline.config" in finding.fix  # type: ignore[operator]
    says_prefix = ".../checkpoint/ckpt-N" in finding.message
    assert says_prefix is value.endswith("/checkpoint")


def test_a_missing_directory_path_says_what_a_prefix_looks_like(world: World):
    for value in ("/content/pretrained/checkpoint", "/content/pretrained/"):
        finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: value}), world), "checkpoint-not-found")
        assert "it has the form .../checkpoint/ckpt-N" in finding.message
        assert finding.fix == "write the prefix of an existing checkpoint (the path without .index)"


def test_a_missing_checkpoint_names_where_and_why(world: World):
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: "C:\\models\\ckpt-0"}), world), "checkpoint-not-found")
    assert finding.severity is Severity.ERROR
    assert "Windows drive path" in finding.message
    assert finding.trainer_error.endswith("Failed to find any matching files for C:\\models\\ckpt-0")  # type: ignore[union-attr]
    backslashes = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: "models\\ckpt-0"}), world), "checkpoint-not-found")
    assert "backslashes" in backslashes.message and "relative to the working directory" in backslashes.message


def test_a_stale_checkpoint_number_gets_the_prefix_that_is_there(world: World):
    stale = world.ssd.with_name("ckpt-31")
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(stale)}), world), "checkpoint-not-found")
    assert "ckpt-0" in finding.message
    assert finding.fix == f'fine_tune_checkpoint: "{world.ssd}"'


@pytest.mark.parametrize(
    ("suffix", "error"),
    [
        ("", "Is a directory"),
        (".index", "Checkpoint is expected to be an object-based checkpoint."),
        (".data-00000-of-00001", "not an sstable (bad magic number)"),
    ],
)
def test_a_directory_index_or_data_file_gets_the_exact_prefix(world: World, suffix: str, error: str):
    given = world.ssd.parent if not suffix else world.ssd.with_name(world.ssd.name + suffix)
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(given)}), world), "checkpoint-not-prefix")
    assert finding.severity is Severity.ERROR and error in finding.trainer_error  # type: ignore[operator]
    assert finding.fix == f'fine_tune_checkpoint: "{world.ssd}"'


def test_a_relative_path_is_resolved_against_the_working_directory(world: World):
    relative = world.ssd.relative_to(world.root)
    findings = run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(relative.parent)}), world)
    assert only(findings, "checkpoint-not-prefix").fix == f'fine_tune_checkpoint: "{relative}"'  # stays relative
    warning = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(relative)}), world), "relative-path")
    assert str(world.root) in warning.message and warning.severity is Severity.WARNING
    elsewhere = run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(relative)}), world, cwd=world.records)
    assert "checkpoint-not-found" in ids(elsewhere)


def test_a_tf1_checkpoint_is_not_object_based(world: World):
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(world.tf1)}), world), "checkpoint-tf1")
    assert finding.trainer_error == "OSError: Checkpoint is expected to be an object-based checkpoint."


def test_a_corrupt_index_is_reported(world: World, tmp_path: Path):
    broken = tmp_path / "ckpt-0"
    shutil.copy(world.ssd.with_name("ckpt-0.data-00000-of-00001"), tmp_path)
    broken.with_name("ckpt-0.index").write_bytes(b"garbage" * 10)
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(broken)}), world), "checkpoint-unreadable")
    assert str(broken) in finding.message and finding.trainer_error == "OpError: not an sstable (bad magic number)"


def test_missing_or_truncated_shards_are_reported(world: World, tmp_path: Path):
    copy = tmp_path / "checkpoint"
    shutil.copytree(world.ssd.parent, copy)
    shard = copy / "ckpt-0.data-00000-of-00001"
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    truncated = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(copy / "ckpt-0")}), world), "checkpoint-incomplete")
    assert "truncated" in truncated.message and truncated.trainer_error == "IndexError: Read less bytes than requested"
    shard.unlink()
    missing = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(copy / "ckpt-0")}), world), "checkpoint-incomplete")
    assert missing.trainer_error == f"OpError: {shard}; No such file or directory"


def test_a_checkpoint_url_zoo_does_not_read_is_noted_not_checked(world: World):
    findings = run(edit(ready(world), {FINE_TUNE_CHECKPOINT: "https://example.invalid/model/checkpoint/ckpt-0"}), world)
    assert only(findings, "checkpoint-remote").severity is Severity.NOTE
    assert not ids(findings, Severity.ERROR)


# -- version, type, legacy fields ------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "finding_id", "severity"),
    [
        (None, "version-missing", Severity.ERROR),
        (Identifier("V1"), "version-v1", Severity.ERROR),
        ("V2", "version-invalid", Severity.ERROR),  # quoted: protobuf refuses an enum string
        (Identifier("V3"), "version-invalid", Severity.ERROR),
        (Identifier("UNKNOWN"), "version-unknown", Severity.WARNING),
    ],
)
def test_checkpoint_version(world: World, value: object, finding_id: str, severity: Severity):
    doc = edit(ready(world), {VERSION: value} if value is not None else {}, deletes=[VERSION] if value is None else [])
    finding = only(run(doc, world), finding_id)
    assert finding.severity is severity and finding.fix == "fine_tune_checkpoint_version: V2"
    if finding_id in ("version-missing", "version-v1"):
        assert finding.trainer_error == "ValueError: Checkpoint version should be V2"


def test_a_missing_type_means_classification_which_a_detection_checkpoint_fails(world: World):
    finding = only(run(edit(ready(world), deletes=[TYPE]), world), "type-missing")
    assert finding.severity is Severity.ERROR and "assumes 'classification'" in finding.message
    assert finding.fix == 'fine_tune_checkpoint_type: "detection"'
    # from_detection_checkpoint: true makes the empty type 'detection': only a warning and a note remain
    legacy = run(edit(ready(world), {"train_config.from_detection_checkpoint": True}, deletes=[TYPE]), world)
    assert only(legacy, "type-missing").severity is Severity.WARNING
    assert only(legacy, "from-detection-checkpoint").severity is Severity.NOTE


def test_classification_with_a_detection_checkpoint(world: World):
    finding = only(run(edit(ready(world), {TYPE: "classification"}), world), "type-mismatch")
    assert "root object 'feature_extractor'" in finding.message and "model" in finding.message
    assert finding.trainer_error.startswith("AssertionError: Found N Python objects that were not bound")  # type: ignore[union-attr]
    assert finding.fix == 'fine_tune_checkpoint_type: "detection"'


def test_detection_with_a_classification_checkpoint(world: World):
    doc = edit(ready(world), {FINE_TUNE_CHECKPOINT: str(world.classification)})
    finding = only(run(doc, world), "type-mismatch")
    assert finding.trainer_error == (
        "RuntimeError: The checkpoint type 'detection' is not supported when it contains variable names with "
        "'feature_extractor'. Please download the new checkpoint file from model zoo."
    )
    passing = run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(world.classification), TYPE: "classification"}), world)
    assert not ids(passing, Severity.ERROR) and "arch-unchecked" in ids(passing)


def test_a_path_in_the_detection_zoo_layout_with_classification_is_suspect(world: World):
    doc = edit(ready(world), {FINE_TUNE_CHECKPOINT: "/content/pretrained/checkpoint/ckpt-0", TYPE: "classification"})
    assert only(run(doc, world), "type-suspect").severity is Severity.WARNING
    doc = edit(ready(world), {FINE_TUNE_CHECKPOINT: "/content/pretrained/checkpoint/ckpt-0"})
    assert "type-suspect" not in ids(run(doc, world))


def test_fine_tune_and_unknown_types(world: World):
    ssd = only(run(edit(ready(world), {TYPE: "fine_tune"}), world), "type-unknown")
    assert ssd.trainer_error == "ValueError: Not supported fine_tune_checkpoint_type: fine_tune"
    centernet = ready(world, CENTERNET, world.centernet)
    finding = only(run(edit(centernet, {TYPE: "fine_tune"}), world), "type-fine-tune")
    assert finding.trainer_error.startswith('ValueError: "fine_tune" is no longer supported for CenterNet.')  # type: ignore[union-attr]
    assert "older CenterNet versions" in finding.message and finding.fix == 'fine_tune_checkpoint_type: "detection"'
    other = only(run(edit(ready(world, CENTERNET, world.centernet), {TYPE: "whole"}), world), "type-unknown")
    assert other.trainer_error == "ValueError: Unknown fine tune checkpoint type whole"
    assert not ids(run(ready(world, CENTERNET, world.centernet), world), Severity.ERROR)


def test_full_restores_the_whole_faster_rcnn_model(world: World):
    # Since the OD API change of 2021-05-06 (aa3e639), Faster R-CNN restores 'full' like
    # every meta-architecture: the same model passes, another num_classes does not.
    doc = edit(ready(world, FRCNN_R50, world.frcnn), {TYPE: "full", "model.faster_rcnn.num_classes": 90})
    assert not ids(run(doc, world), Severity.ERROR) | ids(run(doc, world), Severity.WARNING) - {"num-classes-mismatch"}
    other = edit(ready(world, FRCNN_R50, world.frcnn), {TYPE: "full"})
    assert only(run(other, world), "arch-setting-mismatch").path == "model.faster_rcnn.num_classes"


def test_load_all_detection_checkpoint_vars_is_fatal_in_tf2(world: World):
    key = "train_config.load_all_detection_checkpoint_vars"
    finding = only(run(edit(ready(world), {key: True}), world), "load-all-vars")
    assert finding.trainer_error == "ValueError: train_pb2.load_all_detection_checkpoint_vars unsupported in TF2"
    assert "load-all-vars" not in ids(run(edit(ready(world), {key: False}), world))


# -- architecture against the checkpoint's own pipeline.config -------------------------------


def test_ssd_resnet50_checkpoint_under_an_ssd_mobilenet_config_is_rejected(world: World):
    finding = only(run(ready(world, SSD_MOBILENET), world), "extractor-mismatch")
    assert "ssd_mobilenet_v2_fpn_keras" in finding.message and "ssd_resnet50_v1_fpn_keras" in finding.message
    assert str(world.ssd.parent.parent / "pipeline.config") in finding.message


def test_the_1024_variant_accepts_the_640_checkpoint_for_detection(world: World):
    findings = run(ready(world, SSD_R50_1024), world)
    assert not ids(findings, Severity.ERROR)
    assert "image_resizer.fixed_shape_resizer.height: 1024 here, 640" in only(findings, "arch-accepted").message


def test_faster_rcnn_resnet50_checkpoint_under_resnet101_is_rejected(world: World):
    finding = only(run(ready(world, FRCNN_R101, world.frcnn), world), "extractor-mismatch")
    assert "faster_rcnn_resnet101_keras" in finding.message and "faster_rcnn_resnet50_keras" in finding.message
    assert not ids(run(ready(world, FRCNN_R50, world.frcnn), world), Severity.ERROR)


def test_full_rejects_another_num_classes_detection_accepts_it(world: World):
    full = only(run(edit(ready(world), {TYPE: "full"}), world), "arch-setting-mismatch")
    assert full.path == "model.ssd.num_classes" and full.fix == "num_classes: 90"
    same = run(edit(ready(world), {TYPE: "full", "model.ssd.num_classes": 90}), world)
    assert not ids(same, Severity.ERROR)  # 90 outputs for a 3-class label map only warn
    assert not ids(run(ready(world), world), Severity.ERROR)  # detection, 3 classes


def test_a_changed_extractor_setting_is_rejected_for_detection(world: World):
    doc = edit(ready(world), {"model.ssd.feature_extractor.fpn.max_level": 6})
    finding = only(run(doc, world), "arch-setting-mismatch")
    assert finding.path == "model.ssd.feature_extractor.fpn.max_level" and finding.fix == "max_level: 7"
    assert finding.line == doc.nodes("model.ssd.feature_extractor.fpn.max_level")[0].line
    unknown = run(edit(ready(world), {"model.ssd.feature_extractor.future_knob": 1}), world)
    assert only(unknown, "arch-setting-unknown").severity is Severity.WARNING


def test_another_meta_architecture_is_rejected_naming_both(world: World):
    finding = only(run(ready(world, FRCNN_R50, world.ssd), world), "arch-mismatch")
    assert "faster_rcnn" in finding.message and "ssd (ssd_resnet50_v1_fpn_keras)" in finding.message


def test_without_a_pipeline_config_the_structure_still_rejects_what_surely_fails(world: World):
    finding = only(run(ready(world, FRCNN_R50, world.ssd_bare), world), "arch-mismatch")
    assert "model/_feature_extractor_for_proposal_features" in finding.message
    assert "_feature_extractor" in finding.message and "(a ssd or center_net checkpoint)" in finding.message
    fine = run(ready(world, SSD_R50, world.ssd_bare), world)
    note = only(fine, "arch-unchecked")
    assert "could not be compared" in note.message and "model/: _box_predictor, _feature_extractor" in note.message
    assert not ids(fine, Severity.ERROR)


def test_the_checkpoint_outranks_a_pipeline_config_that_contradicts_it(world: World, tmp_path: Path):
    prefix = zoo_model_dir(tmp_path / "mislabelled", "faster_rcnn", (SAMPLE_CONFIGS / SSD_R50).read_text())
    finding = only(run(ready(world, SSD_R50, prefix), world), "arch-mismatch")
    assert "(a faster_rcnn checkpoint)" in finding.message


def test_a_cached_zoo_models_archive_config_is_found_through_the_cache(world: World, tmp_path: Path):
    entry = tmp_path / "cache" / "models" / "odd_layout_model"
    prefix = zoo_model_dir(entry / "files" / "odd_layout_model" / "weights", "ssd")  # .../weights/checkpoint/ckpt-0
    (entry / "files" / "odd_layout_model" / "pipeline.config").write_text((SAMPLE_CONFIGS / SSD_R50).read_text())
    doc = ready(world, SSD_MOBILENET, prefix)
    assert "arch-unchecked" in ids(run(doc, world))
    assert "extractor-mismatch" in ids(run(doc, world, cache_root=tmp_path / "cache"))


def test_tf1_feature_extractors_do_not_exist_in_tf2(world: World):
    doc = edit(ready(world), {"model.ssd.feature_extractor.type": "ssd_resnet50_v1_fpn"})
    finding = only(run(doc, world, trainer="tf2"), "extractor-unsupported")
    assert finding.trainer_error == (
        "ValueError: ssd_resnet50_v1_fpn is not supported. See `model_builder.py` for features extractors "
        "compatible with different versions of Tensorflow"
    )
    assert finding.fix.startswith('type: "ssd_resnet50_v1_fpn_keras"')  # type: ignore[union-attr]


# -- file structure -------------------------------------------------------------------------


def test_misplaced_duplicate_and_unquoted_fields(world: World):
    text = ready(world).text.replace("model {\n  ssd {\n", "model {\n  ssd {\n    fine_tune_checkpoint_type: 'detection'\n", 1)
    misplaced = only(run(parse(text), world), "misplaced-field")
    assert misplaced.trainer_error.endswith(  # type: ignore[union-attr]
        'Message type "object_detection.protos.Ssd" has no field named "fine_tune_checkpoint_type".'
    )
    twice = ready(world).text.replace("train_config: {\n", "train_config: {\n  fine_tune_checkpoint: 'x'\n", 1)
    assert "should not have multiple" in only(run(parse(twice), world), "duplicate-field").trainer_error  # type: ignore[operator]
    unquoted = run(edit(ready(world), {TYPE: Identifier("detection")}), world)
    assert "Expected string but found: 'detection'" in only(unquoted, "unquoted-string").trainer_error  # type: ignore[operator]
    assert ids(unquoted, Severity.ERROR) == {"unquoted-string"}  # the type is still read as meant


def test_a_config_without_a_model_block(world: World):
    doc = edit(ready(world), deletes=["model"])
    assert only(run(doc, world), "model-missing").severity is Severity.ERROR


# -- label maps and inputs ----------------------------------------------------------------


def test_label_map_missing_and_invalid(world: World, tmp_path: Path):
    findings = run(edit(ready(world), {"train_input_reader.label_map_path": str(tmp_path / "nope.pbtxt")}), world)
    assert only(findings, "label-map-missing").trainer_error == f"NotFoundError: {tmp_path / 'nope.pbtxt'}; No such file or directory"
    duplicated = tmp_path / "dup.pbtxt"
    duplicated.write_text("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }\n")
    negative = tmp_path / "negative.pbtxt"
    negative.write_text("item { id: -2 name: 'a' }\n")
    for path, expected in ((duplicated, "duplicate id 1"), (negative, "negative")):
        doc = edit(ready(world), {"train_input_reader.label_map_path": str(path)})
        assert expected in only(run(doc, world), "label-map-invalid").message
    assert only(run(edit(ready(world), {"train_input_reader.label_map_path": str(negative)}), world),
                "label-map-invalid").trainer_error == "ValueError: Label map ids should be >= 0."  # fmt: skip


@pytest.mark.parametrize(
    ("num_classes", "says", "severity"),
    [(90, "training runs normally", Severity.WARNING), (2, "silently train as background", Severity.ERROR)],
)
def test_num_classes_must_equal_the_highest_label_map_id(world: World, num_classes: int, says: str, severity: Severity):
    finding = only(run(edit(ready(world), {"model.ssd.num_classes": num_classes}), world), "num-classes-mismatch")
    assert says in finding.message and finding.fix == "num_classes: 3" and finding.severity is severity


def test_label_map_gaps_and_a_different_eval_map(world: World, tmp_path: Path):
    gaps = tmp_path / "gaps.pbtxt"
    gaps.write_text("item { id: 1 name: 'a' }\nitem { id: 2 name: 'b' }\nitem { id: 4 name: 'd' }\n")
    doc = edit(ready(world), {"train_input_reader.label_map_path": str(gaps), "model.ssd.num_classes": 4})
    findings = run(doc, world)
    gap = only(findings, "label-map-gaps")
    assert "no id 3" in gap.message and gap.line == doc.nodes("train_input_reader.label_map_path")[0].line
    assert only(findings, "label-map-differs").path == "eval_input_reader.label_map_path"


def test_inputs_that_match_nothing(world: World):
    missing = str(world.records / "nothing-*.tfrecord")
    train = only(run(edit(ready(world), {TRAIN_INPUT: [missing]}), world), "input-no-match")
    assert train.severity is Severity.ERROR and f"{missing!r} matches no file" in train.message
    assert train.trainer_error == f"RuntimeError: Did not find any input files matching the glob pattern {[missing]!r}"
    evaluation = only(run(edit(ready(world), {EVAL_INPUT: [missing]}), world), "input-no-match")
    assert evaluation.severity is Severity.WARNING
    partial = run(edit(ready(world), {TRAIN_INPUT: [str(world.records / "val.tfrecord"), missing]}), world)
    assert only(partial, "input-partial").severity is Severity.WARNING


def test_a_label_map_given_as_the_config_says_so(world: World):
    findings = run(parse_file(world.label_map), world)
    assert [(f.id, f.severity) for f in findings] == [("label-map-not-config", Severity.ERROR)]
    assert "is a label map" in findings[0].message and "label_map_path" in (findings[0].fix or "")


def test_a_train_reader_without_input_and_evaluation_on_training_data(world: World):
    finding = only(run(edit(ready(world), deletes=["train_input_reader.tf_record_input_reader"]), world), "input-missing")
    assert finding.trainer_error == "ValueError: At least one input path must be specified in `input_reader_config`."
    evaluation = only(run(edit(ready(world), deletes=[EVAL_INPUT]), world), "input-missing")
    assert evaluation.severity is Severity.WARNING and evaluation.path == EVAL_INPUT
    assert evaluation.trainer_error == finding.trainer_error and "evaluation job" in evaluation.message
    same = edit(ready(world), {EVAL_INPUT: [str(world.records / "train-?????-of-00002.tfrecord")]})
    assert only(run(same, world), "eval-on-train").severity is Severity.WARNING


# -- model_dir ---------------------------------------------------------------------------


def test_model_dir_equal_to_the_checkpoint_dir(world: World):
    finding = only(run(ready(world), world, model_dir=world.ssd.parent), "model-dir-is-checkpoint-dir")
    assert finding.trainer_error == (
        f"RuntimeError: Checkpoint dir ({world.ssd.parent}) and model_dir ({world.ssd.parent}) cannot be same. "
        "Please set model_dir to a different path."
    )


def test_model_dir_at_a_zoo_models_top_directory_fails_at_the_first_save(world: World):
    top = world.ssd.parent.parent
    finding = only(run(ready(world), world, model_dir=top), "model-dir-zoo-layout")
    assert finding.severity is Severity.ERROR and "fresh, empty directory" in finding.fix  # type: ignore[operator]
    assert finding.trainer_error == f"FailedPreconditionError: {top}/checkpoint.tmp<hex>; Is a directory"


def test_model_dir_inside_the_zoo_cache_is_refused(world: World, tmp_path: Path):
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    inside = run(ready(world), world, model_dir=cache / "models" / "run1", cache_root=cache)
    assert only(inside, "model-dir-in-cache").severity is Severity.ERROR
    (tmp_path / "link").symlink_to(cache / "models")
    through_link = run(ready(world), world, model_dir=tmp_path / "link" / "run1", cache_root=cache)
    assert "model-dir-in-cache" in ids(through_link)
    assert "model-dir-in-cache" not in ids(run(ready(world), world, model_dir=tmp_path / "run1", cache_root=cache))


def test_model_dir_with_checkpoints_resumes_or_is_already_done(world: World, tmp_path: Path):
    training_checkpoint(tmp_path / "run", step=500)
    resumes = only(run(ready(world), world, model_dir=tmp_path / "run"), "model-dir-resumes")
    assert "ckpt-0 (step 500)" in resumes.message and resumes.severity is Severity.WARNING
    done = edit(ready(world), {"train_config.num_steps": 500})
    assert only(run(done, world, model_dir=tmp_path / "run"), "model-dir-finished").severity is Severity.ERROR
    empty = tmp_path / "fresh"
    empty.mkdir()
    assert not ids(run(ready(world), world, model_dir=empty), Severity.WARNING)
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "checkpoint").write_text('model_checkpoint_path: "ckpt-9"\n')  # its files were deleted
    assert "ckpt-9" in only(run(ready(world), world, model_dir=stale), "model-dir-unreadable").message


# -- steps and batch -------------------------------------------------------------------------


@pytest.mark.parametrize(("num_steps", "trained"), [(2, 100), (1050, 1100), (25000, None)])
def test_num_steps_runs_in_blocks_of_100(world: World, num_steps: int, trained: int | None):
    doc = edit(ready(world), {"train_config.num_steps": num_steps})
    notes = [f for f in run(doc, world) if f.id == "num-steps-per-iteration"]
    assert [f"trains {trained} steps" in f.message and f.severity is Severity.NOTE for f in notes] == (
        [True] if trained else [])
    assert "num-steps-per-iteration" not in ids(run(doc, world, trainer="tf1"))  # TF1's estimator stops exactly


def test_tpu_batch_sizes_and_missing_steps(world: World):
    assert only(run(edit(ready(world), {"train_config.batch_size": 128}), world), "batch-size-tpu")
    assert only(run(edit(ready(world), deletes=["train_config.num_steps"]), world), "num-steps-unset")


@pytest.mark.parametrize(
    ("num_steps", "warmup", "severity"),
    [(1000, 2000, Severity.WARNING), (50000, 2000, Severity.WARNING), (25000, 30000, Severity.ERROR)],
)
def test_the_cosine_schedule_against_num_steps(world: World, num_steps: int, warmup: int, severity: Severity):
    schedule = "train_config.optimizer.momentum_optimizer.learning_rate.cosine_decay_learning_rate"
    doc = edit(ready(world), {"train_config.num_steps": num_steps, f"{schedule}.warmup_steps": warmup})
    assert only(run(doc, world), "schedule-steps").severity is severity


# -- the trainer's words, checked against TensorFlow itself ---------------------------------


def test_quoted_errors_are_tensorflows(world: World, tmp_path: Path):
    import tensorflow as tf  # type: ignore[import-untyped]

    def error_of(call) -> str:  # type: ignore[no-untyped-def]
        with pytest.raises(Exception) as caught:
            call()
        return f"{type(caught.value).__name__}: {caught.value}"

    missing = str(tmp_path / "nothing" / "ckpt-0")
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: missing}), world), "checkpoint-not-found")
    assert error_of(lambda: tf.train.list_variables(missing)) == finding.trainer_error
    data = str(world.ssd) + ".data-00000-of-00001"
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: data}), world), "checkpoint-not-prefix")
    assert error_of(lambda: tf.train.list_variables(data)) == finding.trainer_error
    assert tf.train.list_variables(str(world.ssd) + ".index") == []  # hence "not object-based" for an .index
    garbage = tmp_path / "garbage" / "ckpt-0"
    garbage.parent.mkdir()
    garbage.with_name("ckpt-0.index").write_bytes(b"garbage" * 10)
    finding = only(run(edit(ready(world), {FINE_TUNE_CHECKPOINT: str(garbage)}), world), "checkpoint-unreadable")
    assert error_of(lambda: tf.train.list_variables(str(garbage))) == finding.trainer_error
    label_map = str(tmp_path / "label_map.pbtxt")
    finding = only(run(edit(ready(world), {"train_input_reader.label_map_path": label_map}), world), "label-map-missing")
    assert error_of(lambda: tf.io.gfile.GFile(label_map).read()) == finding.trainer_error
    assert type(IOError("x")).__name__ == "OSError"  # what the trainer's `raise IOError(...)` prints
    backbone = tf.Module()
    backbone.v = tf.Variable([0.0])
    restore = tf.train.Checkpoint(feature_extractor=backbone).restore(str(world.ssd)).expect_partial()
    assert error_of(restore.assert_existing_objects_matched).startswith(
        "AssertionError: Found 1 Python objects that were not bound to checkpointed values"
    )


# -- robustness ------------------------------------------------------------------------------

_WILD = sorted((SAMPLE_CONFIGS.parent / "wild_configs").glob("*.config"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_check_survives_any_field_being_deleted(data: st.DataObject, tmp_path: Path):
    """Whatever a user leaves out, check() reports; it never raises."""
    source = data.draw(st.sampled_from([p for p in _WILD if not p.name.startswith("10_")]))
    doc = parse_file(source)
    paths = [path for path, _ in doc.walk()] + ["model", "train_config", "train_input_reader", "eval_input_reader"]
    for path in data.draw(st.lists(st.sampled_from(paths), max_size=6)):
        with contextlib.suppress(ConfigError):  # one item of an [a, b] list cannot be deleted alone
            doc.delete(path)
    findings = check(doc, gather(doc, tmp_path))
    assert all(isinstance(f.severity, Severity) and f.message for f in findings)


def test_a_checkpoint_in_the_cache_dir_but_in_no_entry_is_checked_as_a_plain_path(world: World, tmp_path: Path):
    # A directory under <cache>/models/ whose name no model can have is no cache
    # entry: the check goes on without a cached reference instead of failing
    # as if that name were an unknown model.
    cache = tmp_path / "cache"
    prefix = zoo_model_dir(cache / "models" / "my checkpoints" / "model", "ssd", (SAMPLE_CONFIGS / SSD_R50).read_text())
    findings = run(ready(world, SSD_R50, prefix), world, cache_root=cache)
    assert not ids(findings, Severity.ERROR), [(f.id, f.message) for f in findings]


def test_a_shape_mismatch_under_a_distribution_strategy_reads_as_quoted(world: World, tmp_path: Path):
    """model_main_tf2.py restores inside a strategy's scope: the mismatch is raised by the assign."""
    import tensorflow as tf  # type: ignore[import-untyped]

    saved = tf.Module()
    saved.kernel = tf.Variable(tf.zeros((7, 7, 3, 64)))
    prefix = tf.train.Checkpoint(model=saved).save(str(tmp_path / "ckpt"))
    with tf.distribute.MirroredStrategy(["/cpu:0"]).scope():
        model = tf.Module()
        model.kernel = tf.Variable(tf.zeros((3, 3, 3, 32)))
        with pytest.raises(ValueError) as caught:
            tf.train.Checkpoint(model=model).restore(prefix).expect_partial()
    finding = only(run(edit(ready(world), {"model.ssd.feature_extractor.fpn.max_level": 6}), world), "arch-setting-mismatch")
    quoted = finding.trainer_error.split(", or ")[0]  # type: ignore[union-attr]
    before, after = quoted.split("'<variable>'")
    assert f"ValueError: {caught.value}".startswith(before) and "Shape mismatch.The variable shape (3, 3, 3, 32)" in str(caught.value)
    assert after.split("(<in the model>)")[0] in str(caught.value)
