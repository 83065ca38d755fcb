"""Benchmark: `zoo fetch` against its peers, in one run.

The default run compares zoo with curl + tar, keras get_file and pooch on
loopback: it generates once (under .bench/ at the repository top, reused
later) zoo tarballs in the real layout with TensorFlow checkpoints of ~250 MB
and ~40 MB of random float32 weights, serves them from 127.0.0.1 (nginx when
installed, else the tests' threaded server), and times every contender as a
whole process, several repetitions. Prints wall time (median and min-max),
peak RSS and the ratio of each contender to zoo; writes the same as JSON to
.bench/fetch-results.json.

With --links (issue 14; needs nginx, aria2c and the bench extra's
hf_transfer) it serves the same tarballs from an nginx that caps each
connection at 8 MiB/s (a far CDN edge) and from one that does not, times cold
fetches by curl + tar, aria2c -x8 -s8 + tar, hf_transfer + tarfile and zoo
(default connections, and ZOO_CONNECTIONS=1, 4, 8, 16), alternating, and
prints per link and size the medians, min-max, RSS and the ratios to curl +
tar and to the faster multi-connection tool (see links.py); then profiles an
in-process cold fetch of the large tarball on the uncapped link by stage,
against the isal-inflate floor measured in the same run (see stages.py).
Full run about 10 minutes on 2 cores; --quick (one repetition, the small
tarball, ZOO_CONNECTIONS 1 and 8) about one. Writes .bench/links-results.json.

    .venv/bin/python tests/bench/fetch.py [--reps 3] [--large-mb 250] [--small-mb 40]
    .venv/bin/python tests/bench/fetch.py --links [--reps 3 | --quick] [--connections 1,4,8,16]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
sys.path.insert(0, str(TESTS))

from httpserver import FileServer  # noqa: E402
from inputs import BENCH, SERVE, Model, prepare, served_models, write_registry  # noqa: E402
from links import (  # noqa: E402
    CONNECTION_COUNTS, UNCAPPED, ZOO, curl_tar, links, print_links, run_links, zoo_knows_connections,
)  # fmt: skip
from nginx import Nginx, nginx_binary  # noqa: E402
from timing import PYTHON, Samples, record, run_timed  # noqa: E402

STAGES = Path(__file__).resolve().with_name("stages.py")

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


@contextmanager
def serving(root: Path) -> Iterator[tuple[str, str]]:
    if nginx_binary():
        with Nginx(root, BENCH / "nginx") as server:
            yield server.url, "nginx"
    else:
        with FileServer(root=root) as server:
            yield server.url, "python threaded server"


def contenders(model: Model, registry: Path) -> dict[str, tuple[list[str], dict[str, str] | None]]:
    """Cold and warm commands; each gets a fresh directory as its last argument's target."""
    zoo_env = {**os.environ, "ZOO_REGISTRY": str(registry)}
    return {
        "curl + tar": curl_tar(model.url),
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


def zoo_state() -> str:
    """Which zoo the figures are of: the commit, and any change to zoo/ or cli/ not in it."""

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    changed = git("diff", "--shortstat", "HEAD", "--", "zoo", "cli")
    new = git("ls-files", "--others", "--exclude-standard", "--", "zoo", "cli").split()
    if not changed and not new:
        return f"commit {commit}, zoo/ and cli/ as committed"
    digest = hashlib.sha256((git("diff", "HEAD", "--", "zoo", "cli") + " ".join(new)).encode()).hexdigest()[:12]
    return f"commit {commit} + working-tree changes to zoo/, cli/ ({changed or 'no edits'}; {len(new)} new files; diff {digest})"


def profile_stages(base: str, tarball: Path, size: str, runs: int) -> dict:
    """The per-stage profile of an in-process cold fetch, run (and printed) by stages.py in a fresh process."""
    models = served_models({size: tarball}, base)
    registry = write_registry(models, BENCH / "registry-stages.json")
    command = [PYTHON, str(STAGES), str(registry), models[size].name, str(tarball), str(BENCH), str(runs)]
    subprocess.run(command, check=True)
    return json.loads((BENCH / "stages-results.json").read_text())


def bench_links(options: argparse.Namespace) -> None:
    size = "small" if options.quick else "large"
    sizes = {"small": options.small_mb} if options.quick else {"large": options.large_mb, "small": options.small_mb}
    reps = 1 if options.quick else options.reps
    counts = (1, 8) if options.quick else tuple(int(n) for n in options.connections.split(","))
    tarballs = prepare(sizes)
    state = zoo_state()
    print(f"zoo under test: {state}; load average {os.getloadavg()[0]:.2f} (other work on the machine skews the times)")
    if not zoo_knows_connections():
        print("note: this zoo has no parallel downloads: ZOO_CONNECTIONS changes nothing, every zoo row is one stream")
    with links(SERVE) as bases:
        results = run_links(bases, tarballs, reps, counts)
        print_links(results, counts)
        stages = profile_stages(bases[UNCAPPED], tarballs[size], size, 1 if options.quick else 3)
    out = BENCH / "links-results.json"
    out.write_text(json.dumps({"zoo": state, "reps": reps, "links": results, "stages": stages}, indent=2))
    print(f"\nzoo under test: {state}; load average {os.getloadavg()[0]:.2f}\nwritten: {out}")


def bench_peers(options: argparse.Namespace) -> None:
    tarballs = prepare({"large": options.large_mb, "small": options.small_mb})
    results: dict[str, dict[str, dict[str, float]]] = {}
    with serving(SERVE) as (base, server_kind):
        print(f"serving {SERVE} with {server_kind} at {base}")
        models = served_models(tarballs, base)
        registry = write_registry(models, BENCH / "registry.json")
        for size, model in models.items():
            results[size] = bench_model(model, registry, options.reps)
    results["startup"] = bench_startup(max(options.reps, 5))
    print_table(results)
    (BENCH / "fetch-results.json").write_text(json.dumps({"server": server_kind, "results": results}, indent=2))
    print(f"\nwritten: {BENCH / 'fetch-results.json'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--large-mb", type=float, default=250)
    parser.add_argument("--small-mb", type=float, default=40)
    parser.add_argument("--links", action="store_true",
                        help="capped and uncapped links against aria2c and hf_transfer, then the per-stage profile")
    parser.add_argument("--quick", action="store_true",
                        help="with --links: one repetition, the small tarball only, ZOO_CONNECTIONS 1 and 8")
    parser.add_argument("--connections", default=",".join(map(str, CONNECTION_COUNTS)),
                        help="with --links: the ZOO_CONNECTIONS values to time besides the default")
    options = parser.parse_args()
    bench_links(options) if options.links else bench_peers(options)


if __name__ == "__main__":
    main()
