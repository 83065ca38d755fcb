"""`zoo check` of a config whose checkpoint and records are in an object store.

test_check's world (real TF checkpoints in the zoo's layouts, records, a label
map) is uploaded with fsspec to moto's S3 server and to the GCS emulator
(tests/objectstores.py), and the installed `zoo check` runs against it in a
subprocess: a remote checkpoint must give the findings its local copy gives,
read its index and pipeline.config, and never download a data shard (the
stores' request logs say what was read).
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
import test_check
from conftest import ZOO, clean_env
from objectstores import BUCKET, GcsStore, S3Store, free_port
from test_check import SSD_MOBILENET, SSD_R50, TRAIN_INPUT, World, edit, ready

SHARD = "ckpt-0.data-00000-of-00001"
TRAIN_GLOB = "train-?????-of-00002.tfrecord"
STORES = [pytest.param(S3Store, id="s3"), pytest.param(GcsStore, id="gcs")]
world = test_check.world  # the session's checkpoints, records and label map: uploaded here


@pytest.fixture(scope="module", params=STORES)
def store(request: pytest.FixtureRequest) -> Iterator[S3Store | GcsStore]:
    with request.param() as running:
        yield running


@dataclass(frozen=True)
class Remote:
    """``world.root`` uploaded to ``base`` (a fresh prefix per test)."""

    store: S3Store | GcsStore
    world: World
    base: str  # gs://zoo-stage/<uuid>

    def url(self, path: Path) -> str:
        return f"{self.base}/{path.relative_to(self.world.root).as_posix()}"

    def key(self, path: Path) -> str:
        return self.url(path).split("://", 1)[1]


@pytest.fixture
def remote(store: S3Store | GcsStore, world: World, monkeypatch: pytest.MonkeyPatch) -> Remote:
    for name, value in store.env.items():  # GcsStore.filesystem() sets them here: undone after the test
        monkeypatch.setenv(name, value)
    prefix = uuid.uuid4().hex
    store.filesystem().put(str(world.root), f"{BUCKET}/{prefix}", recursive=True)
    store.clear_log()
    return Remote(store, world, store.url(prefix))


def config(world: World, checkpoint: Path | str, train: Path | str | None = None, template: str = SSD_R50) -> str:
    """test_check's ready config over ``checkpoint`` and, if given, the ``train`` records."""
    doc = ready(world, template, checkpoint)  # type: ignore[arg-type] - a URL is written as given
    return edit(doc, {TRAIN_INPUT: [str(train)]} if train else {}).text


@dataclass(frozen=True)
class Checked:
    returncode: int
    findings: list[dict]

    def ids(self) -> set[str]:
        return {f["id"] for f in self.findings}

    def only(self, finding_id: str) -> dict:
        found = [f for f in self.findings if f["id"] == finding_id]
        assert len(found) == 1, (finding_id, self.findings)
        return found[0]


def zoo_check(tmp_path: Path, text: str, env: dict[str, str] | None = None, *args: str) -> Checked:
    path = tmp_path / f"{uuid.uuid4().hex}.config"
    path.write_text(text)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    done = subprocess.run([str(ZOO), "check", str(path), "--json", *args], env={**clean_env(home), **(env or {})},
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode in (0, 12), (done.returncode, done.stdout, done.stderr)
    return Checked(done.returncode, json.loads(done.stdout.splitlines()[0])["findings"])


def downloads(remote: Remote) -> list[str]:
    """Keys whose bytes were read (S3: GET /bucket/key; GCS: a media download), without the bucket."""
    read = []
    for request in remote.store.requests:
        path, _, query = request.path.partition("?")
        if request.method != "GET":
            continue
        if path.startswith("/download/storage/v1/b/") and "alt=media" in query:
            read.append(unquote(path.split("/o/", 1)[1]))
        elif not path.startswith("/storage/") and path.count("/") > 1:
            read.append(unquote(path.split("/", 2)[2]))
    return read


def comparable(checked: Checked, local: str = "", remote: str = "") -> list[tuple]:
    """Findings, with ``local`` (the checkpoint's directory) spelled as its remote copy."""
    return sorted((f["id"], f["severity"], f["path"], f["line"], f["message"].replace(local, remote),
                   (f["fix"] or "").replace(local, remote), f["trainer_error"]) for f in checked.findings)  # fmt: skip


# -- the same findings as the local copy ----------------------------------------------


def test_a_remote_checkpoint_checks_as_its_local_copy_without_reading_a_shard(remote: Remote, tmp_path: Path):
    world = remote.world
    here = zoo_check(tmp_path, config(world, world.ssd))
    there = zoo_check(tmp_path, config(world, remote.url(world.ssd), remote.url(world.records / TRAIN_GLOB)),
                      remote.store.env)  # fmt: skip
    assert here.returncode == there.returncode == 0, there.findings
    assert "arch-accepted" in there.ids()  # the remote pipeline.config was read and compared
    model_dir = world.ssd.parent.parent
    train = str(world.records / TRAIN_GLOB)
    assert comparable(there) == comparable(here, str(model_dir), remote.url(model_dir))
    assert not [f for f in here.findings if train in f["message"]]  # so the remote glob matched, as locally
    read = downloads(remote)
    assert remote.key(world.ssd.with_name("ckpt-0.index")).split("/", 1)[1] in read
    assert not [key for key in read if ".data-" in key], read


def test_a_directory_instead_of_the_prefix_gets_the_same_finding(remote: Remote, tmp_path: Path):
    world = remote.world
    here = zoo_check(tmp_path, config(world, world.ssd.parent)).only("checkpoint-not-prefix")
    there = zoo_check(tmp_path, config(world, remote.url(world.ssd.parent)), remote.store.env)
    finding = there.only("checkpoint-not-prefix")
    assert finding["fix"] == f'fine_tune_checkpoint: "{remote.url(world.ssd)}"'  # found through the state file
    assert here["fix"] == f'fine_tune_checkpoint: "{world.ssd}"' and finding["severity"] == here["severity"]
    assert there.returncode == 12


def test_a_missing_or_truncated_remote_shard(remote: Remote, tmp_path: Path):
    world = remote.world
    fs, shard = remote.store.filesystem(), remote.key(world.ssd.with_name(SHARD))
    fs.pipe_file(shard, world.ssd.with_name(SHARD).read_bytes()[:100])
    text = config(world, remote.url(world.ssd))
    truncated = zoo_check(tmp_path, text, remote.store.env).only("checkpoint-incomplete")
    assert "runs past the end of the shard (100 bytes): the shard is truncated" in truncated["message"]
    assert truncated["trainer_error"] == "IndexError: Read less bytes than requested"
    fs.rm_file(shard)
    missing = zoo_check(tmp_path, text, remote.store.env)
    url = remote.url(world.ssd.with_name(SHARD))
    assert missing.only("checkpoint-incomplete")["trainer_error"] == f"OpError: {url}; No such file or directory"
    assert missing.returncode == 12


@pytest.mark.parametrize(("checkpoint", "finding_id"), [("classification", "type-mismatch"), ("tf1", "checkpoint-tf1")])
def test_a_checkpoint_of_the_wrong_type(remote: Remote, tmp_path: Path, checkpoint: str, finding_id: str):
    world = remote.world
    prefix = getattr(world, checkpoint)
    here = zoo_check(tmp_path, config(world, prefix)).only(finding_id)
    there = zoo_check(tmp_path, config(world, remote.url(prefix)), remote.store.env).only(finding_id)
    assert there["trainer_error"] == here["trainer_error"] and there["severity"] == here["severity"] == "error"
    assert there["message"] == here["message"].replace(str(prefix), remote.url(prefix))


def test_a_corrupt_remote_index(remote: Remote, tmp_path: Path):
    world = remote.world
    remote.store.filesystem().pipe_file(remote.key(world.ssd.with_name("ckpt-0.index")), b"garbage" * 10)
    finding = zoo_check(tmp_path, config(world, remote.url(world.ssd)), remote.store.env).only("checkpoint-unreadable")
    assert finding["message"].startswith(remote.url(world.ssd.with_name("ckpt-0.index")))
    assert finding["trainer_error"] == "OpError: not an sstable (bad magic number)"


def test_a_state_file_naming_a_key_outside_is_not_followed(remote: Remote, tmp_path: Path):
    world = remote.world
    state = remote.key(world.ssd.with_name("checkpoint"))
    remote.store.filesystem().pipe_file(state, b'model_checkpoint_path: "../../../elsewhere/ckpt-0"\n')
    remote.store.clear_log()
    checked = zoo_check(tmp_path, config(world, remote.url(world.ssd.parent)), remote.store.env)
    finding = checked.only("checkpoint-not-prefix")
    assert finding["fix"] == f'fine_tune_checkpoint: "{remote.url(world.ssd)}"'  # the checkpoint beside it
    assert not [r for r in remote.store.requests if "elsewhere" in unquote(r.path)]


def test_a_config_for_another_backbone(remote: Remote, tmp_path: Path):
    world = remote.world
    text = config(world, remote.url(world.ssd), template=SSD_MOBILENET)
    finding = zoo_check(tmp_path, text, remote.store.env).only("extractor-mismatch")
    assert "ssd_mobilenet_v2_fpn_keras" in finding["message"] and "ssd_resnet50_v1_fpn_keras" in finding["message"]
    assert remote.url(world.ssd.parent.parent / "pipeline.config") in finding["message"]


def test_a_remote_glob_without_match(remote: Remote, tmp_path: Path):
    world = remote.world
    pattern = remote.url(world.records / "nothing-*.tfrecord")
    finding = zoo_check(tmp_path, config(world, world.ssd, pattern), remote.store.env).only("input-no-match")
    assert finding["severity"] == "error" and f"{pattern!r} matches no file" == finding["message"]
    one = remote.url(world.records / "val.tfrecord")  # a plain name, no wildcard
    assert "input-no-match" not in zoo_check(tmp_path, config(world, world.ssd, one), remote.store.env).ids()


# -- what the store needs, said instead of a crash --------------------------------------


def unreachable(tmp_path: Path, world: World, checkpoint: str, env: dict[str, str]) -> dict:
    checked = zoo_check(tmp_path, config(world, checkpoint), env)
    assert checked.returncode == 0  # a warning: training may run where the store can be read
    finding = checked.only("remote-unreachable")
    assert finding["severity"] == "warning" and finding["message"].startswith(f"not checked: {checkpoint}: ")
    return finding


def test_a_store_without_its_backend_names_the_package(world: World, tmp_path: Path):
    hidden = tmp_path / "hidden"
    (hidden / "gcsfs").mkdir(parents=True)
    (hidden / "gcsfs" / "__init__.py").write_text("raise ImportError('gcsfs hidden by the test')\n")
    gcs = unreachable(tmp_path, world, "gs://bucket/model/checkpoint/ckpt-0", {"PYTHONPATH": str(hidden)})
    assert gcs["fix"] == "pip install 'tfod-zoo[gcs]'" and "install gcsfs" in gcs["message"]
    try:
        import adlfs  # noqa: F401
    except ImportError:
        azure = unreachable(tmp_path, world, "az://container/model/checkpoint/ckpt-0", {})
        assert azure["fix"] == "pip install 'tfod-zoo[azure]'"


def test_missing_credentials_name_the_variables(world: World, tmp_path: Path):
    with S3Store() as store:
        env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_ENDPOINT_URL": store.env["AWS_ENDPOINT_URL"],
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
               "AWS_CONFIG_FILE": os.devnull}  # fmt: skip
        finding = unreachable(tmp_path, world, store.url("model/checkpoint/ckpt-0"), env)
    assert finding["fix"] == "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
    assert "no credentials" in finding["message"]


def test_a_store_that_does_not_answer_is_asked_once(world: World, tmp_path: Path):
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}", "AWS_MAX_ATTEMPTS": "1"}  # fmt: skip
    checkpoint, records = "s3://zoo-stage/model/checkpoint/ckpt-0", "s3://zoo-stage/records/train-*"
    checked = zoo_check(tmp_path, config(world, checkpoint, records), env)
    assert checked.returncode == 0 and not [f for f in checked.findings if f["severity"] == "error"]
    first, second = sorted((f for f in checked.findings if f["id"] == "remote-unreachable"), key=lambda f: f["line"])
    assert first["message"].startswith(f"not checked: {checkpoint}: the store failed: ")
    assert second["message"] == f"not checked: {records}: not asked, as s3://zoo-stage failed for {checkpoint}"
    assert first["fix"] == second["fix"] == "check the network and the store's address, then run zoo check again"


@pytest.mark.timeout(300)
def test_a_remote_model_dir_is_checked_for_resumption_and_clashes(remote: Remote, tmp_path: Path):
    """A TPU trains into a gs:// model_dir: one that holds a training checkpoint
    resumes from it, and the checkpoint's own directory is refused, as locally."""
    from zoo_checkpoints import training_checkpoint

    world = remote.world
    training_checkpoint(tmp_path / "run", step=500)
    run_url = f"{remote.base}/run"
    remote.store.filesystem().put(str(tmp_path / "run"), run_url.split("://", 1)[1], recursive=True)
    text = config(world, remote.url(world.ssd))
    resumes = zoo_check(tmp_path, text, remote.store.env, "--model-dir", run_url)
    assert "ckpt-0 (step 500)" in resumes.only("model-dir-resumes")["message"]
    assert run_url in resumes.only("model-dir-resumes")["message"]
    fresh = zoo_check(tmp_path, text, remote.store.env, "--model-dir", f"{remote.base}/fresh")
    assert not {"model-dir-resumes", "model-dir-unreadable", "remote-unreachable"} & fresh.ids()
    same = zoo_check(tmp_path, text, remote.store.env, "--model-dir", remote.url(world.ssd.parent))
    assert same.returncode == 12 and same.only("model-dir-is-checkpoint-dir")["severity"] == "error"
