"""Mirrors, bundles and lock files: the air-gapped and CI paths, end to end."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import MODEL, TARBALL_PATH, Zoo, clean_env, model_entry
from httpserver import FileServer
from nginx import Nginx, free_port, nginx_binary
from tarballs import make_zoo_tarball, repack, sha256_of
from zoo.sources import mirror_relative

INDEX = "zoo-mirror.json"


def build(zoo: Zoo, target: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    result = zoo.run("mirror", "build", target, MODEL, "--json", *args, **env)
    assert result.returncode == 0, result.stderr
    return result


def archive_in(mirror: Path, upstream: FileServer) -> Path:
    return mirror / mirror_relative(upstream.url_for(TARBALL_PATH))


def test_build_writes_the_layout_and_an_index_incrementally(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    mirror = tmp_path / "mirror"
    rows = [json.loads(line) for line in build(zoo, str(mirror)).stdout.splitlines()]
    assert [row["downloaded"] for row in rows] == [True, True]
    assert archive_in(mirror, upstream).read_bytes() == tarball.read_bytes()
    index = json.loads((mirror / INDEX).read_text())
    entry = index["files"][mirror_relative(upstream.url_for(TARBALL_PATH))]
    assert entry == {"url": upstream.url_for(TARBALL_PATH), "sha256": sha256_of(tarball), "size": tarball.stat().st_size}
    assert MODEL in index["models"]
    upstream.clear_log()
    again = [json.loads(line) for line in build(zoo, str(mirror)).stdout.splitlines()]
    assert [row["downloaded"] for row in again] == [False, False]
    assert upstream.count(None) == 0


def test_two_builds_at_once_download_each_file_once(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    upstream.throttle(TARBALL_PATH, 2 * 1024 * 1024)
    builders = [zoo.popen("mirror", "build", str(tmp_path / "mirror"), MODEL) for _ in range(2)]
    assert [b.wait(timeout=120) for b in builders] == [0, 0]
    assert upstream.count("GET", TARBALL_PATH) == 1


def serve_with_zoo(zoo: Zoo, mirror: Path) -> Iterator[str]:
    process = subprocess.Popen(
        zoo.command("mirror", "serve", str(mirror), "--port", "0", "--quiet"),
        env=zoo.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = process.stdout.readline() if process.stdout else ""
        assert line.startswith(f"serving {mirror} at http://127.0.0.1:"), line + (process.stderr.read() if process.poll() is not None else "")
        yield line.split(" at ")[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)


def nginx_over(mirror: Path, work: Path) -> Iterator[str]:
    if nginx_binary() is None:
        if os.environ.get("ZOO_REQUIRE_NGINX"):
            pytest.fail("nginx is required here (ZOO_REQUIRE_NGINX is set) but not installed")
        pytest.skip("nginx is not installed")
    with Nginx(mirror, work) as server:
        yield server.url


@pytest.mark.parametrize("kind", ["zoo mirror serve", "nginx", "file://", "directory"])
def test_fetch_through_a_mirror_with_upstream_gone(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path, kind: str):
    mirror = tmp_path / "mirror"
    build(zoo, str(mirror))
    upstream.clear_log()
    servers = {
        "zoo mirror serve": lambda: serve_with_zoo(zoo, mirror),
        "nginx": lambda: nginx_over(mirror, tmp_path / "nginx"),
        "file://": lambda: iter([mirror.as_uri()]),
        "directory": lambda: iter([str(mirror)]),
    }
    for base in servers[kind]():
        result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=base, ZOO_MIRROR_ONLY="1")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["sha256"] == sha256_of(tarball) and data["url"].startswith(base)
        assert Path(data["config"]).name == "sample.config"
    assert upstream.count(None) == 0


def test_mirror_only_never_reaches_upstream(zoo: Zoo, upstream: FileServer):
    with FileServer() as empty:
        result = zoo.run("fetch", MODEL, "--mirror", empty.url, "--mirror-only")
    assert result.returncode == 5
    assert upstream.count(None) == 0
    assert "HTTP 404" in result.stderr
    alone = zoo.run("fetch", MODEL, "--mirror-only")
    assert alone.returncode == 2 and "no mirror is set" in alone.stderr


def test_a_mirror_file_corrupted_after_indexing_is_refused_and_named(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    mirror = tmp_path / "mirror"
    build(zoo, str(mirror))
    archive = archive_in(mirror, upstream)
    data = bytearray(archive.read_bytes())
    data[-100] ^= 0xFF  # inside the gzip trailer region: the archive still extracts up to its end
    archive.write_bytes(bytes(data))
    (mirror / "stray.bin").write_bytes(b"x")
    result = zoo.run("fetch", MODEL, ZOO_MIRROR=str(mirror), ZOO_MIRROR_ONLY="1")
    assert result.returncode == 6
    assert zoo.leftovers() == []
    verify = zoo.run("mirror", "verify", str(mirror))
    assert verify.returncode == 6
    assert f"corrupt  {mirror_relative(upstream.url_for(TARBALL_PATH))}" in verify.stdout
    assert "extra    stray.bin" in verify.stdout
    archive.unlink()
    missing = zoo.run("mirror", "verify", str(mirror), "--json")
    assert json.loads(missing.stdout)["missing"] == [mirror_relative(upstream.url_for(TARBALL_PATH))]


def test_a_mirror_index_pins_unpinned_models(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    mirror = tmp_path / "mirror"
    build(zoo, str(mirror))
    with FileServer(root=mirror) as served:
        relative = "/" + mirror_relative(upstream.url_for(TARBALL_PATH))
        served.plan(relative, [("corrupt",)])
        result = zoo.run("fetch", MODEL, ZOO_MIRROR=served.url, ZOO_MIRROR_ONLY="1")
    assert result.returncode == 6
    assert zoo.leftovers() == []


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 with an empty bucket; the environment to reach it."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    import boto3

    boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                 aws_access_key_id="testing", aws_secret_access_key="testing").create_bucket(Bucket="zoo-mirror")  # fmt: skip
    try:
        yield env
    finally:
        server.stop()


def test_s3_bucket_as_mirror(zoo: Zoo, upstream: FileServer, tarball: Path, s3: dict[str, str]):
    base = "s3://zoo-mirror/team"
    build(zoo, base, **s3)
    assert zoo.run("mirror", "verify", base, **s3).returncode == 0
    upstream.clear_log()
    result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=base, ZOO_MIRROR_ONLY="1", **s3)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["sha256"] == sha256_of(tarball)
    assert upstream.count(None) == 0


def test_bundle_round_trip_between_two_caches(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    assert zoo.run("fetch", MODEL).returncode == 0
    bundle = tmp_path / "models.tar"
    created = zoo.run("bundle", "create", str(bundle), "ssd_resnet50_v1_fpn")
    assert created.returncode == 0, created.stderr
    upstream.stop()
    other = clean_env(tmp_path / "air-gapped")
    other["ZOO_REGISTRY"] = zoo.env["ZOO_REGISTRY"]
    imported = subprocess.run(zoo.command("bundle", "import", str(bundle)), env=other, capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == f"imported {MODEL}"
    offline = subprocess.run(zoo.command("fetch", MODEL, "--offline", "--json"), env=other, capture_output=True, text=True)
    data = json.loads(offline.stdout)
    assert data["from_cache"] and data["sha256"] == sha256_of(tarball)
    assert Path(data["config"]).name == "sample.config"
    into_mirror = zoo.run("bundle", "import", str(bundle), "--into", str(tmp_path / "mirror"))
    assert into_mirror.returncode == 0, into_mirror.stderr
    assert zoo.run("mirror", "verify", str(tmp_path / "mirror")).returncode == 0


def tampered(member: tarfile.TarInfo, data: bytes) -> bytes:
    if member.name.endswith(".tar.gz"):
        changed = bytearray(data)
        changed[len(changed) // 2] ^= 0xFF
        return bytes(changed)
    return data


def escape_member() -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo("../../escape"), b"bad"


@pytest.mark.parametrize(
    ("change", "extra", "code", "message"),
    [(tampered, [], 6, "does not match its sha256"), (lambda m, d: d, [escape_member()], 7, "climbs out")],
)
def test_a_tampered_or_hostile_bundle_installs_nothing(zoo: Zoo, upstream: FileServer, tmp_path: Path, change, extra, code, message):
    assert zoo.run("fetch", MODEL).returncode == 0
    good = tmp_path / "good.tar"
    zoo.run("bundle", "create", str(good), MODEL)
    bad = repack(good, tmp_path / "bad.tar", change, extra)
    other = clean_env(tmp_path / "other")
    other["ZOO_REGISTRY"] = zoo.env["ZOO_REGISTRY"]
    result = subprocess.run(zoo.command("bundle", "import", str(bad)), env=other, capture_output=True, text=True)
    assert result.returncode == code, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    models = tmp_path / "other" / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []
    assert not (tmp_path / "escape").exists()


def test_lock_round_trip_and_a_changed_upstream_byte(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    lock = tmp_path / "zoo.lock"
    result = zoo.run("lock", "ssd_resnet50_v1_fpn", "-o", str(lock))
    assert result.returncode == 0, result.stderr
    assert json.loads(lock.read_text()) == {
        "format": 1,
        "models": [{"name": MODEL, "url": upstream.url_for(TARBALL_PATH), "sha256": sha256_of(tarball), "size": tarball.stat().st_size}],
    }
    fresh = clean_env(tmp_path / "ci")
    fresh["ZOO_REGISTRY"] = zoo.env["ZOO_REGISTRY"]
    ok = subprocess.run(zoo.command("fetch", "--lock", str(lock), "--json"), env=fresh, capture_output=True, text=True)
    assert ok.returncode == 0 and json.loads(ok.stdout)["sha256"] == sha256_of(tarball)
    upstream.add(TARBALL_PATH, make_zoo_tarball(tmp_path / "changed", MODEL, size_mb=2.1).read_bytes())
    changed = clean_env(tmp_path / "ci2")
    changed["ZOO_REGISTRY"] = zoo.env["ZOO_REGISTRY"]
    failed = subprocess.run(zoo.command("fetch", "--lock", str(lock)), env=changed, capture_output=True, text=True)
    assert failed.returncode == 6 and "mismatch" in failed.stderr


def test_the_lock_cache_key_is_stable_across_runs_and_machines(zoo: Zoo, tmp_path: Path):
    lock = tmp_path / "zoo.lock"
    assert zoo.run("lock", MODEL, "-o", str(lock)).returncode == 0
    first = zoo.run("lock", "--key", str(lock)).stdout.strip()
    other_machine = clean_env(tmp_path / "elsewhere")
    other_machine["ZOO_REGISTRY"] = zoo.env["ZOO_REGISTRY"]
    reformatted = tmp_path / "copy.lock"
    reformatted.write_text(json.dumps(json.loads(lock.read_text())))
    second = subprocess.run(zoo.command("lock", "--key", str(reformatted)), env=other_machine, capture_output=True, text=True)
    assert first.startswith("zoo-") and len(first) == 36 and second.stdout.strip() == first
    data = json.loads(lock.read_text())
    data["models"][0]["size"] += 1
    lock.write_text(json.dumps(data))
    assert zoo.run("lock", "--key", str(lock)).stdout.strip() != first


def test_jobs_fetch_several_models_at_once(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    second = "ssd_mobilenet_v2_320x320_coco17_tpu-8"
    path = f"/models/{second}.tar.gz"
    upstream.add(path, make_zoo_tarball(tmp_path, second, size_mb=0.5).read_bytes())
    zoo.write_registry([model_entry(upstream), {"name": second, "family": "tf2-detection", "url": upstream.url_for(path), "checkpoint": "checkpoint/ckpt-0"}])
    result = zoo.run("fetch", MODEL, second, "--jobs", "2", "--json")
    assert result.returncode == 0, result.stderr
    assert sorted(json.loads(line)["name"] for line in result.stdout.splitlines()) == sorted([MODEL, second])
    upstream.remove(path)
    zoo.run("cache", "rm", second)
    partial = zoo.run("fetch", second, MODEL, "--jobs", "2", "--json")
    assert partial.returncode == 5
    outcomes = {json.loads(line)["name"]: json.loads(line)["ok"] for line in partial.stdout.splitlines()}
    assert outcomes == {MODEL: True, second: False}


def test_lock_file_names_unknown_models_precisely(zoo: Zoo, tmp_path: Path):
    lock = tmp_path / "zoo.lock"
    lock.write_text(json.dumps({"format": 1, "models": [{"name": "nope", "url": "http://x/y", "sha256": "0" * 64, "size": 1}]}))
    result = zoo.run("fetch", "--lock", str(lock))
    assert result.returncode == 4
    assert result.stderr.strip() == f"zoo: error: {lock}: models[0] (nope): not a model of the registry"


def test_build_from_a_lock_file_checks_its_pins(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    lock = tmp_path / "zoo.lock"
    assert zoo.run("lock", MODEL, "-o", str(lock)).returncode == 0
    built = zoo.run("mirror", "build", str(tmp_path / "mirror"), "--lock", str(lock), "--json")
    assert built.returncode == 0, built.stderr
    assert archive_in(tmp_path / "mirror", upstream).read_bytes() == tarball.read_bytes()
    data = json.loads(lock.read_text())
    data["models"][0]["sha256"] = "0" * 64
    lock.write_text(json.dumps(data))
    refused = zoo.run("mirror", "build", str(tmp_path / "other"), "--lock", str(lock))
    assert refused.returncode == 6 and "sha256 mismatch" in refused.stderr


def test_selecting_models_to_mirror():
    from zoo.catalog import select_models
    from zoo.errors import UsageError
    from zoo.registry import load_registry

    registry = load_registry()
    assert len(select_models(registry, all_models=True)) == 104
    classification = select_models(registry, family="tf2-classification")
    assert {m.family for m in classification} == {"tf2-classification"} and len(classification) == 14
    picked = select_models(registry, ["ssd_resnet50_v1_fpn", MODEL], family="tf2-classification")
    assert [m.name for m in picked].count(MODEL) == 1 and len(picked) == 15
    with pytest.raises(UsageError):
        select_models(registry)
