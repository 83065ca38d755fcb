"""Streaming, resumable, retried downloads that hash bytes as they arrive.

A ``Transfer`` fetches one file from the first source that works. A producer
thread writes every byte to a partial file on disk, feeds it to sha256 and
hands it through a bounded queue to a reader (tarfile, when extracting while
downloading), so the bytes are touched once and memory stays bounded.

The partial file sits beside a JSON sidecar (source URL, validator, total
size), so an interrupted transfer, even one whose process was killed,
continues with an HTTP Range request in a later run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from zoo import __version__
from zoo.errors import IntegrityError, NetworkError, ZooError
from zoo.fsutil import remove_tree, writing
from zoo.settings import Settings
from zoo.sources import Pin, Source, is_local, local_path

CHUNK_SIZE = 1 << 20
QUEUE_CHUNKS = 16  # bounds memory: at most this many chunks wait for the reader
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 60.0

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    sha256: str
    size: int


def download(
    sources: Sequence[Source], dest: Path, *, settings: Settings, label: str, progress: bool = False
) -> Downloaded:
    """Fetch the first source that works into ``dest``, verified against its pin."""
    with Transfer(sources, dest, settings=settings, label=label, progress=progress) as transfer:
        return transfer.finish()


class _SourceFailed(Exception):
    """This source cannot deliver the file; the next one may."""


class _Retry(Exception):
    """A transient failure; ``progressed`` resets the retry budget."""

    def __init__(self, reason: str, progressed: bool = False, wait: float | None = None):
        super().__init__(reason)
        self.progressed = progressed
        self.wait = wait


class _Cancelled(Exception):
    """The reader gave up; the producer stops."""


@dataclass(frozen=True)
class _Failed:
    error: BaseException


class Transfer:
    """One file's bytes, from the first source that works, as a readable stream.

    Use as a context manager; ``read`` returns the bytes in order, ``finish``
    reads what the reader left, checks the pin and returns the result. Sources
    that are missing or unreachable are skipped in order until a byte has been
    handed over; bytes that contradict the pin fail at once, since another
    source offering different bytes is no more trustworthy.
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
    ) -> None:
        self.sources = list(sources)
        self.dest = dest
        self.settings = settings
        self.label = label
        self.total: int | None = None
        self.delivered = 0
        self._progress = progress
        self._position = position
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
        if kind is not None and not isinstance(error, KeyboardInterrupt):
            # What was read led to an error (a bad archive, a full disk):
            # keep nothing. An interrupted user keeps the partial to resume.
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
        failures = []
        with _progress_bar(self.label, self._progress, self._position) as bar:
            for source in self.sources:
                try:
                    return _verified(_reader_for(source.url)(self, source, bar).run(), source.pin)
                except _SourceFailed as exc:
                    if self.delivered:
                        raise NetworkError(f"{source.url}: {exc} (after {self.delivered} bytes)") from None
                    failures.append(f"{source.url}: {exc}")
                    if len(self.sources) > 1:
                        log.warning("%s: %s; trying the next source", source.url, exc)
        raise NetworkError(f"could not download {self.label}: " + "; ".join(failures))

    def emit(self, chunk: bytes, bar: Any) -> None:
        self.delivered += len(chunk)
        bar.update(len(chunk))
        self._put(chunk)


class _Partial:
    """A download in progress on disk, hashed exactly as far as it was handed over."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self.sidecar = _sidecar(path)
        meta = self._read_sidecar()
        if meta.get("url") != url or not path.is_file():
            self.discard()
            meta = {}
        self.validator: str | None = meta.get("validator")
        self.total: int | None = meta.get("total")
        self.hasher = hashlib.sha256()

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def discard(self) -> None:
        remove_tree(self.path)
        remove_tree(self.sidecar)
        self.validator = self.total = None
        self.hasher = hashlib.sha256()

    def open(self, offset: int, validator: str | None, total: int | None) -> IO[bytes]:
        """Open for writing at ``offset``, recording how to resume later."""
        if offset == 0:
            self.discard()
        self.validator, self.total = validator, total
        with writing(self.sidecar):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.sidecar.write_text(json.dumps({"url": self.url, "validator": validator, "total": total}))
            handle = open(self.path, "r+b" if offset else "wb")  # noqa: SIM115 - the caller closes it
            handle.seek(offset)
            handle.truncate()
        return handle

    def replay(self, start: int, end: int, emit: Callable[[bytes], None]) -> None:
        """Hand over bytes an earlier process left on disk: the one read they get."""
        with open(self.path, "rb") as handle:
            handle.seek(start)
            while start < end:
                block = handle.read(min(CHUNK_SIZE, end - start))
                if not block:
                    raise _Retry("partial download shrank while resuming")
                self.hasher.update(block)
                emit(block)
                start += len(block)

    def _read_sidecar(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def _reader_for(url: str) -> type[_Reader]:
    if url.startswith(("http://", "https://")):
        return _HttpSource
    return _LocalSource if is_local(url) else _FsspecSource


class _Reader:
    """Delivers one source's bytes into a transfer."""

    def __init__(self, transfer: Transfer, source: Source, bar: Any) -> None:
        self.transfer = transfer
        self.url = source.url
        self.pin = source.pin
        self.bar = bar

    def run(self) -> Downloaded:
        raise NotImplementedError


class _HttpSource(_Reader):
    """Resumable: Range requests from what is on disk, retried with backoff."""

    def __init__(self, transfer: Transfer, source: Source, bar: Any) -> None:
        super().__init__(transfer, source, bar)
        self.partial = _Partial(transfer.dest, source.url)

    def run(self) -> Downloaded:
        import requests

        settings = self.transfer.settings
        failures_in_a_row = 0
        with requests.Session() as session:
            session.headers["User-Agent"] = f"zoo/{__version__}"
            while True:
                try:
                    self._attempt(session)
                    size = self.partial.size
                    remove_tree(self.partial.sidecar)
                    return Downloaded(self.partial.path, self.url, self.partial.hasher.hexdigest(), size)
                except _Retry as exc:
                    failures_in_a_row = 0 if exc.progressed else failures_in_a_row + 1
                    if failures_in_a_row > settings.retries:
                        raise _SourceFailed(f"{exc} (gave up after {settings.retries} retries)") from None
                    delay = exc.wait if exc.wait is not None else _backoff(settings, failures_in_a_row)
                    log.warning("%s: %s; retrying in %.1f s", self.url, exc, delay)
                    time.sleep(delay)

    def _attempt(self, session: Any) -> None:
        import requests

        settings = self.transfer.settings
        offset = self.partial.size
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.partial.validator:
                headers["If-Range"] = self.partial.validator
        timeout = (settings.connect_timeout, settings.read_timeout)
        try:
            response = session.get(self.url, headers=headers, stream=True, timeout=timeout)
        except requests.exceptions.InvalidURL as exc:
            raise _SourceFailed(f"invalid URL: {exc}") from None
        except requests.exceptions.RequestException as exc:
            raise _Retry(_reason(exc)) from None
        with response:
            offset = self._start_offset(response, offset)
            self._stream_body(response, offset, _total_size(response, offset))

    def _start_offset(self, response: Any, offset: int) -> int:
        """Where the body starts, after deciding whether resuming is safe."""
        status = response.status_code
        if status == 429 or status >= 500:
            raise _Retry(f"HTTP {status} {response.reason}", wait=_retry_after(response))
        if status >= 400 and status != 416:
            raise _SourceFailed(f"HTTP {status} {response.reason}")
        if status == 206 and _continues(response, self.partial, offset):
            return offset
        if status == 200 and self.transfer.delivered == 0:
            return 0  # the server ignored the Range, or If-Range saw a changed file
        self.partial.discard()
        if self.transfer.delivered:
            raise IntegrityError(f"{self.url} changed during the download; run the command again")
        # 416, or a 206 that starts elsewhere: what is on disk no longer fits.
        raise _Retry(f"HTTP {status}: the partial download does not fit; restarting", wait=0)

    def _stream_body(self, response: Any, offset: int, total: int | None) -> None:
        import requests
        import urllib3

        transfer, partial = self.transfer, self.partial
        _check_size_pin(partial.url, self.pin, total, partial.discard)
        transfer.total = total
        self.bar.reset(total=total)
        self.bar.update(transfer.delivered)
        validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
        handle = partial.open(offset, validator, total)
        partial.replay(transfer.delivered, offset, lambda block: transfer.emit(block, self.bar))
        received = 0
        try:
            with writing(partial.path), handle:
                # read1 hands over whatever arrived, so a connection that drops
                # mid-chunk still leaves its bytes on disk for the resume.
                while chunk := response.raw.read1(CHUNK_SIZE, decode_content=False):
                    handle.write(chunk)
                    partial.hasher.update(chunk)
                    received += len(chunk)
                    transfer.emit(chunk, self.bar)
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
            raise _Retry(f"connection lost at byte {offset + received}: {_reason(exc)}",
                         progressed=received > 0) from None
        except ZooError:
            partial.discard()  # a full disk: free the space rather than keep a fragment
            raise
        if total is not None and offset + received < total:
            raise _Retry(f"connection closed at byte {offset + received} of {total}", progressed=received > 0)


class _StreamSource(_Reader):
    """A source read front to back with no resume: local files, object stores."""

    def run(self) -> Downloaded:
        reader, total = self.open()
        _check_size_pin(self.url, self.pin, total, lambda: None)
        self.transfer.total = total
        self.bar.reset(total=total)
        dest = self.transfer.dest
        hasher = hashlib.sha256()
        with writing(dest):
            dest.parent.mkdir(parents=True, exist_ok=True)
        with reader, writing(dest), open(dest, "wb") as writer:
            while block := reader.read(CHUNK_SIZE):
                writer.write(block)
                hasher.update(block)
                self.transfer.emit(block, self.bar)
        return Downloaded(dest, self.url, hasher.hexdigest(), dest.stat().st_size)

    def open(self) -> tuple[IO[bytes], int | None]:
        raise NotImplementedError


class _LocalSource(_StreamSource):
    def open(self) -> tuple[IO[bytes], int | None]:
        path = local_path(self.url)
        try:
            return open(path, "rb"), path.stat().st_size  # noqa: SIM115 - run() closes it
        except FileNotFoundError:
            raise _SourceFailed("no such file") from None
        except OSError as exc:
            raise _SourceFailed(exc.strerror or str(exc)) from None


class _FsspecSource(_StreamSource):
    def open(self) -> tuple[IO[bytes], int | None]:
        try:
            from fsspec.core import url_to_fs
        except ImportError:
            raise _SourceFailed("install zoo with the 's3' extra to read this mirror") from None
        try:
            fs, path = url_to_fs(self.url)
            size = int(fs.info(path)["size"])
            return fs.open(path, "rb", block_size=CHUNK_SIZE * 4), size
        except FileNotFoundError:
            raise _SourceFailed("no such object") from None
        except Exception as exc:  # noqa: BLE001 - fsspec backends raise their own types
            raise _SourceFailed(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from None


def _continues(response: Any, partial: _Partial, offset: int) -> bool:
    """206 is only a continuation if it starts where we stopped, in the same file."""
    content_range = response.headers.get("Content-Range", "")
    try:
        unit, _, rest = content_range.partition(" ")
        span, _, total = rest.partition("/")
        start = int(span.split("-")[0])
    except ValueError:
        return False
    same_total = partial.total is None or total == str(partial.total)
    return unit == "bytes" and start == offset and same_total


def _total_size(response: Any, offset: int) -> int | None:
    length = response.headers.get("Content-Length")
    return offset + int(length) if length and length.isdigit() else None


def _check_size_pin(url: str, pin: Pin, total: int | None, discard: Callable[[], None]) -> None:
    if pin.size is not None and total is not None and total != pin.size:
        discard()
        raise IntegrityError(f"{url}: size mismatch: expected {pin.size} bytes, source offers {total}; nothing was kept")


def _verified(result: Downloaded, pin: Pin) -> Downloaded:
    """Delete what contradicts the pin, so a bad download is never reused."""
    problems = []
    if pin.size is not None and result.size != pin.size:
        problems.append(f"size mismatch: expected {pin.size} bytes, got {result.size}")
    if pin.sha256 is not None and result.sha256 != pin.sha256:
        problems.append(f"sha256 mismatch: expected {pin.sha256}, got {result.sha256}")
    if problems:
        remove_tree(result.path)
        raise IntegrityError(f"{result.url}: {'; '.join(problems)}; the download was deleted")
    return result


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
