"""`zoo check` over the 30 real user configs of tests/data/wild_configs.

INDEX.md says what is wrong in each; these tests assert the checker finds it
wherever it can be known without the users' checkpoints and data (their
paths point at machines we do not have, which the checker also reports). The
config/label-map pairs INDEX.md names are checked with the label map laid out
where the config expects it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import ROOT

from zoo.config.checks import Finding, Severity, check
from zoo.config.facts import gather
from zoo.config.textproto import Document, parse_file
from zoo.errors import ConfigError

WILD = ROOT / "tests" / "data" / "wild_configs"

# file number -> finding ids INDEX.md's "notable" column implies (subset of what is found)
EXPECTED: dict[str, set[str]] = {
    "01": {"placeholder", "batch-size-tpu"},  # ftc, label map and inputs still PH; bs 64
    "02": {"checkpoint-not-found"},
    "03": {"checkpoint-not-found"},  # the user's own ckpt-31, not here
    "04": {"checkpoint-not-found"},
    "05": {"checkpoint-not-found"},
    "06": {"checkpoint-not-found"},  # a D:/ Windows path
    "07": {"batch-size-tpu"},  # EfficientDet D1 with TPU batch 128
    "08": {"checkpoint-not-found"},  # escaped backslashes
    "09": {"checkpoint-not-found"},  # mixed separators, ckpt-31
    "11": {"version-missing"},
    "12": {"type-suspect"},  # classification with a detection checkpoint path
    "13": {"type-unknown"},  # fine_tune for SSD
    "14": {"misplaced-field", "checkpoint-missing", "eval-on-train"},  # ftc, type, version inside model.ssd
    "16": {"checkpoint-missing", "bfloat16-tpu"},  # empty ftc
    "17": {"checkpoint-not-found"},
    "18": {"placeholder", "batch-size-tpu", "bfloat16-tpu"},
    "19": {"placeholder"},
    "20": {"checkpoint-not-found"},
    "21": {"extractor-unsupported", "checkpoint-missing"},  # ssd_efficientnet-custom, no ftc line
    "22": {"schedule-steps", "bfloat16-tpu"},  # num_steps 1000 < warmup 2000
    "23": {"bfloat16-tpu"},
    "24": {"batch-size-tpu", "checkpoint-not-found"},
    "25": {"type-fine-tune", "label-map-differs", "eval-on-train"},  # CenterNet fine_tune, two label maps
    "26": {"checkpoint-missing"},
    # TF1 configs (their feature extractors exist in TF1 only), checked for TF1's model_main.py:
    "27": {"checkpoint-not-found"},  # escaped Windows backslashes
    "28": {"checkpoint-not-found"},
    "29": {"checkpoint-not-found"},  # TF1 Mask R-CNN
    "30": {"type-missing", "placeholder"},  # TF1 in a TF2 folder
}
# The same TF1 configs checked for TF2's model_main_tf2.py (`--trainer tf2`).
EXPECTED_TF2 = {
    "27": {"extractor-unsupported", "version-missing", "type-missing", "from-detection-checkpoint"},
    "28": {"extractor-unsupported", "version-missing", "type-missing", "from-detection-checkpoint"},
    "29": {"extractor-unsupported", "version-missing"},
    "30": {"extractor-unsupported", "version-missing", "type-missing", "placeholder"},
}
# What INDEX.md says is fine, so the checker must not claim otherwise.
ABSENT: dict[str, set[str]] = {
    "02": {"version-missing", "type-missing", "extractor-unsupported"},
    "07": {"extractor-unsupported"},  # a real TF2 extractor despite the folder name
    "21": {"version-missing", "type-missing"},
    "23": {"version-missing", "unquoted-string", "duplicate-field"},  # single quotes, list syntax
    "24": {"extractor-unsupported"},  # CenterNet mobilenet_v2_fpn_sep_conv exists in TF2
    "25": {"type-unknown"},  # fine_tune is CenterNet's, reported as version-dependent
    "26": {"extractor-unsupported"},
    **{tf1: {"extractor-unsupported", "version-missing", "from-detection-checkpoint"} for tf1 in EXPECTED_TF2},
}


def wild(number: str) -> Path:
    return next(WILD.glob(f"{number}_*.config"))


def run(doc: Document, cwd: Path, trainer: str | None = None) -> list[Finding]:
    return check(doc, gather(doc, cwd), trainer)


def by_id(findings: list[Finding], finding_id: str) -> list[Finding]:
    return [f for f in findings if f.id == finding_id]


def test_every_wild_config_is_covered():
    numbers = sorted(p.name[:2] for p in WILD.glob("*.config"))
    assert len(numbers) == 30 and set(numbers) == set(EXPECTED) | {"10", "15"}


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_wild_config_findings(number: str, tmp_path: Path):
    findings = run(parse_file(wild(number)), tmp_path)
    found = {f.id for f in findings}
    assert EXPECTED[number] <= found, (number, sorted(found))
    assert not ABSENT.get(number, set()) & found, (number, sorted(found))
    assert all(f.message and (f.line is None or f.line > 0) for f in findings)


@pytest.mark.parametrize("number", sorted(EXPECTED_TF2))
def test_tf1_wild_configs_checked_for_tf2_are_refused(number: str, tmp_path: Path):
    found = {f.id for f in run(parse_file(wild(number)), tmp_path, trainer="tf2")}
    assert EXPECTED_TF2[number] <= found, (number, sorted(found))


def test_the_syntax_broken_snapshot_fails_to_parse_with_its_line():
    with pytest.raises(ConfigError) as caught:
        parse_file(wild("10"))
    assert caught.value.line == 135 and "'batch_size' has no value" in str(caught.value)


@pytest.mark.parametrize("number", ["08", "09", "27"])
def test_backslash_paths_are_explained(number: str, tmp_path: Path):
    (finding,) = by_id(run(parse_file(wild(number)), tmp_path), "checkpoint-not-found")
    assert "backslashes are not directory separators" in finding.message


def test_a_windows_drive_path_is_explained(tmp_path: Path):
    (finding,) = by_id(run(parse_file(wild("06")), tmp_path), "checkpoint-not-found")
    assert "Windows drive path" in finding.message


def test_fine_tune_for_centernet_explains_the_version_dependence(tmp_path: Path):
    (finding,) = by_id(run(parse_file(wild("25")), tmp_path), "type-fine-tune")
    assert "older CenterNet versions" in finding.message and finding.fix == 'fine_tune_checkpoint_type: "detection"'


def place(label_map: str, cwd: Path, relative: str) -> Path:
    target = cwd / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(next(WILD.glob(f"{label_map}_*.pbtxt")), target)
    return target


@pytest.mark.parametrize(
    ("config", "label_map", "relative", "num_classes", "highest"),
    [
        ("06", "34", "annotations/label_map.pbtxt", 8, 7),  # the repo's map has 7 items
        ("20", "31", "Tensorflow/workspace/annotations/label_map.pbtxt", 6, 1),
    ],
)
def test_num_classes_against_the_repositorys_label_map(
    config: str, label_map: str, relative: str, num_classes: int, highest: int, tmp_path: Path
):
    place(label_map, tmp_path, relative)
    (finding,) = by_id(run(parse_file(wild(config)), tmp_path), "num-classes-mismatch")
    assert f"num_classes is {num_classes}" in finding.message and finding.fix == f"num_classes: {highest}"


@pytest.mark.parametrize(("config", "label_map"), [("15", "32"), ("01", "37")])
def test_num_classes_with_the_label_map_moved_here(config: str, label_map: str, tmp_path: Path):
    """15 points at a macOS path and 01 at the placeholder: point them at their maps."""
    path = place(label_map, tmp_path, "label_map.pbtxt")
    doc = parse_file(wild(config))
    for reader in ("train_input_reader", "eval_input_reader"):
        doc.set(f"{reader}.label_map_path", str(path))
    findings = run(doc, tmp_path)
    (mismatch,) = by_id(findings, "num-classes-mismatch")
    if config == "15":
        assert "num_classes is 90" in mismatch.message and mismatch.fix == "num_classes: 3"
    else:  # ids 1, 2, 4: highest 4 while num_classes says 3
        assert mismatch.fix == "num_classes: 4" and by_id(findings, "label-map-gaps")


@pytest.mark.parametrize(("config", "label_map", "relative"), [("23", "34", "annotations/label_map.pbtxt"),
                                                               ("24", "38", "annotations/label_map.pbtxt")])  # fmt: skip
def test_consistent_pairs_pass(config: str, label_map: str, relative: str, tmp_path: Path):
    place(label_map, tmp_path, relative)
    found = {f.id for f in run(parse_file(wild(config)), tmp_path)}
    assert not found & {"num-classes-mismatch", "label-map-invalid", "label-map-missing"}


def test_the_smart_quote_label_map_is_invalid(tmp_path: Path):
    path = place("35", tmp_path, "label_map.pbtxt")
    doc = parse_file(wild("05"))
    doc.set("train_input_reader.label_map_path", str(path))
    (finding,) = by_id(run(doc, tmp_path), "label-map-invalid")
    assert finding.severity is Severity.ERROR and "typographic quote" in finding.message


@pytest.mark.parametrize(
    ("number", "model"),
    [("02", "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"), ("08", "ssd_mobilenet_v2_fpnlite_320x320_coco17_tpu-8"),
     ("17", "efficientdet_d1_coco17_tpu-32")],
)  # fmt: skip
def test_a_missing_zoo_checkpoint_gets_the_command_that_fetches_it(number: str, model: str, tmp_path: Path):
    (finding,) = by_id(run(parse_file(wild(number)), tmp_path), "checkpoint-not-found")
    assert f"zoo config {model} --from {wild(number)} -o {wild(number)}" in finding.fix  # type: ignore[operator]
