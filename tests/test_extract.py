"""Hostile and broken tarballs are refused through `zoo fetch`, leaving nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest

import tarballs
from conftest import MODEL, TARBALL_PATH, Zoo
from httpserver import FileServer

UNSAFE = 7
INTEGRITY = 6


@pytest.mark.parametrize(
    ("builder", "code", "message"),
    [
        (tarballs.absolute_path_tarball, UNSAFE, "has an absolute path"),
        (tarballs.dotdot_tarball, UNSAFE, "climbs out with '..'"),
        (tarballs.symlink_escape_tarball, UNSAFE, "unsafe member refused"),
        (tarballs.hardlink_escape_tarball, UNSAFE, "unsafe member refused"),
        (tarballs.device_tarball, UNSAFE, "is a device or FIFO"),
        (tarballs.size_bomb_tarball, UNSAFE, "a decompression bomb?"),
        (tarballs.missing_shard_tarball, INTEGRITY, "missing data shard(s) ckpt-0.data-00001-of-00002"),
        (tarballs.no_index_tarball, INTEGRITY, "should hold 'checkpoint/ckpt-0.index'; found: none"),
    ],
)
def test_bad_tarballs_are_refused(zoo: Zoo, upstream: FileServer, tmp_path: Path, builder, code, message):
    bad = builder(tmp_path / "bad", MODEL)
    upstream.add(TARBALL_PATH, bad.read_bytes())
    escaped_before = set(Path("/tmp").glob("zoo-escape-*"))
    result = zoo.run("fetch", MODEL)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and message in lines[0]
    assert zoo.leftovers() == []
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


def test_a_detection_archive_needs_its_pipeline_config(zoo: Zoo, upstream: FileServer, tmp_path: Path):
    import io
    import tarfile

    source = tarballs.make_zoo_tarball(tmp_path / "ok", MODEL, size_mb=0.1)
    stripped = io.BytesIO()
    with tarfile.open(source) as original, tarfile.open(fileobj=stripped, mode="w:gz") as copy:
        for member in original.getmembers():
            if not member.name.endswith("pipeline.config"):
                copy.addfile(member, original.extractfile(member) if member.isfile() else None)
    upstream.add(TARBALL_PATH, stripped.getvalue())
    result = zoo.run("fetch", MODEL)
    assert result.returncode == INTEGRITY
    assert "the archive holds no pipeline.config" in result.stderr
    assert zoo.leftovers() == []
