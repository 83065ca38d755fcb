"""Benchmark: how long `zoo` takes to start, against a bare `python -c pass`.

For each Typer the package allows, the newest (this venv) and the oldest
(a scratch venv under .bench/typer-0.16, created on the first run with
typer 0.16 and the newest click, plus an editable zoo), times as
whole processes, alternating, several runs of

- `python -c pass` (that venv's interpreter: the unit of every ratio);
- a warm `zoo fetch ssd_resnet50_v1_fpn` (cached: no connection, no hashing);
- `zoo list`;
- `zoo --help`;
- `zoo check` of a sample config beside its checkpoint (tests/bench/check.py
  generates it once, with TensorFlow, in a child process);

and prints median, min-max and the ratio of each median to `python -c pass`,
with the target ratio. Nothing is written outside .bench/.

    .venv/bin/python tests/bench/startup.py [--reps 21]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
TESTS = BENCH_DIR.parent
ROOT = TESTS.parent
BENCH = ROOT / ".bench"
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(BENCH_DIR))

from tarballs import make_zoo_tarball  # noqa: E402

OLD_TYPER = BENCH / "typer-0.16"
OLD_PACKAGES = ["typer==0.16.*", "requests>=2.28", "urllib3>=2.1", "crc32c>=2.4", "isal>=1.6", "tqdm>=4.64"]
MODEL = "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8"
TARBALL_PATH = f"download.tensorflow.org/models/object_detection/tf2/20200711/{MODEL}.tar.gz"
# Command label -> target ratio to `python -c pass` (from the issue).
TARGETS = {"zoo fetch (warm)": 5.0, "zoo list": 6.0, "zoo --help": 8.0, "zoo check": 8.0}


def old_typer_venv() -> Path:
    """The oldest Typer pyproject.toml allows (0.16: older ones misread flags under click 8.2+)."""
    python = OLD_TYPER / "bin" / "python"
    if not python.exists():
        print(f"creating {OLD_TYPER} ...", flush=True)
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(OLD_TYPER)], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", *OLD_PACKAGES], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    return python


def warm_cache() -> dict[str, str]:
    """A directory mirror holding a small zoo tarball and a cache it was fetched
    into; the environment that makes `zoo fetch` a pure cache hit."""
    home = BENCH / "startup"
    # Bytecode cached, as after `pip install` (which compiles it): a shell that sets
    # PYTHONDONTWRITEBYTECODE would make every run compile zoo and its dependencies.
    inherited = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    env = {**inherited, "ZOO_CACHE_DIR": str(home / "cache"), "ZOO_MIRROR": str(home / "mirror"), "ZOO_OFFLINE": "1"}
    archive = home / "mirror" / TARBALL_PATH
    if not archive.exists():
        config = (TESTS / "data" / "tf2_sample_configs" / f"{MODEL}.config").read_text()
        built = make_zoo_tarball(home / "build", MODEL, config_text=config, size_mb=2)
        archive.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(built, archive)
    zoo = Path(sys.executable).with_name("zoo")
    subprocess.run([zoo, "fetch", "ssd_resnet50_v1_fpn", "--quiet"], env=env, check=True, stdout=subprocess.DEVNULL)
    return env


def sample_config() -> Path:
    from check import (
        prepare,  # tests/bench/check.py: model directory, data and config, built once
    )

    return prepare(300)


def commands(python: Path, config: Path) -> dict[str, list[str]]:
    zoo = str(python.with_name("zoo"))
    return {
        "python -c pass": [str(python), "-c", "pass"],
        "zoo fetch (warm)": [zoo, "fetch", "ssd_resnet50_v1_fpn"],
        "zoo list": [zoo, "list"],
        "zoo --help": [zoo, "--help"],
        "zoo check": [zoo, "check", str(config)],
    }


def wall(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{command} exited {result.returncode}: {result.stderr.decode()[-2000:]}")
    return elapsed


def measure(python: Path, config: Path, env: dict[str, str], reps: int) -> dict[str, list[float]]:
    runs = commands(python, config)
    for label, command in list(runs.items()):  # compile bytecode, fill the page cache
        try:
            wall(command, env)
        except RuntimeError as exc:  # reported, and the other commands still measured
            print(f"  {label}: not measured: {str(exc).strip().splitlines()[-1]}")
            del runs[label]
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(reps):
        for label, command in runs.items():
            samples[label].append(wall(command, env))
    return samples


def typer_version(python: Path) -> str:
    probe = "import importlib.metadata as m; print(m.version('typer'), m.version('click'))"
    typer, click = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    return f"typer {typer} (click {click})"


def report(label: str, samples: dict[str, list[float]]) -> None:
    base = statistics.median(samples["python -c pass"])
    print(f"\n{label}")
    print(f"  {'command':<18} {'median ms':>9} {'min-max ms':>13} {'ratio':>6} {'target':>7}")
    for command, times in samples.items():
        median = statistics.median(times)
        target = TARGETS.get(command)
        verdict = f"<= {target:g}x {'ok' if median / base <= target else 'MISSED'}" if target else ""
        span = f"{min(times) * 1000:.0f}-{max(times) * 1000:.0f}"
        print(f"  {command:<18} {median * 1000:>9.1f} {span:>13} {median / base:>5.1f}x {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    options = parser.parse_args()
    pythons = [Path(sys.executable), old_typer_venv()]
    env = warm_cache()
    config = sample_config()
    print(f"{os.cpu_count()} CPUs; {options.reps} runs of each command, alternating; ratio = median / python -c pass")
    for python in pythons:
        report(f"{typer_version(python)}: {python.parent.parent}", measure(python, config, env, options.reps))


if __name__ == "__main__":
    main()
