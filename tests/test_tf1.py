"""TF1 models end to end: their sample configs (tests/data/tf1_sample_configs, the
registry's sample_config entries), `zoo config` writing for TF1's model_main.py,
`zoo check` judging by the TF1 trainer's rules, and archives whose checkpoint
carries a step (ssdlite_mobiledet_*: model.ckpt-400000). Checkpoints are real
TF1 Saver (and TF2) checkpoints written by TensorFlow in this session."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import ROOT, Zoo, clean_env
from httpserver import FileServer
from tarballs import make_zoo_tarball, write_tf1_checkpoint, write_tf2_checkpoint

from zoo.config.checks import Facts, Finding, Severity, check
from zoo.config.configure import Edits, apply_edits
from zoo.config.facts import check_document
from zoo.config.restore_rules import trainer_for
from zoo.config.textproto import Document, meta_architecture, num_classes_path, parse, parse_file
from zoo.errors import IntegrityError
from zoo.extract import find_checkpoint
from zoo.registry import load_registry

TF1_CONFIGS = ROOT / "tests" / "data" / "tf1_sample_configs"
TF1_MODEL = "ssd_mobilenet_v1_coco_2018_01_28"
TF1_CONFIG = TF1_CONFIGS / "ssd_mobilenet_v1_coco.config"
MOBILEDET = "ssdlite_mobiledet_cpu_320x320_coco_2020_05_19"
MOBILEDET_CONFIG = TF1_CONFIGS / "ssdlite_mobiledet_cpu_320x320_coco_sync_4x4.config"
LABEL_MAP = "item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\nitem { id: 3 name: 'bird' }\n"
FTC = "train_config.fine_tune_checkpoint"
TYPE = "train_config.fine_tune_checkpoint_type"
LEGACY = "train_config.from_detection_checkpoint"
VERSION = "train_config.fine_tune_checkpoint_version"


def tf1_models() -> list:
    return [m for m in load_registry() if m.family == "tf1-detection" and m.sample_config is not None]


def local_config(model) -> Path:  # type: ignore[no-untyped-def]
    return TF1_CONFIGS / model.sample_config.path.rsplit("/", 1)[1]


def ids(findings: list[Finding], severity: Severity | None = None) -> set[str]:
    return {f.id for f in findings if severity is None or f.severity is severity}


def only(findings: list[Finding], finding_id: str) -> Finding:
    found = [f for f in findings if f.id == finding_id]
    assert len(found) == 1, (finding_id, [(f.id, f.message) for f in findings])
    return found[0]


# -- the registry's TF1 sample configs against the files -------------------------------


@pytest.mark.parametrize("model", tf1_models(), ids=lambda m: m.name)
def test_every_tf1_sample_config_matches_its_registry_entry(model):  # type: ignore[no-untyped-def]
    doc = parse_file(local_config(model))
    arch = meta_architecture(doc)
    assert (arch, doc.get(f"model.{arch}.feature_extractor.type")) == (model.meta_architecture,
                                                                        model.feature_extractor)
    assert model.trainer == "tf1" and trainer_for(doc) == "tf1"
    assert model.sample_config.commit in model.sample_config.url  # pinned to the commit SOURCE.md names
    findings = check(doc, Facts(cwd=ROOT))
    assert not ids(findings) & {"extractor-unsupported", "version-missing", "checkpoint-tf1"}, model.name
    tf2 = ids(check(doc, Facts(cwd=ROOT), "tf2"))
    assert "extractor-unsupported" in tf2  # what every TF1 config got before TF1 had its own rules


def test_all_38_tf1_sample_configs_are_used():
    used = {local_config(m).name for m in tf1_models()}
    assert used == {p.name for p in TF1_CONFIGS.glob("*.config")} and len(used) == 38


# -- zoo config: the edits for TF1's model_main.py -------------------------------------


@pytest.mark.parametrize("config", sorted(TF1_CONFIGS.glob("*.config")), ids=lambda p: p.stem)
def test_tf1_edits_keep_the_configs_own_type_field_and_write_no_version(config: Path):
    doc = parse_file(config)
    had_legacy = LEGACY in doc and TYPE not in doc
    apply_edits(doc, Edits("/zoo/models/m/files/m/model.ckpt", "detection", trainer="tf1"))
    reread = parse(doc.text)  # what the trainer reads back
    assert reread.get(FTC) == "/zoo/models/m/files/m/model.ckpt"
    assert VERSION not in reread
    if had_legacy:
        assert reread.get(LEGACY) is True and TYPE not in reread
    else:
        assert reread.get(TYPE) == "detection"


@dataclass(frozen=True)
class Served:
    zoo: Zoo
    server: FileServer


def tf1_entry(server: FileServer, name: str, config: Path) -> dict:
    """Layered over the built-in entry: only where its bytes come from changes."""
    server.add(f"/models/{name}.tar.gz", (config.parent / f"{name}.tar.gz").read_bytes())
    server.add(f"/configs/{config.name}", config.read_bytes())
    return {"name": name, "url": server.url_for(f"/models/{name}.tar.gz"),
            "sample_config": {"path": f"samples/configs/{config.name}", "url": server.url_for(f"/configs/{config.name}")}}  # fmt: skip


@pytest.fixture(scope="module")
def tf1_tarballs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The TF1 archives, beside copies of their sample configs (tf1_entry serves both)."""
    folder = tmp_path_factory.mktemp("tf1_tarballs")
    for config in (TF1_CONFIG, MOBILEDET_CONFIG):
        (folder / config.name).write_bytes(config.read_bytes())
    make_zoo_tarball(folder, TF1_MODEL, family="tf1-detection", config_text=TF1_CONFIG.read_text(), size_mb=0.2)
    make_zoo_tarball(folder, MOBILEDET, family="tf1-detection", config_text=MOBILEDET_CONFIG.read_text(),
                     size_mb=0.2, tf1_steps=(400000,))  # fmt: skip
    make_zoo_tarball(folder, "two_steps", family="tf1-detection", size_mb=0.2, tf1_steps=(1, 2))
    return folder


@pytest.fixture
def served(tmp_path: Path, server: FileServer, tf1_tarballs: Path) -> Iterator[Served]:
    runner = Zoo(tmp_path, clean_env(tmp_path))
    entries = [tf1_entry(server, TF1_MODEL, tf1_tarballs / TF1_CONFIG.name),
               tf1_entry(server, MOBILEDET, tf1_tarballs / MOBILEDET_CONFIG.name)]  # fmt: skip
    runner.write_registry(entries)
    runner.env["ZOO_REGISTRY"] = str(runner.registry)
    yield Served(runner, server)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    (folder / "records").mkdir(parents=True)
    (folder / "label_map.pbtxt").write_text(LABEL_MAP)
    for name in ("train.tfrecord", "val.tfrecord"):
        (folder / "records" / name).write_bytes(b"\0" * 16)
    return folder


def options(project: Path) -> list[str]:
    return ["--label-map", str(project / "label_map.pbtxt"), "--batch-size", "8",
            "--train-records", str(project / "records" / "train.tfrecord"),
            "--eval-records", str(project / "records" / "val.tfrecord")]  # fmt: skip


def test_config_writes_a_tf1_config_that_check_accepts(served: Served, project: Path):
    out = project / "pipeline.config"
    result = served.zoo.run("config", "ssd_mobilenet_v1_coco", *options(project), "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = parse_file(out)
    prefix = doc.get(FTC)
    assert isinstance(prefix, str) and prefix.endswith(f"{TF1_MODEL}/model.ckpt") and Path(prefix + ".index").is_file()
    assert doc.get(LEGACY) is True and TYPE not in doc and VERSION not in doc  # the config's own older field
    assert doc.get("model.ssd.num_classes") == 3
    checked = served.zoo.run("check", str(out), "--json")
    assert checked.returncode == 0, checked.stdout
    assert {f["severity"] for f in json.loads(checked.stdout)["findings"]} <= {"note", "warning"}
    as_tf2 = check_document(doc, project, trainer="tf2")
    assert {"extractor-unsupported", "checkpoint-tf1", "version-missing"} <= ids(as_tf2, Severity.ERROR)


# -- zoo check: the TF1 trainer's rules -----------------------------------------------


@dataclass(frozen=True)
class World:
    root: Path
    detection: Path  # model.ckpt, names FeatureExtractor/MobilenetV1/...
    classification: Path  # model.ckpt, names MobilenetV1/... (a backbone)
    stepped: Path  # model.ckpt-400000
    tf2: Path  # an object-based checkpoint
    label_map: Path
    records: Path


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("tf1_world")
    (root / "records").mkdir()
    for name in ("train.tfrecord", "val.tfrecord"):
        (root / "records" / name).write_bytes(b"\0" * 16)
    (root / "label_map.pbtxt").write_text(LABEL_MAP)
    return World(
        root=root,
        detection=write_tf1_checkpoint(root / "detection", variables=3, floats_per_variable=8),
        classification=write_tf1_checkpoint(root / "backbone", variables=3, floats_per_variable=8, scope="MobilenetV1"),
        stepped=write_tf1_checkpoint(root / "mobiledet", variables=3, floats_per_variable=8, global_step=400000),
        tf2=write_tf2_checkpoint(root / "tf2", variables=3, floats_per_variable=8),
        label_map=root / "label_map.pbtxt",
        records=root / "records",
    )  # fmt: skip


def ready(world: World, checkpoint: Path | str | None = None) -> Document:
    """The TF1 ssd_mobilenet_v1_coco sample, filled in as `zoo config` does."""
    doc = parse_file(TF1_CONFIG)
    apply_edits(doc, Edits(str(checkpoint or world.detection), "detection", trainer="tf1"))
    doc.set(num_classes_path(doc), 3)
    for reader, records in (("train_input_reader", "train"), ("eval_input_reader", "val")):
        doc.set(f"{reader}.label_map_path", str(world.label_map))
        doc.set_all(f"{reader}.tf_record_input_reader.input_path", [str(world.records / f"{records}.tfrecord")])
    return doc


def run(doc: Document, world: World, trainer: str | None = None) -> list[Finding]:
    return check_document(doc, world.root, trainer=trainer)


def test_a_ready_tf1_config_has_no_errors_or_warnings(world: World):
    findings = run(ready(world), world)
    assert not ids(findings, Severity.ERROR) | ids(findings, Severity.WARNING), [f.message for f in findings]


def test_trainer_is_detected_from_the_feature_extractor_and_can_be_forced(world: World):
    doc = ready(world)
    assert trainer_for(doc) == "tf1" and run(doc, world) == run(doc, world, "tf1")
    assert "extractor-unsupported" in ids(run(doc, world, "tf2"))
    with pytest.raises(ValueError, match="trainer must be one of tf1, tf2"):
        run(doc, world, "tf3")


def test_a_tf2_keras_extractor_is_unsupported_by_the_tf1_trainer(world: World):
    doc = ready(world)
    doc.set("model.ssd.feature_extractor.type", "ssd_mobilenet_v1_keras")
    finding = only(run(doc, world, "tf1"), "extractor-unsupported")
    assert finding.fix is not None and finding.fix.startswith('type: "ssd_mobilenet_v1" (its TF1 version)')


def test_the_prefix_must_have_an_index(world: World):
    missing = world.detection.with_name("model.ckpt-0")  # a TF2 habit: the zoo's TF1 prefix has no step
    finding = only(run(ready(world, missing), world), "checkpoint-not-found")
    assert "model.ckpt" in finding.message and finding.fix == f'fine_tune_checkpoint: "{world.detection}"'


def test_model_ckpt_where_the_archive_holds_model_ckpt_n(world: World):
    written = world.stepped.with_name("model.ckpt")
    finding = only(run(ready(world, written), world), "checkpoint-not-found")
    assert "model.ckpt-400000" in finding.message
    assert finding.fix == f'fine_tune_checkpoint: "{world.stepped}"'
    assert not ids(run(ready(world, world.stepped), world), Severity.ERROR)


def test_the_index_file_is_not_a_prefix(world: World):
    index = world.detection.with_name("model.ckpt.index")
    finding = only(run(ready(world, index), world), "checkpoint-not-prefix")
    assert finding.fix == f'fine_tune_checkpoint: "{world.detection}"'


def test_a_single_file_v1_checkpoint_is_accepted_unread(world: World, tmp_path: Path):
    v1 = tmp_path / "model.ckpt"
    v1.write_bytes(b"\0" * 64)  # a V1 file has no .index; zoo does not read its table
    findings = run(ready(world, v1), world)
    assert only(findings, "checkpoint-v1-file").severity is Severity.NOTE
    assert not ids(findings, Severity.ERROR)


def test_a_tf2_checkpoint_restores_nothing_in_tf1(world: World):
    finding = only(run(ready(world, world.tf2), world), "checkpoint-tf2")
    assert finding.severity is Severity.ERROR and "random weights" in finding.message


def test_detection_with_a_classification_checkpoint_restores_nothing(world: World):
    finding = only(run(ready(world, world.classification), world), "type-mismatch")
    assert "FeatureExtractor/..." in finding.message and finding.severity is Severity.ERROR


def test_no_type_means_classification_which_misses_a_detection_checkpoint(world: World):
    doc = ready(world)
    doc.delete(LEGACY)
    findings = run(doc, world)
    assert {f.severity for f in findings if f.id == "type-missing"} == {Severity.WARNING, Severity.ERROR}
    assert any("'classification'" in f.message and "nothing would be restored" in f.message for f in findings)


def test_type_wins_over_from_detection_checkpoint(world: World):
    doc = ready(world)
    doc.set(TYPE, "detection")
    doc.set(LEGACY, False)
    assert only(run(doc, world), "from-detection-ignored").severity is Severity.WARNING


def test_full_is_not_a_tf1_type(world: World):
    doc = ready(world)
    doc.set(TYPE, "full")
    finding = only(run(doc, world), "type-unknown")
    assert finding.trainer_error == "ValueError: Not supported fine_tune_checkpoint_type: full"


def test_label_map_num_classes_and_inputs_are_checked_for_tf1(world: World):
    doc = ready(world)
    doc.set(num_classes_path(doc), 1)  # below the label map's highest id: its other boxes train as background
    doc.set_all("train_input_reader.tf_record_input_reader.input_path", [str(world.records / "nothing-*")])
    found = ids(run(doc, world), Severity.ERROR)
    assert {"num-classes-mismatch", "input-no-match"} <= found


# -- archives whose checkpoint carries a step ---------------------------------------------


def extracted(tarball: Path, dest: Path) -> Path:
    import tarfile

    with tarfile.open(tarball) as archive:
        archive.extractall(dest, filter="data")
    return dest


def test_the_only_other_prefix_is_used_with_a_warning(tf1_tarballs: Path, tmp_path: Path, caplog):  # type: ignore[no-untyped-def]
    root = extracted(tf1_tarballs / f"{MOBILEDET}.tar.gz", tmp_path)
    with caplog.at_level(logging.WARNING, logger="zoo"):
        checkpoint = find_checkpoint(root, "model.ckpt")
    assert checkpoint.prefix == root / MOBILEDET / "model.ckpt-400000"
    assert "no 'model.ckpt' checkpoint; using its only checkpoint" in caplog.text


def test_several_other_prefixes_fail_naming_them(tf1_tarballs: Path, tmp_path: Path):
    root = extracted(tf1_tarballs / "two_steps.tar.gz", tmp_path)
    with pytest.raises(IntegrityError, match=r"should hold 'model.ckpt.index'; found: .*model.ckpt-1, .*model.ckpt-2"):
        find_checkpoint(root, "model.ckpt")


def test_fetch_records_the_real_prefix_and_config_writes_it(served: Served, project: Path):
    fetched = served.zoo.run("fetch", MOBILEDET)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip().endswith(f"{MOBILEDET}/model.ckpt-400000")
    assert "using its only checkpoint" in fetched.stderr
    again = served.zoo.run("fetch", MOBILEDET, "--offline")  # the cache entry holds the real prefix
    assert again.stdout.strip() == fetched.stdout.strip()
    out = project / "pipeline.config"
    result = served.zoo.run("config", MOBILEDET, *options(project), "-o", str(out))
    assert result.returncode == 0, result.stderr
    doc = parse_file(out)
    assert doc.get(FTC) == fetched.stdout.strip()
    assert doc.get(TYPE) == "detection" and VERSION not in doc


def test_check_takes_the_trainer_from_the_option_or_the_feature_extractor(zoo: Zoo, tmp_path: Path):
    config = tmp_path / "tf1.config"
    config.write_text((TF1_CONFIGS / "ssd_mobilenet_v1_coco.config").read_text())
    guessed = zoo.run("check", str(config), "--json")
    as_tf2 = zoo.run("check", str(config), "--json", "--trainer", "tf2")
    ids = [{f["id"] for f in json.loads(run.stdout)["findings"]} for run in (guessed, as_tf2)]
    assert "extractor-unsupported" not in ids[0] and "extractor-unsupported" in ids[1]
    wrong = zoo.run("check", str(config), "--trainer", "tf3")
    assert wrong.returncode == 2 and wrong.stderr == "zoo: error: --trainer must be one of tf1, tf2, got 'tf3'\n"
