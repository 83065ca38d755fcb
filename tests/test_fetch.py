"""`zoo fetch` end to end: a real server, real tarballs, the real command."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import resource
import signal
import socket
import struct
import subprocess
import termios
import time
from pathlib import Path

import pytest

from conftest import CONFIG_PATH, MODEL, SAMPLE_CONFIGS, TARBALL_PATH, Zoo, model_entry
from httpserver import FileServer
from tarballs import make_zoo_tarball, sha256_of
from zoo.sources import mirror_relative


def expected_prefix(zoo: Zoo) -> Path:
    return zoo.cache / "models" / MODEL / "files" / MODEL / "checkpoint" / "ckpt-0"


def tarball_gets(server: FileServer) -> int:
    return server.count("GET", TARBALL_PATH)


def test_fetch_by_alias_prints_the_checkpoint_prefix(zoo: Zoo, upstream: FileServer):
    result = zoo.run("fetch", "ssd_resnet50_v1_fpn")
    assert result.returncode == 0, result.stderr
    prefix = Path(result.stdout.strip())
    assert prefix == expected_prefix(zoo)
    assert prefix.with_name("ckpt-0.index").is_file()
    assert prefix.with_name("ckpt-0.data-00000-of-00001").is_file()
    sample = zoo.cache / "models" / MODEL / "sample.config"
    assert sample.read_bytes() == (SAMPLE_CONFIGS / f"{MODEL}.config").read_bytes()
    assert "fetched (sha256:" in result.stderr


def test_fetched_checkpoint_restores_in_tensorflow(zoo: Zoo, tarball: Path):
    tf = pytest.importorskip("tensorflow")
    prefix = zoo.run("fetch", MODEL).stdout.strip()
    names = [name for name, _shape in tf.train.list_variables(prefix)]
    assert "_CHECKPOINTABLE_OBJECT_GRAPH" in names
    assert any(name.startswith("model/_feature_extractor/") for name in names)


def test_json_result_and_cache_hit(zoo: Zoo, upstream: FileServer, tarball: Path):
    first = json.loads(zoo.run("fetch", MODEL, "--json").stdout)
    assert first["ok"] and not first["from_cache"]
    assert (first["sha256"], first["size"]) == (sha256_of(tarball), tarball.stat().st_size)
    assert first["checkpoint"] == str(expected_prefix(zoo))
    assert first["config"].endswith("sample.config")
    assert tarball_gets(upstream) == 1
    second = json.loads(zoo.run("fetch", MODEL, "--json").stdout)
    assert second["from_cache"] and second["sha256"] == first["sha256"]
    assert upstream.count(None) == 2  # the archive and the sample config, once each


def test_a_cache_hit_opens_no_connection_and_does_not_rehash(zoo: Zoo, upstream: FileServer):
    assert zoo.run("fetch", MODEL).returncode == 0
    upstream.stop()
    archive = zoo.cache / "models" / MODEL / f"{MODEL}.tar.gz"
    archive.write_bytes(b"\0" * archive.stat().st_size)  # only a re-hash would notice
    again = zoo.run("fetch", MODEL)
    assert again.returncode == 0, again.stderr
    assert Path(again.stdout.strip()) == expected_prefix(zoo)
    verify = zoo.run("verify", MODEL)
    assert verify.returncode == 6
    assert "differs from the recorded" in verify.stdout


def test_unknown_name_fails_with_suggestions(zoo: Zoo):
    result = zoo.run("fetch", "ssd_resnet50_fpn")
    assert result.returncode == 3
    assert result.stderr.strip().splitlines() == [
        "zoo: error: unknown model 'ssd_resnet50_fpn'; did you mean: "
        + result.stderr.split("did you mean: ")[1].strip()
    ]
    assert "ssd_resnet50_v1_fpn" in result.stderr
    assert "Traceback" not in result.stderr


def test_resume_after_the_process_is_killed(zoo: Zoo, upstream: FileServer, tarball: Path):
    size = tarball.stat().st_size
    upstream.throttle(TARBALL_PATH, 256 * 1024)
    process = zoo.popen("fetch", MODEL)
    partial = zoo.cache / "downloads" / f"{MODEL}@{MODEL}.tar.gz.part"
    deadline = time.monotonic() + 30
    while (not partial.exists() or partial.stat().st_size < size // 3) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    kept = partial.stat().st_size
    assert 0 < kept < size
    upstream.throttle(TARBALL_PATH, None)
    upstream.wait_idle()
    upstream.clear_log()
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    (resumed,) = [r for r in upstream.requests if r.path == TARBALL_PATH]
    assert resumed.range == f"bytes={kept}-"
    assert resumed.status == 206
    assert resumed.bytes_sent == size - kept


def test_dropped_connection_and_server_errors_are_retried(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000), ("status", 500), ("status", 503)])
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    gets = [r for r in upstream.requests if r.path == TARBALL_PATH]
    assert [r.status for r in gets] == [200, 500, 503, 206]
    assert gets[-1].range == "bytes=300000-"
    assert "HTTP 500" in result.stderr and "retrying" in result.stderr


def test_429_honours_retry_after(zoo: Zoo, upstream: FileServer):
    upstream.plan(TARBALL_PATH, [("status", 429, {"Retry-After": "1"})])
    started = time.monotonic()
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started >= 1.0
    assert tarball_gets(upstream) == 2


def test_retries_are_bounded(zoo: Zoo, upstream: FileServer):
    upstream.plan(TARBALL_PATH, [("status", 500)] * 10)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 5
    assert "gave up after 2 retries" in result.stderr
    assert tarball_gets(upstream) == 3
    assert zoo.published() == []


def test_bytes_other_than_pinned_fail_and_leave_nothing(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    other = make_zoo_tarball(tmp_path, MODEL, size_mb=0.5)
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball))])
    upstream.add(TARBALL_PATH, other.read_bytes())
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 6
    assert result.stderr == (
        f"zoo: error: {upstream.url_for(TARBALL_PATH)}: sha256 mismatch: expected {sha256_of(tarball)}, "
        f"got {sha256_of(other)}; the download was deleted\n"
    )
    assert zoo.leftovers() == []


def test_a_corrupted_stream_fails_early_and_leaves_nothing(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball), size=tarball.stat().st_size)])
    upstream.plan(TARBALL_PATH, [("corrupt",)])
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 6
    assert "not a readable .tar.gz archive" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert zoo.leftovers() == []


def test_a_size_pin_fails_before_downloading(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, size=tarball.stat().st_size + 1)])
    upstream.throttle(TARBALL_PATH, 256 * 1024)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 6
    assert f"expected {tarball.stat().st_size + 1} bytes, source offers {tarball.stat().st_size}" in result.stderr
    upstream.wait_idle()
    assert upstream.bytes_sent(TARBALL_PATH) < tarball.stat().st_size // 2
    assert zoo.leftovers() == []


def test_pinned_match_is_accepted(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball), size=tarball.stat().st_size)])
    assert zoo.run("fetch", MODEL).returncode == 0


def test_404_fails_at_once_naming_the_url(zoo: Zoo, upstream: FileServer):
    upstream.remove(TARBALL_PATH)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 5
    assert f"{upstream.url_for(TARBALL_PATH)}: HTTP 404" in result.stderr
    assert tarball_gets(upstream) == 1


def test_dead_server_is_a_network_error(zoo: Zoo, upstream: FileServer):
    url = upstream.url_for(TARBALL_PATH)
    upstream.stop()
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 5
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"zoo: error: could not download {MODEL}: {url}: ")
    assert "Connection refused" in last or "connection refused" in last.lower()
    assert zoo.published() == []


def test_offline_hit_and_miss(zoo: Zoo, upstream: FileServer):
    miss = zoo.run("fetch", MODEL, "--offline")
    assert miss.returncode == 8
    assert "offline" in miss.stderr and "ZOO_MIRROR" in miss.stderr
    assert upstream.count(None) == 0
    assert zoo.run("fetch", MODEL).returncode == 0
    upstream.stop()
    hit = zoo.run("fetch", MODEL, ZOO_OFFLINE="1")
    assert hit.returncode == 0
    assert Path(hit.stdout.strip()) == expected_prefix(zoo)


def build_mirror(root: Path, server: FileServer, tarball: Path) -> Path:
    """A copied directory in `wget -x` layout: <host:port>/<path>."""
    host = server.url.removeprefix("http://")
    for path, data in ((TARBALL_PATH, tarball.read_bytes()), (CONFIG_PATH, (SAMPLE_CONFIGS / f"{MODEL}.config").read_bytes())):
        target = root / host / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_mirrors_are_tried_in_order_before_upstream(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    mirror_dir = build_mirror(tmp_path / "mirror", upstream, tarball)
    with FileServer() as empty, FileServer(root=mirror_dir) as good:
        mirrors = f"{closed_port_url()},{empty.url},{good.url}"
        result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=mirrors)
        assert result.returncode == 0, result.stderr
        in_mirror = "/" + mirror_relative(upstream.url_for(TARBALL_PATH))
        assert [empty.count("GET", p) for p in ("/zoo-mirror.json", in_mirror)] == [1, 1]
        assert good.count("GET", in_mirror) == 1
    assert upstream.count(None) == 0
    assert json.loads(result.stdout)["url"].startswith(good.url)
    assert "trying the next source" in result.stderr


def test_mirror_flag_comes_before_the_environment_and_falls_back_to_upstream(zoo: Zoo, upstream: FileServer):
    with FileServer() as flagged, FileServer() as from_env:
        result = zoo.run("fetch", MODEL, "--mirror", flagged.url, ZOO_MIRROR=from_env.url)
        assert result.returncode == 0, result.stderr
        first_tries = [line for line in result.stderr.splitlines() if "HTTP 404" in line]
        assert flagged.url in first_tries[0] and from_env.url in first_tries[1]
    assert tarball_gets(upstream) == 1


def test_offline_with_a_directory_mirror(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    mirror_dir = build_mirror(tmp_path / "mirror", upstream, tarball)
    for mirror in (str(mirror_dir), mirror_dir.as_uri()):
        zoo.run("cache", "rm", MODEL)
        result = zoo.run("fetch", MODEL, "--offline", "--mirror", mirror)
        assert result.returncode == 0, result.stderr
    assert upstream.count(None) == 0


def test_file_url_and_plain_path_sources(zoo: Zoo, upstream: FileServer, tarball: Path):
    for url in (tarball.as_uri(), str(tarball)):
        zoo.write_registry([model_entry(upstream, url=url, sample_config=None)])
        zoo.run("cache", "rm", MODEL)
        result = zoo.run("fetch", MODEL, "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["sha256"] == sha256_of(tarball) and data["config"].endswith(f"{MODEL}/pipeline.config")
    assert upstream.count(None) == 0


def test_eight_concurrent_fetches_download_once(zoo: Zoo, upstream: FileServer):
    upstream.throttle(TARBALL_PATH, 2 * 1024 * 1024)
    processes = [zoo.popen("fetch", MODEL) for _ in range(8)]
    outputs = [process.communicate(timeout=120) for process in processes]
    assert [process.returncode for process in processes] == [0] * 8, outputs
    assert {out.strip() for out, _err in outputs} == {str(expected_prefix(zoo))}
    assert tarball_gets(upstream) == 1
    assert upstream.count("GET", CONFIG_PATH) == 1


def test_disk_full_during_download_leaves_nothing(zoo: Zoo, upstream: FileServer):
    limit = 512 * 1024

    def small_disk() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        zoo.command("fetch", MODEL), env=zoo.env, capture_output=True, text=True, preexec_fn=small_disk, timeout=60
    )
    assert result.returncode == 9
    assert result.stderr.startswith("zoo: error: disk full while writing ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert zoo.leftovers() == []


def on_terminal(zoo: Zoo, *args: str) -> bytes:
    """Run zoo with stdout and stderr on a pseudo-terminal; return what it printed."""
    primary, secondary = pty.openpty()
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    process = subprocess.Popen(zoo.command(*args), env=zoo.env, stdout=secondary, stderr=secondary)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closes when the process exits
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(timeout=60) == 0, seen
    return seen


def test_progress_bar_only_on_a_terminal(zoo: Zoo, upstream: FileServer):
    assert "%|" not in zoo.run("fetch", MODEL).stderr
    zoo.run("cache", "rm", MODEL)
    shown = on_terminal(zoo, "fetch", MODEL)
    assert b"100%|" in shown and MODEL.encode() in shown
    zoo.run("cache", "rm", MODEL)
    assert b"%|" not in on_terminal(zoo, "fetch", MODEL, "--quiet")


def test_proxy_settings_come_from_the_environment(zoo: Zoo, upstream: FileServer, tarball: Path):
    # The upstream host does not resolve: only the proxy (played by the test server) reaches it.
    zoo.write_registry([model_entry(upstream, url="http://zoo-upstream.invalid" + TARBALL_PATH, sample_config=None)])
    proxied = zoo.run("fetch", MODEL, "--json", HTTP_PROXY=upstream.url)
    assert proxied.returncode == 0, proxied.stderr
    assert json.loads(proxied.stdout)["sha256"] == sha256_of(tarball)
    assert tarball_gets(upstream) == 1
    zoo.run("cache", "rm", MODEL)
    bypassed = zoo.run("fetch", MODEL, HTTP_PROXY=upstream.url, NO_PROXY="zoo-upstream.invalid", ZOO_RETRIES="0")
    assert bypassed.returncode == 5
    assert tarball_gets(upstream) == 1


def test_a_server_that_stops_answering_times_out_and_is_retried(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.plan(TARBALL_PATH, [("hang", 3)])
    result = zoo.run("fetch", MODEL, "--json", ZOO_TIMEOUT="1")
    assert result.returncode == 0, result.stderr
    assert "read timed out; retrying" in result.stderr
    assert tarball_gets(upstream) == 2
