"""Timing whole processes for the benchmarks: wall time and the process's own peak RSS."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from dataclasses import dataclass, field

PYTHON = sys.executable

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


def record(store: dict[str, Samples], key: str, wall: float, rss: float, out: str) -> None:
    """Add one run; a last stdout line that is a number is the time the command measured itself."""
    samples = store.setdefault(key, Samples())
    samples.wall.append(wall)
    samples.rss_mb.append(rss)
    call = out.strip().splitlines()[-1] if out.strip() else ""
    if call.replace(".", "", 1).isdigit():
        samples.call.append(float(call))
