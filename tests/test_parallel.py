"""Parallel ranged downloads (issue 14): a large file over several connections,
handed to the extractor in order; segments that fail alone, resumes that fetch
only the holes, and a safe fall back to one stream. Real servers, real
tarballs, the real command."""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import pty
import signal
import struct
import subprocess
import sys
import tarfile
import termios
import time
from pathlib import Path
from urllib.parse import unquote

import pytest

from conftest import MODEL, SAMPLE_CONFIGS, TARBALL_PATH, Zoo, model_entry
from httpserver import FileServer
from objectstores import S3Store
from tarballs import make_zoo_tarball, sha256_of
from test_extract_bombs import run_measured
from test_transfer import one_line_error, partial_of, sidecar_of, tarball_requests
from zoo.segments import Coverage, plan, segment_size
from zoo.settings import DEFAULT_CONNECTIONS
from zoo.sources import mirror_relative

BIG_MB = 40
CONNECTIONS = 8
RETRIES = 2  # clean_env's ZOO_RETRIES


@pytest.fixture(scope="session")
def big_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real zoo tarball of about 40 MB, its weights random (so incompressible)."""
    config = (SAMPLE_CONFIGS / f"{MODEL}.config").read_text()
    return make_zoo_tarball(tmp_path_factory.mktemp("big"), MODEL, config_text=config, size_mb=BIG_MB)


@pytest.fixture
def big(zoo: Zoo, upstream: FileServer, big_tarball: Path) -> Path:
    """The upstream serves the large tarball; the zoo asks for 8 connections."""
    upstream.add(TARBALL_PATH, big_tarball.read_bytes())
    zoo.env["ZOO_CONNECTIONS"] = str(CONNECTIONS)
    return big_tarball


def segment_starts(size: int) -> list[int]:
    """Where the segments of a cold fetch of ``size`` bytes start (the first is the plain GET's)."""
    return [start for start, _ in plan([(0, size)], segment_size(size, CONNECTIONS))]


def fetched(zoo: Zoo, *args: str, **env: str) -> dict:
    result = zoo.run("fetch", MODEL, "--json", *args, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_extracted(outcome: dict, tarball: Path) -> None:
    """Every regular member of the tarball is in the cache, byte for byte."""
    files = Path(outcome["directory"]) / "files"
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        assert members
        for member in members:
            expected = hashlib.sha256(tar.extractfile(member).read()).hexdigest()  # type: ignore[union-attr]
            assert sha256_of(files / member.name) == expected, member.name


def etag_of(tarball: Path) -> str:
    """The FileServer's ETag for these bytes."""
    return f'"{sha256_of(tarball)[:32]}"'


def ranges_asked(server: FileServer) -> list[str | None]:
    return [r.range for r in tarball_requests(server)]


# -- the split itself --------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_large_tarball_comes_over_several_connections(zoo: Zoo, upstream: FileServer, big: Path):
    outcome = fetched(zoo)
    assert outcome["sha256"] == sha256_of(big)
    assert outcome["connections"] == CONNECTIONS
    assert_extracted(outcome, big)
    requests = tarball_requests(upstream)
    assert requests[0].range is None  # a cold fetch starts as one plain GET
    starts = segment_starts(big.stat().st_size)
    assert sorted(r.range for r in requests[1:]) == sorted(
        f"bytes={start}-{end - 1}" for start, end in plan([(0, big.stat().st_size)], starts[1] - starts[0])[1:]
    )
    assert {r.if_range for r in requests[1:]} == {etag_of(big)}
    assert upstream.peak_concurrency(TARBALL_PATH) >= 2
    # Each byte was sent about once: the first response stops at its segment's end.
    assert upstream.bytes_sent(TARBALL_PATH) < big.stat().st_size * 1.15
    again = fetched(zoo)
    assert (again["from_cache"], again["connections"]) == (True, 0)


@pytest.mark.timeout(120)
def test_a_small_file_stays_one_stream(zoo: Zoo, upstream: FileServer, tarball: Path):
    outcome = fetched(zoo, ZOO_CONNECTIONS="8")
    assert (outcome["sha256"], outcome["connections"]) == (sha256_of(tarball), 1)
    assert ranges_asked(upstream) == [None]


ONE_STREAM = {
    "asked for one connection": lambda server: {"ZOO_CONNECTIONS": "1"},
    "a server without ranges": lambda server: server.refuse_ranges(TARBALL_PATH) or {},
    "no validator and no pin": lambda server: server.omit_validators(TARBALL_PATH) or {},
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", ONE_STREAM, ids=list(ONE_STREAM))
def test_a_large_file_comes_as_one_stream_with(zoo: Zoo, upstream: FileServer, big: Path, case: str):
    outcome = fetched(zoo, **ONE_STREAM[case](upstream))
    assert (outcome["sha256"], outcome["connections"]) == (sha256_of(big), 1)
    assert ranges_asked(upstream) == [None]
    assert_extracted(outcome, big)


@pytest.mark.timeout(300)
def test_by_default_a_fast_stream_stays_one_and_a_slow_one_splits(zoo: Zoo, upstream: FileServer, big: Path):
    """Without a count from the user, more connections open only once the first
    stream proves slow (a far edge); on a fast link they would only compete
    for the CPU with inflating and hashing."""
    del zoo.env["ZOO_CONNECTIONS"]
    fast = fetched(zoo)
    assert (fast["connections"], ranges_asked(upstream)) == (1, [None])
    assert zoo.run("cache", "rm", MODEL).returncode == 0
    upstream.clear_log()
    upstream.throttle(TARBALL_PATH, 4_000_000)  # per connection, like a far CDN edge
    slow = fetched(zoo)
    assert slow["connections"] == DEFAULT_CONNECTIONS and slow["sha256"] == sha256_of(big)
    asked = ranges_asked(upstream)
    assert asked[0] is None and len(asked) > 8  # the probing stream, then segments
    assert_extracted(slow, big)


@pytest.mark.timeout(300)
def test_the_connections_flag_wins_over_the_variable(zoo: Zoo, upstream: FileServer, big: Path):
    one = fetched(zoo, "--connections", "1", ZOO_CONNECTIONS="8")
    assert one["connections"] == 1 and ranges_asked(upstream) == [None]
    assert zoo.run("cache", "rm", MODEL).returncode == 0
    many = fetched(zoo, "--connections", "4", ZOO_CONNECTIONS="1")
    assert many["connections"] == 4 and many["sha256"] == sha256_of(big)
    refused = zoo.run("fetch", MODEL, "--connections", "65")
    assert (refused.returncode, one_line_error(refused)) == (2, "zoo: error: --connections 65 is not a whole number from 1 to 64")


@pytest.mark.parametrize("command", [["config", MODEL, "-o", "-"], ["lock", MODEL, "-o", "-"], ["mirror", "build", "m"]],
                         ids=["config", "lock", "mirror-build"])  # fmt: skip
def test_every_downloading_command_takes_connections(zoo: Zoo, command: list[str]):
    refused = zoo.run(*command, "--connections", "0")
    assert (refused.returncode, one_line_error(refused)) == (2, "zoo: error: --connections 0 is not a whole number from 1 to 64")
    assert zoo.published() == []


@pytest.mark.parametrize("value", ["0", "65", "2.5", "many"])
def test_a_connection_count_out_of_range_is_a_usage_error(zoo: Zoo, value: str):
    result = zoo.run("fetch", MODEL, ZOO_CONNECTIONS=value)
    assert result.returncode == 2
    assert one_line_error(result) == f"zoo: error: ZOO_CONNECTIONS={value!r} is not a whole number from 1 to 64"


@pytest.mark.timeout(300)
def test_an_s3_mirror_is_read_in_parallel_ranges(zoo: Zoo, upstream: FileServer, big: Path):
    with S3Store() as store:
        built = zoo.run("mirror", "build", store.url("team"), MODEL, **store.env)
        assert built.returncode == 0, built.stderr
        store.clear_log()
        outcome = fetched(zoo, ZOO_MIRROR=store.url("team"), ZOO_MIRROR_ONLY="1", **store.env)
        key = "/" + store.url("team/" + mirror_relative(upstream.url_for(TARBALL_PATH))).split("://", 1)[1]
        reads = [r for r in store.requests if r.method == "GET" and unquote(r.path.split("?")[0]) == key]
    # The mirror's index pins the sha256, which makes ranged reads safe without If-Range.
    assert (outcome["sha256"], outcome["connections"]) == (sha256_of(big), CONNECTIONS)
    assert len(reads) > CONNECTIONS
    assert_extracted(outcome, big)


# -- a segment that fails --------------------------------------------------------------


@pytest.mark.timeout(300)
def test_a_dropped_segment_is_retried_alone(zoo: Zoo, upstream: FileServer, big: Path):
    size = big.stat().st_size
    starts = segment_starts(size)
    dropped, after = starts[3], starts[4]
    upstream.plan(TARBALL_PATH, [("drop_after", 100_000)], range_start=dropped)
    outcome = fetched(zoo)
    assert (outcome["sha256"], outcome["connections"]) == (sha256_of(big), CONNECTIONS)
    asked = ranges_asked(upstream)
    assert asked.count(f"bytes={dropped}-{after - 1}") == 1
    assert asked.count(f"bytes={dropped + 100_000}-{after - 1}") == 1  # only the rest of that segment
    assert len(asked) == len(starts) + 1
    assert upstream.bytes_sent(TARBALL_PATH) < size * 1.15


FALLBACKS = {
    # If-Range saw another file, or the server stops honouring ranges: a 200
    "a 200": lambda start, size: [("ignore_range",)],
    "a 206 from another byte": lambda start, size: [("headers", {"Content-Range": f"bytes 0-99/{size}"})],
    "a 206 of another size": lambda start, size: [("headers", {"Content-Range": f"bytes {start}-{start + 99}/{size + 1}"})],
    "empty 206s beyond the retries": lambda start, size: [("short_range", 0)] * (RETRIES + 1),
}  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("fault", FALLBACKS, ids=list(FALLBACKS))
def test_a_segment_that_is_not_the_file_falls_back_to_one_stream(
    zoo: Zoo, upstream: FileServer, big: Path, fault: str
):
    size = big.stat().st_size
    start = segment_starts(size)[-4]  # asked once the first segments are in and handed over
    upstream.plan(TARBALL_PATH, FALLBACKS[fault](start, size), range_start=start)
    upstream.throttle(TARBALL_PATH, 4e6)
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(big)
    assert "continuing over one connection" in result.stderr
    assert_extracted(json.loads(result.stdout), big)
    # One stream took over where the handed-over bytes ended, with If-Range.
    (single,) = [r for r in tarball_requests(upstream) if r.range and r.range.endswith("-")]
    assert (single.status, single.if_range) == (206, etag_of(big))
    assert 0 < int(single.range.removeprefix("bytes=").rstrip("-")) <= start


@pytest.mark.timeout(300)
def test_a_server_that_stops_honouring_ranges_still_delivers_the_file(zoo: Zoo, upstream: FileServer, big: Path):
    upstream.plan(TARBALL_PATH, [("ignore_range",)] * 100)
    outcome = fetched(zoo)
    assert outcome["sha256"] == sha256_of(big)
    assert_extracted(outcome, big)


@pytest.mark.timeout(300)
def test_wrong_bytes_in_one_segment_are_an_integrity_error_and_nothing_is_kept(
    zoo: Zoo, upstream: FileServer, big: Path
):
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(big))])
    upstream.plan(TARBALL_PATH, [("corrupt",)], range_start=segment_starts(big.stat().st_size)[2])
    result = zoo.run("fetch", MODEL)
    # The gzip check of the stream or the sha256 at its end, whichever sees it first.
    assert result.returncode == 6, result.stderr
    assert one_line_error(result).startswith(f"zoo: error: {upstream.url_for(TARBALL_PATH)}: ")
    assert zoo.leftovers() == []


# -- resume after a kill ---------------------------------------------------------------


def kill_mid_download(zoo: Zoo, server: FileServer, after: int) -> None:
    """Start a fetch against a server capped per connection, SIGKILL it once
    ``after`` bytes are out, and wait until the server has noticed."""
    server.throttle(TARBALL_PATH, 1.5e6)
    process = zoo.popen("fetch", MODEL)
    try:
        deadline = time.monotonic() + 120
        while server.bytes_sent(TARBALL_PATH) < after:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.02)
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate()
    server.throttle(TARBALL_PATH, None)
    server.wait_idle(timeout=30)


@pytest.mark.timeout(300)
@pytest.mark.parametrize("connections", ["8", "1"])
def test_a_killed_fetch_resumes_every_segment(zoo: Zoo, upstream: FileServer, big: Path, connections: str):
    size = big.stat().st_size
    kill_mid_download(zoo, upstream, after=size // 2)
    sidecar = json.loads(sidecar_of(zoo).read_text())
    assert len(sidecar["segments"]["done"]) > 1  # holes between the segments on disk
    first_run = upstream.bytes_sent(TARBALL_PATH)
    upstream.clear_log()
    outcome = fetched(zoo, ZOO_CONNECTIONS=connections)  # one connection, too, fetches only the holes
    assert outcome["sha256"] == sha256_of(big)
    assert_extracted(outcome, big)
    resumed = tarball_requests(upstream)
    assert resumed[0].range is not None and resumed[0].if_range  # the first hole, If-Range
    # Only the holes were asked for again: what both runs sent is about the file once.
    assert first_run + upstream.bytes_sent(TARBALL_PATH) < size * 1.25
    assert not partial_of(zoo).exists() and not sidecar_of(zoo).exists()


@pytest.mark.timeout(300)
def test_a_file_that_changed_after_a_kill_is_fetched_whole(
    zoo: Zoo, upstream: FileServer, big: Path, tmp_path: Path
):
    kill_mid_download(zoo, upstream, after=big.stat().st_size // 2)
    # The same tarball compressed anew: other bytes, so another ETag and date.
    changed = tmp_path / "changed.tar.gz"
    changed.write_bytes(gzip.compress(gzip.decompress(big.read_bytes()), compresslevel=1, mtime=1))
    upstream.add(TARBALL_PATH, changed.read_bytes())
    upstream.clear_log()
    outcome = fetched(zoo)
    assert outcome["sha256"] == sha256_of(changed)
    assert_extracted(outcome, changed)
    first = tarball_requests(upstream)[0]
    assert (first.status, first.if_range is not None) == (200, True)  # If-Range saw another file


@pytest.mark.timeout(300)
@pytest.mark.parametrize("done", [[[0, 10**12]], [[5, 3]], [[0, 10], [5, 20]], [[0, 10], [10, 20]], "all", [[0, "10"]]])
def test_a_sidecar_with_nonsense_segments_is_not_trusted(zoo: Zoo, upstream: FileServer, big: Path, done: object):
    partial_of(zoo).parent.mkdir(parents=True, exist_ok=True)
    partial_of(zoo).write_bytes(b"\0" * 3_000_000)
    segments = {"validator": etag_of(big), "sha256": None, "done": done}
    sidecar_of(zoo).write_text(json.dumps({"url": upstream.url_for(TARBALL_PATH), "total": big.stat().st_size,
                                           "segments": segments}))  # fmt: skip
    outcome = fetched(zoo)
    assert outcome["sha256"] == sha256_of(big)
    assert tarball_requests(upstream)[0].range is None


@pytest.mark.timeout(300)
def test_the_progress_bar_counts_the_live_connections(zoo: Zoo, upstream: FileServer, big: Path):
    upstream.throttle(TARBALL_PATH, 4e6)
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm draws nothing 0 wide
    fetching = subprocess.Popen(zoo.command("fetch", MODEL), env=zoo.env, stdout=terminal, stderr=terminal)
    os.close(terminal)
    screen = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's last writer is gone
        while chunk := os.read(controller, 4096):
            screen += chunk
    os.close(controller)
    assert fetching.wait(timeout=60) == 0, screen[-500:]
    assert f"{CONNECTIONS} conns".encode() in screen, screen[-500:]


# -- memory ------------------------------------------------------------------------------

DOWNLOAD = """
import sys
from pathlib import Path
from zoo.download import download
from zoo.settings import Settings
from zoo.sources import Pin, Source
settings = Settings.from_env(cache_dir=sys.argv[2], connections=int(sys.argv[3]))
got = download([Source(sys.argv[1], Pin())], Path(sys.argv[2]) / "blob.part", settings=settings, label="blob")
print(got.sha256, got.connections, file=sys.stderr)
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("connections", [8, DEFAULT_CONNECTIONS])
def test_many_connections_stay_under_100_mb_of_memory(tmp_path: Path, server: FileServer, connections: int):
    blob = os.urandom(250 << 20)
    server.add("/blob", blob)
    command = [sys.executable, "-c", DOWNLOAD, server.url_for("/blob"), str(tmp_path), str(connections)]
    code, stderr, rss = run_measured(command)
    assert code == 0, stderr
    assert stderr.split() == [hashlib.sha256(blob).hexdigest(), str(connections)]
    assert rss < 100 << 20


# -- the pure parts ----------------------------------------------------------------------


def test_coverage_merges_spans_and_finds_the_holes():
    coverage = Coverage([(0, 10), (20, 30)])
    coverage.add(30, 40)
    coverage.add(5, 12)
    assert coverage.spans() == [[0, 12], [20, 40]]
    assert coverage.frontier() == 12
    assert coverage.holes(0, 50) == [(12, 20), (40, 50)]
    coverage.add(12, 20)
    assert (coverage.spans(), coverage.frontier(), coverage.covered()) == ([[0, 40]], 40, 40)


def test_segments_are_small_next_to_the_file_and_cover_the_holes():
    size = segment_size(40 << 20, 8)
    assert 1 << 20 <= size <= 8 << 20
    segments = plan([(0, 5), (100, 100 + 2 * size + 1)], size)
    assert segments == [(0, 5), (100, 100 + size), (100 + size, 100 + 2 * size), (100 + 2 * size, 101 + 2 * size)]
