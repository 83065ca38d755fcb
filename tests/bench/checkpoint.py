"""Benchmark zoo.checkpoint against TensorFlow: listing a checkpoint, verifying its bytes.

    .venv/bin/python tests/bench/checkpoint.py [--repeat N]

The first run writes two checkpoints with TensorFlow under .bench/checkpoint/ (git-ignored):
~1,000 small tensors laid out like a zoo detector, and ~250 MB of float32 tensors. Then, in
one run, it prints a table (median and min-max of N runs) and the ratios:

- listing: `read_checkpoint` in this process and in a fresh interpreter, against
  `tf.train.list_variables` in a fresh interpreter that has to import TensorFlow, which is
  what a user waits for either way;
- verification, page cache warm: `verify_checkpoint` against reading every tensor through
  TensorFlow's CheckpointReader (which checks the same CRCs), TensorFlow's import not counted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".bench" / "checkpoint"
MANY = CACHE / "many" / "ckpt-0"
LARGE = CACHE / "large" / "ckpt-0"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}

WRITE = """
import sys
import numpy as np
import tensorflow as tf

kind, directory = sys.argv[1], sys.argv[2]
rng = np.random.default_rng(0)
model = tf.Module()
if kind == "many":  # 500 conv blocks of kernel + bias, a head: ~1,000 tensors like a zoo detector
    model._feature_extractor = tf.Module()
    model._feature_extractor.blocks = []
    for _ in range(500):
        block = tf.Module()
        block.kernel = tf.Variable(rng.standard_normal((3, 3, 8, 8), dtype=np.float32))
        block.bias = tf.Variable(np.zeros(8, np.float32))
        model._feature_extractor.blocks.append(block)
    model._box_predictor = tf.Module()
    model._box_predictor.kernel = tf.Variable(rng.standard_normal((3, 3, 8, 90), dtype=np.float32))
else:  # 64 tensors of 4 MiB: ~256 MiB of float32
    model.weights = [tf.Variable(rng.standard_normal(1 << 20, dtype=np.float32)) for _ in range(64)]
tf.train.CheckpointManager(tf.train.Checkpoint(model=model), directory, max_to_keep=1).save(checkpoint_number=0)
"""

LIST_OURS = "import sys; from zoo.checkpoint import read_checkpoint; read_checkpoint(sys.argv[1])"
# The same without running zoo/__init__.py, which imports the whole fetch stack (requests ...):
# what the reader itself costs.
LIST_OURS_ALONE = """
import sys, types
package = types.ModuleType("zoo")
package.__path__ = [sys.argv[2]]
sys.modules["zoo"] = package
from zoo.checkpoint import read_checkpoint
read_checkpoint(sys.argv[1])
"""
LIST_TF = "import sys; import tensorflow as tf; tf.train.list_variables(sys.argv[1])"
READ_TF = """
import sys, time
import tensorflow as tf

reader = tf.train.load_checkpoint(sys.argv[1])
names = sorted(reader.get_variable_to_shape_map())
for _ in range(int(sys.argv[2])):
    start = time.perf_counter()
    for name in names:
        reader.get_tensor(name)
    print(time.perf_counter() - start)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs per measurement (default 5)")
    repeat = parser.parse_args().repeat

    for prefix, kind in ((MANY, "many"), (LARGE, "large")):
        _ensure(prefix, kind)
    sys.path.insert(0, str(ROOT))
    from zoo.checkpoint import read_checkpoint, verify_checkpoint

    many, large = read_checkpoint(MANY), read_checkpoint(LARGE)
    verify_checkpoint(large)  # warms the page cache
    size = large.num_bytes

    rows = [
        ("list, zoo, in process", _times(lambda: read_checkpoint(MANY), repeat), "ms"),
        ("list, zoo, fresh interpreter", _times(lambda: _python(LIST_OURS, MANY), repeat), "ms"),
        ("  same, without zoo/__init__", _times(lambda: _python(LIST_OURS_ALONE, MANY, ROOT / "zoo"), repeat), "ms"),
        ("list, TF, fresh interpreter", _times(lambda: _python(LIST_TF, MANY), repeat), "ms"),
        ("verify, zoo", _times(lambda: verify_checkpoint(read_checkpoint(LARGE)), repeat), "GB/s"),
        ("read all, TF CheckpointReader", _tf_read_times(repeat), "GB/s"),
    ]
    print(f"listing: {MANY} ({len(many.entries)} tensors); verification: {LARGE} ({size / 1e6:.0f} MB, "
          f"{len(large.entries)} tensors); {repeat} runs each\n")  # fmt: skip
    print(f"{'measurement':32} {'median':>12} {'min - max':>22}")
    medians = {}
    for label, times, unit in rows:
        medians[label] = statistics.median(times)
        shown = [t * 1e3 for t in times] if unit == "ms" else [size / t / 1e9 for t in times]
        print(f"{label:32} {statistics.median(shown):9.2f} {unit:4} {min(shown):9.2f} - {max(shown):.2f} {unit}")
    tf_list = medians["list, TF, fresh interpreter"]
    print()
    for label in ("list, zoo, fresh interpreter", "  same, without zoo/__init__", "list, zoo, in process"):
        print(f"listing, TF fresh interpreter / {label.strip():28} {tf_list / medians[label]:6.0f}x")
    ratio = medians["read all, TF CheckpointReader"] / medians["verify, zoo"]
    print(f"verification throughput, zoo / TF {'':26} {ratio:6.1f}x")


def _ensure(prefix: Path, kind: str) -> None:
    if not prefix.with_name(prefix.name + ".index").is_file():
        print(f"writing {prefix} with TensorFlow (once) ...", file=sys.stderr)
        _python(WRITE, kind, prefix.parent)


def _times(run: Callable[[], object], repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def _tf_read_times(repeat: int) -> list[float]:
    # One interpreter for all runs: TensorFlow's import is not what this compares.
    out = _python(READ_TF, LARGE, repeat + 1)
    return [float(line) for line in out.split()][1:]  # the first run warms TF's own caches


def _python(code: str, *args: object) -> str:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                            env=ENV, capture_output=True, text=True, check=True)  # fmt: skip
    return result.stdout


if __name__ == "__main__":
    main()
