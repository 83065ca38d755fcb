"""Mirrors, bundles and lock files: the air-gapped and CI paths, end to end."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
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
    canary = tmp_path / "canary"
    canary.write_bytes(b"mine")
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
    # The bundle is unpacked in <cache>/tmp/<staging>/bundle: two levels up is <cache>/tmp.
    assert not (tmp_path / "other" / "cache" / "tmp" / "escape").exists()
    assert canary.read_bytes() == b"mine"


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


# -- broken mirror indexes ------------------------------------------------------------


class _AnswerEverything(BaseHTTPRequestHandler):
    """A proxy or single-page app: 200 and the same body for every path."""

    protocol_version = "HTTP/1.0"
    body_size = 0  # 0: a small HTML page; otherwise that many zero bytes

    def do_GET(self) -> None:
        size = self.body_size or len(HTML)
        self.send_response(200)
        self.send_header("Content-Type", "text/html" if not self.body_size else "application/json")
        self.send_header("Content-Length", str(size))
        self.end_headers()
        if not self.body_size:
            self.wfile.write(HTML)
            return
        with contextlib.suppress(ConnectionError):
            for start in range(0, size, 1 << 20):
                self.wfile.write(bytes(min(1 << 20, size - start)))

    def log_message(self, format: str, *args: object) -> None:
        pass


HTML = b"<!doctype html><html><body><div id=app></div></body></html>"


@contextlib.contextmanager
def answering_everything(body_size: int = 0) -> Iterator[str]:
    handler = type("Handler", (_AnswerEverything,), {"body_size": body_size})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def lines_naming(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.mark.timeout(300)
def test_a_mirror_answering_every_path_with_html_is_skipped(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    good = tmp_path / "mirror"
    build(zoo, str(good))
    with answering_everything() as spa:
        through_next = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=f"{spa},{good}", ZOO_MIRROR_ONLY="1")
        assert through_next.returncode == 0, through_next.stderr
        assert json.loads(through_next.stdout)["url"].startswith(str(good))
        warned = lines_naming(through_next.stderr, spa)
        assert len(warned) == 1 and "not a valid mirror index" in warned[0] and "skipping this mirror" in warned[0]
        assert zoo.run("cache", "rm", MODEL).returncode == 0
        through_upstream = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=spa)
    assert through_upstream.returncode == 0, through_upstream.stderr
    assert json.loads(through_upstream.stdout)["sha256"] == sha256_of(tarball)
    assert json.loads(through_upstream.stdout)["url"] == upstream.url_for(TARBALL_PATH)
    assert len(lines_naming(through_upstream.stderr, spa)) == 1


@pytest.mark.timeout(300)
def test_an_oversized_index_over_http_is_skipped(zoo: Zoo, upstream: FileServer, tarball: Path):
    with answering_everything(body_size=(64 << 20) + 1) as huge:
        result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=huge)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["url"] == upstream.url_for(TARBALL_PATH)
    warned = lines_naming(result.stderr, huge)
    assert len(warned) == 1 and "larger than 64 MiB" in warned[0]


@pytest.mark.timeout(300)
@pytest.mark.parametrize("kind", ["not json", "a FIFO", "too large"])
def test_a_broken_local_index_is_skipped(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path, kind: str):
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    index = mirror / INDEX
    if kind == "not json":
        index.write_text("<html></html>")
    elif kind == "a FIFO":
        os.mkfifo(index)  # reading it the old way waits for a writer forever
    else:
        with open(index, "wb") as handle:
            handle.truncate((64 << 20) + 1)
    result = zoo.run("fetch", MODEL, "--json", ZOO_MIRROR=str(mirror))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["url"] == upstream.url_for(TARBALL_PATH)
    warned = lines_naming(result.stderr, str(index))
    assert len(warned) == 1 and warned[0].endswith("skipping this mirror")


def test_a_mirror_index_is_read_again_after_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from zoo import sources
    from zoo.settings import Settings
    from zoo.sources import Pin

    monkeypatch.setattr(sources, "INDEX_TTL", 0.5)
    root = tmp_path / "mirror"
    root.mkdir()
    upstream_url = "https://download.example.com/models/a.tar.gz"
    settings = Settings(cache_dir=tmp_path / "cache", mirrors=(str(root),))
    assert [s.pin for s in sources.plan_sources(upstream_url, Pin(), settings)] == [Pin(), Pin()]
    index = sources.MirrorIndex({mirror_relative(upstream_url): sources.MirrorFile(upstream_url, "a" * 64, 7)})
    (root / INDEX).write_text(index.to_json())
    # Within the time an index is reused, the mirror still has none ...
    assert sources.plan_sources(upstream_url, Pin(), settings)[0].pin == Pin()
    time.sleep(0.6)
    # ... and after it, the index it gained pins what it serves.
    assert sources.plan_sources(upstream_url, Pin(), settings)[0].pin == Pin("a" * 64, 7)


# -- object-store builds --------------------------------------------------------------


def s3_objects(env: dict[str, str]) -> dict[str, bytes]:
    import boto3

    client = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
    keys = [o["Key"] for o in client.list_objects_v2(Bucket="zoo-mirror").get("Contents", [])]
    return {key: client.get_object(Bucket="zoo-mirror", Key=key)["Body"].read() for key in keys}


def assert_complete_s3_mirror(zoo: Zoo, upstream: FileServer, tarball: Path, env: dict[str, str]) -> None:
    objects = s3_objects(env)
    archive = objects["team/" + mirror_relative(upstream.url_for(TARBALL_PATH))]
    assert len(archive) == tarball.stat().st_size and sha256_of_bytes(archive) == sha256_of(tarball)
    assert not any(".part" in key for key in objects)
    verified = zoo.run("mirror", "verify", "s3://zoo-mirror/team", **env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def s3_build(zoo: Zoo, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(zoo.command("mirror", "build", "s3://zoo-mirror/team", MODEL), env={**zoo.env, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


@pytest.mark.timeout(300)
def test_two_s3_builds_at_once_both_complete(zoo: Zoo, upstream: FileServer, tarball: Path, s3: dict[str, str]):
    upstream.throttle(TARBALL_PATH, 1024 * 1024)
    builders = [s3_build(zoo, s3) for _ in range(2)]
    outcomes = [(b.wait(timeout=240), b.stderr.read() if b.stderr else "") for b in builders]
    assert [code for code, _ in outcomes] == [0, 0], outcomes
    assert_complete_s3_mirror(zoo, upstream, tarball, s3)


@pytest.mark.timeout(300)
def test_cache_prune_during_an_s3_build_keeps_its_scratch(zoo: Zoo, upstream: FileServer, tarball: Path, s3: dict[str, str]):
    upstream.throttle(TARBALL_PATH, 512 * 1024)
    builder = s3_build(zoo, s3)
    while not list(zoo.cache.glob("tmp/*/*.part")):  # the download is under way
        assert builder.poll() is None, builder.stderr.read() if builder.stderr else ""
        time.sleep(0.05)
    pruned = zoo.run("cache", "prune")
    assert pruned.returncode == 0, pruned.stderr
    assert builder.wait(timeout=240) == 0, builder.stderr.read() if builder.stderr else ""
    assert_complete_s3_mirror(zoo, upstream, tarball, s3)
