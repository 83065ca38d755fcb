"""Benchmark: staging a ~250 MB model in an object store, zoo against the peers a user would script.

Uses the large tarball the fetch benchmark builds (.bench/serve, a real TF
checkpoint of ~250 MB of random float32 weights; built here if missing),
fetches it once into a bench cache, then stages it to moto's S3 server and to
the GCS emulator (both on 127.0.0.1, as in the tests) with:

- `zoo fetch NAME --to URL` (a whole process) and a `zoo.stage()` call;
- s3fs `put(recursive=True)` of the same files (what `aws s3 cp --recursive`
  does) and gcsfs `put` (what a `gsutil`-free script does), each a call.

Each contender stages to a fresh prefix (first run), then again to the same
prefix (repeated run: zoo must upload nothing, checked in the store's request
log); contenders alternate, several repetitions, medians. Calls are timed
inside the call (interpreter start and imports excluded); the process row
includes them.

    .venv/bin/python tests/bench/stage.py [--reps 3] [--large-mb 250]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TESTS))
sys.path.insert(0, str(TESTS / "bench"))

from httpserver import FileServer  # noqa: E402
from inputs import BENCH, SERVE, prepare, served_models, write_registry  # noqa: E402
from objectstores import BUCKET, GcsStore, S3Store  # noqa: E402
from timing import PYTHON, Samples, record, run_timed  # noqa: E402

ZOO = str(Path(sys.executable).with_name("zoo"))
WORK = BENCH / "stage"
ZOO_CALL = (
    "import sys, time, zoo; settings = zoo.Settings.from_env(); stage = zoo.stage; "
    "t = time.perf_counter(); stage(sys.argv[1], sys.argv[2], settings=settings); print(time.perf_counter() - t)"
)
FSSPEC_PUT = (
    "import sys, time, fsspec; fs = fsspec.filesystem(sys.argv[1]); "
    "t = time.perf_counter(); fs.put(sys.argv[2].rstrip('/') + '/', sys.argv[3], recursive=True); "
    "print(time.perf_counter() - t)"
)


def cached_model(registry: Path, name: str) -> tuple[dict[str, str], Path]:
    """The bench cache holding the model (fetched once) and the environment zoo runs in."""
    env = {**os.environ, "ZOO_REGISTRY": str(registry), "ZOO_CACHE_DIR": str(WORK / "cache")}
    run_timed([ZOO, "fetch", name, "--quiet"], env)
    return env, WORK / "cache" / "models" / name


def upload_tree(entry: Path, name: str) -> Path:
    """The files zoo stages, laid out as it stages them, for the peers to put."""
    tree = WORK / "tree" / name
    shutil.rmtree(tree, ignore_errors=True)
    top = entry / "files" / name
    shutil.copytree(top / "checkpoint", tree / "checkpoint")
    shutil.copyfile(top / "pipeline.config", tree / "pipeline.config")
    shutil.copyfile(entry / "sample.config", tree / "sample.config")
    return tree


def contenders(store: S3Store | GcsStore, name: str, tree: Path, env: dict[str, str]) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Commands that stage the model below the prefix they are given last."""
    env = {**env, **store.env}
    peer = "s3fs put" if store.scheme == "s3" else "gcsfs put"
    return {
        "zoo fetch --to": ([ZOO, "fetch", name, "--quiet", "--to"], env),
        "zoo.stage() call": ([PYTHON, "-c", ZOO_CALL, name], env),
        f"{peer} call": ([PYTHON, "-c", FSSPEC_PUT, store.scheme, str(tree)], env),
    }


def bench_store(store: S3Store | GcsStore, name: str, tree: Path, env: dict[str, str], reps: int) -> dict[str, dict[str, float]]:
    results: dict[str, Samples] = {}
    uploads: dict[str, list[int]] = {}
    for rep in range(reps):
        for label, (command, run_env) in contenders(store, name, tree, env).items():
            prefix = f"{label.split()[0].strip('.()')}-{rep}"
            # zoo stages below <prefix>/<name>; the peers put the tree at that same place.
            target = f"{store.scheme}://{BUCKET}/{prefix}" + ("" if label.startswith("zoo") else f"/{name}")
            for phase in ("first", "repeated"):
                store.clear_log()
                wall, rss, out = run_timed([*command, target], run_env)
                record(results, f"{label} {phase}", wall, rss, out)
                uploads.setdefault(f"{label} {phase}", []).append(len(store.uploads()))
                if label.startswith("zoo") and phase == "repeated" and store.uploads():
                    raise RuntimeError(f"{label}: the repeated stage uploaded {len(store.uploads())} object(s)")
            store.filesystem().rm(f"{BUCKET}/{prefix}", recursive=True)  # the emulators hold objects in memory
        print(f"  {store.scheme}: repetition {rep + 1}/{reps} done", flush=True)
    return {label: {**s.summary(), "uploads": max(uploads[label])} for label, s in results.items()}


def print_table(results: dict[str, dict[str, dict[str, float]]], size_mb: float) -> None:
    print(f"\nstaging {size_mb:.0f} MB (checkpoint, pipeline.config, sample config) to a store on 127.0.0.1")
    print(f"{'store':<6} {'contender':<28} {'median s':>9} {'min-max s':>14} {'RSS MB':>7} {'uploads':>8}")
    for store, rows in results.items():
        for label, row in rows.items():
            span = f"{row['min_s']:.3f}-{row['max_s']:.3f}"
            print(f"{store:<6} {label:<28} {row['median_s']:>9.3f} {span:>14} {row['peak_rss_mb']:>7.0f} {row['uploads']:>8}")
    print("\ncalls are timed inside the call (interpreter start and imports excluded); `zoo fetch --to`")
    print("is the whole process. uploads: upload requests the store received (the most in any repetition).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--large-mb", type=float, default=250)
    options = parser.parse_args()
    tarballs = prepare({"large": options.large_mb})
    WORK.mkdir(parents=True, exist_ok=True)
    with FileServer(root=SERVE) as server:
        model = served_models(tarballs, server.url)["large"]
        env, entry = cached_model(write_registry({"large": model}, WORK / "registry.json"), model.name)
    tree = upload_tree(entry, model.name)
    size_mb = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file()) / 1e6
    results = {}
    for kind in (S3Store, GcsStore):
        with kind() as store:
            results[store.scheme] = bench_store(store, model.name, tree, env, options.reps)
    print_table(results, size_mb)
    (BENCH / "stage-results.json").write_text(json.dumps({"size_mb": size_mb, "results": results}, indent=2))


if __name__ == "__main__":
    main()
