"""Benchmark: `zoo fetch` against curl + tar, keras get_file and pooch, in one run.

Generates once (under .bench/ at the repository top, reused later) zoo
tarballs in the real layout with TensorFlow checkpoints of ~250 MB and ~20 MB
of random float32 weights, serves them from 127.0.0.1 (nginx when installed,
else the tests' threaded server), and times every contender as a whole
process, alternating them, several repetitions. Prints wall time (median and
min-max), peak RSS and the ratio of each contender to zoo; writes the same as
JSON to .bench/fetch-results.json.

    .venv/bin/python tests/bench/fetch.py [--reps 3] [--large-mb 250] [--small-mb 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
BENCH = ROOT / ".bench"
sys.path.insert(0, str(TESTS))

from httpserver import FileServer  # noqa: E402
from nginx import Nginx, nginx_binary  # noqa: E402
from tarballs import sha256_of  # noqa: E402

PYTHON = sys.executable
ZOO = str(Path(sys.executable).with_name("zoo"))
SAMPLE = TESTS / "data" / "tf2_sample_configs"
MODELS = {
    "large": ("ssd_resnet50_v1_fpn_640x640_coco17_tpu-8", "ssd_resnet50_v1_fpn_640x640_coco17_tpu-8.config"),
    "small": ("ssd_mobilenet_v2_320x320_coco17_tpu-8", "ssd_mobilenet_v2_320x320_coco17_tpu-8.config"),
}

KERAS = (
    "import sys, time, keras; t = time.perf_counter(); "
    "keras.utils.get_file(sys.argv[1] + '.tar.gz', origin=sys.argv[2], extract=True, "
    "file_hash=sys.argv[3], hash_algorithm='sha256', cache_dir=sys.argv[4]); "
    "print(time.perf_counter() - t)"
)
ZOO_CALL = (
    "import sys, time, zoo; settings = zoo.Settings.from_env(cache_dir=sys.argv[4]); fetch = zoo.fetch; "
    "t = time.perf_counter(); fetch(sys.argv[1], settings=settings); print(time.perf_counter() - t)"
)
POOCH = (
    "import sys, time, pooch; t = time.perf_counter(); "
    "pooch.retrieve(sys.argv[2], known_hash='sha256:' + sys.argv[3], path=sys.argv[4], "
    "processor=pooch.Untar(), progressbar=False); print(time.perf_counter() - t)"
)


@dataclass
class Samples:
    wall: list[float] = field(default_factory=list)
    call: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        times = self.call or self.wall
        return {
            "median_s": statistics.median(times),
            "min_s": min(times),
            "max_s": max(times),
            "process_median_s": statistics.median(self.wall),
            "peak_rss_mb": max(self.rss_mb),
        }


@dataclass
class Model:
    name: str
    tarball: Path
    url: str
    config_url: str
    sha256: str


# Runs argv[2:] as its child and writes "<wall seconds> <peak RSS KiB>" of that
# child, from the rusage wait4 returns for it, to file descriptor argv[1]. Linux
# starts an exec'd process's peak RSS at its parent's (fork/vfork share or copy
# the parent's memory until exec), so a child of this script would report at
# least this script's peak; a child of this small launcher (no site, no zoo)
# starts from the launcher's few MB instead.
LAUNCHER = """
import os, sys, time
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
os.write(int(sys.argv[1]), f"{time.perf_counter() - started} {usage.ru_maxrss}".encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MB of this process alone (its own descendants
    included, as wait4 counts them; nothing else this script ran) and stdout."""
    read_end, write_end = os.pipe()
    try:
        result = subprocess.run(
            [PYTHON, "-S", "-c", LAUNCHER, str(write_end), *command],
            env=env, capture_output=True, text=True, pass_fds=(write_end,), check=False,
        )  # fmt: skip
        os.close(write_end)
        wall, rss_kib = os.read(read_end, 256).split()
    finally:
        os.close(read_end)
    if result.returncode != 0:
        raise RuntimeError(f"{command[:3]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return float(wall), int(rss_kib) / 1024, result.stdout


def prepare(large_mb: float, small_mb: float) -> dict[str, Path]:
    """Build the tarballs once, in a child process so TensorFlow never inflates this
    process (a child's peak RSS starts from its parent's at exec on Linux)."""
    serve = BENCH / "serve"
    built = {}
    for size_name, size_mb in (("large", large_mb), ("small", small_mb)):
        name, config = MODELS[size_name]
        target = serve / "models" / f"{name}.tar.gz"
        stamp = target.with_suffix(".size")
        if not target.exists() or stamp.read_text() != str(size_mb):
            print(f"generating {target.name} (~{size_mb:g} MB of float32 weights) ...", flush=True)
            subprocess.run([PYTHON, __file__, "--generate", size_name, str(size_mb), str(target)], check=True)
            stamp.write_text(str(size_mb))
        (serve / "configs").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SAMPLE / config, serve / "configs" / config)
        built[size_name] = target
    return built


def generate(size_name: str, size_mb: float, target: Path) -> None:
    from tarballs import make_zoo_tarball

    name, config = MODELS[size_name]
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = make_zoo_tarball(BENCH / "build", name, config_text=(SAMPLE / config).read_text(), size_mb=size_mb)
    shutil.move(fresh, target)


@contextmanager
def serving(root: Path) -> Iterator[tuple[str, str]]:
    if nginx_binary():
        with Nginx(root, BENCH / "nginx") as server:
            yield server.url, "nginx"
    else:
        with FileServer(root=root) as server:
            yield server.url, "python threaded server"


def write_registry(models: dict[str, Model], path: Path) -> None:
    entries = [
        {
            "name": m.name,
            "family": "tf2-detection",
            "url": m.url,
            "checkpoint": "checkpoint/ckpt-0",
            "sha256": m.sha256,
            "size": m.tarball.stat().st_size,
            "sample_config": {"path": "configs/" + Path(m.config_url).name, "url": m.config_url},
        }
        for m in models.values()
    ]
    path.write_text(json.dumps({"format": 1, "models": entries}))


def contenders(model: Model, registry: Path) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """Cold and warm commands; each gets a fresh directory as its last argument's target."""
    zoo_env = {**os.environ, "ZOO_REGISTRY": str(registry)}
    return {
        "curl + tar": (["sh", "-c", 'curl -sSf -o "$2/a.tar.gz" "$1" && tar xzf "$2/a.tar.gz" -C "$2"', "sh", model.url], None),
        "keras get_file": ([PYTHON, "-c", KERAS, model.name, model.url, model.sha256], None),
        "pooch retrieve": ([PYTHON, "-c", POOCH, model.name, model.url, model.sha256], None),
        "zoo fetch": ([ZOO, "fetch", model.name, "--quiet", "--cache-dir"], zoo_env),
        "zoo.fetch() call": ([PYTHON, "-c", ZOO_CALL, model.name, model.url, model.sha256], zoo_env),
    }


def bench_model(model: Model, registry: Path, reps: int) -> dict[str, dict[str, float]]:
    cold: dict[str, Samples] = {}
    warm: dict[str, Samples] = {}
    extra: dict[str, Samples] = {}
    for rep in range(reps):
        for label, (command, env) in contenders(model, registry).items():
            work = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH))
            try:
                for phase, store in (("cold", cold), ("warm", warm)):
                    wall, rss, out = run_timed([*command, str(work)], env)
                    record(store, f"{label} {phase}", wall, rss, out)
                if label == "zoo fetch":
                    wall, rss, _ = run_timed([ZOO, "verify", model.name, "--cache-dir", str(work)], env)
                    record(extra, "zoo verify", wall, rss, "")
            finally:
                shutil.rmtree(work, ignore_errors=True)
        print(f"  {model.name}: repetition {rep + 1}/{reps} done", flush=True)
    return {k: v.summary() for k, v in {**cold, **warm, **extra}.items()}


def record(store: dict[str, Samples], key: str, wall: float, rss: float, out: str) -> None:
    samples = store.setdefault(key, Samples())
    samples.wall.append(wall)
    samples.rss_mb.append(rss)
    call = out.strip().splitlines()[-1] if out.strip() else ""
    if call.replace(".", "", 1).isdigit():
        samples.call.append(float(call))


def bench_startup(reps: int) -> dict[str, dict[str, float]]:
    results: dict[str, Samples] = {}
    for _ in range(reps):
        for label, command in (("zoo --help", [ZOO, "--help"]), ("zoo list", [ZOO, "list"])):
            wall, rss, _ = run_timed(command)
            record(results, label, wall, rss, "")
    return {k: v.summary() for k, v in results.items()}


def baseline(label: str) -> str:
    """What a contender is compared with: Python calls with zoo's call, processes with zoo's process."""
    phase = label.rsplit(" ", 1)[-1]
    python_call = label.startswith(("keras", "pooch", "zoo.fetch()"))
    return f"zoo.fetch() call {phase}" if python_call else f"zoo fetch {phase}"


def print_table(results: dict[str, dict[str, dict[str, float]]]) -> None:
    print(f"\n{'model':<8} {'contender':<24} {'median s':>9} {'min-max s':>14} {'RSS MB':>7} {'ratio to zoo':>13}")
    for size, rows in results.items():
        for label, row in rows.items():
            zoo_row = rows.get(baseline(label))
            ratio = f"{row['median_s'] / zoo_row['median_s']:.2f}x" if zoo_row and zoo_row is not row else ""
            span = f"{row['min_s']:.3f}-{row['max_s']:.3f}"
            print(f"{size:<8} {label:<24} {row['median_s']:>9.3f} {span:>14} {row['peak_rss_mb']:>7.0f} {ratio:>13}")
    print("\nratio = contender median / zoo median (above 1.00x: zoo is faster). Processes (curl + tar)")
    print("are compared with the `zoo fetch` process; Python calls (keras, pooch) with the zoo.fetch()")
    print("call, each timed inside its call, interpreter start and imports excluded. RSS: whole process.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--large-mb", type=float, default=250)
    parser.add_argument("--small-mb", type=float, default=20)
    parser.add_argument("--generate", nargs=3, metavar=("SIZE", "MB", "TARGET"), help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.generate:
        generate(options.generate[0], float(options.generate[1]), Path(options.generate[2]))
        return
    tarballs = prepare(options.large_mb, options.small_mb)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with serving(BENCH / "serve") as (base, server_kind):
        print(f"serving {BENCH / 'serve'} with {server_kind} at {base}")
        models = {
            size: Model(
                MODELS[size][0], path, f"{base}/models/{path.name}", f"{base}/configs/{MODELS[size][1]}", sha256_of(path)
            )
            for size, path in tarballs.items()
        }
        registry = BENCH / "registry.json"
        write_registry(models, registry)
        for size, model in models.items():
            results[size] = bench_model(model, registry, options.reps)
    results["startup"] = bench_startup(max(options.reps, 5))
    print_table(results)
    (BENCH / "fetch-results.json").write_text(json.dumps({"server": server_kind, "results": results}, indent=2))
    print(f"\nwritten: {BENCH / 'fetch-results.json'}")


if __name__ == "__main__":
    main()
