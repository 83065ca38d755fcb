"""`zoo config` and `zoo check` end to end: the installed command in subprocesses,
the test model served on 127.0.0.1 (its sample config is the real SSD ResNet50
640x640 one; its archive holds a real TF2 checkpoint and pipeline.config)."""

from __future__ import annotations

import difflib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODEL, SAMPLE_CONFIGS, Zoo

from zoo.config.textproto import parse_file

SAMPLE = SAMPLE_CONFIGS / f"{MODEL}.config"
LABEL_MAP = "item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\nitem { id: 3 name: 'bird' }\n"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A label map and train/eval records, as a user's project holds them."""
    project = tmp_path / "project"
    (project / "records").mkdir(parents=True)
    (project / "label_map.pbtxt").write_text(LABEL_MAP)
    for name in ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val.tfrecord"):
        (project / "records" / name).write_bytes(b"\0" * 16)
    return project


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def full_options(data: Path) -> list[str]:
    return [
        "--label-map", str(data / "label_map.pbtxt"),
        "--train-records", str(data / "records" / "train-?????-of-00002.tfrecord"),
        "--eval-records", str(data / "records" / "val.tfrecord"),
        "--batch-size", "8",
    ]  # fmt: skip


def test_config_writes_a_config_that_check_accepts(zoo: Zoo, data: Path):
    out = data / "pipeline.config"
    result = zoo.run("config", "ssd_resnet50_v1_fpn", *full_options(data), "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert out.stat().st_mode & 0o777 == 0o666 & ~current_umask()  # as a plain open() would create it
    prefix = zoo.run("fetch", MODEL, "--offline").stdout.strip()
    doc = parse_file(out)
    assert doc.get("train_config.fine_tune_checkpoint") == prefix
    assert doc.get("train_config.fine_tune_checkpoint_type") == "detection"
    assert doc.get("train_config.fine_tune_checkpoint_version") == "V2"
    assert doc.get("model.ssd.num_classes") == 3 and doc.get("train_config.batch_size") == 8
    assert doc.get("eval_input_reader.label_map_path") == str(data / "label_map.pbtxt")
    assert "placeholder" not in result.stderr and "PATH_TO_BE_CONFIGURED" not in out.read_text()
    # only the requested fields changed: every other line of the sample is still there, byte for byte
    changed = [line for line in difflib.ndiff(SAMPLE.read_text().splitlines(), out.read_text().splitlines())
               if line.startswith("- ")]  # fmt: skip
    assert len(changed) == 8, changed  # ftc, type, batch, num_classes, 2 label maps, 2 input paths
    checked = zoo.run("check", str(out), "--json")
    assert checked.returncode == 0, checked.stdout
    report = json.loads(checked.stdout)
    assert report["ok"] and {f["severity"] for f in report["findings"]} <= {"note"}


def test_config_prints_to_stdout_and_lists_placeholders_with_lines(zoo: Zoo):
    result = zoo.run("config", MODEL)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = [line for line in result.stderr.splitlines() if line.startswith("  line ")]
    assert len(listed) == 4 and "4 placeholder(s) left to fill in <stdout>" in result.stderr
    for entry in listed:  # "  line 179: train_input_reader.label_map_path = "PATH_TO_BE_CONFIGURED/...""
        number = int(entry.split()[1].rstrip(":"))
        assert "PATH_TO_BE_CONFIGURED" in lines[number - 1]
    assert "train_input_reader.label_map_path" in result.stderr
    assert "error [" not in result.stderr  # placeholders are listed, not refused


def test_diff_prints_against_the_template_and_writes_nothing(zoo: Zoo, data: Path):
    out = data / "pipeline.config"
    result = zoo.run("config", MODEL, "--diff", "-o", str(out), "--num-steps", "5000")
    assert result.returncode == 0, result.stderr
    assert not out.exists()
    assert result.stdout.startswith(f"--- {zoo.cache}") and f"+++ {out}" in result.stdout
    assert '-  fine_tune_checkpoint: "PATH_TO_BE_CONFIGURED/resnet50.ckpt-1"' in result.stdout
    assert '-  fine_tune_checkpoint_type: "classification"' in result.stdout
    assert '+  fine_tune_checkpoint_type: "detection"' in result.stdout
    assert "-  num_steps: 25000\n+  num_steps: 5000" in result.stdout


def char_device(path: Path) -> Path:
    """A copy of /dev/null (we run as root)."""
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    return path


def test_config_output_writes_through_devices_and_dash_is_stdout(zoo: Zoo, tmp_path: Path):
    expected = zoo.run("config", MODEL).stdout
    device = char_device(tmp_path / "null")
    assert zoo.run("config", MODEL, "-o", str(device)).returncode == 0
    assert stat.S_ISCHR(device.lstat().st_mode) and device.stat().st_rdev == os.makedev(1, 3)
    for target in ("-", "/dev/stdout"):
        result = subprocess.run(zoo.command("config", MODEL, "-o", target), cwd=tmp_path, env=zoo.env,
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected and "PATH_TO_BE_CONFIGURED" in expected
    assert not (tmp_path / "-").exists()


def test_config_replaces_a_read_only_file_only_with_force(zoo: Zoo, data: Path):
    out = data / "pipeline.config"
    out.write_text("keep me\n")
    out.chmod(0o444)
    refused = zoo.run("config", MODEL, *full_options(data), "-o", str(out))
    assert refused.returncode == 2 and out.read_text() == "keep me\n"
    assert f"zoo: error: {out} is read-only; pass --force to replace it" in refused.stderr
    forced = zoo.run("config", MODEL, *full_options(data), "-o", str(out), "--force")
    assert forced.returncode == 0, forced.stderr
    assert "fine_tune_checkpoint" in out.read_text() and out.stat().st_mode & 0o777 == 0o444


@pytest.mark.timeout(300)
def test_config_takes_a_100000_class_label_map(zoo: Zoo, tmp_path: Path):
    label_map = tmp_path / "big.pbtxt"
    label_map.write_text("".join(f"item {{\n  id: {i}\n  name: 'class_{i}'\n  display_name: 'Class {i}'\n}}\n"
                                 for i in range(1, 100_001)))  # fmt: skip
    out = tmp_path / "pipeline.config"
    result = zoo.run("config", MODEL, "--label-map", str(label_map), "-o", str(out), timeout=240)
    assert result.returncode == 0, result.stderr
    assert parse_file(out).get("model.ssd.num_classes") == 100_000


def test_config_refuses_a_config_that_would_fail_unless_forced(zoo: Zoo, data: Path):
    out = data / "pipeline.config"
    mobilenet = SAMPLE_CONFIGS / "ssd_mobilenet_v2_fpnlite_640x640_coco17_tpu-8.config"
    refused = zoo.run("config", MODEL, "--from", str(mobilenet), *full_options(data), "-o", str(out))
    assert refused.returncode == 12 and not out.exists()
    assert "error [extractor-mismatch]" in refused.stderr and "ssd_resnet50_v1_fpn_keras" in refused.stderr
    assert "refusing to write" in refused.stderr
    forced = zoo.run("config", MODEL, "--from", str(mobilenet), *full_options(data), "-o", str(out), "--force")
    assert forced.returncode == 0 and out.exists()
    assert zoo.run("check", str(out)).returncode == 12


def test_config_full_type_with_other_classes_is_refused(zoo: Zoo, data: Path):
    result = zoo.run("config", MODEL, *full_options(data), "--checkpoint-type", "full", "--json")
    assert result.returncode == 12
    report = json.loads(result.stdout)
    assert not report["ok"] and not report["written"] and "config" not in report
    assert [f["path"] for f in report["findings"] if f["id"] == "arch-setting-mismatch"] == ["model.ssd.num_classes"]


def test_config_json_and_usage_errors(zoo: Zoo, data: Path, tmp_path: Path):
    result = zoo.run("config", MODEL, "--json", *full_options(data))
    report = json.loads(result.stdout)
    assert result.returncode == 0 and report["ok"] and report["placeholders"] == []
    assert report["checkpoint"] in report["config"] and report["name"] == MODEL
    assert zoo.run("config", MODEL, "--checkpoint-type", "fine_tune").returncode == 2
    contradicting = zoo.run("config", MODEL, "--label-map", str(data / "label_map.pbtxt"), "--num-classes", "5")
    assert contradicting.returncode == 2 and "contradicts" in contradicting.stderr
    bad = tmp_path / "bad.pbtxt"
    bad.write_text("item { id: 1 name: 'a' }\nitem { id: 1 name: 'b' }\n")
    assert zoo.run("config", MODEL, "--label-map", str(bad)).returncode == 11


def test_check_reports_model_dir_problems_and_parse_errors(zoo: Zoo, data: Path, tmp_path: Path):
    out = data / "pipeline.config"
    assert zoo.run("config", MODEL, *full_options(data), "-o", str(out)).returncode == 0
    checkpoint_dir = str(Path(parse_file(out).get("train_config.fine_tune_checkpoint")).parent)  # type: ignore[arg-type]
    same = zoo.run("check", str(out), "--model-dir", checkpoint_dir)
    assert same.returncode == 12 and "[model-dir-is-checkpoint-dir]" in same.stdout
    assert "cannot be same" in same.stdout and "zoo: error:" in same.stderr
    broken = tmp_path / "broken.config"
    broken.write_text("train_config {\n  batch_size:\n}\n")
    parsed = zoo.run("check", str(broken), "--json")
    assert parsed.returncode == 11 and json.loads(parsed.stdout)["line"] == 2


def test_check_never_imports_tensorflow(zoo: Zoo, data: Path):
    out = data / "pipeline.config"
    assert zoo.run("config", MODEL, *full_options(data), "-o", str(out)).returncode == 0
    probe = (
        "import sys\nfrom zoo_cli.main import main\nsys.argv = ['zoo', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    code = exit.code\n"
        "print('TENSORFLOW' if 'tensorflow' in sys.modules else f'NO-TENSORFLOW {code}', file=sys.stderr)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, "check", str(out)], env=zoo.env, capture_output=True,
                            text=True, timeout=60, check=False)  # fmt: skip
    assert result.stderr.strip().endswith("NO-TENSORFLOW 0"), result.stderr


def test_a_model_dir_in_the_zoo_cache_is_refused_by_check_and_config(zoo: Zoo, data: Path, tmp_path: Path):
    out = data / "pipeline.config"
    assert zoo.run("config", MODEL, *full_options(data), "-o", str(out)).returncode == 0
    top = Path(parse_file(out).get("train_config.fine_tune_checkpoint")).parent.parent  # type: ignore[arg-type]
    checked = zoo.run("check", str(out), "--model-dir", str(top))
    assert checked.returncode == 12 and "error [model-dir-zoo-layout]" in checked.stdout
    assert "FailedPreconditionError" in checked.stdout and "error [model-dir-in-cache]" in checked.stdout
    again = data / "again.config"
    inside = zoo.run("config", MODEL, *full_options(data), "--model-dir", str(top / "run1"), "-o", str(again))
    assert inside.returncode == 12 and not again.exists() and "error [model-dir-in-cache]" in inside.stderr
    fresh = zoo.run("config", MODEL, *full_options(data), "--model-dir", str(tmp_path / "run1"), "-o", str(again))
    assert fresh.returncode == 0 and again.exists(), fresh.stderr
