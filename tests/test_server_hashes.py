"""The server's own hashes (Cloud Storage's x-goog-hash) checked on every
download, how each cached archive was verified, and --require-verified."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import crc32c
import pytest

from conftest import MODEL, TARBALL_PATH, Zoo, model_entry
from httpserver import FileServer
from tarballs import sha256_of
from zoo.cache import MARKER, Cache
from zoo.settings import Settings

PARTIAL = f"downloads/{MODEL}@{MODEL}.tar.gz.part"
WRONG_MD5 = base64.b64encode(hashlib.md5(b"other bytes").digest()).decode()
WRONG_CRC32C = base64.b64encode(crc32c.CRC32CHash(b"other bytes").digest()).decode()


def b64_md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def b64_crc32c(path: Path) -> str:
    return base64.b64encode(crc32c.CRC32CHash(path.read_bytes()).digest()).decode()


def marker(zoo: Zoo) -> dict:
    return json.loads((zoo.cache / "models" / MODEL / MARKER).read_text())


def fetched(zoo: Zoo, *args: str, **env: str) -> None:
    result = zoo.run("fetch", MODEL, *args, **env)
    assert result.returncode == 0, result.stderr


def keep_a_partial(zoo: Zoo, upstream: FileServer) -> int:
    """A first run that drops mid-download and gives up, leaving a partial to resume."""
    upstream.plan(TARBALL_PATH, [("drop_after", 300_000), ("status", 500)])
    assert zoo.run("fetch", MODEL, ZOO_RETRIES="0").returncode == 5
    upstream.wait_idle()
    upstream.clear_log()
    return (zoo.cache / PARTIAL).stat().st_size


def the_resume(upstream: FileServer, kept: int) -> None:
    (resumed,) = [r for r in upstream.requests if r.path == TARBALL_PATH]
    assert (resumed.range, resumed.status) == (f"bytes={kept}-", 206)


@pytest.mark.timeout(120)
def test_correct_server_hashes_are_accepted_and_recorded(zoo: Zoo, upstream: FileServer):
    upstream.goog_hash(TARBALL_PATH)
    fetched(zoo)
    assert marker(zoo)["verified"] == "server crc32c+md5"
    info = json.loads(zoo.run("info", MODEL, "--json").stdout)
    assert info["verified"] == "server crc32c+md5"
    (listed,) = [json.loads(line) for line in zoo.run("cache", "ls", "--json").stdout.splitlines()]
    assert listed["verified"] == "server crc32c+md5"


@pytest.mark.timeout(120)
def test_crc32c_alone_is_checked_and_recorded(zoo: Zoo, upstream: FileServer):
    upstream.goog_hash(TARBALL_PATH, md5=None)  # composite objects carry no MD5
    fetched(zoo)
    assert marker(zoo)["verified"] == "server crc32c"


@pytest.mark.timeout(120)
def test_a_wrong_md5_is_an_integrity_failure_and_nothing_is_kept(zoo: Zoo, upstream: FileServer, tarball: Path):
    upstream.goog_hash(TARBALL_PATH, md5=WRONG_MD5)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 6, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert upstream.url_for(TARBALL_PATH) in line
    assert f"md5 mismatch: the server sent {WRONG_MD5}, got {b64_md5(tarball)}" in line
    assert zoo.leftovers() == [] and zoo.published() == []


@pytest.mark.timeout(120)
def test_a_resumed_download_is_checked_against_the_whole_objects_hashes(
    zoo: Zoo, upstream: FileServer, tarball: Path
):
    kept = keep_a_partial(zoo, upstream)
    upstream.goog_hash(TARBALL_PATH)
    fetched(zoo)
    the_resume(upstream, kept)  # the bytes of the first run were hashed from disk, not sent again
    assert marker(zoo)["verified"] == "server crc32c+md5"
    assert marker(zoo)["sha256"] == sha256_of(tarball)


@pytest.mark.timeout(120)
def test_a_wrong_crc32c_on_a_resumed_download_fails_and_keeps_nothing(
    zoo: Zoo, upstream: FileServer, tarball: Path
):
    kept = keep_a_partial(zoo, upstream)
    upstream.goog_hash(TARBALL_PATH, crc32c=WRONG_CRC32C)
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 6, result.stderr
    assert f"crc32c mismatch: the server sent {WRONG_CRC32C}, got {b64_crc32c(tarball)}" in result.stderr
    the_resume(upstream, kept)
    assert zoo.leftovers() == [] and zoo.published() == []


@pytest.mark.timeout(120)
def test_no_server_hashes_is_recorded_on_first_use(zoo: Zoo, upstream: FileServer):
    fetched(zoo)
    assert marker(zoo)["verified"] == "none: recorded on first use"


@pytest.mark.timeout(120)
def test_a_pin_is_the_stronger_record(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball))])
    upstream.goog_hash(TARBALL_PATH)
    fetched(zoo)
    assert marker(zoo)["verified"] == "pinned sha256"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("flag", "env"), [((), {"ZOO_REQUIRE_VERIFIED": "1"}), (("--require-verified",), {})])
def test_require_verified_refuses_what_nothing_vouches_for(
    zoo: Zoo, upstream: FileServer, flag: tuple[str, ...], env: dict[str, str]
):
    result = zoo.run("fetch", MODEL, *flag, **env)
    assert result.returncode == 6, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "nothing vouches for its bytes" in line and "ZOO_REQUIRE_VERIFIED" in line
    assert upstream.url_for(TARBALL_PATH) in line
    assert zoo.leftovers() == [] and zoo.published() == []


@pytest.mark.timeout(120)
def test_require_verified_takes_server_hashes_and_skips_an_unverifiable_sample_config(
    zoo: Zoo, upstream: FileServer
):
    upstream.goog_hash(TARBALL_PATH)
    result = zoo.run("fetch", MODEL, "--json", ZOO_REQUIRE_VERIFIED="1")
    assert result.returncode == 0, result.stderr
    assert "using the archive's pipeline.config instead" in result.stderr
    assert json.loads(result.stdout)["config"].endswith("pipeline.config")
    assert marker(zoo)["verified"] == "server crc32c+md5"


@pytest.mark.timeout(120)
def test_require_verified_takes_a_pin(zoo: Zoo, upstream: FileServer, tarball: Path):
    zoo.write_registry([model_entry(upstream, sha256=sha256_of(tarball))])
    fetched(zoo, ZOO_REQUIRE_VERIFIED="1")


def test_require_verified_and_allow_http_settings(tmp_path: Path):
    assert Settings.from_env(cache_dir=tmp_path, env={"ZOO_REQUIRE_VERIFIED": "1"}).require_verified
    assert Settings.from_env(cache_dir=tmp_path, require_verified=True, env={}).require_verified
    flag_wins = Settings.from_env(cache_dir=tmp_path, require_verified=False, env={"ZOO_REQUIRE_VERIFIED": "1"})
    assert not flag_wins.require_verified
    both = {"SSL_CERT_FILE": "/ssl.pem", "REQUESTS_CA_BUNDLE": "/requests.pem"}
    assert Settings.from_env(cache_dir=tmp_path, env=both).verify == "/requests.pem"  # requests' own order
    assert Settings.from_env(cache_dir=tmp_path, env={}).verify is True


@pytest.mark.timeout(180)
def test_a_mirror_records_the_server_hashes_and_its_clients_check_them(
    zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path
):
    mirror = tmp_path / "mirror"
    upstream.goog_hash(TARBALL_PATH)
    assert zoo.run("mirror", "build", str(mirror), MODEL).returncode == 0
    index = json.loads((mirror / "zoo-mirror.json").read_text())
    relative = next(key for key in index["files"] if key.endswith(".tar.gz"))
    expected = {"crc32c": b64_crc32c(tarball), "md5": b64_md5(tarball)}
    assert {k: index["files"][relative][k] for k in expected} == expected
    upstream.stop()  # air-gapped from here on
    fetched(zoo, ZOO_MIRROR=str(mirror), ZOO_OFFLINE="1")
    assert marker(zoo)["verified"] == "mirror index sha256"
    # A client checks the index's server hashes too: one that contradicts the
    # bytes (and the sha256 left alone) fails the fetch.
    index["files"][relative]["md5"] = WRONG_MD5
    (mirror / "zoo-mirror.json").write_text(json.dumps(index))
    assert zoo.run("cache", "rm", MODEL).returncode == 0
    result = zoo.run("fetch", MODEL, ZOO_MIRROR=str(mirror), ZOO_OFFLINE="1")
    assert result.returncode == 6, result.stderr
    assert f"md5 mismatch: expected {WRONG_MD5}" in result.stderr


def test_a_marker_without_the_verification_record_still_reads(zoo: Zoo, upstream: FileServer):
    fetched(zoo)
    path = zoo.cache / "models" / MODEL / MARKER
    old = {key: value for key, value in json.loads(path.read_text()).items() if key != "verified"}
    path.write_text(json.dumps(old))
    entry = Cache(zoo.cache).read_entry(MODEL)
    assert entry is not None and entry.verified is None
    assert json.loads(zoo.run("info", MODEL, "--json").stdout)["verified"] is None


def test_info_of_every_model_says_how_its_bytes_are_verified(tmp_path: Path):
    from zoo.catalog import model_info
    from zoo.registry import load_registry

    registry = load_registry()
    said = {model.name: model_info(registry, Cache(tmp_path), model.name).to_dict()["verified"] for model in registry}
    assert len(said) == 104 and all(isinstance(how, str) and how.startswith("not cached; on download: ")
                                    for how in said.values())  # fmt: skip
