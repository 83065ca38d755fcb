"""Hostile and broken tarballs are refused through `zoo fetch`, leaving nothing behind."""

from __future__ import annotations

import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import tarballs
from conftest import MODEL, TARBALL_PATH, Zoo
from httpserver import FileServer

UNSAFE = 7
INTEGRITY = 6

# The CLI with zoo's own tar filter in place of tarfile's data filter, as on
# Pythons that lack it (Debian 12's 3.11.2).
OWN_FILTER = "import zoo.extract; zoo.extract.USE_STDLIB_FILTER = False; from zoo_cli.main import main; main()"


# Debian 12's own Python, if this is Debian 12: 3.11.2, without the data filter.
SYSTEM_PYTHON = Path("/usr/bin/python3")


class OwnFilterZoo(Zoo):
    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-c", OWN_FILTER, *args]


class SystemPythonZoo(Zoo):
    """The CLI run by the system's Python, with this venv's packages (same 3.11 ABI);
    addsitedir runs the editable install's .pth finder, which maps zoo_cli."""

    def command(self, *args: str) -> list[str]:
        purelib = sysconfig.get_paths()["purelib"]
        return [str(SYSTEM_PYTHON), "-c", f"import site; site.addsitedir({purelib!r}); "
                "from zoo_cli.main import main; main()", *args]  # fmt: skip


def system_python_lacks_data_filter() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = "import sys, tarfile; print(sys.version_info[:2] == (3, 11) and not hasattr(tarfile, 'data_filter'))"
    return subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, text=True).stdout.strip() == "True"


@pytest.fixture(params=["stdlib-filter", "own-filter", "python-without-data-filter"])
def any_zoo(request: pytest.FixtureRequest, zoo: Zoo) -> Zoo:
    if request.param == "stdlib-filter":
        return zoo
    if request.param == "own-filter":
        return OwnFilterZoo(zoo.home, zoo.env)
    if not system_python_lacks_data_filter():
        pytest.skip(f"{SYSTEM_PYTHON} is not a 3.11 without tarfile's data filter")
    return SystemPythonZoo(zoo.home, zoo.env)


def test_a_good_tarball_installs_with_either_filter(any_zoo: Zoo):
    result = any_zoo.run("fetch", MODEL)
    assert result.returncode == 0, result.stderr
    assert any_zoo.published() == [MODEL]


@pytest.mark.parametrize(
    ("builder", "code", "message"),
    [
        (tarballs.absolute_path_tarball, UNSAFE, "has an absolute path"),
        (tarballs.dotdot_tarball, UNSAFE, "climbs out with '..'"),
        (tarballs.symlink_escape_tarball, UNSAFE, "unsafe member refused"),
        (tarballs.hardlink_escape_tarball, UNSAFE, "unsafe member refused"),
        (tarballs.link_chain_tarball, UNSAFE, "unsafe member refused"),
        (tarballs.device_tarball, UNSAFE, "is a device or FIFO"),
        (tarballs.size_bomb_tarball, UNSAFE, "a decompression bomb?"),
        (tarballs.sparse_tarball, UNSAFE, "is a sparse file"),
        (tarballs.header_chain_tarball, UNSAFE, "more than 8 extended headers in a row"),
        (tarballs.no_index_tarball, INTEGRITY, "should hold 'checkpoint/ckpt-0.index'; found: none"),
    ],
)
def test_bad_tarballs_are_refused(any_zoo: Zoo, upstream: FileServer, tmp_path: Path, builder, code, message):
    bad = builder(tmp_path / "bad", MODEL)
    upstream.add(TARBALL_PATH, bad.read_bytes())
    escaped_before = set(Path("/tmp").glob("zoo-escape-*"))
    result = any_zoo.run("fetch", MODEL)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and message in lines[0]
    assert any_zoo.leftovers() == []
    assert set(Path("/tmp").glob("zoo-escape-*")) == escaped_before
    assert not Path("/etc/x").exists()


def test_corrupt_gzip_is_an_integrity_error(zoo: Zoo, upstream: FileServer, tarball: Path, tmp_path: Path):
    broken = tmp_path / "broken.tar.gz"
    broken.write_bytes(tarball.read_bytes())
    upstream.add(TARBALL_PATH, tarballs.corrupt_gzip(broken).read_bytes())
    result = zoo.run("fetch", MODEL)
    assert result.returncode == INTEGRITY
    assert "not a readable .tar.gz archive" in result.stderr
    assert zoo.leftovers() == []


def flip_middle_byte(data: bytes) -> bytes:
    changed = bytearray(data)
    changed[len(changed) // 2] ^= 0x01
    return bytes(changed)


@pytest.mark.parametrize(
    ("member", "change", "message"),
    [
        ("pipeline.config", lambda data: None, "the archive holds no pipeline.config"),
        (".data-00000-of-00001", lambda data: None, "checkpoint/ckpt-0.data-00000-of-00001: data shard is missing"),
        (".data-00000-of-00001", lambda data: data[: len(data) // 2], "the shard is truncated"),
        (".data-00000-of-00001", flip_middle_byte, "fails its CRC32C"),
        ("ckpt-0.index", lambda data: data[:-20], "ckpt-0.index"),
    ],
)
def test_archives_with_a_broken_checkpoint_are_refused(zoo: Zoo, upstream: FileServer, tmp_path: Path, member, change, message):
    source = tarballs.make_zoo_tarball(tmp_path / "ok", MODEL, size_mb=0.2)
    broken = tarballs.repack(
        source, tmp_path / "broken.tar.gz", lambda info, data: change(data) if info.name.endswith(member) else data
    )
    upstream.add(TARBALL_PATH, broken.read_bytes())
    result = zoo.run("fetch", MODEL)
    assert result.returncode == INTEGRITY, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"zoo: error: {upstream.url_for(TARBALL_PATH)}: ")
    assert message in lines[0]
    assert zoo.leftovers() == []


def test_a_flipped_byte_names_the_tensor(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    source = tarballs.make_zoo_tarball(tmp_path / "ok", MODEL, size_mb=0.2)
    broken = tarballs.repack(
        source, tmp_path / "broken.tar.gz",
        lambda info, data: flip_middle_byte(data) if info.name.endswith(".data-00000-of-00001") else data,
    )  # fmt: skip
    upstream.add(TARBALL_PATH, broken.read_bytes())
    result = zoo.run("fetch", MODEL)
    assert re.search(r"tensor 'model/_(feature_extractor|box_predictor)/[^']+' at offset \d+", result.stderr)
