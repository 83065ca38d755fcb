"""Streaming, resumable, retried downloads that hash bytes as they arrive.

A ``Transfer`` fetches one file from the first source that works. A producer
thread writes every byte to a partial file on disk, feeds it to sha256 and
hands it through a bounded queue to a reader (tarfile, when extracting while
downloading), so the bytes are touched once and memory stays bounded.

The partial file belongs to the bytes, not to the source that sent them: a
JSON sidecar records the pin and the validator (ETag or Last-Modified) they
came under, so any source serving the same file continues it with an HTTP
Range request, in this run or a later one, even after the process was killed.
It is kept on every failure but wrong bytes, a hostile archive or a full disk.

The same single pass feeds MD5 and CRC32C, so the file is checked against the
hashes Cloud Storage sends of every object (``x-goog-hash``), resumed or not.

A large file from a server that serves byte ranges comes over several
connections at once (``zoo.segments``): the first response keeps streaming
the first segment, workers fetch the others into the same partial file, and
the producer hands the contiguous prefix over in order. The sidecar then
also lists the segments on disk, so a later run fetches only the holes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import urlsplit

import crc32c

from zoo import __version__
from zoo.errors import DiskFullError, IntegrityError, NetworkError, UnsafeArchiveError, UnverifiedError, ZooError
from zoo.fsutil import open_regular, private_dir, remove_tree, writing
from zoo.segments import Coverage, Job, Workers, plan, sane_spans, segment_size, worth_splitting
from zoo.settings import Settings
from zoo.sources import FIRST_USE, SERVER, Pin, Scheme, Source, local_path, scheme_of

CHUNK_SIZE = 1 << 20
# One stream this fast (bytes/s) gains nothing from more connections: the CPU,
# inflating and hashing, is the limit. Measured over the first PROBE_BYTES or
# PROBE_SECONDS, whichever comes first (tests/bench/fetch.py --links).
FAST_STREAM = 128 << 20
PROBE_BYTES = 8 << 20
PROBE_SECONDS = 0.1
QUEUE_CHUNKS = 16  # bounds memory: at most this many chunks wait for the reader
# How far the segments on disk may run ahead of the sidecar that lists them:
# what a kill costs to fetch again, against a sidecar write per this many bytes.
SIDECAR_EVERY = 4 << 20
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 60.0
ARCHIVE_HEAD = 262  # enough to see tar's "ustar" magic at offset 257
ARCHIVE_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz
NO_DNS_HINT = "; without DNS, set ZOO_MIRROR to a mirror or directory you can reach, or ZOO_OFFLINE=1"
# Wrong bytes, a hostile archive, a full disk: nothing on disk is worth resuming.
DISCARDING_ERRORS = (IntegrityError, UnsafeArchiveError, DiskFullError)
SERVER_HASHES = ("crc32c", "md5")  # what x-goog-hash carries
# OpenSSL's verify codes a user can act on, in the words they search for.
TLS_CAUSES = {
    10: "certificate expired", 18: "self-signed certificate", 19: "unknown issuer (self-signed root)",
    20: "unknown issuer", 62: "hostname mismatch",
}  # fmt: skip
TLS_HINT = "if a proxy or private CA signs it, set REQUESTS_CA_BUNDLE (or SSL_CERT_FILE) to a CA bundle that trusts it"

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    sha256: str
    size: int
    crc32c: str = ""  # base64, as x-goog-hash writes it
    md5: str = ""
    verified: str = FIRST_USE  # how the bytes were verified (zoo.sources PINNED ...)
    declared: Pin = Pin()  # what the server said of them, checked: x-goog-hash, stored length
    connections: int = 1  # the most connections (or streams) the bytes came over at once


class _Digests:
    """sha256, CRC32C and, when something will check it, MD5 of the same bytes, fed once.

    MD5 costs as much CPU as inflating does, so it is computed only when the
    pin or the server (x-goog-hash) carries one, as known before the first byte.
    """

    def __init__(self) -> None:
        self.sha256 = hashlib.sha256()
        self.crc32c = crc32c.CRC32CHash()
        self.md5: Any = None
        self._hashers = [self.sha256, self.crc32c]
        self._fed = False

    def want_md5(self, wanted: bool) -> None:
        """Compute MD5 too; heeded only before the first byte (a hash can't start midway)."""
        if wanted and not self._fed and self.md5 is None:
            self.md5 = hashlib.md5(usedforsecurity=False)
            self._hashers.append(self.md5)

    def update(self, data: bytes) -> None:
        self._fed = True
        for hasher in self._hashers:
            hasher.update(data)

    def result(self, path: Path, url: str, size: int) -> Downloaded:
        def b64(hasher: Any) -> str:
            return base64.b64encode(hasher.digest()).decode() if hasher is not None else ""

        return Downloaded(path, url, self.sha256.hexdigest(), size, b64(self.crc32c), b64(self.md5))


def download(
    sources: Sequence[Source],
    dest: Path,
    *,
    settings: Settings,
    label: str,
    progress: bool = False,
    expect_archive: bool = False,
) -> Downloaded:
    """Fetch the first source that works into ``dest``, verified against its pin."""
    with Transfer(
        sources, dest, settings=settings, label=label, progress=progress, expect_archive=expect_archive
    ) as transfer:
        return transfer.finish()


class _SourceFailed(Exception):
    """This source cannot deliver the file; the next one may."""

    def __init__(self, reason: str, unresolved: bool = False, status: int | None = None, unverified: bool = False):
        super().__init__(reason)
        self.unresolved = unresolved
        self.status = status
        self.unverified = unverified  # refused by --require-verified, not broken


class _Retry(Exception):
    """A transient failure; an attempt that handed bytes over resets the retry budget."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class _Cancelled(Exception):
    """The reader gave up; the producer stops."""


class _GaveUp(Exception):
    """A transient failure came back more than ZOO_RETRIES times in a row."""


class _Fallback(Exception):
    """A segment's response is not the file's bytes, or never comes: one stream takes over."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Body:
    """One response (or one read of a file) carrying the file's bytes from ``start``."""

    url: str
    pin: Pin
    start: int = 0
    total: int | None = None
    validator: str | None = None
    content_type: str | None = None
    declared: Pin = Pin()  # the server's own hashes of the whole file, even in a 206
    ranges: bool = False  # the source serves byte ranges of the file


class Transfer:
    """One file's bytes, from the first source that works, as a readable stream.

    Use as a context manager; ``read`` returns the bytes in order, ``finish``
    reads what the reader left, checks the pin and returns the result. Sources
    that are missing or unreachable are skipped in order until a byte has been
    handed over; bytes that contradict the pin fail at once, since another
    source offering different bytes is no more trustworthy. With
    ``expect_archive``, a source whose first bytes are no archive (a login
    page) fails like an unreachable one.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        dest: Path,
        *,
        settings: Settings,
        label: str,
        progress: bool = False,
        position: int = 0,
        expect_archive: bool = False,
    ) -> None:
        self.sources = list(sources)
        self.dest = dest
        self.settings = settings
        self.label = label
        self.expect_archive = expect_archive
        self.total: int | None = None
        self.delivered = 0
        self.declared = Pin()  # the current source's latest word on the whole file
        self.connections = 0  # the most used at once so far
        self.split = True  # until a source stops honouring ranges mid-way
        self.partial: _Partial  # opened by the producer, which owns it
        self._progress = progress
        self._position = position
        self._bar: Any = _NoBar()
        self._queue: queue.Queue[bytes | Downloaded | _Failed] = queue.Queue(QUEUE_CHUNKS)
        self._cancel = threading.Event()
        self._buffer = b""
        self._result: Downloaded | None = None
        self._thread = threading.Thread(target=self._produce, name=f"zoo-download-{label}", daemon=True)

    def __enter__(self) -> Transfer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if kind is None and self._result is not None:
            return
        self._cancel.set()
        # The producer notices within one chunk or one read timeout; it is a
        # daemon thread, so an interrupted process need not wait for it.
        self._thread.join(timeout=2)
        if isinstance(error, DISCARDING_ERRORS):
            # Any other failure (a dead source, an interrupted user) keeps the
            # partial, so the next run continues where this one stopped.
            remove_tree(self.dest)
            remove_tree(_sidecar(self.dest))

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (all remaining when negative); b"" at the end."""
        if size < 0:
            return b"".join(iter(lambda: self.read(CHUNK_SIZE), b""))
        while not self._buffer and self._result is None:
            self._take()
        data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def finish(self) -> Downloaded:
        """Consume what the reader did not need and return the verified result."""
        while self._result is None:
            self._buffer = b""
            self._take()
        self._thread.join()
        return self._result

    def _take(self) -> None:
        item = self._queue.get()
        if isinstance(item, bytes):
            self._buffer = item
        elif isinstance(item, Downloaded):
            self._result = item
        else:
            raise item.error

    # -- producer thread -------------------------------------------------------

    def _produce(self) -> None:
        try:
            self._put(self._from_first_source())
        except _Cancelled:
            pass
        except BaseException as exc:  # the reader raises it in the caller's thread
            try:
                self._put(_Failed(exc))
            except _Cancelled:
                pass

    def _put(self, item: bytes | Downloaded | _Failed) -> None:
        while True:
            if self._cancel.is_set():
                raise _Cancelled
            try:
                self._queue.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    def _from_first_source(self) -> Downloaded:
        failures: list[str] = []
        unresolved, unverified, status = False, False, None
        with (
            _Partial(self.dest) as self.partial,
            _progress_bar(self.label, self._progress, self._position) as self._bar,
        ):
            self._check_space(None, 0)
            for source in self.sources:
                self.declared = Pin()
                try:
                    end = _reader_for(source.url)(self, source).run()
                except _SourceFailed as exc:
                    if self.delivered:
                        raise NetworkError(f"{source.url}: {exc} (after {self.delivered} bytes)",
                                           url=source.url, status=exc.status) from None  # fmt: skip
                    failures.append(f"{source.url}: {exc}")
                    unresolved, status = unresolved or exc.unresolved, exc.status
                    unverified = unverified or exc.unverified
                    if len(self.sources) > 1:
                        log.warning("%s: %s; trying the next source", source.url, exc)
                    continue
                result = replace(self.partial.finish(source.url, end), connections=max(1, self.connections))
                return _verified(result, source, self.declared)
        last = self.sources[-1].url if self.sources else None
        if unverified:  # a source was there, the user's policy refused it: not a network problem
            raise UnverifiedError(f"refused {self.label}: " + "; ".join(failures) +
                                  "; pin its sha256 in the registry or a lock file, or fetch it through "
                                  "a mirror with an index", url=last)  # fmt: skip
        hint = NO_DNS_HINT if unresolved else ""
        raise NetworkError(f"could not download {self.label}: " + "; ".join(failures) + hint,
                           url=last, status=status)  # fmt: skip

    def receive(self, body: _Body, chunks: Iterable[bytes], ranges: _Ranges | None = None) -> int:
        """Take one body's bytes: each reaches the disk, then the hash and the
        reader, exactly once. Returns the position where the body ended.

        With ``ranges``, the rest of the file may come over several
        connections, ``chunks`` streaming the first segment."""
        if self.settings.require_verified and not _vouched(body):
            raise _SourceFailed("nothing vouches for its bytes (no sha256 pin, no server hash) "
                                "and --require-verified / ZOO_REQUIRE_VERIFIED is on", unverified=True)  # fmt: skip
        if body.declared != Pin():
            self.declared = body.declared
        _check_size_pin(body)
        self.total = body.total
        self._bar.reset(total=body.total)
        self._bar.update(self.delivered)
        self._check_space(body.total, body.start)
        if body.start == 0 and self.expect_archive:
            chunks = _archive_checked(body, chunks)
        self.partial.hasher.want_md5(body.pin.md5 is not None or body.declared.md5 is not None)
        self.partial.replay(self.delivered, body.start, self.emit)
        chunks = iter(chunks)
        if ranges is not None and self._splits(body):
            if not self.settings.probe_first or self.partial.done:
                return self._receive_segments(body, chunks, ranges)
            # The default count opens more connections only where one stream is
            # slow (a far edge); on a fast link they only compete for the CPU.
            probe = _Probe()
            position = self._stream(body, chunks, body.start, probe)
            if probe.slow and position < (body.total or 0):
                return self._receive_segments(replace(body, start=position), chunks, ranges)
            return self._stream(body, chunks, position)
        return self._stream(body, chunks, body.start)

    def _stream(self, body: _Body, chunks: Iterator[bytes], position: int, probe: _Probe | None = None) -> int:
        """One connection's bytes from ``position``, until they end or ``probe`` has measured them."""
        self.connections = max(self.connections, 1)
        for chunk in chunks:
            self._check_limit(body, position + len(chunk))
            self._check_space(body.total, position)
            self.emit(self.partial.take(body, position, chunk, self.delivered))
            position += len(chunk)
            if probe is not None and probe.measured(position):
                break
        return position

    def emit(self, chunk: bytes) -> None:
        self._bar.update(len(chunk))
        self._pass_on(chunk)

    def _pass_on(self, chunk: bytes) -> None:
        if chunk:
            self.delivered += len(chunk)
            self._put(chunk)

    def _splits(self, body: _Body) -> bool:
        """Whether the rest of ``body``'s file comes over several connections:
        the server serves ranges of a file of known size, If-Range or a pin
        makes asking for them safe, and enough is left to fetch (or segments
        on disk are worth keeping)."""
        if not (self.split and body.ranges and body.total is not None and self.delivered == body.start < body.total):
            return False
        if not _strong(body.validator) and body.pin.sha256 is None:
            return False
        return bool(self.partial.done) or worth_splitting(body.total - body.start, self.settings.connections)

    def _receive_segments(self, body: _Body, chunks: Iterator[bytes], ranges: _Ranges) -> int:
        """The rest of the file over several connections, handed over in order.
        A response that is not the file's bytes ends the split: the partial is
        cut back to what was handed over, and one stream continues from there."""
        assert body.total is not None
        coverage = Coverage([(0, body.start), *self.partial.segments(body.total)])
        holes = coverage.holes(body.start, body.total)
        size = segment_size(sum(end - start for start, end in holes), self.settings.connections)
        jobs = [Job(start, end) for start, end in plan(holes, size)]
        # The first bytes are checked here (an archive, not a login page?)
        # before the response becomes the first segment's.
        jobs[0].opened = ranges.continuing(next(chunks, b""), chunks)
        self.partial.record(body, coverage.spans())
        workers = Workers(jobs, self.settings.connections, connect=ranges.connect, fetch=ranges.fetch,
                          sink=self.partial.write_at, coverage=coverage, name=self._thread.name)  # fmt: skip
        try:
            with workers:
                self._hand_over(body, body.total, coverage, workers)
        except _Fallback as exc:
            self.split = False
            self.partial.cut(self.delivered)
            raise _Retry(f"{exc}; continuing over one connection from byte {self.delivered}", wait=0) from None
        finally:
            self.connections = max(self.connections, workers.most)
        return body.total

    def _hand_over(self, body: _Body, total: int, coverage: Coverage, workers: Workers) -> None:
        """Pass the contiguous prefix on as it grows, read back once; keep the
        sidecar within SIDECAR_EVERY of what is on disk."""
        shown = recorded = coverage.covered()
        self._bar.update(shown - self.delivered)
        try:
            while self.delivered < total:
                frontier = coverage.wait_beyond(self.delivered, timeout=0.1)
                if coverage.failure is not None:
                    raise coverage.failure
                if self._cancel.is_set():
                    raise _Cancelled
                covered = coverage.covered()
                self._check_space(total, covered)
                self._bar.update(covered - shown)
                self._bar.set_postfix_str(f"{workers.live} conns", refresh=False)
                shown = covered
                self.partial.replay(self.delivered, min(frontier, self.delivered + SIDECAR_EVERY), self._pass_on)
                if covered - recorded >= SIDECAR_EVERY:
                    self.partial.record(body, coverage.spans())
                    recorded = covered
        finally:
            if self.delivered < total:
                self.partial.record(body, coverage.spans())

    def _check_limit(self, body: _Body, end: int) -> None:
        """Stop at the pinned or declared size, or at ZOO_MAX_DOWNLOAD when neither is known."""
        if body.pin.size is not None and end > body.pin.size:
            raise IntegrityError(f"{body.url}: sends more than the {body.pin.size} bytes pinned; nothing was kept",
                                 url=body.url, expected=body.pin.size, actual=end)  # fmt: skip
        if body.total is not None and end > body.total:
            raise _SourceFailed(f"sends more than the {body.total} bytes it declared")
        cap = self.settings.max_download
        if body.pin.size is None and body.total is None and end > cap:
            raise DiskFullError(
                f"{body.url}: sends more than ZOO_MAX_DOWNLOAD ({_mib(cap)}) without declaring a size; "
                "stopped and deleted (raise ZOO_MAX_DOWNLOAD if the file really is that large)",
                path=self.dest,
            )

    def _check_space(self, total: int | None, position: int) -> None:
        """Stop before the download leaves less than ZOO_MIN_FREE on the cache's disk."""
        free = shutil.disk_usage(self.dest.parent).free
        need = total - position if total is not None else 0
        if free - need < self.settings.min_free:
            raise DiskFullError(
                f"not enough free space in {self.dest.parent} for {self.label}: {_mib(free)} free, "
                f"{_mib(need)} still to download, ZOO_MIN_FREE keeps {_mib(self.settings.min_free)} free",
                path=self.dest.parent,
            )


class _Probe:
    """How fast one stream delivers, measured from its first chunk on (the
    connection's set-up is not the link's rate) over PROBE_BYTES or
    PROBE_SECONDS, whichever comes first."""

    def __init__(self) -> None:
        self._first: tuple[int, float] | None = None
        self.slow = False

    def measured(self, position: int) -> bool:
        now = time.monotonic()
        if self._first is None:
            self._first = (position, now)
            return False
        start, began = self._first
        if position - start < PROBE_BYTES and now - began < PROBE_SECONDS:
            return False
        self.slow = (position - start) / max(now - began, 1e-9) < FAST_STREAM
        return True


class _Partial:
    """A download in progress on disk, hashed exactly as far as it was handed over.

    Opened without following symlinks: a link planted at its path is refused,
    never written through.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sidecar = _sidecar(path)
        private_dir(path.parent)
        with writing(path):
            try:
                self._fd: int | None = open_regular(path, os.O_RDWR)
            except FileNotFoundError:
                self._fd = None
        length = os.fstat(self._fd).st_size if self._fd is not None else 0
        # ``size``: the prefix the sidecar vouches for; ``done``: segments past it.
        self.meta, self.size, self.done = _on_disk(self._read_sidecar() if length else {}, length)
        self.hasher = _Digests()
        self._origin: _Body | None = None

    def __enter__(self) -> _Partial:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def resume_headers(self, pin: Pin) -> dict[str, str]:
        """Range headers to continue what is on disk, when that is safe: its
        bytes came under the same pin, or the server confirms their validator."""
        if not self.size and not self.done:
            return {}
        if pin.sha256 is not None and self.meta.get("sha256") == pin.sha256:
            return {"Range": f"bytes={self.size}-"}
        validator = self.meta.get("validator")
        if isinstance(validator, str) and validator:
            return {"Range": f"bytes={self.size}-", "If-Range": validator}
        return {}

    def fits(self, total: int | None) -> bool:
        return self.meta.get("total") in (None, total)

    def forget(self) -> None:
        """Ask for the whole file next time; the bytes stay until others replace them."""
        self.meta = {}
        self.done = []

    def forget_segments(self) -> None:
        """The segments on disk belong to another file than the one now arriving."""
        self.done = []

    def segments(self, total: int) -> list[tuple[int, int]]:
        return [(start, min(end, total)) for start, end in self.done if start < total]

    def record(self, body: _Body, done: list[list[int]]) -> None:
        """Vouch for the ``done`` spans of ``body``'s file: call only once their bytes are written."""
        with writing(self.path):
            self._file()  # opened here, before workers share it
        self._record(body, done)

    def write_at(self, position: int, data: bytes) -> None:
        """A segment's bytes; a worker's, so ``size`` and the hashes stay the producer's."""
        with writing(self.path):
            _pwrite(self._file(), data, position)

    def cut(self, position: int) -> None:
        """Back to a single stream: keep only the ``position`` bytes handed over."""
        with writing(self.path):
            os.ftruncate(self._file(), position)
        self.size, self.done = position, []
        if self._origin is not None:
            self._record(self._origin)

    def replay(self, start: int, end: int, emit: Callable[[bytes], None]) -> None:
        """Hand over bytes an earlier process left on disk: the one read they get."""
        while start < end:
            block = self._read(start, min(CHUNK_SIZE, end - start))
            if not block:
                raise _Retry("partial download shrank while resuming")
            self.hasher.update(block)
            emit(block)
            start += len(block)

    def take(self, body: _Body, position: int, chunk: bytes, handed_over: int) -> bytes:
        """Keep the body's ``chunk`` at ``position`` on disk; return the part the
        reader has not had yet.

        The part it had (a server that ignored Range resends it) must equal
        what is on disk: only bytes that differ mean the file changed.
        """
        seen = max(0, min(len(chunk), handed_over - position))
        if seen and self._read(position, seen) != chunk[:seen]:
            raise IntegrityError(f"{body.url} changed during the download; run the command again")
        fresh = chunk[seen:]
        if fresh:
            self._write(body, position + seen, fresh)
            self.hasher.update(fresh)
        return fresh

    def finish(self, url: str, end: int) -> Downloaded:
        """The complete file: ``end`` bytes, all handed over."""
        with writing(self.path):
            os.ftruncate(self._file(), end)  # a stale tail, or no file yet for an empty one
        remove_tree(self.sidecar)
        return self.hasher.result(self.path, url, end)

    def _file(self) -> int:
        if self._fd is None:
            self._fd = open_regular(self.path, os.O_RDWR | os.O_CREAT)
        return self._fd

    def _read(self, position: int, size: int) -> bytes:
        with writing(self.path):
            return os.pread(self._file(), size, position)

    def _write(self, body: _Body, position: int, data: bytes) -> None:
        with writing(self.path):
            fd = self._file()
            if body is not self._origin:
                # A new response from here on: cut what follows on disk (an old
                # file, segments of another run) before the sidecar vouches for
                # these bytes, so a crash never mixes the two.
                os.ftruncate(fd, position)
                self.done = []
                self._record(body)
            self.size = _pwrite(fd, data, position)

    def _record(self, body: _Body, done: list[list[int]] | None = None) -> None:
        self.meta = {"url": body.url, "validator": body.validator, "total": body.total, "sha256": body.pin.sha256}
        # A partial with holes keeps what identifies its file under "segments":
        # a zoo that predates them, finding no validator, starts over instead
        # of taking the file's length for the bytes it holds.
        if done is None:
            written: dict[str, Any] = self.meta
        else:
            written = {"url": body.url, "total": body.total, "segments": {
                "validator": body.validator, "sha256": body.pin.sha256, "done": done}}  # fmt: skip
        with writing(self.sidecar):
            fd = open_regular(self.sidecar, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            with os.fdopen(fd, "w") as handle:
                json.dump(written, handle)
        self._origin = body

    def _read_sidecar(self) -> dict[str, Any]:
        try:
            fd = open_regular(self.sidecar, os.O_RDONLY)
            with os.fdopen(fd, "rb") as handle:
                meta = json.loads(handle.read(1 << 16))
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _on_disk(meta: dict[str, Any], length: int) -> tuple[dict[str, Any], int, list[tuple[int, int]]]:
    """What a sidecar vouches for in a partial of ``length`` bytes: its file's
    identity, the prefix, and the segments past it. A single stream's sidecar
    vouches for the whole file; one whose segments do not make sense, for nothing."""
    segments = meta.get("segments")
    if segments is None:
        return meta, length, []
    spans = segments.get("done") if isinstance(segments, dict) else None
    if not sane_spans(spans, length):
        return {}, 0, []
    identity = {"url": meta.get("url"), "total": meta.get("total"),
                "validator": segments.get("validator"), "sha256": segments.get("sha256")}  # fmt: skip
    prefix = spans[0][1] if spans and spans[0][0] == 0 else 0
    return identity, prefix, [(start, end) for start, end in spans if start > 0]


def _pwrite(fd: int, data: bytes, position: int) -> int:
    """Write all of ``data`` at ``position``; returns where it ends."""
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, position)
        view, position = view[written:], position + written
    return position


def _reader_for(url: str) -> type[_Reader]:
    readers: dict[Scheme, type[_Reader]] = {
        Scheme.HTTP: _HttpSource, Scheme.LOCAL: _LocalSource, Scheme.FSSPEC: _FsspecSource
    }  # fmt: skip
    return readers[scheme_of(url)]


class _Reader:
    """Delivers one source's bytes into a transfer; ``run`` returns where they end."""

    def __init__(self, transfer: Transfer, source: Source) -> None:
        self.transfer = transfer
        self.url = source.url
        self.pin = source.pin

    def run(self) -> int:
        raise NotImplementedError


class _HttpSource(_Reader):
    """Resumable: Range requests from what is on disk, retried with backoff."""

    def run(self) -> int:
        with _session(self.transfer.settings) as session:
            try:
                return _retrying(self.transfer.settings, self.url, lambda: self._attempt(session),
                                 lambda: self.transfer.delivered)  # fmt: skip
            except _GaveUp as exc:
                raise _SourceFailed(str(exc)) from None

    def _attempt(self, session: Any) -> int:
        headers = {"Accept-Encoding": "identity", **self.transfer.partial.resume_headers(self.pin)}
        response = _get(session, self.url, headers, self.transfer.settings)
        with response:
            body = self._body(response, self.transfer.partial.size if "Range" in headers else 0)
            chunks = _response_chunks(response, body.start)
            end = self.transfer.receive(body, chunks, _HttpRanges(self, body, response))
        if body.total is not None and end < body.total:
            raise _Retry(f"connection closed at byte {end} of {body.total}")
        return end

    def _body(self, response: Any, asked: int) -> _Body:
        """What the response carries, once it is known to continue the file."""
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status} {response.reason}", wait=_retry_after(response))
        if status not in (200, 206, 416):
            raise _SourceFailed(f"HTTP {status} {response.reason}", status=status)
        headers = response.headers
        validator = headers.get("ETag") or headers.get("Last-Modified")
        content_type = headers.get("Content-Type")
        declared = _server_hashes(headers)
        ranges = status == 206 or headers.get("Accept-Ranges", "").strip().lower() == "bytes"
        if status == 200:  # the whole file: no Range asked, or If-Range saw another file
            self.transfer.partial.forget_segments()
            total = _content_length(headers)
            return _Body(self.url, self.pin, 0, total, validator, content_type, declared, ranges)
        span = _content_range(headers) if status == 206 else None
        if span is not None and span[0] == asked and self.transfer.partial.fits(span[1]):
            return _Body(self.url, self.pin, asked, span[1], validator, content_type, declared, ranges)
        # 416, or a 206 that starts elsewhere or belongs to a file of another size.
        self.transfer.partial.forget()
        raise _Retry(f"HTTP {status}: the partial download does not fit; asking for the whole file", wait=0)


class _Ranges:
    """Byte ranges of the file a first body began, fetched by workers. A
    response that is not the asked bytes of that very file, or a range that
    keeps failing, ends the split (``_Fallback``)."""

    def __init__(self, url: str, settings: Settings, total: int | None) -> None:
        self.url = url
        self.settings = settings
        self.total = total

    def continuing(self, head: bytes, rest: Iterator[bytes]) -> Generator[bytes, None, None]:
        """The first body's bytes, released once the first segment has its share."""
        try:
            yield head
            yield from rest
        finally:
            self.release_first()

    def release_first(self) -> None:
        pass

    def connect(self) -> AbstractContextManager[Any]:
        return nullcontext()

    def fetch(self, connection: Any, job: Job, workers: Workers) -> None:
        def attempt() -> None:
            first, job.opened = job.opened, None
            for chunk in first or self.request(connection, job):
                room = job.end - job.position
                # Read on to the response's end, so its connection serves the
                # next range, unless it goes past the segment: the first
                # response runs on to the end of the file, a range should not.
                if workers.write(job, chunk) and (first is not None or len(chunk) > room):
                    break
            if job.position < job.end:
                raise _Retry(f"connection closed at byte {job.position}, segment {job.describe()}")

        try:
            _retrying(self.settings, self.url, attempt, lambda: job.position, workers.pause)
        except (_GaveUp, _SourceFailed) as exc:
            raise _Fallback(f"{job.describe()}: {exc}") from None

    def request(self, connection: Any, job: Job) -> Iterator[bytes]:
        """The bytes from ``job.position`` on, at most to ``job.end``."""
        raise NotImplementedError


class _HttpRanges(_Ranges):
    """Over a session per worker, each range asked with If-Range (or, for a
    pinned file without a validator, without)."""

    def __init__(self, source: _HttpSource, body: _Body, response: Any) -> None:
        super().__init__(source.url, source.transfer.settings, body.total)
        self.validator = body.validator if _strong(body.validator) else None
        self._first = response

    def release_first(self) -> None:
        self._first.close()

    def connect(self) -> AbstractContextManager[Any]:
        return _session(self.settings)

    def request(self, connection: Any, job: Job) -> Iterator[bytes]:
        headers = {"Accept-Encoding": "identity", "Range": f"bytes={job.position}-{job.end - 1}"}
        if self.validator is not None:
            headers["If-Range"] = self.validator
        response = _get(connection, self.url, headers, self.settings)
        with response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status} {response.reason}", wait=_retry_after(response))
            span = _content_range(response.headers) if status == 206 else None
            if span != (job.position, self.total):
                got = " ".join(filter(None, (str(status), response.headers.get("Content-Range"))))
                raise _Fallback(f"HTTP {got} to a request for {job.describe()} of {self.total}")
            yield from _response_chunks(response, job.position)


class _ObjectRanges(_Ranges):
    """Through fsspec, whose file systems serve threads at once."""

    def __init__(self, source: _FsspecSource, total: int | None) -> None:
        super().__init__(source.url, source.transfer.settings, total)
        self.fs, self.path = source.fs, source.path

    def request(self, connection: Any, job: Job) -> Iterator[bytes]:
        position = job.position
        while position < job.end:
            end = min(position + CHUNK_SIZE, job.end)
            try:
                block = self.fs.cat_file(self.path, start=position, end=end)
            except FileNotFoundError:
                raise _Fallback("the object is gone") from None
            except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types
                raise _Retry(f"cannot read {job.describe()}: {_describe(exc)}") from None
            if not block:
                return
            position += len(block)
            yield block


def _retrying(
    settings: Settings,
    url: str,
    attempt: Callable[[], Any],
    progress: Callable[[], int],
    pause: Callable[[float], None] = time.sleep,
) -> Any:
    """``attempt`` until it succeeds, retrying a ``_Retry`` with backoff; an
    attempt that made ``progress`` resets the budget of ZOO_RETRIES."""
    failures_in_a_row = 0
    while True:
        before = progress()
        try:
            return attempt()
        except _Retry as exc:
            failures_in_a_row = 0 if progress() > before else failures_in_a_row + 1
            if failures_in_a_row > settings.retries:
                raise _GaveUp(f"{exc} (gave up after {settings.retries} retries)") from None
            delay = exc.wait if exc.wait is not None else _backoff(settings, failures_in_a_row)
            log.warning("%s: %s; retrying in %.1f s", url, exc, delay)
            pause(delay)


def _get(session: Any, url: str, headers: dict[str, str], settings: Settings) -> Any:
    """The response to a streamed GET; what may pass on retry is a ``_Retry``."""
    import requests

    timeout = (settings.connect_timeout, settings.read_timeout)
    try:
        return session.get(url, headers=headers, stream=True, timeout=timeout, verify=settings.verify)
    except requests.exceptions.InvalidURL as exc:
        raise _SourceFailed(f"invalid URL: {exc}") from None
    except requests.exceptions.SSLError as exc:  # the same certificate next time: not retried
        raise _SourceFailed(_tls_failure(url, exc)) from None
    except requests.exceptions.RequestException as exc:
        if _unresolvable(exc):  # permanent here: retrying only costs the backoff
            raise _SourceFailed(f"{_reason(exc)} (the host name does not resolve)", unresolved=True) from None
        raise _Retry(_reason(exc)) from None


def _response_chunks(response: Any, position: int) -> Iterator[bytes]:
    import requests
    import urllib3

    try:
        # read1 hands over whatever arrived, so a connection that drops
        # mid-chunk still leaves its bytes on disk for the resume.
        while chunk := response.raw.read1(CHUNK_SIZE, decode_content=False):
            position += len(chunk)
            yield chunk
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise _Retry(f"connection lost at byte {position}: {_reason(exc)}") from None


def _strong(validator: str | None) -> bool:
    """Whether If-Range can use ``validator``: a weak ETag never matches there."""
    return validator is not None and validator != "" and not validator.startswith("W/")


class _StreamSource(_Reader):
    """A source read front to back with no resume: local files, object stores.

    A failed read is this source's failure, so the next source is tried; only
    writing the cache is a cache error.
    """

    read_errors: tuple[type[Exception], ...] = (OSError,)

    def run(self) -> int:
        reader, total = self.open()
        ranges = self.ranges(total)
        body = _Body(self.url, self.pin, total=total, ranges=ranges is not None)
        with reader:
            try:
                end = self.transfer.receive(body, self._chunks(reader), ranges)
            except _Retry as exc:  # a file read again says the same
                raise _SourceFailed(str(exc)) from None
        if total is not None and end < total:
            raise _SourceFailed(f"ends at byte {end} of the {total} it declared (changed while read?)")
        return end

    def _chunks(self, reader: IO[bytes]) -> Iterator[bytes]:
        try:
            while block := reader.read(CHUNK_SIZE):
                yield block
        except self.read_errors as exc:
            raise _SourceFailed(f"cannot read: {_describe(exc)}") from None

    def open(self) -> tuple[IO[bytes], int | None]:
        raise NotImplementedError

    def ranges(self, total: int | None) -> _Ranges | None:
        """How workers read other parts of the file at once; None: one stream only."""
        return None


class _LocalSource(_StreamSource):
    def open(self) -> tuple[IO[bytes], int | None]:
        path = local_path(self.url)
        try:
            # O_NONBLOCK: a FIFO at the path must not hang the open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise _SourceFailed("no such file") from None
        except OSError as exc:
            raise _SourceFailed(_describe(exc)) from None
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            os.close(fd)
            raise _SourceFailed("not a regular file")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb"), info.st_size


class _FsspecSource(_StreamSource):
    read_errors = (Exception,)  # fsspec backends raise their own types
    fs: Any
    path: str

    def open(self) -> tuple[IO[bytes], int | None]:
        from zoo.objectstore import open_filesystem

        try:
            self.fs, self.path = open_filesystem(self.url)  # a missing backend names its pip extra
        except ZooError as exc:
            raise _SourceFailed(str(exc)) from None
        try:
            size = int(self.fs.info(self.path)["size"])
            return self.fs.open(self.path, "rb", block_size=CHUNK_SIZE * 4), size
        except FileNotFoundError:
            raise _SourceFailed("no such object") from None
        except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types
            raise _SourceFailed(_describe(exc)) from None

    def ranges(self, total: int | None) -> _Ranges | None:
        return _ObjectRanges(self, total)


def _archive_checked(body: _Body, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks``, once their first bytes are known to start an archive."""
    rest = iter(chunks)
    head = b""
    for chunk in rest:
        head += chunk
        if len(head) >= ARCHIVE_HEAD:
            break
    kind = (body.content_type or "").partition(";")[0].strip().lower()
    if kind == "text/html":
        raise _Retry("served text/html instead of an archive (a login or captive-portal page?)")
    if not head.startswith(ARCHIVE_MAGIC) and head[257:262] != b"ustar":
        raise _Retry(f"served {kind or 'a file'} that is not a gzip, bzip2, xz or tar archive")
    yield head
    yield from rest


def _content_range(headers: Any) -> tuple[int, int | None] | None:
    """(first byte, total size or None) of ``Content-Range: bytes first-last/total``."""
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", headers.get("Content-Range", "").strip())
    if match is None:
        return None
    return int(match[1]), None if match[3] == "*" else int(match[3])


def _content_length(headers: Any) -> int | None:
    length = headers.get("Content-Length", "")
    return int(length) if length.isdigit() else None


def _check_size_pin(body: _Body) -> None:
    if body.pin.size is not None and body.total is not None and body.total != body.pin.size:
        raise IntegrityError(
            f"{body.url}: size mismatch: expected {body.pin.size} bytes, source offers {body.total}; nothing was kept",
            url=body.url, expected=body.pin.size, actual=body.total,
        )  # fmt: skip


def _verified(result: Downloaded, source: Source, declared: Pin) -> Downloaded:
    """Delete what contradicts the pin or the server's own hashes, so a bad
    download is never reused; else record how the bytes were verified."""
    got = _computed(result)
    # The size first, sha256 last: the last mismatch (a hash says more than a
    # size) fills the error's expected/actual.
    mismatches = [
        (f"{name} mismatch: {who}{want}{' bytes' if name == 'size' else ''}, got {have}", want, have)
        for name in ("size", *SERVER_HASHES, "sha256")
        for who, pin in (("expected ", source.pin), ("the server sent ", declared))
        if (want := getattr(pin, name)) is not None and (have := getattr(got, name)) is not None and want != have
    ]
    if mismatches:
        remove_tree(result.path)
        raise IntegrityError(f"{result.url}: {'; '.join(m[0] for m in mismatches)}; the download was deleted",
                             url=result.url, expected=mismatches[-1][1], actual=mismatches[-1][2])  # fmt: skip
    return replace(result, verified=_verification(source, declared, got), declared=declared)


def _computed(result: Downloaded) -> Pin:
    """What was computed of the bytes; MD5 None when nothing asked for it in time."""
    return Pin(result.sha256, result.size, result.crc32c, result.md5 or None)


def _verification(source: Source, declared: Pin, got: Pin) -> str:
    """How the bytes were verified, strongest first (zoo.sources PINNED ...)."""
    if source.pin.sha256 is not None:
        return source.sha256_from
    server = [name for name in SERVER_HASHES if getattr(declared, name) is not None and getattr(got, name)]
    return f"{SERVER} {'+'.join(server)}" if server else FIRST_USE


def _vouched(body: _Body) -> bool:
    """Whether a pin or the server's own hash will check ``body``'s file."""
    return body.pin.sha256 is not None or any(getattr(body.declared, name) for name in SERVER_HASHES)


def _server_hashes(headers: Any) -> Pin:
    """What Cloud Storage says of the whole object, in a 206 too: ``x-goog-hash:
    crc32c=<b64>,md5=<b64>`` and ``x-goog-stored-content-length``. Nothing for
    an object it transcodes: those describe the stored bytes, not the ones sent."""
    if headers.get("x-goog-stored-content-encoding", "identity").strip().lower() != "identity":
        return Pin()
    hashes = {}
    for item in headers.get("x-goog-hash", "").split(","):  # repeated headers arrive joined by ", "
        name, _, value = item.strip().partition("=")
        if name in SERVER_HASHES and value:
            hashes[name] = value
    stored = headers.get("x-goog-stored-content-length", "").strip()
    return Pin(size=int(stored) if stored.isdigit() else None, **hashes)


class _NoBar:
    """Stands in for tqdm when no bar is shown, so tqdm is never imported then."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc_info: object) -> None:
        pass

    def reset(self, total: int | None = None) -> None:
        pass

    def update(self, count: int) -> None:
        pass

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        pass


def _progress_bar(label: str, enabled: bool, position: int = 0) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(
        desc=label, unit="B", unit_scale=True, unit_divisor=1024,
        file=sys.stderr, dynamic_ncols=True, position=position,
    )  # fmt: skip


def _backoff(settings: Settings, failures: int) -> float:
    return min(MAX_BACKOFF, settings.backoff * 2 ** (failures - 1))


def _retry_after(response: Any) -> float | None:
    value = response.headers.get("Retry-After", "")
    return min(float(value), MAX_RETRY_AFTER) if value.isdigit() else None


def _reason(exc: Exception) -> str:
    """The part of a requests error a user can act on, without pool internals."""
    import requests

    text = str(exc)
    errno_text = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno_text:
        return errno_text.group(1).strip()
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "read timed out"
    return (text.splitlines() or [type(exc).__name__])[0][:200]


def _unresolvable(exc: BaseException) -> bool:
    """Whether a failed request never got past looking up the host name."""
    return any(isinstance(e, socket.gaierror) for e in _chain(exc))


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the errors behind it: causes, and what requests and urllib3
    wrap (MaxRetryError.reason, an error passed as an argument)."""
    seen: set[int] = set()
    pending = [exc]
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        inner = [current.__cause__, current.__context__, getattr(current, "reason", None), *current.args]
        pending += [e for e in inner if isinstance(e, BaseException)]


def _tls_failure(url: str, exc: BaseException) -> str:
    """One line: the host, why its certificate was refused, the variable to set."""
    import ssl

    host = urlsplit(url).hostname
    chain = list(_chain(exc))
    verify = next((e for e in chain if isinstance(e, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        cause = TLS_CAUSES.get(verify.verify_code, verify.verify_message or "certificate refused")
    else:  # a handshake that failed for another reason (protocol, cipher, a plain-HTTP server)
        tls = next((e for e in chain if isinstance(e, ssl.SSLError)), exc)
        cause = getattr(tls, "reason", None) or _reason(exc)
    return f"TLS failure with {host}: {cause}; {TLS_HINT}"


def _session(settings: Settings) -> Any:
    import requests

    session = requests.Session()
    session.headers["User-Agent"] = f"zoo/{__version__}"
    if settings.host_map:
        adapter = _host_map_adapter(dict(settings.host_map))
        session.mount("http://", adapter)
        session.mount("https://", adapter)
    return session


def _host_map_adapter(targets: dict[str, str]) -> Any:
    """TEST ONLY (ZOO_TEST_HOST_MAP): connect to ``targets[host:port]`` instead,
    like a hosts-file entry: the request still names the host in SNI, in the
    certificate check and in ``Host``, and no DNS is asked about it."""
    from requests.adapters import HTTPAdapter

    class HostMapAdapter(HTTPAdapter):
        def get_connection_with_tls_context(
            self, request: Any, verify: Any, proxies: Any = None, cert: Any = None
        ) -> Any:
            parts = urlsplit(request.url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            target = targets.get(f"{parts.hostname}:{port}")
            if target is None:
                return super().get_connection_with_tls_context(request, verify, proxies, cert)
            host_params, pool_kwargs = self.build_connection_pool_key_attributes(request, verify, cert)
            address, _, mapped_port = target.rpartition(":")
            host_params.update(host=address, port=int(mapped_port))
            if parts.scheme == "https":
                pool_kwargs.update(server_hostname=parts.hostname)
            request.headers["Host"] = parts.netloc
            return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    return HostMapAdapter()


def _describe(exc: Exception) -> str:
    """A one-line reason for a failed open or read of a file or object."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.1f} MiB"
