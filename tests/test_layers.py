"""Read-only cache layers (ZOO_CACHE_LAYERS) and many fetching processes on one host.

A layer is a real directory made read-only with chmod; as tests run as root,
chmod alone would not stop a write, so every test also asserts that the
layer's tree (names, modes, sizes, mtimes, bytes) is identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import CONFIG_PATH, MODEL, TARBALL_PATH, Zoo
from httpserver import FileServer
from zoo.settings import Settings

Tree = dict[str, tuple]


def snapshot(root: Path) -> Tree:
    """Everything a write, lock, rename or delete under ``root`` would change."""
    tree: Tree = {}
    for path in [root, *root.rglob("*")]:
        info = path.lstat()
        content = os.readlink(path) if path.is_symlink() else (
            hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None)  # fmt: skip
        tree[str(path.relative_to(root))] = (info.st_mode, info.st_size, info.st_mtime_ns, content)
    return tree


def set_writable(root: Path, writable: bool) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod((path.stat().st_mode | 0o200) if writable else (path.stat().st_mode & ~0o222))


@pytest.fixture
def layers(zoo: Zoo) -> Iterator[list[Path]]:
    """Layers the test fills and then freezes with ``freeze``; made writable again at teardown."""
    made: list[Path] = []
    yield made
    for root in made:
        set_writable(root, True)


def fetch_json(zoo: Zoo, *args: str) -> dict:
    result = zoo.run("fetch", MODEL, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def site_layer(zoo: Zoo, layers: list[Path], name: str = "site") -> Path:
    """A cache holding the model, installed by zoo, then moved out of the way."""
    fetch_json(zoo)
    layer = zoo.home / name
    zoo.cache.rename(layer)
    layers.append(layer)
    return layer


def freeze(zoo: Zoo, *roots: Path) -> Tree:
    """Make the layers read-only and used; returns their trees to compare with later."""
    for root in roots:
        set_writable(root, False)
    zoo.env["ZOO_CACHE_LAYERS"] = os.pathsep.join(map(str, roots))
    return {str(root): snapshot(root) for root in roots}


def unchanged(before: Tree, *roots: Path) -> bool:
    return before == {str(root): snapshot(root) for root in roots}


def entry_files(root: Path) -> Path:
    return root / "models" / MODEL / "files" / MODEL


@pytest.mark.timeout(300)
def test_a_hit_in_a_read_only_layer_opens_no_connection_copies_and_locks_nothing(
    zoo: Zoo, upstream: FileServer, layers: list[Path]
):
    layer = site_layer(zoo, layers)
    before = freeze(zoo, layer)
    gets = upstream.count(None)
    upstream.stop()  # any connection attempt would now fail the fetch
    hit = fetch_json(zoo)
    assert hit["from_cache"] is True
    assert hit["checkpoint"] == str(entry_files(layer) / "checkpoint" / "ckpt-0")
    assert upstream.count(None) == gets
    assert not zoo.cache.exists()  # served in place: nothing copied, no lock file made
    assert unchanged(before, layer)
    assert zoo.run("fetch", MODEL, "--offline").returncode == 0


def test_a_model_only_in_a_read_only_layer_packs_into_a_bundle(zoo: Zoo, upstream: FileServer, layers: list[Path]):
    layer = site_layer(zoo, layers)
    before = freeze(zoo, layer)
    upstream.stop()
    bundle = zoo.home / "carry.tar"
    created = zoo.run("bundle", "create", str(bundle), MODEL)
    assert created.returncode == 0, created.stderr
    assert unchanged(before, layer) and not zoo.cache.exists()
    del zoo.env["ZOO_CACHE_LAYERS"]  # the other side of the gap has only the bundle
    assert zoo.run("bundle", "import", str(bundle)).returncode == 0
    assert fetch_json(zoo, "--offline")["from_cache"] is True


def test_cache_ls_names_the_layer_and_rm_and_prune_leave_it_alone(zoo: Zoo, layers: list[Path]):
    layer = site_layer(zoo, layers)
    shutil.copytree(layer, zoo.cache, symlinks=True)  # the same model in the writable cache too
    for root in (layer, zoo.cache):  # what prune removes in a cache of its own
        (root / "tmp" / f"{MODEL}@0123456789abcdef").mkdir(parents=True)
        (root / "downloads" / f"{MODEL}@{MODEL}.tar.gz.part").write_bytes(b"half")
    before = freeze(zoo, layer)

    listing = zoo.run("cache", "ls")
    assert listing.returncode == 0, listing.stderr
    rows = listing.stdout.splitlines()
    assert len(rows) == 2 and str(zoo.cache) in rows[0] and "read-only" not in rows[0]
    assert rows[1].endswith(f"{entry_files(layer) / 'checkpoint' / 'ckpt-0'}  (read-only layer {layer})")
    as_json = [json.loads(line) for line in zoo.run("cache", "ls", "--json").stdout.splitlines()]
    assert [(r["layer"], r["read_only"]) for r in as_json] == [(str(zoo.cache), False), (str(layer), True)]

    pruned = zoo.run("cache", "prune")
    assert pruned.returncode == 0 and str(layer) not in pruned.stdout and pruned.stdout.count("removed") == 2
    removed = zoo.run("cache", "rm", MODEL)
    assert removed.returncode == 0 and zoo.published() == []
    again = zoo.run("cache", "rm", MODEL)
    assert again.returncode == 10
    assert f"only in read-only layer {layer}, which zoo never changes" in again.stderr
    assert unchanged(before, layer)
    assert fetch_json(zoo)["from_cache"] is True  # still served, from the layer


@pytest.mark.timeout(300)
def test_verify_checks_every_layer(zoo: Zoo, layers: list[Path]):
    layer = site_layer(zoo, layers)
    shutil.copytree(layer, zoo.cache, symlinks=True)
    archive = layer / "models" / MODEL / f"{MODEL}.tar.gz"
    archive.write_bytes(b"\0" * archive.stat().st_size)  # only a re-hash notices
    before = freeze(zoo, layer)
    for args in ((), (MODEL,)):
        result = zoo.run("verify", *args)
        assert result.returncode == 6, result.stderr
        rows = result.stdout.splitlines()
        assert rows[0] == f"{MODEL}: ok"
        assert rows[1].startswith(f"{MODEL}  (read-only layer {layer}): FAILED: {archive}: sha256 ")
    assert unchanged(before, layer)


def _symlinked_entry(layer: Path) -> None:
    entry = layer / "models" / MODEL
    entry.rename(layer / "elsewhere")
    entry.symlink_to(layer / "elsewhere")


def _missing_shard(layer: Path) -> None:
    (entry_files(layer) / "checkpoint" / "ckpt-0.data-00000-of-00001").unlink()


def _newer_marker(layer: Path) -> None:
    marker = layer / "models" / MODEL / "zoo-entry.json"
    marker.write_text(json.dumps({**json.loads(marker.read_text()), "format": 9}))


@pytest.mark.timeout(300)
@pytest.mark.parametrize("spoil", [_symlinked_entry, _missing_shard, _newer_marker])
def test_a_layer_entry_is_checked_like_the_cache_and_a_bad_one_is_not_served(
    zoo: Zoo, upstream: FileServer, layers: list[Path], spoil
):
    layer = site_layer(zoo, layers)
    spoil(layer)
    before = freeze(zoo, layer)
    result = fetch_json(zoo)
    assert result["from_cache"] is False and result["checkpoint"].startswith(str(zoo.cache / "models" / MODEL))
    assert upstream.count("GET", TARBALL_PATH) == 2
    assert unchanged(before, layer)


@pytest.mark.timeout(300)
def test_layers_are_searched_in_order_after_the_writable_cache(zoo: Zoo, layers: list[Path]):
    first = site_layer(zoo, layers, "first")
    second = zoo.home / "second"
    shutil.copytree(first, second, symlinks=True)
    layers.append(second)
    before = freeze(zoo, first, second)
    assert fetch_json(zoo)["directory"] == str(first / "models" / MODEL)
    zoo.env["ZOO_CACHE_LAYERS"] = os.pathsep.join([str(second), "", str(first)])
    assert fetch_json(zoo)["directory"] == str(second / "models" / MODEL)
    shutil.copytree(first, zoo.cache, symlinks=True)
    set_writable(zoo.cache, True)
    assert fetch_json(zoo)["directory"] == str(zoo.cache / "models" / MODEL)
    assert unchanged(before, first, second)


def test_zoo_cache_layers_is_a_path_list_and_never_repeats_the_cache(tmp_path: Path):
    from zoo.cache import Cache

    env = {"ZOO_CACHE_DIR": str(tmp_path / "own"), "ZOO_CACHE_LAYERS": os.pathsep.join(["/opt/zoo", " ", "/mnt/team", ""])}
    settings = Settings.from_env(env=env, cache_layers=["/first"])
    assert settings.cache_layers == (Path("/first"), Path("/opt/zoo"), Path("/mnt/team"))
    cache = Cache(tmp_path / "own", [tmp_path / "own", Path("/opt/zoo"), Path("/opt/zoo/")])
    assert [layer.root for layer in cache.layers] == [Path("/opt/zoo")]
    assert not hasattr(cache.layers[0], "publish") and not hasattr(cache.layers[0], "lock")


API_FETCHER = (
    "import json, sys\n"
    "import zoo\n"
    "print('ready', flush=True)\n"
    "sys.stdin.readline()  # the start signal, sent once every process is up\n"
    "result = zoo.fetch(sys.argv[1])\n"
    "print(json.dumps({'checkpoint': str(result.checkpoint), 'from_cache': result.from_cache}))\n"
)


@pytest.mark.timeout(180)
def test_eight_processes_fetching_through_the_python_api_at_once_download_once(zoo: Zoo, upstream: FileServer):
    upstream.throttle(TARBALL_PATH, 2 * 1024 * 1024)  # a download long enough for all eight to wait on it
    workers = [
        subprocess.Popen([sys.executable, "-c", API_FETCHER, MODEL], env=zoo.env, text=True,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        for _ in range(8)
    ]
    assert [worker.stdout.readline() for worker in workers] == ["ready\n"] * 8
    for worker in workers:
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=150) for worker in workers]
    assert [worker.returncode for worker in workers] == [0] * 8, outputs
    results = [json.loads(out) for out, _err in outputs]
    assert {r["checkpoint"] for r in results} == {str(zoo.cache / "models" / MODEL / "files" / MODEL / "checkpoint" / "ckpt-0")}
    assert sorted(r["from_cache"] for r in results) == [False] + [True] * 7
    assert upstream.count("GET", TARBALL_PATH) == 1 and upstream.count("GET", CONFIG_PATH) == 1
