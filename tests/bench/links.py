"""Cold fetches over a capped link (a far CDN edge) and an uncapped one, against
the multi-connection tools (issue 14, part 2).

Two nginx servers on 127.0.0.1 serve the same tarballs (ranges, ETag and
Last-Modified, as nginx always sends them): one caps every connection at
CAP_RATE bytes per second for its whole life, by kernel pacing (see
tests/nginx.py: nginx's ``limit_rate`` lets the first second of every request
through uncapped, which would reward clients of many small ranges), one does
not. Every contender starts from
an empty directory and ends with the tarball extracted; each is timed as a
whole process (interpreter start included) with its own peak RSS:

- ``curl + tar``: curl -o to a file, then ``tar xzf`` of it (not piped);
- ``aria2c -x8 -s8 + tar``: with ``-k1M``, since aria2c's default minimum split
  of 20 MiB would give the 40 MB tarball two connections, not eight;
- ``hf_transfer + tarfile``: ``hf_transfer.download(url, path, max_files=8,
  chunk_size=HF_CHUNK)``, then ``tarfile`` with the ``data`` filter, in one
  Python process;
- ``zoo fetch``: cold (empty cache), with its default connections and with
  ZOO_CONNECTIONS=1, 4, 8, 16; zoo also verifies the sha256 and every tensor's
  CRC32C, and publishes with fsync, which the others do not.

The order alternates every repetition (forward, then backward) and the page
cache's dirty pages are flushed (sync) between runs, outside the timing, so
no contender pays for the previous one's writes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from inputs import BENCH, Model, served_models, write_registry
from timing import PYTHON, Samples, record, run_timed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nginx import Nginx  # noqa: E402

ZOO = str(Path(sys.executable).with_name("zoo"))
CAP_RATE = 8 << 20  # bytes per second, per connection
CONNECTION_COUNTS = (1, 4, 8, 16)
HF_CHUNK = 1 << 20  # the fastest of 1, 2, 4 and 10 MiB for hf_transfer here (huggingface_hub uses 10)
CURL_TAR = 'curl -sSf -o "$2/a.tar.gz" "$1" && tar xzf "$2/a.tar.gz" -C "$2"'
ARIA2_TAR = 'aria2c -q -x8 -s8 -k1M -d "$2" -o a.tar.gz "$1" && tar xzf "$2/a.tar.gz" -C "$2"'
HF_TARFILE = (
    "import sys, tarfile, hf_transfer; url, chunk, work = sys.argv[1], int(sys.argv[2]), sys.argv[3]; "
    "hf_transfer.download(url, work + '/a.tar.gz', max_files=8, chunk_size=chunk); "
    "tarfile.open(work + '/a.tar.gz').extractall(work, filter='data')"
)
CURL = "curl + tar"
ARIA2 = "aria2c -x8 -s8 + tar"
HF = "hf_transfer + tarfile"
ZOO_DEFAULT = "zoo fetch (default)"
CAPPED = f"capped at {CAP_RATE >> 20} MiB/s per connection"
UNCAPPED = "uncapped"

Command = tuple[list[str], dict[str, str] | None]


def zoo_label(connections: int) -> str:
    return f"zoo fetch, ZOO_CONNECTIONS={connections}"


@contextmanager
def links(root: Path) -> Iterator[dict[str, str]]:
    """The base URL of ``root`` on each link."""
    with ExitStack() as stack:
        capped = stack.enter_context(Nginx(root, BENCH / "nginx-capped", rate_per_connection=CAP_RATE))
        uncapped = stack.enter_context(Nginx(root, BENCH / "nginx-uncapped"))
        yield {CAPPED: capped.url, UNCAPPED: uncapped.url}


def zoo_knows_connections() -> bool:
    """Whether this zoo has parallel downloads (else ZOO_CONNECTIONS changes nothing)."""
    probe = "import dataclasses, zoo; print('connections' in {f.name for f in dataclasses.fields(zoo.Settings)})"
    return subprocess.run([PYTHON, "-c", probe], capture_output=True, text=True, check=True).stdout.strip() == "True"


def curl_tar(url: str) -> Command:
    return ["sh", "-c", CURL_TAR, "sh", url], None


def contenders(model: Model, registry: Path, counts: tuple[int, ...]) -> dict[str, Command]:
    """Cold-fetch commands; each gets a fresh directory as its last argument."""
    zoo_env = {k: v for k, v in os.environ.items() if k != "ZOO_CONNECTIONS"} | {"ZOO_REGISTRY": str(registry)}
    zoo = [ZOO, "fetch", model.name, "--quiet", "--cache-dir"]
    return {
        CURL: curl_tar(model.url),
        ARIA2: (["sh", "-c", ARIA2_TAR, "sh", model.url], None),
        HF: ([PYTHON, "-c", HF_TARFILE, model.url, str(HF_CHUNK)], None),
        ZOO_DEFAULT: (zoo, zoo_env),
        **{zoo_label(n): (zoo, zoo_env | {"ZOO_CONNECTIONS": str(n)}) for n in counts},
    }


def bench_link(model: Model, registry: Path, reps: int, counts: tuple[int, ...]) -> dict[str, dict[str, float]]:
    commands = contenders(model, registry, counts)
    samples: dict[str, Samples] = {}
    for rep in range(reps):
        order = list(commands) if rep % 2 == 0 else list(reversed(commands))
        for label in order:
            command, env = commands[label]
            work = Path(tempfile.mkdtemp(prefix="run-", dir=BENCH))
            try:
                wall, rss, out = run_timed([*command, str(work)], env)
                record(samples, label, wall, rss, out)
            finally:
                shutil.rmtree(work, ignore_errors=True)
                os.sync()
        print(f"    repetition {rep + 1}/{reps} done", flush=True)
    return {label: samples[label].summary() for label in commands}


def run_links(
    bases: dict[str, str], tarballs: dict[str, Path], reps: int, counts: tuple[int, ...]
) -> dict[str, dict[str, dict[str, dict[str, float]]]]:
    """Per link (its base URL in ``bases``), per tarball size, per contender: the timing summary."""
    results: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for link, base in bases.items():
        models = served_models(tarballs, base)
        registry = write_registry(models, BENCH / f"registry-{link.split()[0]}.json")
        for model in sorted(models.values(), key=lambda model: model.size_mb):
            size = f"{model.size_mb:.0f} MB"
            print(f"  {link}, {size} tarball ({reps} repetitions) ...", flush=True)
            results.setdefault(link, {})[size] = bench_link(model, registry, reps, counts)
    return results


def faster_anchor(rows: dict[str, dict[str, float]]) -> str:
    """The faster of the multi-connection tools."""
    return min((ARIA2, HF), key=lambda label: rows[label]["median_s"])


def print_link_table(link: str, size: str, rows: dict[str, dict[str, float]]) -> None:
    curl = rows[CURL]["median_s"]
    anchor = faster_anchor(rows)
    print(f"\n{link}, {size} tarball")
    print(f"{'contender':<30} {'median s':>9} {'min-max s':>15} {'RSS MB':>7} {'/ curl+tar':>11} {'/ ' + anchor:>24}")
    for label, row in rows.items():
        span = f"{row['min_s']:.2f}-{row['max_s']:.2f}"
        ratios = f"{row['median_s'] / curl:>10.2f}x {row['median_s'] / rows[anchor]['median_s']:>23.2f}x"
        print(f"{label:<30} {row['median_s']:>9.2f} {span:>15} {row['peak_rss_mb']:>7.0f} {ratios}")


def target_lines(link: str, rows: dict[str, dict[str, float]]) -> list[str]:
    """Issue 14's targets for the default zoo fetch, each with whether it is met."""
    zoo = rows[ZOO_DEFAULT]["median_s"]
    if link == CAPPED:
        anchor = faster_anchor(rows)
        checks = [(zoo / rows[CURL]["median_s"], 0.5, CURL), (zoo / rows[anchor]["median_s"], 1.0, anchor)]
    else:
        single = rows.get(zoo_label(1))
        checks = [(zoo / single["median_s"], 1.0, zoo_label(1))] if single else []
    return [
        f"target: {ZOO_DEFAULT} <= {target:.1f}x {peer}: {ratio:.2f}x, {'met' if ratio <= target else 'NOT met'}"
        for ratio, target, peer in checks
    ]


def fastest_count(rows: dict[str, dict[str, float]], counts: tuple[int, ...]) -> int:
    return min(counts, key=lambda n: rows[zoo_label(n)]["median_s"])


def print_links(results: dict[str, dict[str, dict[str, dict[str, float]]]], counts: tuple[int, ...]) -> None:
    for link, sizes in results.items():
        for size, rows in sizes.items():
            print_link_table(link, size, rows)
            for line in target_lines(link, rows):
                print(line)
            print(f"fastest ZOO_CONNECTIONS here: {fastest_count(rows, counts)}")
    print("\nTimes are whole processes (median of the repetitions); RSS is each process's own peak.")
    print("zoo verifies (sha256, every tensor's CRC32C) and fsyncs; the others only download and extract.")
    print(f"hf_transfer chunk_size {HF_CHUNK >> 20} MiB; aria2c -k1M; curl writes the file, then tar extracts it.")
