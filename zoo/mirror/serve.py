"""`zoo mirror serve`: a threaded static file server over a mirror directory.

Serves the regular files under one directory with what zoo's downloader, and
any client that resumes, relies on: ETag and Last-Modified validators, single
byte ranges guarded by If-Range, and HTTP/1.1 keep-alive. Bodies go out with
sendfile(2), so memory stays flat whatever the file size. Nothing outside the
directory is reachable, whether through ``..``, percent-encoding or symlinks
(none is followed, even one swapped in mid-request); directories are not
listed and zoo's unfinished ``.zoo-*`` files are hidden.

    serve(Path("/srv/zoo-mirror"), "0.0.0.0", 8000, on_ready=print)
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import socket
import socketserver
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from zoo.errors import UsageError
from zoo.fsutil import check_key, open_beneath

__all__ = ["MirrorServer", "make_server", "serve"]

HIDDEN_PREFIX = ".zoo-"  # zoo's partial and staging files: incomplete by definition
IDLE_TIMEOUT = 60.0  # seconds an idle or stalled connection may hold a thread

_TEXT_TYPES = {
    ".config": "text/plain; charset=utf-8",
    ".pbtxt": "text/plain; charset=utf-8",
    ".json": "application/json",
}
# 18 digits (an exabyte) are plenty, and keep int() clear of its digit limit.
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})", re.IGNORECASE)
# Request targets are client-controlled: keep terminal escapes and newlines out of the log.
_LOG_ESCAPES = str.maketrans({c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)})


class MirrorServer(ThreadingHTTPServer):
    """Serves ``root``; ``url`` is where it listens."""

    daemon_threads = True  # a stalled client must not keep the process alive at exit
    allow_reuse_address = True  # restart on the same port despite connections in TIME_WAIT

    def __init__(self, root: Path, address: tuple[str, int], quiet: bool = False) -> None:
        self.root = root
        self.quiet = quiet
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls getfqdn(), which can stall for seconds without DNS.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{_authority(self.server_name, self.server_port)}"


def make_server(directory: Path, host: str = "127.0.0.1", port: int = 8000, *, quiet: bool = False) -> MirrorServer:
    """A server bound to ``host:port`` (0 picks a free port), not yet serving.

    Raises UsageError when the directory is missing or the address can't be bound.
    """
    root = Path(directory).resolve()
    if not root.is_dir():
        raise UsageError(f"mirror directory {directory} does not exist or is not a directory")
    try:
        return MirrorServer(root, (host, port), quiet)
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
        reason = getattr(exc, "strerror", None) or str(exc)
        raise UsageError(f"cannot listen on {_authority(host, port)}: {reason}") from None


def serve(
    directory: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    on_ready: Callable[[str], None] | None = None,
    *,
    quiet: bool = False,
) -> None:
    """Serve ``directory`` until Ctrl-C, then return normally: stopping is how a server ends.

    ``on_ready(url)`` is called once the socket listens, so callers can print
    the URL (or tests can read the port) without racing the bind.
    """
    with make_server(directory, host, port, quiet=quiet) as server:
        if on_ready is not None:
            on_ready(server.url)
        with contextlib.suppress(KeyboardInterrupt):
            server.serve_forever()


@dataclass(frozen=True)
class _Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    start: int = 0
    length: int = 0  # body bytes: also the Content-Length


_NOT_FOUND = _Reply(HTTPStatus.NOT_FOUND)


class _Unsatisfiable(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection per file and chunk
    timeout = IDLE_TIMEOUT
    server: MirrorServer

    def do_GET(self) -> None:
        self._serve()

    def do_HEAD(self) -> None:
        self._serve()

    def handle(self) -> None:
        # A client hanging up is routine; the base class already turns timeouts into a log line.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        # send_error (400, 414, 501...) calls this too, possibly before a request line parsed.
        request = f"{self.command} {self.path}" if self.command else self.requestline
        self.log_message('"%s" %s %s', request, int(code) if isinstance(code, HTTPStatus) else code, size)

    def log_message(self, format: str, *args: object) -> None:
        if not self.server.quiet:
            sys.stderr.write(f"{self.address_string()} {format % args}".translate(_LOG_ESCAPES) + "\n")

    def _serve(self) -> None:
        if self.headers.get("Content-Length", "0") != "0" or "Transfer-Encoding" in self.headers:
            self.close_connection = True  # its unread body would be parsed as the next request
        url_path = _url_path(self.path)
        opened = _open_regular_file(self.server.root, url_path)
        if opened is None:
            self._respond(_NOT_FOUND, None)
            return
        file, status = opened
        # RFC 9110 defines ranges for GET only; a HEAD describes the full response.
        ranges = self.headers.get("Range") if self.command == "GET" else None
        with file:
            self._respond(_plan(status, _content_type(url_path), ranges, self.headers.get("If-Range")), file)

    def _respond(self, reply: _Reply, file: io.FileIO | None) -> None:
        self.send_response_only(reply.status)
        self.send_header("Date", self.date_time_string())
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(reply.length))
        # wfile is unbuffered (wbufsize 0), so the headers are on the wire before sendfile's bytes.
        self.end_headers()
        if file is None or self.command == "HEAD" or reply.length == 0:
            self.log_request(reply.status, 0)
            return
        file.seek(reply.start)
        try:
            self.connection.sendfile(file, reply.start, reply.length)
        finally:
            # The file position tells how far sendfile got, even when the client hung up.
            sent = file.tell() - reply.start
            self.log_request(reply.status, sent)
        if sent < reply.length:  # truncated underneath us: the client must not wait for the rest
            self.close_connection = True


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _url_path(target: str) -> str:
    """The percent-decoded path of a request target, in origin form or a proxy's absolute form."""
    if not target.startswith("/"):
        target = urlsplit(target).path
    return unquote(target.partition("?")[0])


def _open_regular_file(root: Path, url_path: str) -> tuple[io.FileIO, os.stat_result] | None:
    """The regular file ``url_path`` names under ``root``, open, or None when it must not be served."""
    key = "/".join(part for part in url_path.split("/") if part)
    try:
        check_key(key, url_path, UsageError)  # no "..", NUL or other control characters
    except UsageError:
        return None
    if any(part.startswith(HIDDEN_PREFIX) for part in key.split("/")):
        return None
    try:
        # Each directory is opened relative to the last without following a symlink,
        # so a symlink swapped in after any check can't lead outside; O_NONBLOCK:
        # opening a FIFO left in the directory must not hang the thread.
        file = io.FileIO(open_beneath(root, key, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except OSError:
        return None
    # fstat, not stat: the headers must describe the very bytes sendfile will read.
    status = os.fstat(file.fileno())
    if not stat.S_ISREG(status.st_mode):
        file.close()
        return None
    return file, status


def _content_type(url_path: str) -> str:
    return _TEXT_TYPES.get(PurePosixPath(url_path).suffix.lower(), "application/octet-stream")


def _plan(status: os.stat_result, content_type: str, ranges: str | None, if_range: str | None) -> _Reply:
    """The reply for a file: all of it, the one range asked for, or 416."""
    size, modified = status.st_size, int(status.st_mtime)
    # The inode changes when a file is replaced by rename, even with the same size and mtime.
    etag = f'"{size:x}-{status.st_mtime_ns:x}-{status.st_ino:x}"'
    headers = {
        "Content-Type": content_type,
        "ETag": etag,
        "Last-Modified": formatdate(modified, usegmt=True),
        "Accept-Ranges": "bytes",
    }
    try:
        span = _parse_range(ranges, size) if _if_range_holds(if_range, etag, modified) else None
    except _Unsatisfiable:
        headers["Content-Range"] = f"bytes */{size}"
        return _Reply(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE, headers)
    if span is None:
        return _Reply(HTTPStatus.OK, headers, 0, size)
    first, last = span
    headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    return _Reply(HTTPStatus.PARTIAL_CONTENT, headers, first, last - first + 1)


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Inclusive (first, last) byte of a single range; None when there is none or it must be ignored.

    Multi-range and malformed headers are ignored (the whole file is sent), as RFC 9110 allows.
    """
    match = _RANGE.fullmatch(header.strip()) if header else None
    if match is None or match[1] == match[2] == "":
        return None
    first, last = match[1], match[2]
    if first == "":  # a suffix: the last N bytes
        if int(last) == 0 or size == 0:
            raise _Unsatisfiable
        return max(0, size - int(last)), size - 1
    if last and int(last) < int(first):
        return None
    if int(first) >= size:
        raise _Unsatisfiable
    return int(first), min(int(last), size - 1) if last else size - 1


def _if_range_holds(if_range: str | None, etag: str, modified: int) -> bool:
    """Whether a Range may be honoured: no If-Range, or one naming the current file exactly."""
    if if_range is None:
        return True
    if if_range.startswith('"'):
        return if_range == etag
    # Otherwise an HTTP date. Weak ETags (W/"...") land here too and never match,
    # since If-Range requires a strong validator.
    try:
        return parsedate_to_datetime(if_range).timestamp() == modified
    except (TypeError, ValueError):
        return False
