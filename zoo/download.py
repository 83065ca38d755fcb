"""Streaming, resumable, retried downloads that hash bytes as they arrive.

A partial download lives on disk beside a small JSON sidecar (source URL,
validator, total size), so an interrupted transfer, even one whose process
was killed, continues with an HTTP Range request in a later run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from zoo import __version__
from zoo.errors import IntegrityError, NetworkError, ZooError
from zoo.fsutil import remove_tree, writing
from zoo.settings import Settings
from zoo.sources import is_local, local_path

CHUNK_SIZE = 1 << 20
MAX_BACKOFF = 30.0
MAX_RETRY_AFTER = 60.0

log = logging.getLogger("zoo")


@dataclass(frozen=True)
class Pin:
    """What the bytes must be, where something (registry, lock, mirror) says so."""

    sha256: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    sha256: str
    size: int


class _SourceFailed(Exception):
    """This source cannot deliver the file; the next one may."""


class _Retry(Exception):
    """A transient failure; ``progressed`` resets the retry budget."""

    def __init__(self, reason: str, progressed: bool = False, wait: float | None = None):
        super().__init__(reason)
        self.progressed = progressed
        self.wait = wait


def download(
    candidates: Sequence[str],
    dest: Path,
    *,
    pin: Pin,
    settings: Settings,
    label: str,
    progress: bool = False,
) -> Downloaded:
    """Fetch the first source that works into ``dest``, verified against ``pin``.

    Sources that are missing or unreachable are skipped in order; bytes that
    contradict the pin fail at once, since another source offering different
    bytes is no more trustworthy.
    """
    failures = []
    for url in candidates:
        try:
            fetch = _copy_local if is_local(url) else _fetch_http
            return fetch(url, dest, pin, settings, _progress_bar(label, progress))
        except _SourceFailed as exc:
            failures.append(f"{url}: {exc}")
            if len(candidates) > 1:
                log.warning("%s: %s; trying the next source", url, exc)
    raise NetworkError(f"could not download {label}: " + "; ".join(failures))


class _Partial:
    """A download in progress on disk, hashed incrementally as it grows."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self.sidecar = path.with_name(path.name + ".json")
        meta = self._read_sidecar()
        if meta.get("url") != url or not path.is_file():
            self.discard()
            meta = {}
        self.validator: str | None = meta.get("validator")
        self.total: int | None = meta.get("total")
        self._hasher = hashlib.sha256()
        self._hashed = 0

    @property
    def size(self) -> int:
        return self.path.stat().st_size if self.path.is_file() else 0

    def discard(self) -> None:
        remove_tree(self.path)
        remove_tree(self.sidecar)
        self.validator = self.total = None
        self._hasher = hashlib.sha256()
        self._hashed = 0

    def open(self, offset: int, validator: str | None, total: int | None) -> IO[bytes]:
        """Open for writing at ``offset``, recording how to resume later."""
        if offset == 0:
            self.discard()
        self.validator, self.total = validator, total
        with writing(self.sidecar):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.sidecar.write_text(
                json.dumps({"url": self.url, "validator": validator, "total": total})
            )
            handle = open(self.path, "r+b" if offset else "wb")
            handle.seek(offset)
            handle.truncate()
        self._catch_up_hash(offset)
        return handle

    def update(self, chunk: bytes) -> None:
        self._hasher.update(chunk)
        self._hashed += len(chunk)

    def sha256(self) -> str:
        return self._hasher.hexdigest()

    def _catch_up_hash(self, offset: int) -> None:
        # Only bytes written by an earlier process (or attempt that lost its
        # hasher) are read back; bytes from this process are hashed on arrival.
        if self._hashed == offset:
            return
        self._hasher, self._hashed = hashlib.sha256(), 0
        with open(self.path, "rb") as handle:
            while self._hashed < offset:
                block = handle.read(min(CHUNK_SIZE, offset - self._hashed))
                if not block:
                    break
                self.update(block)

    def _read_sidecar(self) -> dict[str, Any]:
        try:
            meta = json.loads(self.sidecar.read_text())
        except (OSError, ValueError):
            return {}
        return meta if isinstance(meta, dict) else {}


def _fetch_http(url: str, dest: Path, pin: Pin, settings: Settings, bar: Any) -> Downloaded:
    import requests

    partial = _Partial(dest, url)
    failures_in_a_row = 0
    with requests.Session() as session, bar:
        session.headers["User-Agent"] = f"zoo/{__version__}"
        while True:
            try:
                _attempt(session, partial, pin, settings, bar)
                return _finish(partial, pin)
            except _Retry as exc:
                failures_in_a_row = 0 if exc.progressed else failures_in_a_row + 1
                if failures_in_a_row > settings.retries:
                    raise _SourceFailed(f"{exc} (gave up after {settings.retries} retries)") from None
                delay = exc.wait if exc.wait is not None else _backoff(settings, failures_in_a_row)
                log.warning("%s: %s; retrying in %.1f s", url, exc, delay)
                time.sleep(delay)


def _attempt(session: Any, partial: _Partial, pin: Pin, settings: Settings, bar: Any) -> None:
    import requests

    offset = partial.size
    headers = {"Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
        if partial.validator:
            headers["If-Range"] = partial.validator
    timeout = (settings.connect_timeout, settings.read_timeout)
    try:
        response = session.get(partial.url, headers=headers, stream=True, timeout=timeout)
    except requests.exceptions.InvalidURL as exc:
        raise _SourceFailed(f"invalid URL: {exc}") from None
    except requests.exceptions.RequestException as exc:
        raise _Retry(_reason(exc)) from None
    with response:
        offset = _check_response(response, partial, offset)
        total = _total_size(response, offset)
        _check_size_pin(partial, pin, total)
        _stream_body(response, partial, offset, total, bar)


def _check_response(response: Any, partial: _Partial, offset: int) -> int:
    """The offset the body starts at, after deciding whether resuming is safe."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise _Retry(f"HTTP {status} {response.reason}", wait=_retry_after(response))
    if status >= 400 and status != 416:
        raise _SourceFailed(f"HTTP {status} {response.reason}")
    if status == 206 and _continues(response, partial, offset):
        return offset
    if status == 200:
        return 0  # the server ignored the Range, or If-Range saw a changed file
    # 416 or a 206 that starts elsewhere: what is on disk no longer fits.
    partial.discard()
    raise _Retry(f"HTTP {status}: the partial download does not fit; restarting", wait=0)


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


def _check_size_pin(partial: _Partial, pin: Pin, total: int | None) -> None:
    if pin.size is not None and total is not None and total != pin.size:
        partial.discard()
        raise IntegrityError(
            f"{partial.url}: size mismatch: expected {pin.size} bytes, "
            f"server offers {total}; nothing was kept"
        )


def _stream_body(response: Any, partial: _Partial, offset: int, total: int | None, bar: Any) -> None:
    import requests
    import urllib3

    validator = response.headers.get("ETag") or response.headers.get("Last-Modified")
    received = 0
    bar.reset(total=total)
    bar.update(offset)
    handle = partial.open(offset, validator, total)
    try:
        with writing(partial.path), handle:
            # read1 hands over whatever arrived, so a connection that drops
            # mid-chunk still leaves its bytes on disk for the resume.
            while chunk := response.raw.read1(CHUNK_SIZE, decode_content=False):
                handle.write(chunk)
                partial.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError) as exc:
        raise _Retry(f"connection lost at byte {offset + received}: {_reason(exc)}",
                     progressed=received > 0) from None
    except ZooError:
        partial.discard()  # a full disk: free the space rather than keep a fragment
        raise
    if total is not None and offset + received < total:
        raise _Retry(f"connection closed at byte {offset + received} of {total}",
                     progressed=received > 0)


def _finish(partial: _Partial, pin: Pin) -> Downloaded:
    size, digest = partial.size, partial.sha256()
    remove_tree(partial.sidecar)
    return _verified(Downloaded(partial.path, partial.url, digest, size), pin)


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


def _copy_local(url: str, dest: Path, pin: Pin, settings: Settings, bar: Any) -> Downloaded:
    source = local_path(url)
    try:
        reader = open(source, "rb")
    except FileNotFoundError:
        raise _SourceFailed("no such file") from None
    except OSError as exc:
        raise _SourceFailed(exc.strerror or str(exc)) from None
    hasher = hashlib.sha256()
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with reader, bar, writing(dest), open(dest, "wb") as writer:
            bar.reset(total=source.stat().st_size)
            while block := reader.read(CHUNK_SIZE):
                writer.write(block)
                hasher.update(block)
                bar.update(len(block))
    except BaseException:
        remove_tree(dest)
        raise
    return _verified(Downloaded(dest, url, hasher.hexdigest(), dest.stat().st_size), pin)


def _progress_bar(label: str, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(
        desc=label, unit="B", unit_scale=True, unit_divisor=1024,
        disable=not enabled, file=sys.stderr, dynamic_ncols=True,
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
