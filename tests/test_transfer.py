"""Transfer hardening: partials that survive failures and move between sources,
safe resumes, wrong bodies, bad sources, name resolution, size and space limits,
symlinks in the cache. Real servers, real files, the real command."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from conftest import CONFIG_PATH, MODEL, TARBALL_PATH, Zoo, model_entry
from httpserver import FileServer
from tarballs import make_zoo_tarball, sha256_of
from test_fetch import build_mirror, closed_port_url
from zoo.sources import mirror_relative

DROP_AT = 1_000_000


def partial_of(zoo: Zoo) -> Path:
    return zoo.cache / "downloads" / f"{MODEL}@{MODEL}.tar.gz.part"


def sidecar_of(zoo: Zoo) -> Path:
    return partial_of(zoo).with_name(partial_of(zoo).name + ".json")


def tarball_requests(server: FileServer, path: str = TARBALL_PATH) -> list:
    return [r for r in server.requests if r.path == path and r.method == "GET"]


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert "Traceback" not in result.stderr
    return lines[-1]


def fail_after_progress(zoo: Zoo, upstream: FileServer) -> subprocess.CompletedProcess[str]:
    """1 MB arrives, the connection drops, then the server answers 500 until the retries run out."""
    upstream.plan(TARBALL_PATH, [("drop_after", DROP_AT)] + [("status", 500)] * 3)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 5, result.stderr
    upstream.clear_log()
    return result


# -- #10: the partial survives a failure --------------------------------------------


@pytest.mark.timeout(120)
def test_the_partial_survives_running_out_of_retries(zoo: Zoo, upstream: FileServer, tarball: Path):
    failed = fail_after_progress(zoo, upstream)
    assert "gave up after 2 retries" in failed.stderr
    assert partial_of(zoo).stat().st_size == DROP_AT
    assert json.loads(sidecar_of(zoo).read_text())["url"] == upstream.url_for(TARBALL_PATH)
    again = zoo.run("fetch", MODEL, "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["sha256"] == sha256_of(tarball)
    (resumed,) = tarball_requests(upstream)
    assert (resumed.range, resumed.status) == (f"bytes={DROP_AT}-", 206)
    assert resumed.bytes_sent == tarball.stat().st_size - DROP_AT


# -- #11: a partial belongs to the bytes, not to the source -------------------------


@pytest.mark.timeout(120)
def test_a_dead_mirror_tried_first_leaves_the_upstream_partial_to_resume(zoo: Zoo, upstream: FileServer, tarball: Path):
    fail_after_progress(zoo, upstream)
    result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=closed_port_url())
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    (resumed,) = tarball_requests(upstream)
    assert (resumed.range, resumed.status) == (f"bytes={DROP_AT}-", 206)


@pytest.mark.timeout(120)
def test_another_source_with_the_same_file_continues_the_partial(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path
):
    fail_after_progress(zoo, upstream)
    with FileServer(root=build_mirror(tmp_path / "mirror", upstream, tarball)) as mirror:
        result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=mirror.url)
        assert result.returncode == 0, result.stderr
        (continued,) = tarball_requests(mirror, "/" + mirror_relative(upstream.url_for(TARBALL_PATH)))
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    # The mirror's ETag is the upstream's (same bytes), so If-Range lets it continue.
    assert (continued.range, continued.status) == (f"bytes={DROP_AT}-", 206)
    assert tarball_requests(upstream) == []


# -- #12: a server that ignores Range after a dropped connection ----------------------


@pytest.mark.timeout(120)
def test_a_server_that_ignores_range_after_a_drop_is_skipped_ahead(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000), ("ignore_range",)])
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert [(r.range, r.status) for r in tarball_requests(upstream)] == [(None, 200), ("bytes=300000-", 200)]


@pytest.mark.timeout(120)
def test_bytes_that_differ_after_a_drop_are_a_changed_file(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path
):
    other = make_zoo_tarball(tmp_path, MODEL, size_mb=0.5).read_bytes()
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000), ("serve", other, {})])
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 6
    assert one_line_error(result) == (
        f"zoo: error: {upstream.url_for(TARBALL_PATH)} changed during the download; run the command again"
    )
    assert zoo.leftovers() == []


# -- #16: resume only when it is safe --------------------------------------------------


@pytest.mark.timeout(120)
def test_no_range_without_a_validator_or_a_pin(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.omit_validators(TARBALL_PATH)
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000)])
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert [(r.range, r.status) for r in tarball_requests(upstream)] == [(None, 200), (None, 200)]


@pytest.mark.timeout(120)
def test_a_pinned_file_resumes_without_a_validator(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball))])
    upstream.omit_validators(TARBALL_PATH)
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000)])
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 0, result.stderr
    resumed = tarball_requests(upstream)[-1]
    assert (resumed.range, resumed.if_range, resumed.status) == ("bytes=300000-", None, 206)


@pytest.mark.timeout(120)
def test_a_short_206_is_a_dropped_connection_not_the_end(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000), ("short_range", 100_000)])
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert [(r.range, r.status) for r in tarball_requests(upstream)] == [
        (None, 200), ("bytes=300000-", 206), ("bytes=400000-", 206)
    ]


# -- #14: a login page in place of the archive ----------------------------------------

LOGIN_PAGE = b"<!doctype html><html><body><form>Log in to the guest network</form></body></html>\n"


@pytest.mark.timeout(120)
def test_a_captive_portal_page_fails_that_source_and_the_next_one_serves(zoo: Zoo, upstream: FileServer, tarball: Path):
    with FileServer() as portal:
        in_mirror = "/" + mirror_relative(upstream.url_for(TARBALL_PATH))
        portal.plan(in_mirror, [("serve", LOGIN_PAGE, {"Content-Type": "text/html; charset=utf-8"})] * 3)
        result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=portal.url)
        assert len(tarball_requests(portal, in_mirror)) == 3  # retried, then given up
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert f"{portal.url}{in_mirror}: served text/html instead of an archive" in result.stderr
    assert "trying the next source" in result.stderr
    assert zoo.run("fetch", MODEL).returncode == 0  # the sample config (text) was not refused


@pytest.mark.timeout(120)
def test_a_login_page_never_enters_a_mirror(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    upstream.plan(TARBALL_PATH, [("serve", LOGIN_PAGE, {"Content-Type": "text/html"})] * 3)
    result = zoo.run("mirror", "build", str(tmp_path / "mirror"), MODEL)
    assert result.returncode == 5
    assert "served text/html instead of an archive" in one_line_error(result)
    assert not (tmp_path / "mirror" / mirror_relative(upstream.url_for(TARBALL_PATH))).exists()


@pytest.mark.timeout(120)
def test_a_body_that_is_no_archive_is_retried(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.plan(TARBALL_PATH, [("serve", b"Service temporarily moved" * 20, {"Content-Type": "application/octet-stream"})])
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    assert "served application/octet-stream that is not a gzip, bzip2, xz or tar archive; retrying" in result.stderr
    assert len(tarball_requests(upstream)) == 2


@pytest.mark.timeout(120)
def test_only_login_pages_is_a_network_error_naming_the_url(zoo: Zoo, upstream: FileServer):
    upstream.plan(TARBALL_PATH, [("serve", LOGIN_PAGE, {"Content-Type": "text/html"})] * 3)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 5
    assert one_line_error(result) == (
        f"zoo: error: could not download {MODEL}: {upstream.url_for(TARBALL_PATH)}: served text/html instead "
        "of an archive (a login or captive-portal page?) (gave up after 2 retries)"
    )
    assert zoo.published() == []


# -- #15: reading a source is not writing the cache -------------------------------------


@pytest.mark.timeout(120)
def test_a_read_error_on_a_mirror_moves_on_to_the_next_source(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path
):
    mirror = tmp_path / "mirror"
    broken = mirror / mirror_relative(upstream.url_for(TARBALL_PATH))
    broken.parent.mkdir(parents=True)
    broken.symlink_to("/proc/self/mem")  # opens fine; reading offset 0 fails with EIO
    result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=str(mirror))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert f"{broken}: cannot read: Input/output error; trying the next source" in result.stderr
    assert "cannot write" not in result.stderr
    assert len(tarball_requests(upstream)) == 1


# -- #17: a name that does not resolve fails fast -----------------------------------------


@pytest.mark.timeout(120)
def test_a_host_name_that_does_not_resolve_is_not_retried(zoo: Zoo, upstream: FileServer):
    url = "http://zoo-test.invalid" + TARBALL_PATH
    zoo.write_registry([model_entry(upstream, url=url, sample_config=None)])
    result = zoo.run("fetch", MODEL, ZOO_RETRIES="3")
    assert result.returncode == 5
    assert "retrying" not in result.stderr
    last = one_line_error(result)
    assert last.startswith(f"zoo: error: could not download {MODEL}: {url}: ")
    assert "does not resolve" in last
    assert last.endswith("set ZOO_MIRROR to a mirror or directory you can reach, or ZOO_OFFLINE=1")


# -- #7: bounded downloads -----------------------------------------------------------------


@pytest.mark.timeout(90)
def test_an_endless_body_stops_at_zoo_max_download(zoo: Zoo, upstream: FileServer, tarball: Path):
    cap = tarball.stat().st_size + (1 << 20)
    upstream.plan(TARBALL_PATH, [("endless",)])
    result = zoo.run("fetch", MODEL, timeout=60, ZOO_MAX_DOWNLOAD=str(cap))
    assert result.returncode == 9
    assert one_line_error(result) == (
        f"zoo: error: {upstream.url_for(TARBALL_PATH)}: sends more than ZOO_MAX_DOWNLOAD ({cap / (1 << 20):.1f} MiB) "
        "without declaring a size; stopped and deleted (raise ZOO_MAX_DOWNLOAD if the file really is that large)"
    )
    assert zoo.leftovers() == []


@pytest.mark.timeout(90)
def test_an_endless_body_stops_at_the_pinned_size(zoo: Zoo, upstream: FileServer, tarball: Path):
    size = tarball.stat().st_size
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball), size=size)])
    upstream.plan(TARBALL_PATH, [("endless",)])
    result = zoo.run("fetch", MODEL, timeout=60)
    assert result.returncode == 6
    assert one_line_error(result) == (
        f"zoo: error: {upstream.url_for(TARBALL_PATH)}: sends more than the {size} bytes pinned; nothing was kept"
    )
    assert zoo.leftovers() == []


@pytest.mark.timeout(60)
def test_too_little_free_space_fails_before_downloading(zoo: Zoo, upstream: FileServer):
    result = zoo.run("fetch", MODEL, ZOO_MIN_FREE="1024T")
    assert result.returncode == 9
    last = one_line_error(result)
    assert last.startswith(f"zoo: error: not enough free space in {zoo.cache / 'downloads'} for {MODEL}: ")
    assert "ZOO_MIN_FREE keeps 1073741824.0 MiB free" in last
    assert upstream.count(None) == 0
    assert zoo.leftovers() == []


def test_a_size_that_is_not_a_size_is_a_usage_error(zoo: Zoo):
    result = zoo.run("fetch", MODEL, ZOO_MAX_DOWNLOAD="lots")
    assert result.returncode == 2
    assert "ZOO_MAX_DOWNLOAD='lots' is not a size" in one_line_error(result)


# -- #5: symlinks planted in downloads/ ----------------------------------------------------


def plant(zoo: Zoo, upstream: FileServer, tarball: Path, canary: Path, where: str) -> None:
    """A symlink to ``canary`` at the partial, its sidecar or downloads/ itself; the
    partial's sidecar matches the upstream file, so a follower would resume into it."""
    downloads = zoo.cache / "downloads"
    zoo.cache.mkdir(parents=True, exist_ok=True)
    if where == "downloads":
        downloads.symlink_to(canary.parent, target_is_directory=True)
        return
    downloads.mkdir()
    etag = '"' + hashlib.sha256(tarball.read_bytes()).hexdigest()[:32] + '"'
    meta = {"url": upstream.url_for(TARBALL_PATH), "validator": etag, "total": tarball.stat().st_size}
    if where == "partial":
        partial_of(zoo).symlink_to(canary)
        sidecar_of(zoo).write_text(json.dumps(meta))
    else:
        partial_of(zoo).write_bytes(tarball.read_bytes()[:1000])
        sidecar_of(zoo).symlink_to(canary)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("where", ["partial", "sidecar", "downloads"])
def test_a_symlink_in_downloads_is_refused_and_its_target_untouched(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path, where: str
):
    outside = tmp_path / "outside"
    outside.mkdir()
    canary = outside / "canary.txt"
    canary.write_text("precious\n")
    plant(zoo, upstream, tarball, canary, where)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is a symlink; zoo will not write through it (remove it and run again)" in one_line_error(result)
    assert canary.read_text() == "precious\n"
    assert sorted(p.name for p in outside.iterdir()) == ["canary.txt"]
    assert zoo.published() == []


# -- smaller: stale sidecars, optional sample configs --------------------------------------


@pytest.mark.timeout(120)
def test_a_local_mirror_finishing_an_http_partial_leaves_no_sidecar(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path
):
    fail_after_progress(zoo, upstream)
    assert sidecar_of(zoo).is_file()
    mirror = build_mirror(tmp_path / "mirror", upstream, tarball)
    result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=str(mirror))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["url"].startswith(str(mirror))
    assert list((zoo.cache / "downloads").iterdir()) == []


@pytest.mark.timeout(120)
def test_a_sample_config_no_source_holds_falls_back_at_once(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path
):
    config_url = "http://zoo-test.invalid" + CONFIG_PATH
    entry = model_entry(upstream)
    zoo.write_registry([{**entry, "sample_config": {**entry["sample_config"], "url": config_url}}])
    mirror = tmp_path / "mirror"
    archive = mirror / mirror_relative(upstream.url_for(TARBALL_PATH))
    archive.parent.mkdir(parents=True)
    archive.write_bytes(tarball.read_bytes())
    result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=str(mirror), ZOO_RETRIES="3")
    assert result.returncode == 0, result.stderr
    assert "retrying" not in result.stderr
    assert "using the archive's pipeline.config instead" in result.stderr
    assert json.loads(result.stdout)["config"].endswith(f"{MODEL}/pipeline.config")
    assert upstream.count(None) == 0


@pytest.mark.timeout(120)
def test_a_failing_sample_config_gets_a_shorter_retry_budget(zoo: Zoo, upstream: FileServer):
    upstream.plan(CONFIG_PATH, [("status", 503)] * 10)
    upstream.plan(TARBALL_PATH, [("status", 503)] * 3)
    result = zoo.run("fetch", MODEL, "--json", ZOO_RETRIES="3")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["config"].endswith(f"{MODEL}/pipeline.config")
    assert len(tarball_requests(upstream)) == 4  # the archive keeps its full budget
    assert len(tarball_requests(upstream, CONFIG_PATH)) == 2
