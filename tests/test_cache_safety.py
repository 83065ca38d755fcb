"""The cache against hostile names, planted symlinks, concurrent work, newer
markers and power loss; and --jobs reporting the first failure in argument order."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODEL, Zoo, model_entry
from httpserver import FileServer


def canary(directory: Path) -> Path:
    """A file outside zoo's directories that no zoo command may touch."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "keep.txt").write_text("precious")
    return directory


def entry_dir(zoo: Zoo) -> Path:
    return zoo.cache / "models" / MODEL


def shard(zoo: Zoo) -> Path:
    return entry_dir(zoo) / "files" / MODEL / "checkpoint" / "ckpt-0.data-00000-of-00001"


def fetched(zoo: Zoo) -> dict:
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.timeout(300)
def test_cache_rm_refuses_anything_but_a_model_name(zoo: Zoo):
    fetched(zoo)
    beside = canary(zoo.home / "precious")
    absolute = canary(zoo.home / "absolute")
    for name in ("../../precious", "..", str(absolute), f"{MODEL}/files", "."):
        result = zoo.run("cache", "rm", name)
        assert result.returncode == 3, (name, result.stdout, result.stderr)
        assert result.stderr.startswith(f"zoo: error: unknown model {name!r}") and len(result.stderr.splitlines()) == 1
        assert "removed" not in result.stdout
    assert (beside / "keep.txt").read_text() == "precious"
    assert (absolute / "keep.txt").read_text() == "precious"
    assert not Path(f"{absolute}.lock").exists()
    assert zoo.published() == [MODEL] and shard(zoo).is_file()
    assert fetched(zoo)["from_cache"] is True


def test_rm_suggests_models_and_still_takes_aliases_and_cached_names(zoo: Zoo):
    fetched(zoo)
    typo = zoo.run("cache", "rm", "ssd_resnet50_v1_fpm")
    assert typo.returncode == 3 and "did you mean: ssd_resnet50_v1_fpn" in typo.stderr
    # A cached model the registry no longer lists can still be removed by its name.
    entry_dir(zoo).rename(zoo.cache / "models" / "retired_model")
    removed = zoo.run("cache", "rm", "retired_model")
    assert removed.returncode == 0 and removed.stdout.startswith("removed retired_model")
    assert zoo.published() == []


def test_the_cache_itself_refuses_names_that_are_paths(tmp_path: Path):
    from zoo.cache import Cache
    from zoo.errors import UnknownModelError

    cache = Cache(tmp_path / "cache")
    for bad in ("..", "../x", "/etc", "a/b", ""):
        with pytest.raises(UnknownModelError):
            cache.entry_dir(bad)
        with pytest.raises(UnknownModelError):
            cache.partial_path(bad, "http://host/x.tar.gz")
        with pytest.raises(UnknownModelError), cache.lock(bad):
            pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("sub", ["tmp", "downloads"])
def test_prune_refuses_a_symlinked_cache_directory(zoo: Zoo, sub: str):
    target = canary(zoo.home / "elsewhere")
    fetched(zoo)
    shutil.rmtree(zoo.cache / sub, ignore_errors=True)
    (zoo.cache / sub).symlink_to(target)
    result = zoo.run("cache", "prune")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"zoo: error: {zoo.cache / sub} is a symlink; zoo will not write through it (remove it and run again)"
    )
    assert (target / "keep.txt").read_text() == "precious"


def test_a_cache_hit_needs_its_checkpoint_files(zoo: Zoo):
    fetched(zoo)
    shard(zoo).unlink()
    result = zoo.run("fetch", MODEL, "--json")
    assert result.returncode == 0 and f"zoo: {MODEL}: files of the cached entry are missing; fetching it again" in result.stderr
    again = json.loads(result.stdout)
    assert again["from_cache"] is False and Path(again["checkpoint"] + ".index").is_file()
    assert shard(zoo).is_file()
    shutil.rmtree(entry_dir(zoo) / "files")
    assert fetched(zoo)["from_cache"] is False and shard(zoo).is_file()
    (entry_dir(zoo) / "sample.config").unlink()
    assert fetched(zoo)["from_cache"] is False and (entry_dir(zoo) / "sample.config").is_file()
    assert fetched(zoo)["from_cache"] is True


HOLD_STAGING = (
    "import sys, time\n"
    "from pathlib import Path\n"
    "from zoo.cache import Cache\n"
    "with Cache(Path(sys.argv[1])).staging('bundle') as path:\n"
    "    (path / 'half.bin').write_bytes(b'x')\n"
    "    print(path, flush=True)\n"
    "    time.sleep(600)\n"
)


@pytest.mark.timeout(120)
def test_prune_leaves_a_staging_directory_in_use(zoo: Zoo):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_STAGING, str(zoo.cache)], stdout=subprocess.PIPE, text=True, env=zoo.env
    )
    try:
        staged = Path(holder.stdout.readline().strip())
        assert staged.parent == zoo.cache / "tmp"
        pruned = zoo.run("cache", "prune")
        assert pruned.returncode == 0 and pruned.stdout == ""
        assert (staged / "half.bin").is_file()
    finally:
        holder.send_signal(signal.SIGKILL)  # dies like a crash: the directory stays, its lock goes
        holder.wait()
    assert staged.is_dir()
    assert zoo.run("cache", "prune").stdout == f"removed {staged}\n"
    assert not staged.exists()


def test_a_marker_with_unknown_keys_still_serves(zoo: Zoo):
    fetched(zoo)
    marker = entry_dir(zoo) / "zoo-entry.json"
    data = json.loads(marker.read_text())
    marker.write_text(json.dumps({**data, "signed_by": "a later zoo"}))
    assert MODEL in zoo.run("cache", "ls").stdout
    assert zoo.run("cache", "prune").stdout == ""
    assert fetched(zoo)["from_cache"] is True


def test_a_newer_marker_is_refused_and_never_deleted(zoo: Zoo):
    fetched(zoo)
    marker = entry_dir(zoo) / "zoo-entry.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "format": 9}))
    before = sorted(p.relative_to(zoo.cache) for p in entry_dir(zoo).rglob("*"))
    newer = f"{entry_dir(zoo)}: written by a newer zoo (marker format 9); upgrade zoo or use another cache directory"
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 1 and result.stderr.strip() == f"zoo: error: {newer}"
    listing = zoo.run("cache", "ls")
    assert listing.returncode == 0 and listing.stdout == ""
    assert listing.stderr.splitlines() == [f"zoo: {newer}", f"zoo: no model this zoo can use in the cache at {zoo.cache}"]
    assert zoo.run("cache", "prune").stdout == ""
    assert sorted(p.relative_to(zoo.cache) for p in entry_dir(zoo).rglob("*")) == before
    assert json.loads(marker.read_text())["format"] == 9


@pytest.mark.timeout(300)
def test_files_and_marker_reach_the_disk_before_the_entry_is_published(zoo: Zoo, tmp_path: Path):
    if shutil.which("strace") is None:
        # CI installs strace and sets ZOO_REQUIRE_STRACE, so there this test cannot skip.
        if os.environ.get("ZOO_REQUIRE_STRACE"):
            pytest.fail("strace is required here (ZOO_REQUIRE_STRACE is set) but not installed")
        pytest.skip("needs strace")
    log = tmp_path / "strace.log"
    traced = subprocess.run(
        ["strace", "-f", "-y", "-e", "trace=fsync,rename,renameat,renameat2", "-o", str(log), *zoo.command("fetch", MODEL)],
        env=zoo.env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    if traced.returncode != 0 and "ptrace" in traced.stderr:
        pytest.skip("strace cannot attach here")
    assert traced.returncode == 0, traced.stderr
    calls = log.read_text().splitlines()
    publish = next(i for i, line in enumerate(calls) if re.search(rf'rename\w*\(.*"{re.escape(str(entry_dir(zoo)))}"', line))

    def synced(pattern: str) -> list[int]:
        return [i for i, line in enumerate(calls) if re.search(rf"fsync\(\d+<{pattern}>\)", line)]

    staging = re.escape(str(zoo.cache / "tmp")) + rf"/{MODEL}@\w+"
    assert any(i < publish for i in synced(staging + r"/files/.*ckpt-0\.data-00000-of-00001"))
    assert any(i < publish for i in synced(staging + rf"/{MODEL}\.tar\.gz"))
    assert any(i < publish for i in synced(staging + r"/zoo-entry\.json"))
    assert any(i > publish for i in synced(re.escape(str(zoo.cache / "models"))))


@pytest.mark.timeout(120)
def test_jobs_exit_with_the_first_failure_in_argument_order(zoo: Zoo, upstream: FileServer):
    slow = "/models/slow_missing.tar.gz"
    upstream.plan(slow, [("hang", 1.5)])  # then 404: fails well after the unknown name below
    zoo.write_registry([model_entry(upstream), {"name": "slow_missing", "family": "tf2-detection",
                                                "url": upstream.url_for(slow), "checkpoint": "checkpoint/ckpt-0"}])  # fmt: skip
    result = zoo.run("fetch", "slow_missing", "no_such_model", MODEL, "--jobs", "3", "--json")
    assert result.returncode == 5, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(r["name"], r["ok"]) for r in rows] == [("slow_missing", False), ("no_such_model", False), (MODEL, True)]
    assert [r.get("exit_code") for r in rows] == [5, 3, None]


def test_rm_and_prune_delete_nothing_in_a_directory_zoo_did_not_make_its_cache(zoo: Zoo, tmp_path: Path):
    # A cache directory set to the wrong place: a project folder with zoo-like subfolders.
    project = tmp_path / "project"
    files = [project / "models" / "research" / "files" / "x", project / "tmp" / "scratch@0123456789abcdef" / "n",
             project / "downloads" / "data@x.part"]  # fmt: skip
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("keep")
    for command in (["cache", "prune"], ["cache", "rm", "research"]):
        result = zoo.run(*command, "--cache-dir", str(project))
        assert result.returncode == 1 and result.stderr == (
            f"zoo: error: {project} is not a zoo cache (no CACHEDIR.TAG, no cached model); "
            "nothing was removed (check --cache-dir / ZOO_CACHE_DIR)\n"
        )
    assert all(path.read_text() == "keep" for path in files)


def test_an_empty_cache_dir_option_means_the_default_not_the_current_directory(zoo: Zoo, tmp_path: Path):
    work = tmp_path / "work"
    (work / "tmp" / "scratch@0123456789abcdef").mkdir(parents=True)
    fetched(zoo)
    result = subprocess.run(zoo.command("cache", "ls", "--cache-dir", ""), cwd=work, env=zoo.env,
                            capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0 and MODEL in result.stdout  # the ZOO_CACHE_DIR cache, not ./
    assert (work / "tmp" / "scratch@0123456789abcdef").is_dir() and not (work / "CACHEDIR.TAG").exists()
