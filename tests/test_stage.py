"""Staging a model in an object store (`zoo fetch --to`, `zoo config
--checkpoint-root`, `zoo.stage`): moto's S3 server and the GCS emulator on
127.0.0.1, behind proxies that log every request, and a local directory."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import crc32c
import pytest

from conftest import CONFIG_PATH, MODEL, SAMPLE_CONFIGS, TARBALL_PATH, Zoo, clean_env, model_entry
from httpserver import FileServer
from objectstores import GcsStore, S3Store
from tarballs import make_zoo_tarball
from zoo.config.textproto import parse_file

MARKER = ".zoo-staged.json"
STAGED = ["checkpoint/checkpoint", "checkpoint/ckpt-0.data-00000-of-00001", "checkpoint/ckpt-0.index",
          "pipeline.config", "sample.config"]  # fmt: skip
SHARD = "checkpoint/ckpt-0.data-00000-of-00001"


@pytest.fixture(params=[S3Store, GcsStore], ids=["s3", "gcs"])
def store(request: pytest.FixtureRequest) -> Iterator[S3Store | GcsStore]:
    with request.param() as running:
        yield running


def stage(zoo: Zoo, store: S3Store | GcsStore, *args: str, prefix: str = "runs") -> subprocess.CompletedProcess[str]:
    return zoo.run("fetch", MODEL, "--to", store.url(prefix), *args, **store.env)


def staged_json(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def cache_files(zoo: Zoo) -> dict[str, Path]:
    """The cached files each staged object must equal, by staged path."""
    entry = zoo.cache / "models" / MODEL
    top = entry / "files" / MODEL
    return {path: (entry / "sample.config" if path == "sample.config" else top / path) for path in STAGED}


def remote_objects(store: S3Store | GcsStore, prefix: str = "runs") -> dict[str, bytes]:
    fs = store.filesystem()
    base = f"zoo-stage/{prefix}/{MODEL}"
    return {path[len(base) + 1:]: fs.cat_file(path) for path in fs.find(base)}


def upload_paths(store: S3Store | GcsStore) -> list[str]:
    return [request.path for request in store.uploads()]


def assert_staged_as_cached(zoo: Zoo, store: S3Store | GcsStore, prefix: str = "runs") -> dict:
    objects = remote_objects(store, prefix)
    assert sorted(objects) == sorted([*STAGED, MARKER])  # no saved_model/, no archive
    for path, source in cache_files(zoo).items():
        assert objects[path] == source.read_bytes(), path
    return json.loads(objects[MARKER])


def test_fetch_to_stages_the_verified_model_and_prints_the_remote_prefix(zoo: Zoo, store: S3Store | GcsStore):
    result = stage(zoo, store)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == store.url(f"runs/{MODEL}/checkpoint/ckpt-0")
    marker = assert_staged_as_cached(zoo, store)
    entry = json.loads((zoo.cache / "models" / MODEL / "zoo-entry.json").read_text())
    assert (marker["format"], marker["model"], marker["sha256"]) == (1, MODEL, entry["sha256"])
    assert marker["checkpoint"] == "checkpoint/ckpt-0"
    for item in marker["files"]:
        data = cache_files(zoo)[item["path"]].read_bytes()
        assert (item["size"], item["crc32c"], item["md5"]) == (len(data), f"{crc32c.crc32c(data):08x}", hashlib.md5(data).hexdigest())
    assert [item["path"] for item in marker["files"]] == STAGED
    if isinstance(store, S3Store):  # an S3 PUT names its object: the marker is the last one written
        assert upload_paths(store)[-1].endswith(f"/{MODEL}/{MARKER}")


def test_a_second_stage_uploads_nothing_and_keeps_the_marker(zoo: Zoo, store: S3Store | GcsStore):
    first = staged_json(stage(zoo, store, "--json"))
    assert (first["uploaded"], first["skipped"]) == (len(STAGED), 0)
    marker = store.filesystem().cat_file(f"zoo-stage/runs/{MODEL}/{MARKER}")
    store.clear_log()
    again = staged_json(stage(zoo, store, "--json"))
    assert store.uploads() == []
    assert (again["uploaded"], again["skipped"], again["uploaded_bytes"]) == (0, len(STAGED), 0)
    assert again["skipped_bytes"] == first["uploaded_bytes"] == sum(p.stat().st_size for p in cache_files(zoo).values())
    assert again["checkpoint"] == store.url(f"runs/{MODEL}/checkpoint/ckpt-0")
    assert store.filesystem().cat_file(f"zoo-stage/runs/{MODEL}/{MARKER}") == marker


def test_a_corrupted_object_of_the_same_size_is_detected_and_replaced(zoo: Zoo, store: S3Store | GcsStore):
    assert stage(zoo, store).returncode == 0
    fs = store.filesystem()
    shard = f"zoo-stage/runs/{MODEL}/{SHARD}"
    size = len(fs.cat_file(shard))
    fs.pipe_file(shard, b"\xff" * size)
    store.clear_log()
    again = staged_json(stage(zoo, store, "--json"))
    assert again["uploaded"] == 1 and again["uploaded_bytes"] == size
    assert len(store.uploads()) == 2  # the shard, then the marker again
    assert_staged_as_cached(zoo, store)


def test_a_stage_without_its_marker_is_verified_and_completed(zoo: Zoo, store: S3Store | GcsStore):
    assert stage(zoo, store).returncode == 0
    fs = store.filesystem()
    fs.rm_file(f"zoo-stage/runs/{MODEL}/{MARKER}")
    fs.rm_file(f"zoo-stage/runs/{MODEL}/checkpoint/ckpt-0.index")
    store.clear_log()
    again = staged_json(stage(zoo, store, "--json"))
    assert again["uploaded"] == 1 and again["skipped"] == len(STAGED) - 1
    assert len(store.uploads()) == 2  # the index and the marker, nothing else
    if isinstance(store, S3Store):
        assert [p.split("?")[0] for p in upload_paths(store)] == [
            f"/zoo-stage/runs/{MODEL}/checkpoint/ckpt-0.index", f"/zoo-stage/runs/{MODEL}/{MARKER}"]
    assert_staged_as_cached(zoo, store)


def test_a_marker_that_vouches_for_tampered_objects_is_not_trusted(zoo: Zoo, store: S3Store | GcsStore):
    """The cache's bytes are the reference: a marker rewritten to match a
    replaced object does not make that object staged."""
    assert stage(zoo, store).returncode == 0
    fs = store.filesystem()
    base = f"zoo-stage/runs/{MODEL}"
    tampered = bytearray(fs.cat_file(f"{base}/{SHARD}"))
    tampered[-1] ^= 0xFF
    fs.pipe_file(f"{base}/{SHARD}", bytes(tampered))
    marker = json.loads(fs.cat_file(f"{base}/{MARKER}"))
    for item in marker["files"]:
        if item["path"] == SHARD:
            item.update(crc32c=f"{crc32c.crc32c(bytes(tampered)):08x}", md5=hashlib.md5(tampered).hexdigest())
    fs.pipe_file(f"{base}/{MARKER}", json.dumps(marker).encode())
    again = staged_json(stage(zoo, store, "--json"))
    assert again["uploaded"] == 1
    assert_staged_as_cached(zoo, store)


@pytest.mark.parametrize(
    ("marker", "note"),
    [(b"{not json", "not valid JSON"), (b"[1, 2]", "no format number"), (b" " * (1 << 20) + b"{}", "larger than"),
     (json.dumps({"format": 1, "files": [{"path": "../../x", "size": 1, "crc32c": "0" * 8, "md5": "0" * 32}]}).encode(),
      "file list is malformed")],
    ids=["invalid-json", "no-format", "too-large", "hostile-path"],
)  # fmt: skip
def test_an_unreadable_marker_is_reported_and_the_stage_verified_again(zoo: Zoo, marker: bytes, note: str):
    with S3Store() as store:
        assert stage(zoo, store).returncode == 0
        store.filesystem().pipe_file(f"zoo-stage/runs/{MODEL}/{MARKER}", marker)
        store.clear_log()
        again = stage(zoo, store, "--json")
        assert note in again.stderr and "verifying every object" in again.stderr
        assert staged_json(again)["uploaded"] == 0
        assert upload_paths(store) == [f"/zoo-stage/runs/{MODEL}/{MARKER}"]  # the marker alone, rewritten
        assert_staged_as_cached(zoo, store)


def test_a_newer_zoos_marker_is_left_alone(zoo: Zoo):
    with GcsStore() as store:
        assert stage(zoo, store).returncode == 0
        store.filesystem().pipe_file(f"zoo-stage/runs/{MODEL}/{MARKER}", b'{"format": 2, "files": []}')
        store.clear_log()
        refused = stage(zoo, store)
        assert refused.returncode == 1 and store.uploads() == []
        assert refused.stderr.strip().splitlines()[-1] == (
            f"zoo: error: {store.url(f'runs/{MODEL}/{MARKER}')}: written by a newer zoo (marker format 2); "
            "upgrade zoo or stage to another prefix")  # fmt: skip


# -- an interrupted stage ----------------------------------------------------------------


@pytest.fixture(scope="module")
def big_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = (SAMPLE_CONFIGS / f"{MODEL}.config").read_text()
    return make_zoo_tarball(tmp_path_factory.mktemp("big"), MODEL, config_text=config, size_mb=48)


@pytest.fixture
def big_zoo(tmp_path: Path, server: FileServer, big_tarball: Path) -> Zoo:
    server.add(TARBALL_PATH, big_tarball.read_bytes())
    server.add(CONFIG_PATH, (SAMPLE_CONFIGS / f"{MODEL}.config").read_bytes())
    runner = Zoo(tmp_path, clean_env(tmp_path))
    runner.write_registry([model_entry(server)])
    runner.env["ZOO_REGISTRY"] = str(runner.registry)
    return runner


def test_a_stage_killed_mid_upload_claims_nothing_and_resumes_per_file(big_zoo: Zoo):
    assert big_zoo.run("fetch", MODEL).returncode == 0
    with S3Store() as store:
        big_zoo.env.update(store.env)
        process = big_zoo.popen("fetch", MODEL, "--to", store.url("runs"), "--jobs", "1")
        # One file at a time, in path order: once the first is in, the 48 MB shard is on its way.
        deadline = time.monotonic() + 60
        while not store.uploads() and time.monotonic() < deadline:
            time.sleep(0.005)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        done = remote_objects(store)
        assert MARKER not in done and "checkpoint/checkpoint" in done
        store.clear_log()
        again = big_zoo.run("fetch", MODEL, "--to", store.url("runs"), "--json")
        row = staged_json(again)
        assert "checkpoint/checkpoint" not in {p.split("?")[0].rsplit(f"{MODEL}/", 1)[1] for p in upload_paths(store)}
        assert row["skipped"] >= 1 and row["uploaded"] + row["skipped"] == len(STAGED)
        assert_staged_as_cached(big_zoo, store)


# -- zoo config, the Python API, a directory -------------------------------------------


def test_config_checkpoint_root_stages_and_writes_the_remote_prefix(zoo: Zoo, store: S3Store | GcsStore, tmp_path: Path):
    out = tmp_path / "pipeline.config"
    result = zoo.run("config", "ssd_resnet50_v1_fpn", "--checkpoint-root", store.url("tpu"), "-o", str(out),
                     **store.env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    prefix = store.url(f"tpu/{MODEL}/checkpoint/ckpt-0")
    assert parse_file(out).get("train_config.fine_tune_checkpoint") == prefix
    assert f"fine_tune_checkpoint {prefix}" in result.stderr
    assert_staged_as_cached(zoo, store, "tpu")


def test_the_python_api_stages_and_restages_nothing(zoo: Zoo, monkeypatch: pytest.MonkeyPatch):
    import zoo as library

    settings = library.Settings.from_env(env=zoo.env)
    with GcsStore() as store:
        for key, value in store.env.items():
            monkeypatch.setenv(key, value)
        first = library.stage("ssd_resnet50_v1_fpn", store.url("api") + "/", settings=settings)
        assert isinstance(first, library.StageResult)
        assert (first.name, first.checkpoint) == (MODEL, store.url(f"api/{MODEL}/checkpoint/ckpt-0"))
        assert sorted(first.uploaded) == STAGED and first.config == store.url(f"api/{MODEL}/pipeline.config")
        store.clear_log()
        again = library.stage(MODEL, store.url("api"), settings=settings, jobs=1)
        assert again.uploaded == () and sorted(again.skipped) == STAGED and store.uploads() == []


def local_tree(root: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(root)): (p.stat().st_ino, p.read_bytes()) for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_directory_destination_is_written_through_renames_never_through_a_symlink(zoo: Zoo, tmp_path: Path):
    dest = tmp_path / "shared"
    outside = tmp_path / "outside.config"
    outside.write_text("not zoo's\n")
    (dest / MODEL).mkdir(parents=True)
    (dest / MODEL / "pipeline.config").symlink_to(outside)
    first = staged_json(zoo.run("fetch", MODEL, "--to", f"file://{dest}", "--json"))
    assert first["checkpoint"] == f"{dest}/{MODEL}/checkpoint/ckpt-0" and first["uploaded"] == len(STAGED)
    assert outside.read_text() == "not zoo's\n" and not (dest / MODEL / "pipeline.config").is_symlink()
    tree = local_tree(dest / MODEL)
    assert sorted(tree) == sorted([*STAGED, MARKER])
    for path, source in cache_files(zoo).items():
        assert tree[path][1] == source.read_bytes()
    again = staged_json(zoo.run("fetch", MODEL, "--to", str(dest), "--json"))
    assert again["uploaded"] == 0 and local_tree(dest / MODEL) == tree  # same inodes: nothing rewritten
    shard = dest / MODEL / SHARD
    shard.write_bytes(b"\0" * shard.stat().st_size)
    fixed = staged_json(zoo.run("fetch", MODEL, "--to", str(dest), "--json"))
    assert fixed["uploaded"] == 1 and shard.read_bytes() == cache_files(zoo)[SHARD].read_bytes()


def test_a_symlinked_model_directory_is_refused(zoo: Zoo, tmp_path: Path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / MODEL).symlink_to(elsewhere)
    refused = zoo.run("fetch", MODEL, "--to", str(tmp_path / "dest"))
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert line.endswith("(through a symlink); refused")
    assert list(elsewhere.iterdir()) == []


# -- bad destinations, missing backends and credentials ---------------------------------


@pytest.mark.parametrize(
    ("dest", "message"),
    [("http://example.com/models", "not over HTTP"), ("gs://", "no bucket"), ("s3:///prefix", "no bucket"),
     ("gs://bucket/../other", "not a plain relative"), ("gs://bucket/a//b", "not a plain relative"),
     ("s3://bucket/p?versionId=1", "no query or fragment"), ("nosuchproto://bucket/p", "is not a store fsspec knows"),
     ("az://container/prefix", "pip install 'tfod-zoo[azure]'")],
)  # fmt: skip
def test_a_bad_destination_is_a_usage_error_before_any_download(zoo: Zoo, upstream: FileServer, dest: str, message: str):
    result = zoo.run("fetch", MODEL, "--to", dest)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("zoo: error: ") and message in line
    assert upstream.requests == [] and zoo.published() == []


def test_missing_credentials_name_the_variables_with_their_own_exit_code(zoo: Zoo):
    with S3Store() as store:
        env = {**store.env, "AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}  # fmt: skip
        result = zoo.run("fetch", MODEL, "--to", store.url("runs"), **env)
        assert result.returncode == 13, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"zoo: error: {store.url('runs')}/{MODEL}: access denied or no credentials")
        assert "AWS_ACCESS_KEY_ID" in line and "AWS_PROFILE" in line
        assert store.uploads() == []


def test_a_multipart_object_is_verified_by_the_etag_computed_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from zoo.stage import PART_SIZE, FsspecTarget, LocalFile, digest_file, reported_match

    source = tmp_path / "shard"
    source.write_bytes(os.urandom(2 * PART_SIZE + (1 << 20)))
    other = tmp_path / "other"
    other.write_bytes(source.read_bytes()[:-1] + b"\0")
    with S3Store() as store:
        for key, value in store.env.items():
            monkeypatch.setenv(key, value)
        target = FsspecTarget(store.url("multipart"), MODEL)
        target.put(source, "shard")
        info = target.info("shard")
        assert info["ETag"].strip('"').endswith("-3")  # three parts, not one PUT
        assert reported_match(info, digest_file(LocalFile("shard", source, source.stat().st_size), target.multipart)) is True
        assert reported_match(info, digest_file(LocalFile("shard", other, other.stat().st_size), target.multipart)) is False


def test_checkpoint_root_stages_zoo_models_not_checkpoint_paths(zoo: Zoo):
    prefix = zoo.run("fetch", MODEL).stdout.strip()
    refused = zoo.run("config", prefix, "--checkpoint-root", "gs://bucket/zoo")
    assert refused.returncode == 2
    (line,) = refused.stderr.splitlines()
    assert line == (f"zoo: error: --checkpoint-root stages a zoo model; {prefix} is a checkpoint path "
                    "(copy it to the store yourself and pass that config with --from)")  # fmt: skip


# -- the README's commands ----------------------------------------------------------------


def readme_block(heading: str) -> str:
    """The first ```sh block below ``heading`` in the README."""
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = text[text.index(heading):]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


@pytest.mark.timeout(300)
def test_the_readme_tpu_commands_run_against_cloud_storage(zoo: Zoo, tmp_path: Path):
    """Every `zoo` line of "Staging a model in an object store", with the GCS
    emulator's bucket for gs://my-bucket; a line that is not a command is the
    output the command before it prints."""
    import shlex

    block = readme_block("### Staging a model in an object store")
    with GcsStore() as store:
        block = block.replace("gs://my-bucket", store.url())
        fs = store.filesystem()
        for name in ("train-00000-of-00002", "train-00001-of-00002", "val.tfrecord"):
            fs.pipe_file(f"zoo-stage/data/{name}", b"records")
        (tmp_path / "label_map.pbtxt").write_text('item { id: 1 name: "cat" }\nitem { id: 2 name: "dog" }\n')
        commands = 0
        previous: subprocess.CompletedProcess[str] | None = None
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip() if line.startswith("pip ") else line.strip()
            if line.startswith("pip "):
                continue  # the test environment has the extra installed
            if not line.startswith("zoo "):
                assert previous is not None and previous.stdout.strip() == line, (line, previous)
                continue
            previous = subprocess.run(zoo.command(*shlex.split(line)[1:]), cwd=tmp_path, env={**zoo.env, **store.env},
                                      capture_output=True, text=True, timeout=240)  # fmt: skip
            assert previous.returncode == 0, (line, previous.stderr)
            commands += 1
        assert commands == 3
        assert "remote-unreachable" not in previous.stdout + previous.stderr, previous.stdout + previous.stderr
        written = parse_file(tmp_path / "pipeline.config")
        assert written.get("train_config.fine_tune_checkpoint") == store.url(f"zoo/{MODEL}/checkpoint/ckpt-0")
