"""Locks where flock does nothing (ZOO_LOCKS=none): O_EXCL lock files with a
heartbeat, taken over once stale, read as hostile input; fetches stay correct
even when no lock holds at all."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import CONFIG_PATH, MODEL, TARBALL_PATH, Zoo
from httpserver import FileServer
from tarballs import sha256_of

TIMEOUT = "1"  # ZOO_LOCK_TIMEOUT in these tests: a stale lock is taken over after a second

# Takes the model's lock through the cache and holds it until killed.
HOLDER = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from zoo.cache import Cache\n"
    "with Cache(Path(sys.argv[1])).lock(sys.argv[2]):\n"
    "    print('held', flush=True)\n"
    "    time.sleep(600)\n"
)

# Tries the model's lock without waiting, the way prune does.
TRY_LOCK = (
    "import sys\n"
    "from pathlib import Path\n"
    "from zoo.cache import Cache\n"
    "from zoo.fsutil import file_lock\n"
    "cache = Cache(Path(sys.argv[1]))\n"
    "with file_lock(cache._lock_path(sys.argv[2]), wait=False, policy=cache.locks) as free:\n"
    "    print(free)\n"
)

# A file system where the lock does nothing: every lock file vanishes as soon as it appears.
DELETER = (
    "import sys\n"
    "from pathlib import Path\n"
    "locks = Path(sys.argv[1]) / 'locks'\n"
    "while True:\n"
    "    for path in locks.rglob('*.held'):\n"
    "        path.unlink(missing_ok=True)\n"
)


@pytest.fixture
def unlocked(zoo: Zoo) -> Zoo:
    zoo.env.update(ZOO_LOCKS="none", ZOO_LOCK_TIMEOUT=TIMEOUT)
    return zoo


def lock_file(zoo: Zoo) -> Path:
    return zoo.cache / "locks" / f"{MODEL}.lock.held"


def python(zoo: Zoo, script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], env=zoo.env, text=True, stdout=subprocess.PIPE)


def try_lock(zoo: Zoo) -> bool:
    out = subprocess.run([sys.executable, "-c", TRY_LOCK, str(zoo.cache), MODEL], env=zoo.env, text=True,
                         capture_output=True, check=True).stdout  # fmt: skip
    return out.strip() == "True"


def checkpoint(zoo: Zoo) -> str:
    return str(zoo.cache / "models" / MODEL / "files" / MODEL / "checkpoint" / "ckpt-0")


def assert_one_good_entry(zoo: Zoo, tarball: Path) -> None:
    assert zoo.published() == [MODEL]
    assert sorted(os.listdir(zoo.cache / "downloads")) == [] and sorted(os.listdir(zoo.cache / "tmp")) == []
    assert zoo.run("verify", MODEL).returncode == 0
    data = json.loads(zoo.run("fetch", MODEL, "--json").stdout)
    assert data["from_cache"] is True and data["sha256"] == sha256_of(tarball)


@pytest.mark.timeout(180)
def test_eight_fetchers_with_lock_files_download_once(unlocked: Zoo, upstream: FileServer, tarball: Path):
    upstream.throttle(TARBALL_PATH, 2 * 1024 * 1024)  # longer than the lock timeout: the heartbeat keeps it held
    processes = [unlocked.popen("fetch", MODEL) for _ in range(8)]
    outputs = [process.communicate(timeout=150) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, outputs
    assert {out.strip() for out, _err in outputs} == {checkpoint(unlocked)}
    assert upstream.count("GET", TARBALL_PATH) == 1 and upstream.count("GET", CONFIG_PATH) == 1
    assert_one_good_entry(unlocked, tarball)
    assert list((unlocked.cache / "locks").rglob("*.held")) == []  # released locks are removed


@pytest.mark.timeout(240)
def test_fetchers_whose_locks_do_nothing_still_end_with_one_correct_entry(
    unlocked: Zoo, upstream: FileServer, tarball: Path
):
    upstream.throttle(TARBALL_PATH, 4 * 1024 * 1024)
    deleter = python(unlocked, DELETER, str(unlocked.cache))
    try:
        processes = [unlocked.popen("fetch", MODEL) for _ in range(6)]
        outputs = [process.communicate(timeout=200) for process in processes]
    finally:
        deleter.kill()
        deleter.wait()
    assert [process.returncode for process in processes] == [0] * 6, outputs
    assert {out.strip() for out, _err in outputs} == {checkpoint(unlocked)}
    assert upstream.count("GET", TARBALL_PATH) >= 1
    assert_one_good_entry(unlocked, tarball)


@pytest.mark.timeout(120)
def test_partials_are_per_process_without_flock(unlocked: Zoo):
    from zoo.cache import Cache
    from zoo.settings import LockPolicy

    url = "https://download.tensorflow.org/models/x.tar.gz"
    shared = Cache(unlocked.cache, locks=LockPolicy("flock")).partial_path(MODEL, url)
    own = Cache(unlocked.cache, locks=LockPolicy("none")).partial_path(MODEL, url)
    assert shared.name == f"{MODEL}@x.tar.gz.part"
    assert own.name.endswith(f".{os.getpid()}@x.tar.gz.part") and own != shared


@pytest.mark.timeout(120)
def test_a_holder_killed_with_sigkill_is_taken_over_once_its_heartbeat_is_stale(unlocked: Zoo, upstream: FileServer):
    holder = python(unlocked, HOLDER, str(unlocked.cache), MODEL)
    try:
        assert holder.stdout.readline() == "held\n"
        first = json.loads(lock_file(unlocked).read_text())
        assert first["pid"] == holder.pid and first["host"]
        while json.loads(lock_file(unlocked).read_text() or "{}").get("heartbeat", 0) == first["heartbeat"]:
            time.sleep(0.05)  # the heartbeat moves while the holder lives
        time.sleep(2 * float(TIMEOUT))
        assert try_lock(unlocked) is False  # alive past the timeout, so never taken over
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert lock_file(unlocked).exists()  # SIGKILL leaves the lock behind
    result = unlocked.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["from_cache"] is False
    assert not lock_file(unlocked).exists()


def plant(path: Path, kind: str, outside: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "symlink":
        path.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        path.write_bytes(b"{" * (8 << 20))
    elif kind == "future":
        path.write_text(json.dumps({"host": "x", "pid": 1, "heartbeat": time.time() + 10**9}))
    else:
        path.write_bytes(b"\x00garbage")
    old = time.time() - 3600
    os.utime(path, (old, old), follow_symlinks=False)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["symlink", "fifo", "huge", "future", "garbage"])
def test_a_hostile_stale_lock_file_is_taken_over_and_never_followed(unlocked: Zoo, kind: str, tmp_path: Path):
    outside = tmp_path / "outside.txt"
    outside.write_text("precious")
    plant(lock_file(unlocked), kind, outside)
    result = unlocked.run("fetch", MODEL)
    assert result.returncode == 0, result.stderr
    assert outside.read_text() == "precious"
    assert not os.path.lexists(lock_file(unlocked))


@pytest.mark.timeout(120)
def test_fresh_garbage_is_waited_on_until_its_mtime_is_stale(unlocked: Zoo):
    lock_file(unlocked).parent.mkdir(parents=True)
    lock_file(unlocked).write_bytes(b"not json")
    assert try_lock(unlocked) is False
    while not try_lock(unlocked):
        time.sleep(0.1)  # garbage goes stale by its mtime, within the pytest timeout
    assert not lock_file(unlocked).exists()


HOLD_STAGING = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from zoo.cache import Cache\n"
    "with Cache(Path(sys.argv[1])).staging('bundle') as path:\n"
    "    print(path, flush=True)\n"
    "    time.sleep(600)\n"
)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("pruner", ["flock", "none"])
def test_prune_skips_work_under_a_fresh_lock_file(unlocked: Zoo, pruner: str):
    holder = python(unlocked, HOLD_STAGING, str(unlocked.cache))
    try:
        staged = Path(holder.stdout.readline().strip())
        time.sleep(2 * float(TIMEOUT))  # past the timeout: only the heartbeat keeps it
        pruned = unlocked.run("cache", "prune", ZOO_LOCKS=pruner)
        assert pruned.returncode == 0 and pruned.stdout == "" and staged.is_dir()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    while staged.exists():
        pruned = unlocked.run("cache", "prune", ZOO_LOCKS=pruner)  # removes it once the lock is stale
        assert pruned.returncode == 0 and pruned.stdout in ("", f"removed {staged}\n")
        time.sleep(0.1)


def test_a_bad_locks_setting_is_a_one_line_usage_error(zoo: Zoo):
    for name, value in (("ZOO_LOCKS", "maybe"), ("ZOO_LOCK_TIMEOUT", "0"), ("ZOO_LOCK_TIMEOUT", "soon")):
        result = zoo.run("fetch", MODEL, **{name: value})
        assert result.returncode == 2 and len(result.stderr.splitlines()) == 1 and name in result.stderr
