"""Real object stores on 127.0.0.1 for staging and remote-check tests.

``S3Store`` runs moto's S3 server, ``GcsStore`` the ``gcp-storage-emulator``
(gcsfs reaches it through ``STORAGE_EMULATOR_HOST``). Each sits behind a small
recording proxy, so a test can read the requests the store received, as a
server's access log would show them:

    with GcsStore() as store:
        run_zoo(..., env=store.env)
        assert store.uploads() == []

``env`` is what a client process needs to reach the store (credentials,
endpoint); ``url(path)`` names an object as a user would (``gs://bucket/path``).
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BUCKET = "zoo-stage"
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with its query string


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client closing a kept-alive connection is not news


class RecordingProxy:
    """Forwards every request to ``127.0.0.1:backend`` and records it."""

    def __init__(self, backend: int) -> None:
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _forward(self) -> None:
                body = self._body()
                with proxy._lock:
                    proxy.requests.append(Request(self.command, self.path))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                upstream = http.client.HTTPConnection("127.0.0.1", backend, timeout=120)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    response = upstream.getresponse()
                    data = response.read()
                finally:
                    upstream.close()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                # A HEAD answer's length is the object's, not the empty body's.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def _body(self) -> bytes | None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(parts)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else None

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _forward

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Store:
    scheme = ""
    proxy: RecordingProxy
    env: dict[str, str]

    def __enter__(self) -> _Store:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def url(self, path: str = "") -> str:
        return f"{self.scheme}://{BUCKET}/{path}".rstrip("/")

    @property
    def requests(self) -> list[Request]:
        return list(self.proxy.requests)

    def clear_log(self) -> None:
        self.proxy.clear()

    def uploads(self) -> list[Request]:
        """Requests that write an object (a PUT, or a POST/PUT of an upload)."""
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def filesystem(self) -> Any:
        """An fsspec file system on this store, for a test to look or tamper with."""
        raise NotImplementedError


class S3Store(_Store):
    """moto's S3 server with the bucket ``zoo-stage``, empty: moto keeps its
    buckets in the process across servers, so each new one resets them."""

    scheme = "s3"

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        port = free_port()
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self._server.start()
        self.proxy = RecordingProxy(port)
        endpoint = f"http://127.0.0.1:{self.proxy.port}"
        self.env = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": endpoint,
        }
        import boto3
        import requests

        requests.post(f"http://127.0.0.1:{port}/moto-api/reset", timeout=30).raise_for_status()
        boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                     aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket=BUCKET)  # fmt: skip

    def uploads(self) -> list[Request]:
        return [r for r in self.requests if r.method == "PUT" or (r.method == "POST" and "uploadId" in r.path)]

    def stop(self) -> None:
        self.proxy.stop()
        self._server.stop()

    def filesystem(self) -> Any:
        import s3fs

        return s3fs.S3FileSystem(
            key="testing", secret="testing", client_kwargs={"endpoint_url": self.env["AWS_ENDPOINT_URL"]},
            skip_instance_cache=True,
        )  # fmt: skip


class GcsStore(_Store):
    """The gcp-storage-emulator with the bucket ``zoo-stage``, in memory."""

    scheme = "gs"

    def __init__(self) -> None:
        from gcp_storage_emulator.server import create_server

        port = free_port()
        self._server = create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
        self._server.start()
        self.proxy = RecordingProxy(port)
        self.env = {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.proxy.port}",
            # gcsfs would otherwise first ask a gRPC control plane the emulator
            # lacks for the bucket's layout, and wait 60 s for each answer.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            "GOOGLE_CLOUD_PROJECT": "test",
        }

    def uploads(self) -> list[Request]:
        return [r for r in self.requests if r.method in ("PUT", "POST") and "/upload/" in r.path]

    def stop(self) -> None:
        self.proxy.stop()
        self._server.stop()

    def filesystem(self) -> Any:
        # gcsfs's plain class (gcsfs.GCSFileSystem may be the gRPC-probing one,
        # chosen at import), told the endpoint directly: nothing leaks into
        # os.environ for the rest of the session.
        from gcsfs.core import GCSFileSystem

        endpoint = self.env["STORAGE_EMULATOR_HOST"]
        return GCSFileSystem(project="test", token="anon", endpoint_url=endpoint, skip_instance_cache=True)
