"""File-system helpers: bounded reads of outside input, checked keys, symlink-proof
opens, locks, atomic output, durability. Every path built from outside data
goes through here."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import math
import os
import re
import secrets
import shutil
import socket
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

from zoo.errors import DiskFullError, UsageError, ZooError
from zoo.settings import LockPolicy, lock_policy

# RLIMIT_FSIZE and quotas end a write the same way a full disk does.
_FULL = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an OSError raised while writing ``path`` into a one-line ZooError."""
    try:
        yield
    except OSError as exc:
        if exc.errno is None:
            raise  # not a file-system error (requests' errors are OSErrors too)
        reason = exc.strerror or str(exc)
        if exc.errno in _FULL:
            raise DiskFullError(f"disk full while writing {path}: {reason}", path=path) from None
        where = exc.filename or path
        raise ZooError(f"cannot write {where}: {reason}") from None


def remove_tree(path: Path) -> None:
    """Delete a file or directory tree if present; never fails on a missing path."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with suppress(FileNotFoundError):
            path.unlink()


def digest(handle: IO[bytes]) -> tuple[str, int]:
    """sha256 and size of what ``handle`` reads, in 1 MiB blocks."""
    hasher = hashlib.sha256()
    size = 0
    while block := handle.read(1 << 20):
        hasher.update(block)
        size += len(block)
    return hasher.hexdigest(), size


def file_digest(path: Path) -> tuple[str, int]:
    with open(path, "rb") as handle:
        return digest(handle)


def tree_size(path: Path) -> int:
    """Bytes used by the regular files under ``path`` (hard links counted once)."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            stat = os.lstat(os.path.join(root, name))
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total

# -- reading what comes from outside --------------------------------------------

MAX_INPUT_BYTES = 64 << 20
"""Configs, label maps, registries, lock files and indexes are small text; a
file past this size is a mistake (or /dev/zero), not something to parse."""

ErrorType = Callable[[str], ZooError]


def read_input(path: Path | str, what: str, error: ErrorType = UsageError, limit: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, or ``error``.

    O_NONBLOCK keeps a FIFO from hanging the open; anything but a regular file
    (a FIFO, a device such as /dev/zero, a directory) is refused before a byte
    is read, and the read stops one byte past the limit.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise error(f"{path}: not a regular file; a {what} is read from a file")
    with os.fdopen(fd, "rb") as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise error(f"{path}: cannot read {what}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{path}: larger than {limit >> 20} MiB; too large for a {what}")
    return data


def read_limited(handle: IO[bytes], limit: int, where: str, error: ErrorType) -> bytes:
    """Up to ``limit`` bytes of a stream (a socket, an object), ``error`` past that."""
    chunks, size = [], 0
    while block := handle.read(min(1 << 20, limit + 1 - size)):
        chunks.append(block)
        size += len(block)
        if size > limit:
            raise error(f"{where}: larger than {limit >> 20} MiB; refused")
    return b"".join(chunks)


# -- keys from untrusted indexes -------------------------------------------------

MAX_KEY_LENGTH = 1024
_BAD_KEY = re.compile(r"[\\\x00-\x1f\x7f]")


def check_key(key: object, where: str, error: ErrorType) -> str:
    """A plain relative ``host/path`` key, or ``error``.

    Keys come from mirror indexes, bundles and lock files, and are joined into
    paths: no absolute paths, no ``..``/``.``/empty parts, no backslashes or
    control characters, bounded length.
    """
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise error(f"{where}: {key!r} is not a valid file key (a relative host/path of at most {MAX_KEY_LENGTH} characters)")
    parts = key.split("/")
    if key.startswith("/") or _BAD_KEY.search(key) or any(part in ("", ".", "..") for part in parts):
        raise error(f"{where}: {key!r} is not a plain relative host/path key; refused")
    return key


def join_beneath(root: Path, key: str, where: str, error: ErrorType) -> Path:
    """``root / key`` once the key is checked and the resolved path stays under ``root``
    (a symlink already inside the tree can't carry it out)."""
    path = root / check_key(key, where, error)
    real_root = root.resolve()
    if not path.resolve().is_relative_to(real_root):
        raise error(f"{where}: {key!r} leads outside {root} (through a symlink); refused")
    return path


def open_beneath(root: Path, key: str, flags: int = os.O_RDONLY, mode: int = 0o644) -> int:
    """Open ``key`` under ``root`` without following a symlink at any level.

    Each directory is opened relative to the one before with O_NOFOLLOW, so a
    symlink swapped in after any check is refused (ELOOP or ENOTDIR) instead
    of followed. The key must already be checked.
    """
    *directories, name = key.split("/")
    dir_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in directories:
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = next_fd
        return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
    finally:
        os.close(dir_fd)


# -- zoo's own files: never through a planted symlink ----------------------------


def private_dir(path: Path) -> Path:
    """``path`` as a real directory owned by this user, created if missing.

    The cache's subdirectories are where zoo deletes and overwrites; one that
    is a symlink (or someone else's) would carry that outside the cache.
    """
    with writing(path):
        path.mkdir(parents=True, exist_ok=True)
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        kind = "a symlink" if stat.S_ISLNK(info.st_mode) else "not a directory owned by you"
        raise ZooError(f"{path} is {kind}; zoo will not write through it (remove it and run again)")
    return path


def open_regular(path: Path, flags: int, mode: int = 0o644) -> int:
    """Open a file of zoo's own without following a symlink; refuse anything but a regular file."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ZooError(f"{path} is a symlink; zoo will not write through it (remove it and run again)") from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ZooError(f"{path} is not a regular file; zoo will not write to it (remove it and run again)")
    os.set_blocking(fd, True)
    return fd


# Errors flock gives where the file system cannot lock (NFS mounted nolock, some FUSE).
_FLOCK_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}
# Devices where flock failed under ZOO_LOCKS=auto: lock files serve there from then on.
_NO_FLOCK_DEVICES: set[int] = set()
LOCK_FILE_LIMIT = 4096
"""A lock file holds one line of JSON; more is garbage, never read in full."""


def uses_lock_files(policy: LockPolicy, directory: Path) -> bool:
    """Whether locks under ``directory`` are O_EXCL lock files (flock is off or failed there)."""
    if policy.mode != "auto":
        return policy.mode == "none"
    try:
        return os.stat(directory).st_dev in _NO_FLOCK_DEVICES
    except OSError:
        return False


def held_path(path: Path) -> Path:
    """The O_EXCL lock file standing for ``path``'s lock: a name of its own, so
    a flock file left by an earlier run never looks held."""
    return path.with_name(path.name + ".held")


@contextmanager
def file_lock(
    path: Path, wait: bool = True, on_wait: Callable[[], None] | None = None, policy: LockPolicy | None = None
) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (created if missing); with ``wait=False``
    yields whether the lock was free. The one way zoo locks: flock, which the
    kernel drops if the process dies, or (ZOO_LOCKS=none, or flock failing
    under auto) an O_EXCL lock file with a heartbeat, taken over once stale."""
    policy = policy or lock_policy(os.environ)
    private_dir(path.parent)
    if not uses_lock_files(policy, path.parent):
        with writing(path):
            fd = open_regular(path, os.O_RDWR | os.O_CREAT)
        with os.fdopen(fd, "r+b") as handle:
            free = _flock(handle, path, wait, on_wait, policy)
            if free is not None:
                # A process under ZOO_LOCKS=none holds only the lock file: prune must see it too.
                yield free and (wait or not _fresh(held_path(path), policy.timeout))
                return
    with _lock_file(held_path(path), policy.timeout, wait, on_wait) as free:
        yield free


def _flock(handle: IO[bytes], path: Path, wait: bool, on_wait: Callable[[], None] | None,
           policy: LockPolicy) -> bool | None:  # fmt: skip
    """Whether flock took the lock; None where flock does not work (auto falls back)."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        if not wait:
            return False
    except OSError as exc:
        if exc.errno not in _FLOCK_UNSUPPORTED:
            raise
        if policy.mode == "flock":
            reason = f"{exc.strerror}; set ZOO_LOCKS=none on a file system without flock"
            raise ZooError(f"cannot lock {path}: {reason}") from None
        _NO_FLOCK_DEVICES.add(os.fstat(handle.fileno()).st_dev)
        return None
    if on_wait is not None:
        on_wait()
    fcntl.flock(handle, fcntl.LOCK_EX)
    return True


@contextmanager
def _lock_file(lock: Path, timeout: float, wait: bool, on_wait: Callable[[], None] | None) -> Iterator[bool]:
    """Hold ``lock`` as an O_EXCL file, its heartbeat refreshed by a daemon
    thread (so a holder killed with SIGKILL leaves a lock that goes stale) and
    the file removed on release."""
    fd = _create_lock(lock, timeout, wait, on_wait)
    if fd is None:
        yield False
        return
    stop = threading.Event()
    beating = threading.Thread(target=_keep_beating, args=(fd, stop, timeout / 4), daemon=True)
    beating.start()
    try:
        yield True
    finally:
        stop.set()
        beating.join()
        with suppress(OSError):
            if os.path.samestat(os.lstat(lock), os.fstat(fd)):
                lock.unlink()  # still ours: not taken over while this process stalled
        os.close(fd)


def _create_lock(lock: Path, timeout: float, wait: bool, on_wait: Callable[[], None] | None) -> int | None:
    """The new lock file's descriptor, once no fresh lock stands in the way;
    None when it is held and ``wait`` is False."""
    notified = False
    while True:
        with writing(lock), suppress(FileExistsError):
            # O_EXCL also fails on a symlink planted there, dangling or not: never followed.
            fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            _beat(fd)
            return fd
        if not _fresh(lock, timeout):
            _steal(lock, timeout)
            continue
        if not wait:
            return None
        if on_wait is not None and not notified:
            on_wait()
            notified = True
        time.sleep(min(1.0, timeout / 4))


def _beat(fd: int) -> None:
    """Write who holds the lock and when it was last known alive."""
    data = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}).encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def _keep_beating(fd: int, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        with suppress(OSError):  # a full disk must not kill the holder; the lock then goes stale
            _beat(fd)


def _fresh(lock: Path, timeout: float) -> bool:
    """Whether a lock file exists with a heartbeat or mtime within ``timeout``.

    The file is outside input (another host, an attacker): read capped,
    without following a symlink, and garbage in it leaves only its mtime.
    """
    try:
        info = os.lstat(lock)
    except FileNotFoundError:
        return False
    now = time.time()
    beat = _heartbeat(lock)
    # A heartbeat from the future is garbage; the mtime (the file server's clock on NFS) still counts.
    alive = max(info.st_mtime, beat if beat is not None and beat <= now else 0.0)
    return now - alive <= timeout


def _heartbeat(lock: Path) -> float | None:
    try:
        fd = open_regular(lock, os.O_RDONLY)
        with os.fdopen(fd, "rb") as handle:
            data = json.loads(handle.read(LOCK_FILE_LIMIT))
    except (OSError, ValueError, ZooError):
        return None
    beat = data.get("heartbeat") if isinstance(data, dict) else None
    return float(beat) if type(beat) in (int, float) and math.isfinite(beat) else None


def _steal(lock: Path, timeout: float) -> None:
    """Take a stale lock away. It is renamed aside first, an atomic step, so of
    several processes stealing at once one moves it and the rest find it gone;
    a lock that turns out fresh once moved (another process stole and took it
    meanwhile) is linked back unless a newer one already stands there."""
    aside = lock.with_name(f"{lock.name}.stale-{secrets.token_hex(8)}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return
    if _fresh(aside, timeout):
        with suppress(OSError):
            os.link(aside, lock, follow_symlinks=False)
    os.unlink(aside)


# -- writing the user's output files ---------------------------------------------


# Names of an open descriptor: /dev/stdout on a file that stdout was redirected
# to is written through, not replaced behind the shell's back.
_DESCRIPTOR = re.compile(r"/dev/(?:stdout|stderr|fd/\d+)|/proc/(?:self|thread-self|\d+)/fd/\d+")


@contextmanager
def replacing(path: Path | str, force: bool = False) -> Iterator[IO[bytes]]:
    """A binary stream that becomes ``path`` in one rename when the block ends.

    ``-`` is standard output. A path that names a device, FIFO or socket
    (/dev/null, /dev/stdout) is written through, as shell redirection would.
    A regular file (or the one a symlink names) is replaced atomically with
    its mode kept; a read-only one only with ``force``. Nothing is left
    behind on error.
    """
    if str(path) == "-":
        sys.stdout.flush()
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        # The name as given: /dev/stdout on a pipe resolves to no real path.
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    if info is not None and (not stat.S_ISREG(info.st_mode) or _DESCRIPTOR.fullmatch(os.path.abspath(path))):
        if stat.S_ISDIR(info.st_mode):
            raise UsageError(f"{path} is a directory; name a file to write")
        with writing(Path(path)), open(path, "wb") as device:
            yield device
        return
    target = Path(os.path.realpath(path))
    if not target.parent.is_dir():
        raise UsageError(f"cannot write {path}: {target.parent} is not a directory")
    if info is not None and not info.st_mode & 0o222 and not force:
        raise UsageError(f"{path} is read-only; pass --force to replace it")
    mode = stat.S_IMODE(info.st_mode) if info else 0o666 & ~_umask()
    with writing(target):
        fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                yield handle
                handle.flush()
                os.fchmod(handle.fileno(), mode)  # mkstemp creates 0600
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except BaseException:
            with suppress(FileNotFoundError):
                os.unlink(temporary)
            raise


def write_output(path: Path | str, data: bytes, force: bool = False) -> None:
    with replacing(path, force) as handle:
        handle.write(data)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# -- durability ------------------------------------------------------------------


def fsync_tree(root: Path) -> None:
    """Flush every file and directory under ``root`` to disk, directories last,
    so a marker written after this never sits over truncated files."""
    for directory, _dirs, files in os.walk(root, topdown=False):
        for name in files:
            if os.path.islink(os.path.join(directory, name)):
                continue  # a symlink has no data of its own (and O_NOFOLLOW can't open it)
            fd = os.open(os.path.join(directory, name), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(directory))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
