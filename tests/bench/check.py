"""Benchmark: `zoo check` on a zoo config with its checkpoint, as a whole process.

Generates once (under .bench/check/, reused later; in a child process, so this
one never imports TensorFlow) a model directory in the TF2 zoo layout:
``<model>/checkpoint/ckpt-0`` with ~1,500 tensors keyed like a real SSD
ResNet50 FPN (``model/_feature_extractor/classification_backbone/
layer_with_weights-N/...``), ``<model>/pipeline.config`` (the real sample),
plus a label map and record files; then writes the config `zoo config` would.
It then times, alternating, several runs of

- ``zoo check CONFIG`` (the installed command: Python start-up, CLI import,
  parse, checkpoint index read, pipeline.config comparison, globs), with
  bytecode cached as an installed package has it, and without (a checkout
  run with PYTHONDONTWRITEBYTECODE=1 compiles zoo's modules every time);
- ``python -c "import tensorflow"``, for scale: the trainer pays at least
  this before it finds the first problem;

and proves TensorFlow stays out: once by probing ``sys.modules`` after the
command ran, once with a poisoned ``tensorflow`` package first on PYTHONPATH
(any import of it would fail the run). Prints wall times (median, min-max),
the in-process split (parse / gather / check) and writes the same as JSON to
.bench/check-results.json.

    .venv/bin/python tests/bench/check.py [--reps 15] [--layers 300]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
BENCH = ROOT / ".bench" / "check"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(ROOT))

PYTHON = sys.executable
ZOO = str(Path(sys.executable).with_name("zoo"))
MODEL = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
SAMPLE = TESTS / "data" / "tf2_sample_configs" / f"{MODEL}.config"
BUDGET_S = 0.5

PROBE = (
    "import sys\nfrom zoo_cli.main import main\nsys.argv = ['zoo', *sys.argv[1:]]\n"
    "try:\n    main()\nexcept SystemExit as done:\n    code = done.code\n"
    "print('TENSORFLOW IMPORTED' if 'tensorflow' in sys.modules else f'tensorflow not imported (exit {code})',"
    " file=sys.stderr)\n"
)


def generate(layers: int, target: Path) -> None:
    """Runs in a child process: the only place TensorFlow is imported."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf  # type: ignore[import-untyped]

    def module(**variables: object) -> object:
        holder = tf.Module()
        for name, value in variables.items():
            setattr(holder, name, tf.Variable(value))
        return holder

    backbone = tf.Module()
    for i in range(layers):  # conv + batch norm, as Keras names them in a checkpoint
        setattr(backbone, f"layer_with_weights-{i}", module(
            kernel=tf.zeros([3, 3, 2, 2]), gamma=tf.ones([2]), beta=tf.zeros([2]),
            moving_mean=tf.zeros([2]), moving_variance=tf.ones([2])))  # fmt: skip
    extractor = tf.Module()
    extractor.classification_backbone = backbone
    extractor._fpn_features_generator = module(**{f"kernel_{i}": tf.zeros([2, 2]) for i in range(20)})
    predictor = tf.Module()
    predictor._base_tower_layers_for_heads = module(**{f"kernel_{i}": tf.zeros([2, 2]) for i in range(16)})
    predictor._box_prediction_head = module(kernel=tf.zeros([2, 2]), bias=tf.zeros([2]))
    predictor._prediction_heads = module(kernel=tf.zeros([2, 2]), bias=tf.zeros([2]))
    model = tf.Module()
    model._feature_extractor = extractor
    model._box_predictor = predictor
    manager = tf.train.CheckpointManager(tf.train.Checkpoint(model=model), str(target / "checkpoint"), max_to_keep=1)
    manager.save(checkpoint_number=0)
    (target / "pipeline.config").write_text(SAMPLE.read_text())


def prepare(layers: int) -> Path:
    """The model directory, its data and the ready config; built once per size."""
    model_dir = BENCH / f"{MODEL}-{layers}"
    if not (model_dir / "pipeline.config").exists():
        print(f"generating {model_dir} ({layers * 5} backbone tensors) ...", flush=True)
        subprocess.run([PYTHON, __file__, "--generate", str(layers), str(model_dir)], check=True)
    data = BENCH / "data"
    (data / "records").mkdir(parents=True, exist_ok=True)
    (data / "label_map.pbtxt").write_text("item { id: 1 name: 'cat' }\nitem { id: 2 name: 'dog' }\n")
    for name in ("train-00000-of-00002.tfrecord", "train-00001-of-00002.tfrecord", "val.tfrecord"):
        (data / "records" / name).write_bytes(b"\0" * 16)
    return write_config(model_dir, data)


def write_config(model_dir: Path, data: Path) -> Path:
    from zoo.config.configure import Edits, apply_edits
    from zoo.config.textproto import parse_file

    doc = parse_file(SAMPLE)
    apply_edits(doc, Edits(
        fine_tune_checkpoint=str(model_dir / "checkpoint" / "ckpt-0"), checkpoint_type="detection",
        label_map_path=str(data / "label_map.pbtxt"), num_classes=2, batch_size=8,
        train_records=(str(data / "records" / "train-?????-of-00002.tfrecord"),),
        eval_records=(str(data / "records" / "val.tfrecord"),),
    ))  # fmt: skip
    config = model_dir.parent / f"{model_dir.name}.config"
    config.write_text(doc.text)
    return config


def bytecode_environments() -> tuple[dict[str, str], dict[str, str]]:
    """As installed (pip writes .pyc files; here into a prefix under .bench, not
    the source tree), and as a checkout run with PYTHONDONTWRITEBYTECODE=1,
    which compiles zoo's modules from source on every start."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    installed = {**base, "PYTHONPYCACHEPREFIX": str(BENCH / "pycache")}
    return installed, {**base, "PYTHONDONTWRITEBYTECODE": "1"}


def wall(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command} failed ({result.returncode}):\n{result.stdout}{result.stderr}")
    return elapsed


def in_process(config: Path, reps: int) -> dict[str, float]:
    """Milliseconds per phase inside one process (the library work alone)."""
    from zoo.config.checks import check
    from zoo.config.facts import gather
    from zoo.config.textproto import parse_file

    totals = {"parse_ms": 0.0, "gather_ms": 0.0, "check_ms": 0.0}
    for _ in range(reps):
        t0 = time.perf_counter()
        doc = parse_file(config)
        t1 = time.perf_counter()
        facts = gather(doc, Path.cwd())
        t2 = time.perf_counter()
        findings = check(doc, facts)
        t3 = time.perf_counter()
        assert not [f for f in findings if f.severity.value == "error"], findings
        for key, spent in zip(totals, (t1 - t0, t2 - t1, t3 - t2)):
            totals[key] += spent * 1000
    return {key: value / reps for key, value in totals.items()}


def proofs(config: Path) -> dict[str, str]:
    probe = subprocess.run([PYTHON, "-c", PROBE, "check", str(config)], capture_output=True, text=True, check=False)
    poison = BENCH / "poison" / "tensorflow"
    poison.mkdir(parents=True, exist_ok=True)
    (poison / "__init__.py").write_text("raise ImportError('zoo check imported tensorflow')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(poison.parent), os.environ.get("PYTHONPATH", "")])}
    poisoned = subprocess.run([ZOO, "check", str(config)], capture_output=True, text=True, env=env, check=False)
    return {
        "sys.modules probe": probe.stderr.strip().splitlines()[-1],
        "poisoned tensorflow on PYTHONPATH": f"exit {poisoned.returncode}"
        + (" (no import attempted)" if poisoned.returncode == 0 else f": {poisoned.stderr.strip()[-300:]}"),
    }


def summary(samples: list[float]) -> dict[str, float]:
    return {"median_s": statistics.median(samples), "min_s": min(samples), "max_s": max(samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--layers", type=int, default=300)
    parser.add_argument("--generate", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(int(args.generate[0]), Path(args.generate[1]))
        return
    config = prepare(args.layers)
    from zoo.checkpoint import read_checkpoint

    tensors = len(read_checkpoint(config.parent / config.stem / "checkpoint" / "ckpt-0").entries)
    installed, uncompiled = bytecode_environments()
    wall([ZOO, "check", str(config)], installed)  # warm the page cache and write the .pyc files
    check_times, uncompiled_times, tf_times = [], [], []
    for _ in range(args.reps):
        check_times.append(wall([ZOO, "check", str(config)], installed))
        uncompiled_times.append(wall([ZOO, "check", str(config)], uncompiled))
        tf_times.append(wall([PYTHON, "-c", "import tensorflow"], env={**installed, "TF_CPP_MIN_LOG_LEVEL": "3"}))
    results = {
        "config": str(config),
        "checkpoint_tensors": tensors,
        "reps": args.reps,
        "zoo check (process)": summary(check_times),
        "zoo check (process, no .pyc for zoo's modules)": summary(uncompiled_times),
        "python -c 'import tensorflow' (process)": summary(tf_times),
        "in-process split": in_process(config, args.reps),
        "proofs": proofs(config),
    }
    (ROOT / ".bench").mkdir(exist_ok=True)
    (ROOT / ".bench" / "check-results.json").write_text(json.dumps(results, indent=2) + "\n")
    report(results)


def report(results: dict) -> None:  # type: ignore[type-arg]
    print(f"config: {results['config']} ({results['checkpoint_tensors']} tensors in the checkpoint index)")
    for name in ("zoo check (process)", "zoo check (process, no .pyc for zoo's modules)",
                 "python -c 'import tensorflow' (process)"):  # fmt: skip
        s = results[name]
        print(f"{name:<48} median {s['median_s'] * 1000:7.1f} ms  (min {s['min_s'] * 1000:.1f}, "
              f"max {s['max_s'] * 1000:.1f}) over {results['reps']} runs")  # fmt: skip
    check_median = results["zoo check (process)"]["median_s"]
    ratio = results["python -c 'import tensorflow' (process)"]["median_s"] / check_median
    verdict = "within" if check_median < BUDGET_S else "OVER"
    print(f"zoo check is {verdict} the {BUDGET_S * 1000:.0f} ms budget; importing TensorFlow alone takes {ratio:.1f}x as long")
    split = results["in-process split"]
    print("in-process: " + ", ".join(f"{k.removesuffix('_ms')} {v:.1f} ms" for k, v in split.items()))
    for proof, outcome in results["proofs"].items():
        print(f"{proof}: {outcome}")


if __name__ == "__main__":
    main()
