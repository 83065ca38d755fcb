"""Safe extraction of zoo tarballs and the check that they hold a checkpoint.

tarfile's ``data`` filter is the base; on top of it, members that name an
absolute path or ``..``, device files, and archives that expand far past
their own size are refused outright instead of being rewritten.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

from zoo.checkpoint import Checkpoint, check_files, read_checkpoint
from zoo.errors import IntegrityError, UnsafeArchiveError, ZooError
from zoo.fsutil import writing

CHUNK = 1 << 20
GZIP_MAGIC = b"\x1f\x8b"
_DRIVE = re.compile(r"[A-Za-z]:")  # C:/..., absolute on Windows


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may expand to."""

    max_members: int = 10_000
    expansion_ratio: float = 20.0
    slack_bytes: int = 16 << 20

    def max_total(self, archive_size: int) -> int:
        return int(archive_size * self.expansion_ratio) + self.slack_bytes


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


def extract_stream(
    source: Readable,
    dest: Path,
    *,
    label: str,
    archive_size: Callable[[], int],
    limits: Limits = Limits(),
) -> None:
    """Extract the tar archive read from ``source`` into ``dest`` in one pass.

    ``source`` is read sequentially to its end (a gzip stream is checked
    against its trailer). ``label`` names the archive in errors;
    ``archive_size`` gives its compressed size as far as it is known, for the
    expansion bound. On failure ``dest`` may hold
    part of the archive; the caller owns it and deletes it (it is a staging
    directory, never a published entry).
    """
    if not hasattr(tarfile, "data_filter"):
        raise ZooError("this Python lacks tarfile's data filter; use 3.10.12+ or 3.11.4+")
    guard = _Guard(limits, archive_size, label)
    dest.mkdir(parents=True, exist_ok=True)
    head = source.read(2)
    stream: Readable = _Gunzip(source, head) if head == GZIP_MAGIC else _Prepend(head, source)
    try:
        mode = "r|" if head == GZIP_MAGIC else "r|*"
        with writing(dest), tarfile.open(  # type: ignore[call-overload]
            fileobj=stream, mode=mode, bufsize=CHUNK, copybufsize=CHUNK
        ) as tar:
            tar.extractall(dest, filter=guard)
        while stream.read(CHUNK):
            pass  # the tar end marker may come before the end of the compressed stream
    except tarfile.FilterError as exc:
        raise UnsafeArchiveError(f"{label}: unsafe member refused: {exc}; nothing was installed") from None
    except (tarfile.TarError, EOFError, zlib.error, _zlib().error) as exc:
        raise IntegrityError(f"{label}: not a readable .tar.gz archive: {exc}") from None


class _Prepend:
    """A stream with bytes already read put back in front."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            data, self._head = self._head, b""
            return data if size < 0 or size >= len(data) else self._unread(data, size)
        return self._rest.read(size)

    def _unread(self, data: bytes, size: int) -> bytes:
        self._head = data[size:]
        return data[:size]


class _Gunzip:
    """Decompresses a gzip stream with the fastest inflate available.

    Output per call is bounded, so a small compressed chunk that expands to
    gigabytes never sits in memory at once.
    """

    def __init__(self, source: Readable, head: bytes) -> None:
        self._source = source
        self._inflate = _zlib().decompressobj(31)
        self._pending = head

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size < 0 else size
        while True:
            if not self._pending and not self._inflate.eof:
                self._pending = self._source.read(CHUNK)
                if not self._pending:
                    raise EOFError("the gzip stream ends early (a truncated download?)")
            if self._inflate.eof:
                return self._next_member(size)
            data = self._inflate.decompress(self._pending, size)
            self._pending = self._inflate.unconsumed_tail
            if data:
                return data

    def _next_member(self, size: int) -> bytes:
        # gzip allows several members back to back; anything else after the
        # end is ignored, as gzip(1) does.
        rest = self._inflate.unused_data or self._source.read(CHUNK)
        if not rest.startswith(GZIP_MAGIC):
            while self._source.read(CHUNK):
                pass
            return b""
        self._inflate = _zlib().decompressobj(31)
        self._pending = rest
        return self.read(size)


def _zlib() -> Any:
    """isal's inflate is about a quarter faster than zlib's on checkpoint data."""
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:
        return zlib


class _Guard:
    """A tarfile filter that counts what it lets through."""

    def __init__(self, limits: Limits, archive_size: Callable[[], int], label: str) -> None:
        self.limits = limits
        self.archive_size = archive_size
        self.label = label
        self.members = 0
        self.total = 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        self.members += 1
        self.total += member.size
        self._refuse_if(self.members > self.limits.max_members,
                        f"more than {self.limits.max_members} members")
        limit = self.limits.max_total(self.archive_size())
        self._refuse_if(self.total > limit,
                        f"expands past {limit} bytes (at member {member.name!r}); a decompression bomb?")
        self._refuse_if(member.name.startswith(("/", "\\")) or _DRIVE.match(member.name) is not None,
                        f"member {member.name!r} has an absolute path")
        self._refuse_if(".." in PurePosixPath(member.name).parts,
                        f"member {member.name!r} climbs out with '..'")
        self._refuse_if(member.isdev(), f"member {member.name!r} is a device or FIFO")
        return tarfile.data_filter(member, dest)

    def _refuse_if(self, condition: bool, reason: str) -> None:
        if condition:
            raise UnsafeArchiveError(f"{self.label}: {reason}; nothing was installed")


def find_checkpoint(root: Path, expected: str | None) -> Checkpoint:
    """The checkpoint in an extracted archive, its index read and every shard present.

    ``expected`` is the registry's prefix relative to the archive's top
    directory; without one, the single checkpoint outside ``saved_model/`` is
    taken. The tensors' bytes are not read here (``verify_checkpoint`` does).
    """
    candidates = _prefixes(root, expected)
    if len(candidates) != 1:
        found = ", ".join(str(p.relative_to(root)) for p in candidates) or "none"
        wanted = f"'{expected}.index'" if expected else "one checkpoint '.index' file"
        raise IntegrityError(f"the archive should hold {wanted}; found: {found}")
    checkpoint = read_checkpoint(candidates[0])
    check_files(checkpoint)
    return checkpoint


def _prefixes(root: Path, expected: str | None) -> list[Path]:
    if expected:
        places = [root / expected, *(top / expected for top in root.iterdir() if top.is_dir())]
        return [p for p in places if p.with_name(p.name + ".index").is_file()]
    return sorted(
        index.with_suffix("")
        for index in root.rglob("*.index")
        if "saved_model" not in index.relative_to(root).parts
    )


def find_pipeline_config(root: Path) -> Path | None:
    """The archive's own pipeline.config, at its top or one directory down."""
    for place in (root, *sorted(p for p in root.iterdir() if p.is_dir())):
        if (place / "pipeline.config").is_file():
            return place / "pipeline.config"
    return None
