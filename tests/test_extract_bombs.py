"""Header bombs, every compression zoo reads, archives without links, and zoo's own tar filter."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

import tarballs
from conftest import MODEL, TARBALL_PATH, Zoo, clean_env, model_entry
from httpserver import FileServer
from zoo import extract
from zoo.errors import UnsafeArchiveError
from zoo.extract import Limits, extract_stream

UNSAFE = 7
MAX_RSS = 150 << 20

# Runs extract_stream on argv[1] into argv[2], reporting a ZooError as the CLI does.
EXTRACT = """
import sys
from pathlib import Path
from zoo.errors import ZooError
from zoo.extract import extract_stream
path = Path(sys.argv[1])
try:
    with open(path, "rb") as source:
        extract_stream(source, Path(sys.argv[2]), label=str(path), archive_size=lambda: path.stat().st_size)
except ZooError as exc:
    print(f"zoo: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
"""

# Runs argv[1:] as a child of a small process, under a 1 GiB address-space limit
# (so a bomb that gets through fails with MemoryError instead of taking the
# test machine's memory), and prints the child's peak RSS from wait4. A child
# of pytest itself would report pytest's own peak, TensorFlow and all.
MEASURED = """
import os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
pid = os.fork()
if pid == 0:
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    os.execv(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss * 1024)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[int, str, int]:
    """Exit code, stderr and peak RSS in bytes of ``command``."""
    result = subprocess.run([sys.executable, "-c", MEASURED, *command], capture_output=True, text=True, env=env)
    return result.returncode, result.stderr, int(result.stdout)


def one_error_line(stderr: str, message: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("zoo: error: ") and message in lines[0], stderr


# -- 1. header bombs -------------------------------------------------------------


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("build", "message"),
    [
        (tarballs.header_bomb_tarball, "a GNU long-name header of 1073741824 bytes"),
        (lambda dest, name: tarballs.header_bomb_tarball(dest, name, kind=tarfile.XHDTYPE), "a pax header of"),
        (tarballs.sparse_map_bomb_tarball, "holds a sparse file"),
    ],
    ids=["gnu-long-name", "pax", "sparse-map"],
)
def test_a_small_header_bomb_is_refused_in_little_memory(tmp_path: Path, build: Callable[[Path, str], Path], message: str):
    bomb = build(tmp_path, "m")
    assert bomb.stat().st_size < 1.1e6
    code, stderr, rss = run_measured([sys.executable, "-c", EXTRACT, str(bomb), str(tmp_path / "out")])
    assert code == UNSAFE, stderr
    one_error_line(stderr, message)
    assert rss < MAX_RSS


@pytest.mark.timeout(300)
def test_bundle_import_refuses_a_header_bomb_in_little_memory(tmp_path: Path):
    bomb = tarballs.header_bomb_tar(tmp_path, "hostile")  # 1 GiB of zeros announced, a hole on disk
    zoo = Zoo(tmp_path, clean_env(tmp_path))
    code, stderr, rss = run_measured(zoo.command("bundle", "import", str(bomb), "--into", str(tmp_path / "mirror")), zoo.env)
    assert code == UNSAFE, stderr
    one_error_line(stderr, "a GNU long-name header of 1073741824 bytes (at most 1048576); a header bomb?")
    assert rss < MAX_RSS
    assert zoo.leftovers() == []
    assert not (tmp_path / "mirror").exists() or not any((tmp_path / "mirror").iterdir())


def extract_file(path: Path, dest: Path, **options) -> None:
    with open(path, "rb") as source:
        extract_stream(source, dest, label=path.name, archive_size=lambda: path.stat().st_size, **options)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda d, n: tarballs.header_bomb_tarball(d, n, size_mb=2), "a GNU long-name header of 2097152 bytes"),
        (lambda d, n: tarballs.header_bomb_tarball(d, n, kind=tarfile.GNUTYPE_LONGLINK, size_mb=2), "GNU long-link header"),
        (lambda d, n: tarballs.header_bomb_tarball(d, n, kind=tarfile.XHDTYPE, size_mb=2), "a pax header of"),
        (lambda d, n: tarballs.header_bomb_tarball(d, n, kind=tarfile.XGLTYPE, size_mb=1), "pax global headers past 512 bytes"),
        (tarballs.header_chain_tarball, "more than 8 extended headers in a row"),
        (tarballs.sparse_tarball, "member 'm/sparse.bin' is a sparse file"),
        (lambda d, n: tarballs.sparse_map_bomb_tarball(d, n, pairs=10), "the archive holds a sparse file"),
    ],
    ids=["long-name", "long-link", "pax", "pax-global", "chain", "sparse", "sparse-map"],
)
def test_headers_are_bounded_before_tarfile_reads_them(tmp_path: Path, build, message: str):
    with pytest.raises(UnsafeArchiveError, match=message):
        extract_file(build(tmp_path, "m"), tmp_path / "out")


def test_many_pax_records_are_bounded_in_all(tmp_path: Path):
    path = tmp_path / "records.tar.gz"
    records = {f"zoo.k{i}": "" for i in range(20_000)}  # about 250 KB of records per member
    with tarfile.open(path, "w:gz") as tar:
        for i in range(20):
            info = tarfile.TarInfo(f"m/f{i}")
            info.pax_headers = records
            tar.addfile(info, io.BytesIO())
    with pytest.raises(UnsafeArchiveError, match="extended headers past 4194304 bytes in all"):
        extract_file(path, tmp_path / "out")


def test_the_stream_bound_counts_header_bytes(tmp_path: Path):
    """With the header caps lifted, the decompressed-byte bound still stops a long-name bomb."""
    bomb = tarballs.header_bomb_tarball(tmp_path, "m", size_mb=64)
    lifted = Limits(slack_bytes=1 << 20, max_header_bytes=1 << 40, max_header_total=1 << 40)
    with pytest.raises(UnsafeArchiveError, match=r"expands past \d+ bytes; a decompression bomb\?"):
        extract_file(bomb, tmp_path / "out", limits=lifted)


# -- 2. every compression --------------------------------------------------------

COMPRESSIONS: dict[str, Callable[[bytes], bytes]] = {
    "tar.gz": lambda tar: gzip.compress(tar),
    "tar.bz2": bz2.compress,
    "tar.xz": lzma.compress,
    "tar": lambda tar: tar,
    "tar.bz2 in two streams": lambda tar: bz2.compress(tar[:70_000]) + bz2.compress(tar[70_000:]),
    "tar.xz in two streams": lambda tar: lzma.compress(tar[:70_000]) + lzma.compress(tar[70_000:]),
}


@pytest.mark.parametrize("kind", COMPRESSIONS)
def test_every_compression_fetches(zoo: Zoo, upstream: FileServer, tarball: Path, kind: str):
    path = TARBALL_PATH.replace(".tar.gz", "." + kind.split()[0])
    upstream.add(path, COMPRESSIONS[kind](gzip.decompress(tarball.read_bytes())))
    zoo.write_registry([model_entry(upstream, url=upstream.url_for(path))])
    result = zoo.run("fetch", MODEL)
    assert result.returncode == 0, result.stderr
    assert zoo.published() == [MODEL]


@pytest.mark.parametrize("kind", ["tar.gz", "tar.bz2", "tar.xz", "tar"])
def test_each_byte_is_read_once_and_all_of_them(tmp_path: Path, tarball: Path, kind: str):
    data = COMPRESSIONS[kind](gzip.decompress(tarball.read_bytes()))
    source, seen = io.BytesIO(data), bytearray()

    class Recording:
        def read(self, size: int = -1) -> bytes:
            block = source.read(size)
            seen.extend(block)
            return block

    extract_stream(Recording(), tmp_path / "out", label=kind, archive_size=lambda: len(data))
    assert bytes(seen) == data
    assert (tmp_path / "out" / MODEL / "pipeline.config").is_file()


@pytest.mark.parametrize("kind", ["tar.bz2", "tar.xz", "tar"])
def test_every_compression_has_the_expansion_bound(tmp_path: Path, tarball: Path, kind: str):
    data = COMPRESSIONS[kind](gzip.decompress(tarball.read_bytes()))
    tight = Limits(expansion_ratio=0.5, slack_bytes=0)
    with pytest.raises(UnsafeArchiveError, match=r"a decompression bomb\?"):
        extract_stream(io.BytesIO(data), tmp_path / "out", label=kind, archive_size=lambda: len(data), limits=tight)


@pytest.mark.parametrize(("kind", "message"), [("tar.bz2", "not a readable .tar.bz2 archive"),
                                               ("tar.xz", "not a readable .tar.xz archive")])
def test_a_truncated_stream_is_an_integrity_error(tmp_path: Path, tarball: Path, kind: str, message: str):
    data = COMPRESSIONS[kind](gzip.decompress(tarball.read_bytes()))
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[: len(data) // 2])
    code, stderr, _ = run_measured([sys.executable, "-c", EXTRACT, str(cut), str(tmp_path / "out")])
    assert code == 6
    one_error_line(stderr, message)


# -- 3. archives that may hold no links ------------------------------------------


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE], ids=["symlink", "hard-link"])
def test_links_can_be_refused_altogether(tmp_path: Path, kind: bytes):
    archive = tarballs.inside_link_tarball(tmp_path, "m", kind=kind)
    extract_file(archive, tmp_path / "allowed")
    assert (tmp_path / "allowed" / "m" / "link").read_text() == tarballs.DEFAULT_PIPELINE_CONFIG
    with pytest.raises(UnsafeArchiveError, match="member 'm/link' is a link; this archive may not hold links"):
        extract_file(archive, tmp_path / "refused", links=False)
    assert not (tmp_path / "refused" / "m" / "link").exists()


# -- 4. zoo's own filter, where tarfile has no data filter -----------------------


@pytest.fixture(params=[True, False], ids=["stdlib-filter", "own-filter"])
def either_filter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(extract, "USE_STDLIB_FILTER", request.param)


def test_modes_and_owners_are_made_safe(tmp_path: Path, either_filter: None):
    path = tmp_path / "modes.tar"
    with tarfile.open(path, "w") as tar:
        for name, kind, mode in [("m", tarfile.DIRTYPE, 0o777), ("m/setuid", tarfile.REGTYPE, 0o6777),
                                 ("m/locked", tarfile.REGTYPE, 0o000), ("m/sticky", tarfile.DIRTYPE, 0o1777)]:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.uid, info.gid, info.uname = kind, mode, 4321, 4321, "someone"
            tar.addfile(info)
    extract_file(path, tmp_path / "out")
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "out" / "m").iterdir()}
    assert modes["setuid"] == 0o755
    assert modes["locked"] == 0o600
    assert not modes["sticky"] & 0o7022 and modes["sticky"] & 0o700 == 0o700
    assert {p.stat().st_uid for p in (tmp_path / "out").rglob("*")} == {os.geteuid()}
