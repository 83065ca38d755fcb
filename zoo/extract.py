"""Safe extraction of zoo tarballs and the check that they hold a checkpoint.

gzip, bzip2, xz and plain tar are read, told apart by their first bytes.
tarfile's ``data`` filter is the base (on Pythons that lack it, zoo applies
the same rules itself); on top of it, members that name an absolute path or
``..``, device and sparse files, oversized extended headers, and archives
that expand far past their own size are refused outright instead of being
rewritten.
"""

from __future__ import annotations

import bz2
import copy
import logging
import lzma
import os
import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, Protocol

from zoo.checkpoint import Checkpoint, check_files, read_checkpoint
from zoo.errors import IntegrityError, UnsafeArchiveError
from zoo.fsutil import writing

log = logging.getLogger("zoo")

CHUNK = 1 << 20
_DRIVE = re.compile(r"[A-Za-z]:")  # C:/..., absolute on Windows

USE_STDLIB_FILTER = hasattr(tarfile, "data_filter")
"""Whether members pass through tarfile's ``data`` filter (3.10.12+, 3.11.4+) or
through zoo's copy of its rules; tests turn it off to run zoo's rules anywhere."""

_FILTER_ERROR: Any = getattr(tarfile, "FilterError", ())  # () catches nothing

_EXTENDED_HEADERS = {
    tarfile.GNUTYPE_LONGNAME: "GNU long-name",
    tarfile.GNUTYPE_LONGLINK: "GNU long-link",
    tarfile.XHDTYPE: "pax",
    tarfile.XGLTYPE: "pax global",
    tarfile.SOLARIS_XHDTYPE: "Solaris pax",
}
MAX_HEADER_RUN = 8
"""Extended headers in a row before one member; tarfile reads each chain
recursively, holding every body, and real archives use one or two."""


@dataclass(frozen=True)
class Limits:
    """Bounds on what one archive may expand to."""

    max_members: int = 10_000
    expansion_ratio: float = 20.0
    slack_bytes: int = 16 << 20
    max_header_bytes: int = 1 << 20
    # tarfile keeps every member's pax records (about ten times their size in
    # memory) and copies the global ones into every member.
    max_header_total: int = 4 << 20
    max_global_header_bytes: int = 512

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
    links: bool = True,
) -> None:
    """Extract the tar archive read from ``source`` into ``dest`` in one pass.

    ``source`` is read sequentially to its end, each byte once (a compressed
    stream is checked against its trailer). ``label`` names the archive in
    errors; ``archive_size`` gives its compressed size as far as it is known,
    for the expansion bound. With ``links=False`` any symlink or hard link is
    refused. On failure ``dest`` may hold part of the archive; the caller owns
    it and deletes it (it is a staging directory, never a published entry).
    """
    guard = _Guard(limits, archive_size, label, links)
    dest.mkdir(parents=True, exist_ok=True)
    head = _read_head(source, max(len(codec.magic) for codec in _CODECS))
    codec = next((codec for codec in _CODECS if head.startswith(codec.magic)), None)
    stream = _Counted(_Decompress(source, head, codec) if codec else _Prepend(head, source), guard)
    try:
        with writing(dest), tarfile.open(  # type: ignore[call-overload]
            fileobj=stream, mode="r|", bufsize=CHUNK, copybufsize=CHUNK, tarinfo=guard.member_type()
        ) as tar:
            _extract_all(tar, dest, guard)
        while stream.read(CHUNK):
            pass  # the tar end marker may come before the end of the stream
    except _FILTER_ERROR as exc:
        raise UnsafeArchiveError(f"{label}: unsafe member refused: {exc}; nothing was installed") from None
    except (tarfile.TarError, _Unreadable) as exc:
        kind = codec.suffix if codec else ".tar"
        raise IntegrityError(f"{label}: not a readable {kind} archive: {exc}") from None


def _extract_all(tar: tarfile.TarFile, dest: Path, guard: _Guard) -> None:
    if guard.stdlib:
        tar.extractall(dest, filter=guard)
    else:
        # Where extractall takes no filter, members are checked and rewritten
        # on their way to it instead.
        tar.extractall(dest, members=(guard(member, str(dest)) for member in tar))


def _read_head(source: Readable, size: int) -> bytes:
    head = b""
    while len(head) < size and (more := source.read(size - len(head))):
        head += more
    return head


class _Unreadable(Exception):
    """The compressed stream is corrupt or cut short."""


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


class _Counted:
    """Counts what tarfile reads, headers included, against the expansion bound."""

    def __init__(self, stream: Readable, guard: _Guard) -> None:
        self._stream = stream
        self._guard = guard

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._guard.expanded(len(data))
        return data


class _Decompress:
    """A gzip, bzip2 or xz stream, decompressed.

    Output per call is bounded, so a small compressed chunk that expands to
    gigabytes never sits in memory at once.
    """

    def __init__(self, source: Readable, head: bytes, codec: _Codec) -> None:
        self._source = source
        self._codec = codec
        self._engine = codec.new()
        self._pending = head

    def read(self, size: int = -1) -> bytes:
        size = CHUNK if size < 0 else size
        while True:
            if self._engine.eof and not self._next_stream():
                return b""
            try:
                data = self._engine.decompress(self._input(), size)
            except self._codec.errors as exc:
                raise _Unreadable(f"corrupt {self._codec.name} data: {exc}") from None
            if data:
                return data

    def _input(self) -> bytes:
        if not self._engine.needs_input:
            return b""
        data, self._pending = self._pending or self._source.read(CHUNK), b""
        if not data:
            raise _Unreadable(f"the {self._codec.name} stream ends early (a truncated download?)")
        return data

    def _next_stream(self) -> bool:
        # gzip, bzip2 and xz allow several streams back to back; anything
        # else after the end is ignored, as gzip(1) does.
        rest = self._engine.unused_data or self._source.read(CHUNK)
        if not rest.startswith(self._codec.magic):
            while self._source.read(CHUNK):
                pass
            return False
        self._engine = self._codec.new()
        self._pending = rest
        return True


class _Inflate:
    """gzip decompression behind bz2's and lzma's interface, with the fastest
    inflate available (isal's is about a quarter faster than zlib's on
    checkpoint data)."""

    def __init__(self) -> None:
        self._zlib = _zlib()
        self._inflate = self._zlib.decompressobj(31)
        self._tail = b""
        self._full = False

    @property
    def eof(self) -> bool:
        return bool(self._inflate.eof)

    @property
    def unused_data(self) -> bytes:
        return bytes(self._inflate.unused_data)

    @property
    def needs_input(self) -> bool:
        # A call that filled its output may have left output inside zlib.
        return not self._tail and not self._full

    def decompress(self, data: bytes, max_length: int) -> bytes:
        try:
            out = self._inflate.decompress(self._tail + data, max_length)
        except self._zlib.error as exc:
            raise zlib.error(str(exc)) from None  # isal's error is not zlib's
        self._tail = self._inflate.unconsumed_tail
        self._full = len(out) == max_length
        return bytes(out)


def _zlib() -> Any:
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:
        return zlib


@dataclass(frozen=True)
class _Codec:
    name: str
    suffix: str
    magic: bytes
    new: Callable[[], Any]  # a decompressor with bz2's and lzma's interface
    errors: tuple[type[Exception], ...]


_CODECS = (
    _Codec("gzip", ".tar.gz", b"\x1f\x8b", _Inflate, (zlib.error,)),
    _Codec("bzip2", ".tar.bz2", b"BZh", bz2.BZ2Decompressor, (OSError, EOFError)),
    _Codec("xz", ".tar.xz", b"\xfd7zXZ\x00", lzma.LZMADecompressor, (lzma.LZMAError,)),
)


class _Guard:
    """Checks an archive as tarfile reads it: each header as it is parsed,
    each member before it is extracted, and the bytes read in all."""

    def __init__(self, limits: Limits, archive_size: Callable[[], int], label: str, links: bool) -> None:
        self.limits = limits
        self.archive_size = archive_size
        self.label = label
        self.links = links
        self.stdlib = USE_STDLIB_FILTER
        self.members = 0
        self.total = 0
        self.streamed = 0
        self.header_run = 0
        self.header_bytes = 0
        self.global_bytes = 0

    def __call__(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        """The extraction filter."""
        self.members += 1
        self.total += member.size
        self._refuse_if(self.members > self.limits.max_members,
                        f"more than {self.limits.max_members} members")
        limit = self.limits.max_total(self.archive_size())
        self._refuse_if(self.total > limit,
                        f"expands past {limit} bytes (at member {member.name!r}); a decompression bomb?")
        self._refuse_if(_is_absolute(member.name), f"member {member.name!r} has an absolute path")
        self._refuse_if(".." in PurePosixPath(member.name).parts,
                        f"member {member.name!r} climbs out with '..'")
        self._refuse_if(member.isdev(), f"member {member.name!r} is a device or FIFO")
        self._refuse_if(not self.links and (member.issym() or member.islnk()),
                        f"member {member.name!r} is a link; this archive may not hold links")
        return tarfile.data_filter(member, dest) if self.stdlib else self._data_rules(member, dest)

    def expanded(self, size: int) -> None:
        """Count bytes read from the (decompressed) stream."""
        self.streamed += size
        limit = self.limits.max_total(self.archive_size())
        self._refuse_if(self.streamed > limit, f"expands past {limit} bytes; a decompression bomb?")

    def header(self, info: tarfile.TarInfo) -> None:
        """Check a header block before tarfile reads what it announces."""
        kind = _EXTENDED_HEADERS.get(info.type)
        if kind is not None:
            self._extended_header(info, kind)
            return
        self.header_run = 0
        self._refuse_if(info.type == tarfile.GNUTYPE_SPARSE, f"member {info.name!r} is a sparse file")

    def _extended_header(self, info: tarfile.TarInfo, kind: str) -> None:
        limits = self.limits
        self.header_run += 1
        self.header_bytes += info.size
        self.global_bytes += info.size if info.type == tarfile.XGLTYPE else 0
        self._refuse_if(info.size > limits.max_header_bytes,
                        f"a {kind} header of {info.size} bytes (at most {limits.max_header_bytes}); a header bomb?")
        self._refuse_if(self.header_bytes > limits.max_header_total,
                        f"extended headers past {limits.max_header_total} bytes in all; a header bomb?")
        self._refuse_if(self.global_bytes > limits.max_global_header_bytes,
                        f"pax global headers past {limits.max_global_header_bytes} bytes in all; a header bomb?")
        self._refuse_if(self.header_run > MAX_HEADER_RUN, f"more than {MAX_HEADER_RUN} extended headers in a row")

    def member_type(self) -> type[tarfile.TarInfo]:
        """tarfile's member class with this guard's header checks: tarfile reads
        an extended header's whole body, and a sparse map, before any filter
        sees the member they belong to."""
        guard = self

        class Member(tarfile.TarInfo):
            def _proc_member(self, archive: tarfile.TarFile) -> Any:
                guard.header(self)
                return super()._proc_member(archive)  # type: ignore[misc]

            def _proc_gnusparse_00(self, *args: object) -> NoReturn:
                # GNU sparse maps announced in pax headers: tarfile turns them
                # into lists of offsets held in memory (version 1.0 reads them
                # from the member's data, past any header bound).
                guard.refuse("the archive holds a sparse file")

            _proc_gnusparse_01 = _proc_gnusparse_10 = _proc_gnusparse_00

        return Member

    def _data_rules(self, member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
        """tarfile.data_filter's rules, for Pythons without it; names were checked already.

        Stricter for links: a target must be relative and free of ``..``, so
        no chain of links, however ordered, can point outside ``dest``.
        """
        if member.issym() or member.islnk():
            self._refuse_if(_is_absolute(member.linkname),
                            f"unsafe member refused: {member.name!r} is a link to an absolute path")
            base = os.path.dirname(member.name) if member.issym() else ""
            target = os.path.realpath(os.path.join(dest, base, member.linkname))
            self._refuse_if(".." in PurePosixPath(member.linkname).parts or not _inside(target, dest),
                            f"unsafe member refused: {member.name!r} would link to {member.linkname!r}, "
                            "which is outside the destination")
        elif not (member.isreg() or member.isdir()):
            self.refuse(f"unsafe member refused: {member.name!r} is a special file")
        self._refuse_if(not _inside(os.path.realpath(os.path.join(dest, member.name)), dest),
                        f"unsafe member refused: {member.name!r} would be extracted outside the destination")
        return _data_attributes(member)

    def _refuse_if(self, condition: bool, reason: str) -> None:
        if condition:
            self.refuse(reason)

    def refuse(self, reason: str) -> NoReturn:
        raise UnsafeArchiveError(f"{self.label}: {reason}; nothing was installed")


def _data_attributes(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """A copy of ``member`` owned by whoever extracts it, without setuid,
    setgid, sticky or group/other write bits, and readable and writable by
    its owner (executable only if the owner could execute it)."""
    mode = member.mode & 0o755
    if member.isreg() or member.islnk():
        mode = (mode if mode & 0o100 else mode & ~0o111) | 0o600
    else:
        mode |= 0o700  # a directory zoo can't write into could not be cleaned up
    safe = copy.copy(member)
    safe.mode, safe.uid, safe.gid, safe.uname, safe.gname = mode, os.geteuid(), os.getegid(), "", ""
    return safe


def _is_absolute(name: str) -> bool:
    return name.startswith(("/", "\\")) or _DRIVE.match(name) is not None


def _inside(path: str, dest: str) -> bool:
    root = os.path.realpath(dest)
    return os.path.commonpath([path, root]) == root


def find_checkpoint(root: Path, expected: str | None) -> Checkpoint:
    """The checkpoint in an extracted archive, its index read and every shard present.

    ``expected`` is the registry's prefix relative to the archive's top
    directory; without one, the single checkpoint outside ``saved_model/`` is
    taken. When the expected prefix is absent but exactly one other is there
    (``ssdlite_mobiledet_*`` archives hold ``model.ckpt-400000``, not
    ``model.ckpt``), that one is taken with a warning: the caller records the
    returned prefix. The tensors' bytes are not read here (``verify_checkpoint`` does).
    """
    candidates = _prefixes(root, expected)
    if not candidates and expected:
        candidates = _prefixes(root, None)
        if len(candidates) == 1:
            log.warning("the archive holds no '%s' checkpoint; using its only checkpoint, '%s'",
                        expected, candidates[0].relative_to(root))  # fmt: skip
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
