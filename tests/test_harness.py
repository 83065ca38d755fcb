"""Checks that the test harness (httpserver.py, tarballs.py) does what later tests rely on."""

from __future__ import annotations

import hashlib
import math
import tarfile
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from httpserver import FileServer
from tarballs import (
    DEFAULT_PIPELINE_CONFIG,
    _build_zoo_tarball,
    absolute_path_tarball,
    corrupt_gzip,
    device_tarball,
    dotdot_tarball,
    hardlink_escape_tarball,
    make_zoo_tarball,
    missing_shard_tarball,
    no_index_tarball,
    sha256_of,
    size_bomb_tarball,
    symlink_escape_tarball,
)

BLOB = bytes(range(256)) * 400  # 102400 bytes
PATH = "/models/m.tar.gz"


@pytest.fixture
def server() -> Iterator[FileServer]:
    with FileServer() as srv:
        srv.add(PATH, BLOB)
        yield srv
    assert srv.errors == []


def get(server: FileServer, path: str = PATH, timeout: float = 5, **headers: str) -> requests.Response:
    """GET with headers given as keywords, If_Range= meaning If-Range."""
    headers = {name.replace("_", "-"): value for name, value in headers.items()}
    return requests.get(server.url_for(path), headers=headers, timeout=timeout)


# -- HTTP server -----------------------------------------------------------------------


def test_get_head_and_404(server: FileServer) -> None:
    full = get(server)
    assert (full.status_code, full.content) == (200, BLOB)
    assert full.headers["Content-Length"] == str(len(BLOB))
    assert full.headers["Accept-Ranges"] == "bytes"
    assert full.headers["ETag"].startswith('"') and full.headers["Last-Modified"].endswith("GMT")
    head = requests.head(server.url_for(PATH), timeout=5)
    assert (head.status_code, head.content, head.headers["ETag"]) == (200, b"", full.headers["ETag"])
    assert head.headers["Content-Length"] == str(len(BLOB))
    assert get(server, "/nope").status_code == 404
    server.remove(PATH)
    assert get(server).status_code == 404


@pytest.mark.parametrize(
    "range_, status, content_range, body",
    [
        ("bytes=100-199", 206, "bytes 100-199/102400", BLOB[100:200]),
        ("bytes=102300-", 206, "bytes 102300-102399/102400", BLOB[102300:]),
        ("bytes=-10", 206, "bytes 102390-102399/102400", BLOB[-10:]),
        ("bytes=0-999999", 206, "bytes 0-102399/102400", BLOB),
        ("bytes=102400-", 416, "bytes */102400", b""),
        ("bytes=5-3", 200, None, BLOB),  # malformed: ignored
    ],
)
def test_range(server: FileServer, range_: str, status: int, content_range: str | None, body: bytes) -> None:
    response = get(server, Range=range_)
    assert (response.status_code, response.headers.get("Content-Range"), response.content) == (
        status,
        content_range,
        body,
    )


def test_if_range_mismatch_sends_full_new_body(server: FileServer) -> None:
    old = get(server).headers
    server.add(PATH, BLOB[::-1])
    new = get(server).headers
    assert new["ETag"] != old["ETag"] and new["Last-Modified"] != old["Last-Modified"]
    for stale in (old["ETag"], old["Last-Modified"]):
        response = get(server, Range="bytes=10-", If_Range=stale)
        assert (response.status_code, response.content) == (200, BLOB[::-1])
    for current in (new["ETag"], new["Last-Modified"]):
        response = get(server, Range="bytes=10-", If_Range=current)
        assert (response.status_code, response.content) == (206, BLOB[::-1][10:])


def test_drop_after_closes_mid_body(server: FileServer) -> None:
    server.plan(PATH, [("drop_after", 1000)])
    received = bytearray()
    with requests.get(server.url_for(PATH), stream=True, timeout=5) as response:
        assert response.headers["Content-Length"] == str(len(BLOB))
        # A closed socket, not a read timeout (that would be a ConnectionError).
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            # Small chunks: urllib3 2.x drops a partly filled chunk when the connection dies.
            for chunk in response.iter_content(100):
                received += chunk
    assert received == BLOB[:1000]
    assert get(server).content == BLOB  # the fault was used up
    assert [r.bytes_sent for r in server.requests] == [1000, len(BLOB)]


def test_status_faults_consumed_in_order_by_gets_only(server: FileServer) -> None:
    server.plan(PATH, [("status", 500), ("status", 429, {"Retry-After": "0"}), ("status", 503)])
    assert requests.head(server.url_for(PATH), timeout=5).status_code == 200
    responses = [get(server) for _ in range(4)]
    assert [r.status_code for r in responses] == [500, 429, 503, 200]
    assert responses[1].headers["Retry-After"] == "0" and responses[3].content == BLOB
    assert [r.status for r in server.requests] == [200, 500, 429, 503, 200]
    assert server.pending_faults(PATH) == 0
    with pytest.raises(ValueError):
        server.plan(PATH, [("explode",)])  # type: ignore[list-item]


def test_ignore_range_and_corrupt(server: FileServer) -> None:
    server.plan(PATH, [("ignore_range",), ("corrupt",)])
    ignored = get(server, Range="bytes=10-")
    assert (ignored.status_code, ignored.content) == (200, BLOB)
    corrupted = get(server).content
    assert [i for i, (a, b) in enumerate(zip(corrupted, BLOB)) if a != b] == [len(BLOB) // 2]


def test_hang_causes_read_timeout(server: FileServer) -> None:
    server.plan(PATH, [("hang", 3)])
    with pytest.raises(requests.exceptions.ReadTimeout):
        get(server, timeout=0.3)
    assert get(server).content == BLOB
    assert server.count(path=PATH) == 2


@pytest.mark.timeout(60)
def test_throttle(server: FileServer) -> None:
    server.throttle(PATH, 200_000)
    start = time.monotonic()
    assert get(server).content == BLOB
    assert time.monotonic() - start > 0.4  # 102400 bytes at 200 kB/s
    # At 10 B/s the blob would take hours: only a lifted throttle lets this
    # finish before the timeout.
    server.throttle(PATH, 10)
    server.throttle(PATH, None)
    assert get(server).content == BLOB


def test_request_log_and_counts(server: FileServer) -> None:
    get(server)
    requests.head(server.url_for(PATH), timeout=5)
    get(server, Range="bytes=0-9", If_Range='"x"')
    get(server, Range="bytes=0-9")
    assert (server.count(), server.count("HEAD", PATH), server.count(None), server.count(path="/x")) == (3, 1, 4, 0)
    assert server.bytes_sent(PATH) == 2 * len(BLOB) + 10
    last = server.requests[-1]
    assert (last.method, last.path, last.range, last.if_range, last.status) == ("GET", PATH, "bytes=0-9", None, 206)
    server.clear_log()
    assert server.requests == []


def test_serves_directory_tree(tmp_path: Path) -> None:
    (tmp_path / "secret").write_bytes(b"host file")
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "a.bin").write_bytes(BLOB)
    with FileServer(root=mirror) as server:
        assert get(server, "/models/a.bin").content == BLOB
        assert get(server, "/models/a.bin", Range="bytes=1-2").content == BLOB[1:3]
        etag = get(server, "/models/a.bin").headers["ETag"]
        (mirror / "models" / "a.bin").write_bytes(b"changed")
        assert get(server, "/models/a.bin").headers["ETag"] != etag
        assert get(server, "/models/missing.bin").status_code == 404
        assert get(server, "/%2e%2e/secret").status_code == 404
        server.remove("/models/a.bin")
        assert get(server, "/models/a.bin").status_code == 404
        server.add("/models/b.bin", b"overlay")
        assert get(server, "/models/b.bin").content == b"overlay"


def test_stop_cuts_keep_alive_connections(server: FileServer) -> None:
    with requests.Session() as session:
        assert session.get(server.url_for(PATH), timeout=5).content == BLOB
        server.stop()
        with pytest.raises(requests.exceptions.ConnectionError):
            session.get(server.url_for(PATH), timeout=2)


# -- tarballs --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "family, prefix, object_based",
    [
        ("tf2-detection", "checkpoint/ckpt-0", True),
        ("tf2-classification", "ckpt-0", True),
        ("tf1-detection", "model.ckpt", False),
    ],
)
def test_zoo_tarball_holds_real_checkpoint(tmp_path: Path, family: str, prefix: str, object_based: bool) -> None:
    import tensorflow as tf

    with tarfile.open(make_zoo_tarball(tmp_path, "m", family=family, size_mb=0.25)) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    top = tmp_path / "x" / "m"
    assert (top / "pipeline.config").read_text() == DEFAULT_PIPELINE_CONFIG
    assert (top / "saved_model" / "saved_model.pb").is_file() and any((top / "saved_model" / "variables").iterdir())
    assert (top / prefix).with_name("checkpoint").is_file()
    shapes = dict(tf.train.list_variables(str(top / prefix)))
    assert ("_CHECKPOINTABLE_OBJECT_GRAPH" in shapes) is object_based
    if object_based:
        assert any(name.startswith("model/_feature_extractor/") for name in shapes)
        assert any(name.startswith("model/_box_predictor/") for name in shapes)
    assert sum(math.prod(shape) for shape in shapes.values()) * 4 == pytest.approx(0.25 * 2**20, rel=0.01)


def test_zoo_tarball_cache_hands_out_independent_copies(tmp_path: Path) -> None:
    first = make_zoo_tarball(tmp_path / "a", "m", size_mb=0.25)
    digest = sha256_of(first)
    assert digest == hashlib.sha256(first.read_bytes()).hexdigest()
    assert first.stat().st_size > 0.2 * 2**20  # random weights don't compress
    corrupt_gzip(first)
    with pytest.raises((tarfile.TarError, EOFError, zlib.error, OSError)), tarfile.open(first) as tar:
        tar.getmembers()
    builds = _build_zoo_tarball.cache_info().misses
    second = make_zoo_tarball(tmp_path / "b", "m", size_mb=0.25)
    assert _build_zoo_tarball.cache_info().misses == builds  # a copy of the built one, not a rebuild
    assert second != first and not second.samefile(first)
    assert sha256_of(second) == digest


Members = dict[str, tarfile.TarInfo]
Builder = Callable[[Path, str], Path]

HOSTILE: list[tuple[Builder, Callable[[Members], bool]]] = [
    (absolute_path_tarball, lambda m: any(name.startswith("/tmp/zoo-escape-") for name in m)),
    (dotdot_tarball, lambda m: m["m/../../escape"].isfile()),
    (symlink_escape_tarball, lambda m: m["m/link"].issym() and m["m/link"].linkname == "/etc" and "m/link/x" in m),
    (hardlink_escape_tarball, lambda m: m["m/passwd"].islnk() and m["m/passwd"].linkname == "/etc/passwd"),
    (device_tarball, lambda m: m["m/null"].ischr()),
    (
        missing_shard_tarball,
        lambda m: "m/checkpoint/ckpt-0.index" in m
        and "m/checkpoint/ckpt-0.data-00000-of-00002" in m
        and not any("00001-of-00002" in name for name in m),
    ),
    (no_index_tarball, lambda m: not any(name.endswith(".index") for name in m)),
]


@pytest.mark.parametrize("build, is_hostile", HOSTILE, ids=[build.__name__ for build, _ in HOSTILE])
def test_hostile_tarball(tmp_path: Path, build: Builder, is_hostile: Callable[[Members], bool]) -> None:
    with tarfile.open(build(tmp_path, "m")) as tar:
        members = {member.name: member for member in tar}
    assert "m/pipeline.config" in members
    assert any(name.startswith("m/checkpoint/ckpt-0.data-") for name in members)
    assert is_hostile(members)


def test_size_bomb_is_small_on_the_wire(tmp_path: Path) -> None:
    bomb = size_bomb_tarball(tmp_path, "m")
    assert bomb.stat().st_size < 2 * 10**6
    with tarfile.open(bomb) as tar:
        padding = next(member for member in tar if member.name == "m/padding.bin")
    assert padding.size == 300 * 2**20
