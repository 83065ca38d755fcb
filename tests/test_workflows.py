"""The three fine-tuning workflows end to end, through the installed `zoo`:
initialise from another project's checkpoint (`zoo config PATH`), resume from
a model_dir (`zoo check --model-dir`'s one line), and start training (`zoo
config --model-dir` printing the commands, `zoo train` running them). Every
checkpoint is written by TensorFlow here; the trainer `zoo train` starts is a
stand-in `object_detection.model_main_tf2` on PYTHONPATH that records what it
was given (the real OD API is not installable from the package index)."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import MODEL, SAMPLE_CONFIGS, Zoo, clean_env
from zoo_checkpoints import (
    _model,
    _tensorflow,
    classification_checkpoint,
    training_checkpoint,
)

from zoo.config.textproto import parse_file

SSD_R50 = SAMPLE_CONFIGS / "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config"
FRCNN_R50 = SAMPLE_CONFIGS / "faster_rcnn_resnet50_v1_640x640_coco17_tpu-8.config"
LABEL_MAP = "item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\nitem { id: 3 name: 'bird' }\n"
FINE_TUNE = "train_config.fine_tune_checkpoint"
TYPE = "train_config.fine_tune_checkpoint_type"

STAND_IN = '''"""Stand-in for the OD API's model_main_tf2: records its argv and environment."""
import json, os, sys
with open(os.environ["ZOO_TEST_RECORD"], "w") as out:
    json.dump({"argv": sys.argv[1:], "executable": sys.executable, "module": __name__,
               "env": {k: v for k, v in os.environ.items() if k.startswith("ZOO_TEST_")}}, out)
print("stand-in trainer: step 100 loss 0.5", flush=True)
print("stand-in trainer: on stderr", file=sys.stderr, flush=True)
sys.exit(int(os.environ.get("ZOO_TEST_EXIT", "0")))
'''


@dataclass(frozen=True)
class Project:
    """Another project's training run, and this project's data."""

    run: Path  # model_dir holding ckpt-1000 and ckpt-2000 (newest) and the pipeline.config it trained with
    backbone: Path  # a classification checkpoint's directory, no pipeline.config
    label_map: Path
    records: Path

    def data_options(self) -> list[str]:
        return ["--label-map", str(self.label_map), "--train-records", str(self.records / "train-*.tfrecord"),
                "--eval-records", str(self.records / "val.tfrecord")]  # fmt: skip


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    root = tmp_path_factory.mktemp("workflows")
    run = root / "other_project" / "runs" / "exp7"
    tf = _tensorflow()
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(step=step, model=_model("ssd")), str(run), max_to_keep=3)
    for number in (1000, 2000):  # what train_loop leaves: ckpt-N and the `checkpoint` state file naming the newest
        step.assign(number)
        manager.save(checkpoint_number=number)
    # model_main_tf2 is given the config; the project keeps it beside its run (3 classes, as ours).
    (run / "pipeline.config").write_text(SSD_R50.read_text().replace("num_classes: 90", "num_classes: 3"))
    backbone = classification_checkpoint(root / "backbone").parent
    records = root / "data"
    records.mkdir()
    for name in ("train-0.tfrecord", "train-1.tfrecord", "val.tfrecord"):
        (records / name).write_bytes(b"\0" * 16)
    (root / "label_map.pbtxt").write_text(LABEL_MAP)
    return Project(run, backbone, root / "label_map.pbtxt", records)


@pytest.fixture
def local(tmp_path: Path) -> Zoo:
    """A zoo with an empty cache and the built-in registry: nothing to fetch for a path."""
    return Zoo(tmp_path, clean_env(tmp_path))


def config_json(zoo: Zoo, *args: str) -> tuple[int, dict]:
    result = zoo.run("config", *args, "--json")
    return result.returncode, json.loads(result.stdout)


# -- another project's checkpoint ----------------------------------------------------------


@pytest.mark.parametrize("given, ckpt", [("", "ckpt-2000"), ("checkpoint", "ckpt-2000"), ("ckpt-1000", "ckpt-1000"),
                                         ("ckpt-1000.index", "ckpt-1000")])  # fmt: skip
def test_config_from_another_projects_model_dir_or_checkpoint(local: Zoo, project: Project, tmp_path: Path, given: str, ckpt: str):
    target = str(project.run / given) if given != "checkpoint" else str(project.run) + "/"
    out = tmp_path / "pipeline.config"
    code, data = config_json(local, target, *project.data_options(), "-o", str(out))
    assert code == 0 and data["ok"] and data["written"], data
    assert data["name"] is None and data["checkpoint"] == str(project.run / ckpt)
    assert data["template"] == str(project.run / "pipeline.config")
    assert "detection model's checkpoint (ssd or center_net) saved by training" in data["structure"]
    doc = parse_file(out)
    assert doc.get(FINE_TUNE) == str(project.run / ckpt) and doc.get(TYPE) == "detection"
    assert doc.get("train_config.fine_tune_checkpoint_version") == "V2"
    assert not local.published()  # a path is read where it is: nothing fetched, nothing cached


def test_the_newest_checkpoint_of_a_model_dir_is_reported_in_text(local: Zoo, project: Project, tmp_path: Path):
    result = local.run("config", str(project.run), *project.data_options(), "-o", str(tmp_path / "p.config"))
    assert result.returncode == 0, result.stderr
    assert f"zoo: wrote {tmp_path / 'p.config'} (fine_tune_checkpoint {project.run / 'ckpt-2000'})" in result.stderr
    assert f"zoo: {project.run / 'ckpt-2000'} is a detection model's checkpoint" in result.stderr


def test_full_restores_only_with_the_same_architecture_and_num_classes(local: Zoo, project: Project, tmp_path: Path):
    code, data = config_json(local, str(project.run), *project.data_options(), "--checkpoint-type", "full",
                             "-o", str(tmp_path / "full.config"))  # fmt: skip
    assert code == 0 and data["written"], data["findings"]
    assert parse_file(tmp_path / "full.config").get(TYPE) == "full"
    code, data = config_json(local, str(project.run), *project.data_options(), "--num-classes", "3",
                             "--checkpoint-type", "full", "--from", str(FRCNN_R50), "-o", str(tmp_path / "x.config"))  # fmt: skip
    assert code == 12 and not data["written"]
    assert "arch-mismatch" in {f["id"] for f in data["findings"]}


def test_the_architecture_check_runs_against_that_projects_config(local: Zoo, project: Project, tmp_path: Path):
    # Our own config (--from) with another num_classes is fine for `detection`; a
    # Faster R-CNN config against the project's SSD run is refused.
    code, data = config_json(local, str(project.run), "--from", str(SSD_R50), *project.data_options(),
                             "-o", str(tmp_path / "ours.config"))  # fmt: skip
    assert code == 0 and data["template"] == str(SSD_R50), data["findings"]
    code, data = config_json(local, str(project.run), "--from", str(FRCNN_R50), *project.data_options(),
                             "-o", str(tmp_path / "frcnn.config"))  # fmt: skip
    assert code == 12
    mismatch = next(f for f in data["findings"] if f["id"] == "arch-mismatch")
    assert "ssd" in mismatch["message"] and "faster_rcnn" in mismatch["message"]


def test_a_backbone_checkpoint_is_a_classification_restore(local: Zoo, project: Project, tmp_path: Path):
    code, data = config_json(local, str(project.backbone), "--from", str(SSD_R50), *project.data_options(),
                             "-o", str(tmp_path / "b.config"))  # fmt: skip
    assert code == 0, data["findings"]
    assert data["structure"] == "a backbone's checkpoint (root feature_extractor)"
    assert parse_file(tmp_path / "b.config").get(TYPE) == "classification"


def test_a_checkpoint_without_a_config_beside_it_asks_for_from(local: Zoo, project: Project):
    result = local.run("config", str(project.backbone), *project.data_options())
    assert result.returncode == 2
    assert "no pipeline.config beside it" in result.stderr and "--from CONFIG" in result.stderr
    assert "backbone's checkpoint" in result.stderr


def test_a_zoo_name_still_goes_through_the_registry(zoo: Zoo, project: Project, tmp_path: Path):
    code, data = config_json(zoo, "ssd_resnet50_v1_fpn", *project.data_options(), "-o", str(tmp_path / "z.config"))
    assert code == 0 and data["name"] == MODEL and data["structure"] is None


# -- resume -------------------------------------------------------------------------------------


@pytest.fixture
def ready_config(local: Zoo, project: Project, tmp_path: Path) -> Path:
    """Our config, fine-tuning from the other project's newest checkpoint, num_steps 5000."""
    out = tmp_path / "pipeline.config"
    result = local.run("config", str(project.run), *project.data_options(), "--num-steps", "5000", "-o", str(out))
    assert result.returncode == 0, result.stderr
    return out


def test_check_model_dir_says_fresh_start_or_resume_in_one_line(local: Zoo, project: Project, ready_config: Path, tmp_path: Path):
    fresh = tmp_path / "runs" / "exp1"
    result = local.run("check", str(ready_config), "--model-dir", str(fresh))
    assert result.returncode == 0, result.stdout
    assert (f"{ready_config}: fresh start in {fresh}: fine-tunes from {project.run / 'ckpt-2000'} (detection restore)"
            in result.stdout.splitlines())  # fmt: skip
    training_checkpoint(fresh, step=300)  # the first run stopped at step 300
    result = local.run("check", str(ready_config), "--model-dir", str(fresh), "--json")
    data = json.loads(result.stdout)
    assert result.returncode == 0 and data["ok"]
    assert data["plan"] == (f"training resumes from {fresh / 'ckpt-0'} (step 300 of num_steps 5000); "
                            "fine_tune_checkpoint is ignored")  # fmt: skip
    assert "model-dir-resumes" in {f["id"] for f in data["findings"]}


def test_check_model_dir_that_already_reached_num_steps(local: Zoo, ready_config: Path, tmp_path: Path):
    done = tmp_path / "done"
    training_checkpoint(done, step=5000)
    result = local.run("check", str(ready_config), "--model-dir", str(done))
    assert result.returncode == 12
    assert f"{ready_config}: training restores {done / 'ckpt-0'} (step 5000, at or past num_steps 5000) " \
           "and stops without a step" in result.stdout


def test_check_without_model_dir_has_no_plan(local: Zoo, ready_config: Path):
    data = json.loads(local.run("check", str(ready_config), "--json").stdout)
    assert "plan" not in data


# -- start training ---------------------------------------------------------------------------


@pytest.fixture
def stand_in(tmp_path: Path) -> Path:
    """A directory to put on PYTHONPATH holding object_detection.model_main_tf2 (the stand-in)."""
    package = tmp_path / "stand_in" / "object_detection"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model_main_tf2.py").write_text(STAND_IN)
    return package.parent


def trained(zoo: Zoo, stand_in: Path, record: Path, *args: str, exit_code: int = 0):
    return zoo.run("train", *args, PYTHONPATH=str(stand_in), ZOO_TEST_RECORD=str(record),
                   ZOO_TEST_EXIT=str(exit_code), ZOO_TEST_MARK="passed through")  # fmt: skip


def test_config_with_model_dir_prints_the_commands_to_train_and_evaluate(local: Zoo, project: Project, tmp_path: Path):
    out, run = tmp_path / "pipeline.config", tmp_path / "runs" / "exp1"
    result = local.run("config", str(project.run), *project.data_options(), "-o", str(out), "--model-dir", str(run))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if not line.startswith("#")]
    train, evaluate = (shlex.split(line) for line in lines)
    flags = [f"--pipeline_config_path={out}", f"--model_dir={run}"]
    assert train[1:] == ["-m", "object_detection.model_main_tf2", *flags, "--alsologtostderr"]
    assert evaluate[1:] == ["-m", "object_detection.model_main_tf2", *flags, f"--checkpoint_dir={run}",
                            "--alsologtostderr"]  # fmt: skip
    assert f"zoo: fresh start in {run}: fine-tunes from {project.run / 'ckpt-2000'}" in result.stderr
    code, data = config_json(local, str(project.run), *project.data_options(), "-o", str(out), "--model-dir", str(run))
    assert code == 0 and data["commands"] == {"train": shlex.join(train), "evaluate": shlex.join(evaluate)}
    assert data["plan"].startswith("fresh start")
    # The config on stdout has no path for a command to name.
    code, data = config_json(local, str(project.run), *project.data_options(), "--model-dir", str(run))
    assert code == 0 and data["commands"] is None


def test_train_runs_the_trainer_it_prints_and_returns_its_exit_code(local: Zoo, project: Project, stand_in: Path, tmp_path: Path):
    out, run, record = tmp_path / "pipeline.config", tmp_path / "runs" / "exp1", tmp_path / "record.json"
    code, data = config_json(local, str(project.run), *project.data_options(), "-o", str(out), "--model-dir", str(run))
    assert code == 0
    result = trained(local, stand_in, record, str(out), "--model-dir", str(run), "--skip-doctor",
                     "--", "--num_train_steps=5", exit_code=3)  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "stand-in trainer: step 100 loss 0.5" in result.stdout.splitlines()  # its output, streamed through
    assert "stand-in trainer: on stderr" in result.stderr and "zoo: the trainer exited with 3" in result.stderr
    seen = json.loads(record.read_text())
    printed = shlex.split(data["commands"]["train"])
    assert seen["module"] == "__main__" and seen["executable"] == printed[0]  # python -m, this interpreter
    assert seen["argv"] == [*printed[3:], "--num_train_steps=5"]  # the printed command, then the extra flags
    assert seen["env"] == {"ZOO_TEST_RECORD": str(record), "ZOO_TEST_EXIT": "3", "ZOO_TEST_MARK": "passed through"}
    record.unlink()
    assert trained(local, stand_in, record, str(out), "--model-dir", str(run), "--skip-doctor").returncode == 0
    assert json.loads(record.read_text())["argv"] == printed[3:]


def test_train_refuses_a_config_check_rejects_without_starting(local: Zoo, project: Project, stand_in: Path, ready_config: Path, tmp_path: Path):
    done, record = tmp_path / "done", tmp_path / "record.json"
    training_checkpoint(done, step=5000)
    result = trained(local, stand_in, record, str(ready_config), "--model-dir", str(done), "--skip-doctor")
    assert result.returncode == 12 and not record.exists()
    assert "model-dir-finished" in result.stderr and "not starting the trainer" in result.stderr


def test_train_refuses_what_the_doctor_rejects_unless_skipped(local: Zoo, stand_in: Path, ready_config: Path, tmp_path: Path):
    # Whatever this test environment is, `zoo train` agrees with `zoo doctor` on it.
    record = tmp_path / "record.json"
    doctor = local.run("doctor", "--json", PYTHONPATH=str(stand_in))
    result = trained(local, stand_in, record, str(ready_config), "--model-dir", str(tmp_path / "run"))
    if doctor.returncode == 12:
        assert result.returncode == 12 and not record.exists()
        assert "error(s) in the environment (--skip-doctor to start anyway)" in result.stderr
        assert "the trainer cannot start" in result.stderr
    else:
        assert result.returncode == 0 and record.exists()
