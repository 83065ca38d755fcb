"""A stock nginx serving a directory on a free 127.0.0.1 port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

# Linux's cap on a socket's sending rate, enforced by TCP pacing; Python's
# socket module does not name it.
SO_MAX_PACING_RATE = 47

CONFIG = """\
{user}
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 256; }}
http {{
    access_log {work}/access.log;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Nginx:
    """nginx with its own config and prefix under ``work``, serving ``root``.

    ``rate_per_connection`` (bytes per second, Linux only) caps every
    connection as a far link does: for its whole life, across keep-alive
    requests. nginx's own ``limit_rate`` will not do: it caps each request and
    lets the first second's worth of every request through at full speed, so a
    client asking for many small ranges would never meet the cap. Instead
    nginx inherits (as on a binary upgrade, through the NGINX variable) a
    listening socket with SO_MAX_PACING_RATE set, which every accepted socket
    copies, and the kernel paces each connection.
    """

    def __init__(self, root: Path, work: Path, rate_per_connection: int | None = None) -> None:
        self.root = root.resolve()
        self.work = work.resolve()
        self.rate_per_connection = rate_per_connection
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[str]:
        log = self.work / "access.log"
        return log.read_text().splitlines() if log.exists() else []

    def start(self) -> Nginx:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed")
        self.work.mkdir(parents=True, exist_ok=True)
        config = self.work / "nginx.conf"
        # Workers started by root drop to "nobody", who cannot read a test's
        # private temporary directory; as anyone else, nginx keeps the user.
        user = "user root;" if os.geteuid() == 0 else ""
        config.write_text(CONFIG.format(user=user, work=self.work, port=self.port, root=self.root))
        (self.work / "nginx.pid").unlink(missing_ok=True)
        with self._paced_listener() as listener:
            inherited = {"NGINX": f"{listener.fileno()};"} if listener else {}
            self.process = subprocess.Popen(
                [binary, "-p", str(self.work), "-c", str(config), "-g", "daemon off;"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                pass_fds=(listener.fileno(),) if listener else (), env={**os.environ, **inherited},
            )  # fmt: skip
            self._wait_until_listening()
        return self

    @contextlib.contextmanager
    def _paced_listener(self) -> Iterator[socket.socket | None]:
        """The listening socket nginx inherits when connections are capped (nginx keeps its own copy)."""
        if self.rate_per_connection is None:
            yield None
            return
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, SO_MAX_PACING_RATE, self.rate_per_connection)
            listener.bind(("127.0.0.1", self.port))
            listener.listen(511)
            yield listener

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"nginx exited: {self.process.stderr.read().decode() if self.process.stderr else ''}")
            if self._listening():
                return
            time.sleep(0.05)
        raise RuntimeError("nginx did not start listening")

    def _listening(self) -> bool:
        if self.rate_per_connection is not None:
            # The inherited socket takes connections before nginx is up; its
            # pid file comes once it has opened its sockets.
            return (self.work / "nginx.pid").exists()
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            return True
        except OSError:
            return False
