"""`zoo mirror serve`'s server: a real server on 127.0.0.1, real clients."""

from __future__ import annotations

import hashlib
import http.client
import os
import random
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from email.utils import formatdate
from pathlib import Path

import pytest
import requests

from zoo.errors import UsageError
from zoo.mirror.serve import MirrorServer, make_server

MiB = 1 << 20
DATA = random.Random(5).randbytes(300_000)
SIZE = len(DATA)
FILE = "download.tensorflow.org/models/a.tar.gz"


@contextmanager
def running(directory: Path, quiet: bool = True) -> Iterator[MirrorServer]:
    server = make_server(directory, port=0, quiet=quiet)
    # A short poll interval keeps shutdown, and so every teardown, fast.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


@pytest.fixture
def mirror(tmp_path: Path) -> Path:
    root = tmp_path / "mirror"
    write(root / FILE, DATA)
    return root


@pytest.fixture
def server(mirror: Path) -> Iterator[MirrorServer]:
    with running(mirror) as started:
        yield started


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def replace(path: Path, data: bytes, mtime_ns: int) -> None:
    """Swap in a new file by rename, as `zoo mirror build` does, with a chosen mtime."""
    fresh = path.with_name(path.name + ".new")
    fresh.write_bytes(data)
    os.utime(fresh, ns=(mtime_ns, mtime_ns))
    os.replace(fresh, path)


def get(server: MirrorServer, path: str = FILE, **headers: str) -> requests.Response:
    return requests.get(f"{server.url}/{path}", headers=headers, timeout=10)


def raw_get(server: MirrorServer, target: str) -> http.client.HTTPResponse:
    """GET with the target sent byte for byte (requests would normalise `..` away)."""
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.request("GET", target)
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


# -- whole files ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "content_type"),
    [(FILE, "application/octet-stream"), ("raw.githubusercontent.com/x/pipeline.config", "text/plain; charset=utf-8")],
)
def test_get_sends_file_with_validators(server: MirrorServer, mirror: Path, name: str, content_type: str) -> None:
    write(mirror / name, DATA)
    response = get(server, name)
    assert response.status_code == 200
    assert response.content == DATA
    assert response.headers["Content-Length"] == str(SIZE)
    assert response.headers["Content-Type"] == content_type
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["Last-Modified"] == formatdate(int((mirror / name).stat().st_mtime), usegmt=True)
    assert response.headers["ETag"].startswith('"') and response.headers["ETag"].endswith('"')


def test_path_is_percent_decoded_and_query_ignored(server: MirrorServer, mirror: Path) -> None:
    write(mirror / "with space" / "b+c.bin", DATA)
    assert get(server, "with%20space/b%2Bc%2ebin?token=1").content == DATA


def test_head_sends_headers_only_and_ignores_range(server: MirrorServer) -> None:
    # http.client, not requests: urllib3 would quietly drop a connection with stray bytes on it.
    connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
    connection.request("HEAD", f"/{FILE}", headers={"Range": "bytes=0-9"})
    head = connection.getresponse()
    head.read()
    # Same keep-alive connection: a stray HEAD body would be parsed as this response.
    connection.request("GET", f"/{FILE}")
    after = connection.getresponse()
    body = after.read()
    connection.close()
    assert head.status == 200
    assert head.headers["Content-Length"] == str(SIZE)
    assert head.headers["ETag"] == after.headers["ETag"]
    assert (after.status, body) == (200, DATA)


def test_etag_changes_when_file_is_replaced_with_same_size_and_mtime(server: MirrorServer, mirror: Path) -> None:
    before = get(server).headers["ETag"]
    replace(mirror / FILE, DATA[::-1], (mirror / FILE).stat().st_mtime_ns)
    after = get(server)
    assert after.content == DATA[::-1]
    assert after.headers["ETag"] != before


# -- ranges --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=1000-", 1000, SIZE - 1),
        ("bytes=10-19", 10, 19),
        ("bytes=-7", SIZE - 7, SIZE - 1),
        ("bytes=5-5", 5, 5),
        ("bytes=299990-999999999", 299990, SIZE - 1),  # an end past the file is clamped
        ("bytes=-999999999", 0, SIZE - 1),  # a suffix longer than the file is all of it
        ("Bytes=10-19", 10, 19),  # the unit is case-insensitive
    ],
)
def test_single_range_gives_206_with_exact_bytes(server: MirrorServer, header: str, first: int, last: int) -> None:
    response = get(server, Range=header)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/{SIZE}"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == DATA[first : last + 1]


@pytest.mark.parametrize("header", [f"bytes={SIZE}-", f"bytes={SIZE + 5}-{SIZE + 9}", "bytes=-0"])
def test_unsatisfiable_range_gives_416(server: MirrorServer, header: str) -> None:
    response = get(server, Range=header)
    assert response.status_code == 416
    assert response.headers["Content-Range"] == f"bytes */{SIZE}"
    assert response.content == b""


def test_any_range_of_an_empty_file_is_unsatisfiable(server: MirrorServer, mirror: Path) -> None:
    write(mirror / "empty", b"")
    assert get(server, "empty").status_code == 200
    response = get(server, "empty", Range="bytes=0-")
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */0"


@pytest.mark.parametrize("header", ["bytes=0-9,20-29", "bytes=9-3", "bytes=-", "bytes=a-b", "items=0-9", "0-9"])
def test_multi_or_malformed_range_is_ignored(server: MirrorServer, header: str) -> None:
    response = get(server, Range=header)
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.content == DATA


@pytest.mark.parametrize("validator", ["ETag", "Last-Modified"])
def test_if_range_matching_the_file_honours_range(server: MirrorServer, validator: str) -> None:
    response = get(server, Range="bytes=10-19", **{"If-Range": get(server).headers[validator]})
    assert response.status_code == 206
    assert response.content == DATA[10:20]


@pytest.mark.parametrize(
    ("validator", "shift_ns"),
    # Same mtime: only the inode tells the ETag apart. Later mtime: the date no longer matches.
    [("ETag", 0), ("Last-Modified", 10 * 10**9)],
)
def test_if_range_after_file_replaced_sends_whole_new_file(
    server: MirrorServer, mirror: Path, validator: str, shift_ns: int
) -> None:
    old = get(server).headers[validator]
    replace(mirror / FILE, DATA[::-1], (mirror / FILE).stat().st_mtime_ns + shift_ns)
    response = get(server, Range="bytes=10-19", **{"If-Range": old})
    assert response.status_code == 200
    assert response.content == DATA[::-1]


def test_if_range_with_weak_etag_sends_whole_file(server: MirrorServer) -> None:
    etag = get(server).headers["ETag"]
    assert get(server, Range="bytes=10-19", **{"If-Range": f"W/{etag}"}).status_code == 200


# -- what is never served ------------------------------------------------------------


@pytest.mark.parametrize(
    "target",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E%2Fsecret.txt",
        "/sub/..%2f..%2fsecret.txt",
        "/" + "../" * 30 + "etc/passwd",
        "/" + "%2e%2e/" * 30 + "etc/passwd",
        "/%2Fetc%2Fpasswd",
        "http://mirror/../secret.txt",  # absolute form, as proxies send
        "/passwd",  # symlink to /etc/passwd
        "/secret-link",  # symlink to ../secret.txt
        "/outside/secret.txt",  # symlink to the directory above
        "/",
        "/sub",
        "/sub/",
        "/.zoo-a.tar.gz.part",
        "/sub/.zoo-staging/done.bin",
        "/link-to-partial",  # symlink to a .zoo- file
        "/fifo",  # opening one must not block the server
        "/missing",
        "/a%00b",
    ],
)
def test_outside_hidden_and_directories_give_404(
    tmp_path: Path, mirror: Path, server: MirrorServer, target: str
) -> None:
    write(tmp_path / "secret.txt", b"secret")
    write(mirror / "sub" / "inside.bin", b"inside")
    write(mirror / ".zoo-a.tar.gz.part", b"partial")
    write(mirror / "sub" / ".zoo-staging" / "done.bin", b"staged")
    (mirror / "passwd").symlink_to("/etc/passwd")
    (mirror / "secret-link").symlink_to("../secret.txt")
    (mirror / "outside").symlink_to(tmp_path)
    (mirror / "link-to-partial").symlink_to(".zoo-a.tar.gz.part")
    os.mkfifo(mirror / "fifo")
    assert raw_get(server, "/sub/inside.bin").status == 200  # the layout itself is servable
    assert raw_get(server, target).status == 404


def test_no_symlink_is_followed_even_one_pointing_inside(server: MirrorServer, mirror: Path) -> None:
    # Following none is what keeps a symlink swapped in mid-request from leading out.
    (mirror / "alias.tar.gz").symlink_to(mirror / FILE)
    (mirror / "alias-dir").symlink_to(mirror / FILE.split("/")[0])
    assert get(server, "alias.tar.gz").status_code == 404
    assert get(server, "alias-dir/" + FILE.split("/", 1)[1]).status_code == 404
    assert get(server).content == DATA


@pytest.mark.timeout(120)
def test_symlinks_swapped_in_by_rename_never_lead_outside(tmp_path: Path, mirror: Path, server: MirrorServer) -> None:
    # A writer to the mirror flips a directory and a file with symlinks to outside
    # ones, by rename, while clients download: no response may carry outside bytes.
    secret = b"outside the mirror " * 1000
    write(tmp_path / "outside" / "f.bin", secret)
    write(mirror / "d" / "f.bin", b"inside")
    (mirror / "d-evil").symlink_to(tmp_path / "outside")
    (mirror / "d" / "f-evil").symlink_to(tmp_path / "outside" / "f.bin")
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            os.rename(mirror / "d", mirror / "d-real")
            os.rename(mirror / "d-evil", mirror / "d")
            os.rename(mirror / "d", mirror / "d-evil")
            os.rename(mirror / "d-real", mirror / "d")
            os.rename(mirror / "d" / "f.bin", mirror / "d" / "f-real")
            os.rename(mirror / "d" / "f-evil", mirror / "d" / "f.bin")
            os.rename(mirror / "d" / "f.bin", mirror / "d" / "f-evil")
            os.rename(mirror / "d" / "f-real", mirror / "d" / "f.bin")

    def fetch(count: int) -> list[tuple[int, bytes]]:
        with requests.Session() as session:
            return [(r.status_code, r.content) for r in (session.get(f"{server.url}/d/f.bin", timeout=10) for _ in range(count))]

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            replies = [reply for batch in pool.map(fetch, [750] * 4) for reply in batch]
    finally:
        stop.set()
        swapper.join()
    assert not [reply for reply in replies if secret[:20] in reply[1]]
    assert {status for status, _ in replies} <= {200, 404}
    assert (200, b"inside") in replies


# -- scale ---------------------------------------------------------------------------

_SERVE = """
import sys
from pathlib import Path
from zoo.mirror.serve import serve
serve(Path(sys.argv[1]), port=0, on_ready=lambda url: print(url, flush=True), quiet=True)
"""


def high_water_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmHWM from /proc")
def test_large_file_streams_in_constant_memory_and_ctrl_c_stops_cleanly(tmp_path: Path) -> None:
    digest = hashlib.sha256()
    with (tmp_path / "big.bin").open("wb") as out:
        for _ in range(50):
            block = os.urandom(MiB)
            digest.update(block)
            out.write(block)
    process = subprocess.Popen([sys.executable, "-c", _SERVE, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()  # type: ignore[union-attr]
        assert url.startswith("http://127.0.0.1:")
        requests.get(f"{url}/missing", timeout=10)  # warm up: handler thread and code paths
        before = high_water_kib(process.pid)
        received = hashlib.sha256()
        with requests.get(f"{url}/big.bin", stream=True, timeout=10) as response:
            for chunk in response.iter_content(MiB):
                received.update(chunk)
        growth_mib = (high_water_kib(process.pid) - before) / 1024
        assert received.hexdigest() == digest.hexdigest()
        assert growth_mib < 10, f"server peak memory grew by {growth_mib:.1f} MiB for a 50 MiB file"
    finally:
        process.send_signal(signal.SIGINT)
        returncode = process.wait(timeout=10)
    assert returncode == 0  # Ctrl-C is how a server stops, not an error


def test_eight_concurrent_downloads_get_their_own_bytes(server: MirrorServer, mirror: Path) -> None:
    data = random.Random(8).randbytes(4 * MiB)
    write(mirror / "shared.bin", data)
    # A client stuck mid-request: a server answering one connection at a time would wait on it forever.
    stalled = socket.create_connection(("127.0.0.1", server.server_port))
    stalled.sendall(b"GET /shared.bin HTTP/1.1\r\n")
    in_flight = threading.Barrier(8, timeout=5)
    results: dict[int, bytes] = {}

    def download(index: int) -> None:
        headers = {"Range": f"bytes={index * 100_000}-"}
        with requests.get(f"{server.url}/shared.bin", headers=headers, stream=True, timeout=5) as response:
            in_flight.wait()  # all eight responses are open at once
            results[index] = response.raw.read()

    threads = [threading.Thread(target=download, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stalled.close()
    assert sorted(results) == list(range(8))
    for index, body in results.items():
        assert body == data[index * 100_000 :], f"download {index} got the wrong bytes"


# -- access log and disconnects ------------------------------------------------------


def wait_for_log(capsys: pytest.CaptureFixture[str], needle: str, timeout: float = 5.0) -> str:
    """Stderr so far, once it holds ``needle``: the server logs after the body is sent."""
    seen = ""
    deadline = time.monotonic() + timeout
    while needle not in seen and time.monotonic() < deadline:
        time.sleep(0.02)
        seen += capsys.readouterr().err
    return seen


def test_access_log_has_one_compact_line_per_request(mirror: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with running(mirror, quiet=False) as server:
        get(server, Range="bytes=0-9")
        get(server, "nope")
        log = wait_for_log(capsys, '"GET /nope"')
    assert log.splitlines() == [f'127.0.0.1 "GET /{FILE}" 206 10', '127.0.0.1 "GET /nope" 404 0']


def test_quiet_server_logs_nothing(server: MirrorServer, capsys: pytest.CaptureFixture[str]) -> None:
    get(server)
    get(server, "nope")
    time.sleep(0.1)  # the log line would follow the body
    assert capsys.readouterr().err == ""


def test_client_hanging_up_mid_body_is_logged_without_traceback(
    mirror: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    size = 256 * MiB  # sparse: free to make, far more than socket buffers hold
    with (mirror / "huge.bin").open("wb") as out:
        out.truncate(size)
    with running(mirror, quiet=False) as server:
        client = socket.create_connection(("127.0.0.1", server.server_port))
        client.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.recv(1024).startswith(b"HTTP/1.1 200")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        client.close()
        log = wait_for_log(capsys, '"GET /huge.bin" 200 ')
    assert "Traceback" not in log
    sent = int(log.split('"GET /huge.bin" 200 ')[1].split()[0])
    assert 0 < sent < size


# -- startup errors ------------------------------------------------------------------


def test_port_in_use_is_a_usage_error(mirror: Path) -> None:
    with running(mirror) as first, pytest.raises(UsageError, match=f"127.0.0.1:{first.server_port}.*in use"):
        make_server(mirror, "127.0.0.1", first.server_port)


@pytest.mark.parametrize(("host", "port"), [("192.0.2.1", 0), ("127.0.0.1", 70000)])  # not ours; out of range
def test_unbindable_address_is_a_usage_error(mirror: Path, host: str, port: int) -> None:
    with pytest.raises(UsageError, match=f"cannot listen on {host}:{port}"):
        make_server(mirror, host, port)


def test_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="nowhere"):
        make_server(tmp_path / "nowhere", port=0)
