"""Where a cold fetch's time goes (issue 14, part 3).

In a fresh process (``python stages.py REGISTRY NAME TARBALL CACHE_ROOT RUNS``,
started by ``fetch.py --links``), against the uncapped server:

1. the physical floor, from memory: isal inflate of the whole archive (the
   ``isal_zlib`` decompressobj zoo's extractor uses, 1 MiB inputs, output
   discarded), best of three; beside it, for scale, the other passes a
   verified install needs at least once (sha256, MD5 and CRC32C of the
   archive, CRC32C of the inflated bytes);
2. the in-process cold fetch (``zoo.fetch`` into an empty cache), RUNS times
   unprofiled: its median over the floor is the figure issue 14 targets
   (<= 1.5x); the same with ZOO_CONNECTIONS=1 (one stream), alternating;
3. one more cold fetch under cProfile, one profiler per thread (installed in
   each new thread with ``threading.setprofile``; on this Python, 3.11, every
   thread has its own profile hook, so the producer's and the consumer's
   times stay apart), each C function's own time sorted into stages by what
   it does, and the functions with the most self time listed. Profiling
   slows the Python parts, so the shares are of the profiled run and the
   unprofiled median is the one compared with the floor. cProfile does not
   see a ``with lock:`` block's acquire (no call event), so a thread waiting
   there shows it as the self time of the function holding the ``with``.
"""

from __future__ import annotations

import cProfile
import hashlib
import json
import os
import pstats
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import crc32c
from isal import isal_zlib

CHUNK = 1 << 20
# (stage, pattern on a C function's profile name), first match wins; a thread's
# Python-level self time is "Python code".
STAGES = (
    ("network: socket send, receive", r"recv|send|_ssl\._SSLSocket|poll|select"),
    ("waiting: queue and locks", r"lock' objects|acquire|_thread\.lock|RLock"),
    ("inflate (isal)", r"decompress"),
    ("sha256 / MD5", r"_hashlib\.HASH|openssl_"),
    ("CRC32C", r"crc32c"),
    ("write (partial, extracted files)", r"pwrite|posix\.write|'write' of '_io\.FileIO|'write' of '_io\.Buffered"),
    ("read files back", r"'readinto' of '_io\.FileIO|'read' of '_io\.FileIO|posix\.read|posix\.pread"),
    ("fsync, rename (publish)", r"fsync|fdatasync|rename|replace|sync_file_range"),
    ("file system metadata", r"posix\.|_io\.open|'close' of '_io"),
    ("other C (copies, joins)", r"."),
)
PYTHON_CODE = "Python code (tar headers, HTTP, bookkeeping)"


def best_of(times: int, work: Callable[[], object]) -> float:
    return min(timed(work) for _ in range(times))


def floor(archive: bytes) -> dict[str, float]:
    """Seconds for each pass over the archive's bytes from memory, best of three."""
    inflated: list[bytes] = []

    def inflate(keep: bool) -> None:
        engine = isal_zlib.decompressobj(31)
        for start in range(0, len(archive), CHUNK):
            out = engine.decompress(archive[start : start + CHUNK])
            if keep:
                inflated.append(out)

    inflate(keep=True)
    view = memoryview(archive)

    def digest(make: Callable[[], object], data: list[bytes] | memoryview) -> Callable[[], None]:
        def run() -> None:
            hasher = make()
            pieces = data if isinstance(data, list) else (data[i : i + CHUNK] for i in range(0, len(data), CHUNK))
            for piece in pieces:
                hasher.update(piece)  # type: ignore[attr-defined]

        return run

    return {
        "isal inflate": best_of(3, lambda: inflate(keep=False)),
        "sha256 of the archive": best_of(3, digest(hashlib.sha256, view)),
        "MD5 of the archive": best_of(3, digest(hashlib.md5, view)),
        "CRC32C of the archive": best_of(3, digest(crc32c.CRC32CHash, view)),
        "CRC32C of the inflated bytes": best_of(3, digest(crc32c.CRC32CHash, inflated)),
    }


@contextmanager
def empty_cache(cache_root: Path) -> Iterator[Path]:
    cache = Path(tempfile.mkdtemp(prefix="stages-", dir=cache_root))
    try:
        yield cache
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        os.sync()  # so no run's fsync waits for the previous run's writes


def cold_fetch(registry: Path, name: str, connections: str | None = None) -> Callable[[Path], None]:
    """A function that fetches ``name`` into the (empty) cache it is given,
    with ZOO_CONNECTIONS=``connections`` (None: zoo's default)."""
    import zoo

    env = {k: v for k, v in os.environ.items() if k != "ZOO_CONNECTIONS"}
    env |= {"ZOO_CONNECTIONS": connections} if connections else {}

    def run(cache: Path) -> None:
        zoo.fetch(name, settings=zoo.Settings.from_env(cache_dir=cache, registry_files=[registry], env=env))

    return run


def timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def profiled(run: Callable[[], object]) -> tuple[float, list[tuple[str, cProfile.Profile]]]:
    """Seconds ``run`` took under one cProfile per thread: the threads it starts and this one."""
    profiles: list[tuple[str, cProfile.Profile]] = []

    def start_thread_profile(*_: object) -> None:
        profile = cProfile.Profile()
        profiles.append((threading.current_thread().name, profile))
        profile.enable()  # replaces this hook, in this thread only

    main = cProfile.Profile()
    profiles.append(("main", main))
    threading.setprofile(start_thread_profile)
    main.enable()
    try:
        seconds = timed(run)
    finally:
        main.disable()
        threading.setprofile(None)  # type: ignore[arg-type]
    return seconds, profiles


def thread_group(name: str) -> str:
    """Threads of one kind together: their names' leading words, without the
    numbers and labels (zoo names a download's thread after its model)."""
    if name == "main":
        return "main (extract, verify, publish)"
    kind = re.match(r"[A-Za-z]+(?:-[A-Za-z]+)?", name)
    return kind.group() if kind else name


Function = tuple[str, int, str]  # pstats' key: file, line, name ("~", 0, C name)


def stage_of(function: Function) -> str:
    filename, _, label = function
    if filename != "~":
        return PYTHON_CODE
    return next(stage for stage, pattern in STAGES if re.search(pattern, label))


def function_times(profiles: list[tuple[str, cProfile.Profile]]) -> dict[str, dict[Function, float]]:
    """Per thread group, per function: self seconds summed over the group's threads."""
    table: dict[str, dict[Function, float]] = {}
    for name, profile in profiles:
        stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
        row = table.setdefault(thread_group(name), {})
        for function, (_, _, own, _, _) in stats.items():
            row[function] = row.get(function, 0.0) + own
    return table


def stage_times(functions: dict[str, dict[Function, float]]) -> dict[str, dict[str, float]]:
    """Per thread group, per stage: self seconds."""
    table: dict[str, dict[str, float]] = {}
    for group, row in functions.items():
        stages = table.setdefault(group, {})
        for function, own in row.items():
            stages[stage_of(function)] = stages.get(stage_of(function), 0.0) + own
    return table


def top_functions(functions: dict[str, dict[Function, float]], count: int = 8) -> dict[str, list[tuple[str, str, float]]]:
    """Per thread group, the functions with the most self time: (function, stage, seconds)."""
    def named(function: Function) -> str:
        filename, line, label = function
        return label if filename == "~" else f"{Path(filename).name}:{line}({label})"

    return {
        group: [(named(f), stage_of(f), own) for f, own in sorted(row.items(), key=lambda item: -item[1])[:count]]
        for group, row in functions.items()
    }


def thread_counts(profiles: list[tuple[str, cProfile.Profile]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, _ in profiles:
        counts[thread_group(name)] = counts.get(thread_group(name), 0) + 1
    return counts


def print_report(report: dict) -> None:
    floors, fetches = report["floor_s"], report["cold_fetch_s"]
    size_mb = report["archive_mb"]
    print(f"\nphysical floor, {size_mb:.0f} MB archive from memory (best of 3):")
    for label, seconds in floors.items():
        print(f"  {label:<30} {seconds:>7.3f} s  {size_mb / seconds:>7.0f} MB/s")
    compute = sum(floors.values())
    print(f"  {'all passes, one core':<30} {compute:>7.3f} s")
    median = statistics.median(fetches)
    inflate = floors["isal inflate"]
    print(f"\nin-process cold zoo.fetch: median {median:.3f} s of {len(fetches)} "
          f"({min(fetches):.3f}-{max(fetches):.3f}), {size_mb / median:.0f} MB/s")  # fmt: skip
    print(f"  / isal inflate floor: {median / inflate:.2f}x (target <= 1.5x: {'met' if median <= 1.5 * inflate else 'NOT met'})")
    print(f"  / all passes on one core: {median / compute:.2f}x")
    one = statistics.median(report["one_stream_s"])
    print(f"  / the same with ZOO_CONNECTIONS=1 (median {one:.3f} s, "
          f"{min(report['one_stream_s']):.3f}-{max(report['one_stream_s']):.3f}): {median / one:.2f}x")  # fmt: skip
    print_stage_table(report)


def print_stage_table(report: dict) -> None:
    table, counts, wall = report["stages_s"], report["threads"], report["profiled_s"]
    groups = list(table)
    print(f"\nprofiled cold fetch: {wall:.3f} s wall (profiling overhead included); self time per stage, s:")
    header = "".join(f"{f'{g} x{counts[g]}'[:34]:>36}" for g in groups)
    print(f"{'stage':<46}{header}")
    stages = [stage for stage, _ in STAGES] + [PYTHON_CODE]
    for stage in stages:
        cells = "".join(f"{table[g].get(stage, 0.0):>27.3f} ({100 * table[g].get(stage, 0.0) / wall:>4.0f}%)" for g in groups)
        print(f"{stage:<46}{cells}")
    totals = "".join(f"{sum(table[g].values()):>27.3f} ({100 * sum(table[g].values()) / wall:>4.0f}%)" for g in groups)
    print(f"{'total (a thread group counts each thread)':<46}{totals}")
    print("(%: of the profiled wall time; a group of threads can pass 100%. Time in socket receive and waits")
    print(" is time blocked: the main thread waiting on the queue is waiting for the network)")
    for group, functions in report["top_functions"].items():
        print(f"\nmost self time, {group}:")
        for function, stage, own in functions:
            print(f"  {own:>7.3f} s {100 * own / wall:>4.0f}%  {function[:80]:<80}  [{stage}]")


def main() -> None:
    registry, name, tarball, cache_root, runs = sys.argv[1:6]
    archive = Path(tarball).read_bytes()
    report: dict = {"archive_mb": len(archive) / 1e6, "floor_s": floor(archive)}
    del archive
    fetches = {"cold_fetch_s": cold_fetch(Path(registry), name), "one_stream_s": cold_fetch(Path(registry), name, "1")}
    with empty_cache(Path(cache_root)) as cache:
        fetches["cold_fetch_s"](cache)  # warms imports, so no measured run pays for them
    for run in range(int(runs)):
        for key, fetch in list(fetches.items())[:: 1 if run % 2 == 0 else -1]:
            with empty_cache(Path(cache_root)) as cache:
                report.setdefault(key, []).append(timed(lambda: fetch(cache)))
    with empty_cache(Path(cache_root)) as cache:
        report["profiled_s"], profiles = profiled(lambda: fetches["cold_fetch_s"](cache))
    functions = function_times(profiles)
    report["stages_s"] = stage_times(functions)
    report["top_functions"] = top_functions(functions)
    report["threads"] = thread_counts(profiles)
    print_report(report)
    Path(cache_root, "stages-results.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
