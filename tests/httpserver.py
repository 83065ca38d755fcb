"""A real HTTP/1.1 server on 127.0.0.1 for download tests.

It serves in-memory blobs and/or a directory tree with the validators a CDN sends
(ETag, Last-Modified, byte ranges, If-Range), records every request, and can be told
to misbehave per path: error statuses, dropped connections, ignored or short ranges,
hangs, corrupted bodies, other bodies (a login page), endless bodies, missing
validators and throttled transfers (each connection on its own, like a far
CDN edge). Faults can target the ranged requests that start at a given byte,
and the server records how many requests for a path it answered at once. Given an ``ssl.SSLContext`` it serves over
TLS only; ``goog_hash`` makes it send Cloud Storage's hash headers for a path.

    with FileServer() as server:
        server.add("/models/x.tar.gz", data)
        server.plan("/models/x.tar.gz", [("status", 503), ("drop_after", 1024)])
        ...  # client code under test fetches server.url_for("/models/x.tar.gz")
        assert server.count(path="/models/x.tar.gz") == 3
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import socket
import ssl
import socketserver
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Literal, Union
from urllib.parse import quote, unquote, urlsplit

import crc32c

__all__ = ["Fault", "FileServer", "RequestRecord"]

Fault = Union[
    tuple[Literal["status"], int],
    tuple[Literal["status"], int, Mapping[str, str]],  # extra headers, e.g. Retry-After
    tuple[Literal["drop_after"], int],
    tuple[Literal["ignore_range"]],
    tuple[Literal["hang"], float],
    tuple[Literal["corrupt"]],
    tuple[Literal["serve"], bytes, Mapping[str, str]],  # a 200 with this body instead, Range ignored
    tuple[Literal["short_range"], int],  # a 206 with only this many bytes of the range asked for
    tuple[Literal["endless"]],  # the file, then zeros until the client hangs up; no Content-Length
    tuple[Literal["headers"], Mapping[str, str]],  # the usual answer with these headers replaced, e.g. Content-Range
]

_CHUNK = 64 * 1024
_FAULT_ARITY = {
    "status": (2, 3), "drop_after": (2,), "ignore_range": (1,), "hang": (2,), "corrupt": (1,),
    "serve": (3,), "short_range": (2,), "endless": (1,), "headers": (2,),
}
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass
class RequestRecord:
    """One request as the server saw it.

    Appended when the request arrives, so `status` is None until the response starts
    (e.g. during a "hang"). `bytes_sent` counts body bytes handed to the socket.
    """

    method: str
    path: str
    range: str | None
    if_range: str | None
    status: int | None = None
    bytes_sent: int = 0
    tls: bool = False  # the request came over a TLS connection
    host: str | None = None  # its Host header


@dataclass(frozen=True)
class _Fault:
    kind: str
    arg: float | bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


_NO_FAULT = _Fault("none")


@dataclass(frozen=True)
class _Resource:
    data: bytes
    etag: str
    last_modified: int  # whole seconds, the resolution of HTTP dates

    def headers(self) -> dict[str, str]:
        return {
            "ETag": self.etag,
            "Last-Modified": formatdate(self.last_modified, usegmt=True),
            "Accept-Ranges": "bytes",
        }


@dataclass
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    drop_after: int | None = None
    endless: bool = False


class _Unsatisfiable(Exception):
    pass


class FileServer(ThreadingHTTPServer):
    """Threaded HTTP server on an ephemeral 127.0.0.1 port; see the module docstring."""

    daemon_threads = True

    def __init__(self, root: Path | None = None, tls: ssl.SSLContext | None = None) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.tls = tls
        self.tls_refused = 0  # handshakes that failed, e.g. a client refusing the certificate
        self._goog: dict[str, dict[str, str | None]] = {}
        self.errors: list[BaseException] = []  # unexpected handler crashes, instead of stderr noise
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._in_flight = 0
        self._content: dict[str, _Resource | None] = {}  # None hides a path, including root files
        self._stamps: dict[str, _Resource] = {}
        self._faults: defaultdict[str, deque[_Fault]] = defaultdict(deque)
        self._range_faults: defaultdict[tuple[str, int], deque[_Fault]] = defaultdict(deque)
        self._active: defaultdict[str, int] = defaultdict(int)
        self._peak: defaultdict[str, int] = defaultdict(int)
        self.connections_opened = 0
        self._rates: dict[str, float] = {}
        self._no_validators: set[str] = set()
        self._no_ranges: set[str] = set()
        self._log: list[RequestRecord] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(("127.0.0.1", 0), _Handler)

    # -- lifecycle -----------------------------------------------------------------

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def start(self) -> FileServer:
        if self._thread is not None:
            raise RuntimeError("FileServer can only be started once")
        # A short poll interval keeps stop() (and so every test teardown) fast.
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and cut open keep-alive connections, like a mirror going down."""
        if self._stopping.is_set():
            return
        self._stopping.set()  # also wakes handlers sleeping in "hang" faults or throttling
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
        self.server_close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_port}"

    def url_for(self, path: str) -> str:
        return self.url + quote(_norm(path))

    # -- content -------------------------------------------------------------------

    def add(self, path: str, data: bytes) -> None:
        """Serve `data` at `path`; replacing it changes both ETag and Last-Modified."""
        with self._lock:
            self._content[_norm(path)] = self._stamp(_norm(path), bytes(data), time.time())

    def remove(self, path: str) -> None:
        """Answer 404 for `path` from now on, whether it was added or lives under root."""
        with self._lock:
            self._content[_norm(path)] = None

    # -- misbehaviour --------------------------------------------------------------

    def plan(self, path: str, faults: list[Fault], range_start: int | None = None) -> None:
        """Queue faults for `path`; each GET consumes one, in order. With
        `range_start`, only GETs whose Range starts at that byte consume them
        (before any fault queued for every GET)."""
        parsed = [_parse_fault(fault) for fault in faults]
        with self._lock:
            if range_start is None:
                self._faults[_norm(path)].extend(parsed)
            else:
                self._range_faults[(_norm(path), range_start)].extend(parsed)

    def pending_faults(self, path: str) -> int:
        with self._lock:
            targeted = sum(len(q) for (where, _), q in self._range_faults.items() if where == _norm(path))
            return len(self._faults[_norm(path)]) + targeted

    def throttle(self, path: str, bytes_per_second: float | None) -> None:
        """Limit body writes for `path` (applies to transfers that start afterwards)."""
        with self._lock:
            if bytes_per_second is None:
                self._rates.pop(_norm(path), None)
            else:
                self._rates[_norm(path)] = bytes_per_second

    def goog_hash(self, path: str, **override: str | None) -> None:
        """Send ``x-goog-hash: crc32c=..,md5=..`` and ``x-goog-stored-content-length``
        of the whole file with every 200 and 206 for `path`, as Cloud Storage
        does; ``crc32c=``/``md5=`` replace a value (a wrong one) or, as None, drop it."""
        unknown = set(override) - {"crc32c", "md5"}
        if unknown:
            raise ValueError(f"unknown x-goog-hash fields {sorted(unknown)}")
        with self._lock:
            self._goog[_norm(path)] = override

    def refuse_ranges(self, path: str) -> None:
        """Send no Accept-Ranges for `path` and answer every Range with the whole file."""
        with self._lock:
            self._no_ranges.add(_norm(path))

    def omit_validators(self, path: str) -> None:
        """Send neither ETag nor Last-Modified for `path`, like a plain dynamic server."""
        with self._lock:
            self._no_validators.add(_norm(path))

    # -- request log ---------------------------------------------------------------

    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the log; records are copies, safe to keep."""
        with self._lock:
            return [replace(record) for record in self._log]

    def count(self, method: str | None = "GET", path: str | None = None) -> int:
        """Requests seen, filtered by method and path (None means any)."""
        return sum(
            1
            for record in self.requests
            if (method is None or record.method == method) and (path is None or record.path == _norm(path))
        )

    def bytes_sent(self, path: str) -> int:
        return sum(record.bytes_sent for record in self.requests if record.path == _norm(path))

    def peak_concurrency(self, path: str) -> int:
        """The most GETs for `path` answered at once since the log was cleared."""
        with self._lock:
            return self._peak[_norm(path)]

    def clear_log(self) -> None:
        with self._lock:
            self._log = []
            self._peak.clear()
            self.connections_opened = 0

    def wait_idle(self, timeout: float = 5.0) -> None:
        """Block until no request is being answered, e.g. after killing a client mid-download."""
        with self._idle:
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout):
                raise TimeoutError(f"{self._in_flight} request(s) still in flight after {timeout}s")

    # -- used by the handler -------------------------------------------------------

    def _begin(self, record: RequestRecord) -> None:
        with self._lock:
            self._log.append(record)
            self._in_flight += 1
            if record.method == "GET":
                self._active[record.path] += 1
                self._peak[record.path] = max(self._peak[record.path], self._active[record.path])

    def _end(self, record: RequestRecord | None = None) -> None:
        with self._idle:
            self._in_flight -= 1
            if record is not None and record.method == "GET":
                self._active[record.path] -= 1
            self._idle.notify_all()

    def _update(self, record: RequestRecord, **changes: int) -> None:
        with self._lock:
            for name, value in changes.items():
                setattr(record, name, value)

    def _next_fault(self, path: str, range_header: str | None) -> _Fault:
        match = _RANGE.fullmatch(range_header.strip()) if range_header else None
        start = int(match.group(1)) if match and match.group(1) else None
        with self._lock:
            targeted = self._range_faults.get((path, start)) if start is not None else None
            if targeted:
                return targeted.popleft()
            queue = self._faults[path]
            return queue.popleft() if queue else _NO_FAULT

    def _goog_headers(self, path: str, resource: _Resource | None) -> dict[str, str]:
        with self._lock:
            override = self._goog.get(path)
        if override is None or resource is None:
            return {}
        values = {"crc32c": _b64(crc32c.CRC32CHash(resource.data).digest()),
                  "md5": _b64(hashlib.md5(resource.data).digest()), **override}  # fmt: skip
        hashes = ",".join(f"{name}={value}" for name, value in values.items() if value is not None)
        return {"x-goog-hash": hashes, "x-goog-stored-content-length": str(len(resource.data))}

    def _handshake(self, connection: ssl.SSLSocket) -> None:
        """Counted as in flight, so wait_idle() also waits for a refusal to be counted."""
        with self._lock:
            self._in_flight += 1
        try:
            connection.do_handshake()
        except ssl.SSLError:
            with self._lock:
                self.tls_refused += 1
            raise
        finally:
            self._end()

    def _ranges_refused(self, path: str) -> bool:
        with self._lock:
            return path in self._no_ranges

    def _validators_omitted(self, path: str) -> bool:
        with self._lock:
            return path in self._no_validators

    def _rate(self, path: str) -> float | None:
        with self._lock:
            return self._rates.get(path)

    def _pause(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _lookup(self, path: str) -> _Resource | None:
        with self._lock:
            if path in self._content:
                return self._content[path]
        file = self._root_file(path)
        if file is None:
            return None
        try:
            data, modified = file.read_bytes(), file.stat().st_mtime
        except OSError:  # deleted by the test between the check and the read
            return None
        with self._lock:
            return self._stamp(path, data, modified)

    def _root_file(self, path: str) -> Path | None:
        if self.root is None:
            return None
        candidate = (self.root / path.lstrip("/")).resolve()
        # Never serve outside root: a "../" in a test URL must not expose the host.
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        return candidate

    def _stamp(self, path: str, data: bytes, modified: float) -> _Resource:
        """Validators for `data`; caller holds the lock."""
        etag = f'"{hashlib.sha256(data).hexdigest()[:32]}"'
        previous = self._stamps.get(path)
        if previous is not None and previous.etag == etag:
            return previous
        # HTTP dates have 1 s resolution; bump so a same-second replacement still
        # invalidates an If-Range date.
        seconds = int(modified) if previous is None else max(int(modified), previous.last_modified + 1)
        self._stamps[path] = _Resource(data, etag, seconds)
        return self._stamps[path]

    # -- socketserver hooks --------------------------------------------------------

    def get_request(self) -> tuple[socket.socket, object]:
        request, address = super().get_request()
        if self.tls is not None:
            # The handshake runs in the handler's thread, so a client that
            # stalls or refuses it never blocks accepting the next one.
            request = self.tls.wrap_socket(request, server_side=True, do_handshake_on_connect=False)
        return request, address

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.add(request)
            self.connections_opened += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:  # type: ignore[override]
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: object, client_address: object) -> None:
        error = sys.exc_info()[1]
        if error is not None and not self._stopping.is_set() and not isinstance(error, ConnectionError):
            self.errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients' connection pools are exercised
    server: FileServer

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def handle(self) -> None:
        try:
            if isinstance(self.connection, ssl.SSLSocket):
                self.server._handshake(self.connection)
            super().handle()
        except ConnectionError:
            pass  # clients hanging up mid-response is what many tests are about
        except ssl.SSLError:
            pass  # counted in tls_refused

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _serve(self, head: bool) -> None:
        path = unquote(urlsplit(self.path).path)
        record = RequestRecord(
            self.command, path, self.headers.get("Range"), self.headers.get("If-Range"),
            tls=isinstance(self.connection, ssl.SSLSocket), host=self.headers.get("Host"),
        )  # fmt: skip
        self.server._begin(record)
        try:
            fault = _NO_FAULT if head else self.server._next_fault(path, record.range)
            if fault.kind == "hang":
                self.server._pause(float(fault.arg or 0))
            resource = self.server._lookup(path)
            ranges = not self.server._ranges_refused(path)
            response = _respond(fault, resource, record.range if ranges else None, record.if_range)
            if not ranges:
                response.headers.pop("Accept-Ranges", None)
            if response.status in (200, 206) and fault.kind != "serve":
                response.headers.update(self.server._goog_headers(path, resource))
            if self.server._validators_omitted(path):
                response.headers.pop("ETag", None)
                response.headers.pop("Last-Modified", None)
            self._send(response, record, head)
        finally:
            self.server._end(record)

    def _send(self, response: _Response, record: RequestRecord, head: bool) -> None:
        # Logged before anything goes out, so a client holding the response always finds it in the log.
        self.server._update(record, status=response.status)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.endless:
            self.send_header("Connection", "close")  # the body ends when the connection does
        else:
            self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if head:
            return
        if response.endless:
            self._write_endless(response.body, record)
            return
        if response.drop_after is None:
            self._write_body(response.body, record)
            return
        self._write_body(response.body[: response.drop_after], record)
        # A clean FIN, not a RST: an RST may discard bytes already in the client's
        # receive buffer, and resume tests need the partial length to be exact.
        self.close_connection = True

    def _write_endless(self, body: bytes, record: RequestRecord) -> None:
        self.close_connection = True
        self._write_body(body, record)
        zeros, sent = bytes(_CHUNK), len(body)
        while not self.server._stopping.is_set():
            sent += len(zeros)
            self.server._update(record, bytes_sent=sent)
            self.wfile.write(zeros)  # ConnectionError once the client hangs up

    def _write_body(self, body: bytes, record: RequestRecord) -> None:
        rate = self.server._rate(record.path)
        chunk = _CHUNK if rate is None else max(1, min(_CHUNK, int(rate / 10)))  # ~10 writes/s when throttled
        sent = 0
        for start in range(0, len(body), chunk):
            piece = body[start : start + chunk]
            # Counted before writing so the log never lags behind what the client has.
            self.server._update(record, bytes_sent=sent + len(piece))
            try:
                self.wfile.write(piece)
            except ConnectionError:
                self.server._update(record, bytes_sent=sent)
                raise
            sent += len(piece)
            if rate is not None:
                self.server._pause(len(piece) / rate)


def _respond(fault: _Fault, resource: _Resource | None, range_header: str | None, if_range: str | None) -> _Response:
    if fault.kind == "status":
        return _Response(int(fault.arg or 0), dict(fault.headers))
    if fault.kind == "serve":
        return _Response(200, dict(fault.headers), bytes(fault.arg or b""))
    if resource is None:
        return _Response(404)
    if fault.kind == "endless":
        return _Response(200, resource.headers(), resource.data, endless=True)
    honour_range = fault.kind != "ignore_range" and _if_range_matches(if_range, resource)
    response = _select(resource, range_header if honour_range else None)
    if fault.kind == "corrupt":
        response.body = _flip_middle_byte(response.body)
    elif fault.kind == "drop_after":
        response.drop_after = int(fault.arg or 0)
    elif fault.kind == "short_range" and response.status == 206:
        response.body = response.body[: int(fault.arg or 0)]
        start = int(response.headers["Content-Range"].split()[1].split("-")[0])
        total = len(resource.data)
        response.headers["Content-Range"] = f"bytes {start}-{start + len(response.body) - 1}/{total}"
    elif fault.kind == "headers":
        response.headers.update(fault.headers)
    return response


def _select(resource: _Resource, range_header: str | None) -> _Response:
    size = len(resource.data)
    headers = resource.headers()
    try:
        span = _parse_range(range_header, size)
    except _Unsatisfiable:
        return _Response(416, {**headers, "Content-Range": f"bytes */{size}"})
    if span is None:
        return _Response(200, headers, resource.data)
    start, end = span
    return _Response(206, {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}, resource.data[start : end + 1])


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (start, end) of a single byte range, or None when the header must be ignored.

    Malformed and multi-range headers are ignored (a full 200), as RFC 9110 allows.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # suffix range: the last N bytes
        if int(last) == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - int(last)), size - 1
    if last != "" and int(last) < int(first):
        return None
    if int(first) >= size:
        raise _Unsatisfiable
    return int(first), size - 1 if last == "" else min(int(last), size - 1)


def _if_range_matches(if_range: str | None, resource: _Resource) -> bool:
    if if_range is None:
        return True
    if if_range.startswith('"'):
        return if_range == resource.etag
    # Anything else must be an HTTP date; weak ETags (W/"...") land here and never
    # match, since If-Range requires a strong validator.
    try:
        return int(parsedate_to_datetime(if_range).timestamp()) == resource.last_modified
    except (TypeError, ValueError):
        return False


def _flip_middle_byte(body: bytes) -> bytes:
    if not body:
        return body
    garbled = bytearray(body)
    garbled[len(garbled) // 2] ^= 0xFF
    return bytes(garbled)


def _parse_fault(spec: Fault) -> _Fault:
    """Validate at plan() time so a typo fails in the test that wrote it, not mid-request."""
    kind = spec[0] if spec else None
    if kind not in _FAULT_ARITY or len(spec) not in _FAULT_ARITY[kind]:
        raise ValueError(f"unknown fault {spec!r}; expected one of {sorted(_FAULT_ARITY)}")
    if kind == "headers":
        return _Fault(kind, None, dict(spec[1]))  # type: ignore[arg-type]
    arg = spec[1] if len(spec) > 1 else None
    headers = dict(spec[2]) if len(spec) > 2 else {}  # type: ignore[misc]
    return _Fault(kind, arg, headers)  # type: ignore[arg-type]


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path
