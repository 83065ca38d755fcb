"""Stage a cached model in an object store (or a directory) for TPUs and clusters.

``stage`` copies a verified cache entry's checkpoint files, its
``pipeline.config`` and the registry's sample config to ``<dest>/<name>/...``
and returns the remote checkpoint prefix, the ``fine_tune_checkpoint`` a TPU
reads. The cache's bytes are the reference: every object is checked by size
and by the hash its store reports (GCS: CRC32C or MD5; S3: the ETag, an MD5
or a multipart MD5; a directory or a store reporting none: read back and
CRC32C'd). ``.zoo-staged.json`` is written last, once every object is
verified, so a prefix without it is never taken as staged; a repeated stage
that finds the marker matching the entry and every object unchanged (one
listing) uploads nothing.

Everything from the store is hostile: the marker is capped and validated,
names from it and from listings are checked keys, a directory is written
through temporary names renamed into place, never through a symlink.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ContextManager, TypeVar
from urllib.parse import urlsplit

from zoo.errors import IntegrityError, UsageError, ZooError
from zoo.fetch import FetchResult, fetch
from zoo.fsutil import check_key, join_beneath, open_beneath, read_limited, writing
from zoo.objectstore import EXTRAS, one_line, open_filesystem, store_errors
from zoo.registry import load_registry
from zoo.settings import Settings
from zoo.sources import Scheme, local_path, scheme_of

log = logging.getLogger("zoo")

STAGED_MARKER = ".zoo-staged.json"
STAGED_FORMAT = 1
MARKER_LIMIT = 1 << 20  # a marker lists a few files; more is garbage, never read in full
# Part size of S3 multipart uploads: fixed, so an object's multipart ETag can be
# computed from the cache's bytes.
PART_SIZE = 64 << 20
BLOCK = 1 << 20  # PART_SIZE is a whole number of blocks, so parts end on block ends
_HEX8, _HEX32 = re.compile(r"[0-9a-f]{8}"), re.compile(r"[0-9a-f]{32}")
_ETAG = re.compile(r"[0-9a-f]{32}(-[1-9][0-9]{0,4})?")


@dataclass(frozen=True)
class Digest:
    """What the cache's bytes of one staged file hash to."""

    path: str  # relative to <dest>/<name>
    size: int
    crc32c: str  # 8 hex digits
    md5: str
    etag: str | None = None  # S3's multipart ETag for PART_SIZE parts; None below one part

    def to_dict(self) -> dict[str, Any]:
        data = {"path": self.path, "size": self.size, "crc32c": self.crc32c, "md5": self.md5}
        return data if self.etag is None else {**data, "etag": self.etag}


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative to <dest>/<name>
    source: Path  # in the cache
    size: int


@dataclass(frozen=True)
class StageResult:
    """A staged model: ``checkpoint`` is the remote ``fine_tune_checkpoint``."""

    name: str
    destination: str  # <dest>/<name>
    checkpoint: str
    config: str | None  # the staged pipeline.config (or sample config)
    uploaded: tuple[str, ...]
    skipped: tuple[str, ...]
    uploaded_bytes: int
    skipped_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "uploaded": len(self.uploaded), "skipped": len(self.skipped)}


def stage(name: str, dest: str, *, settings: Settings | None = None, jobs: int = 8,
          progress: bool = False) -> StageResult:  # fmt: skip
    """Fetch ``name`` into the cache if needed (``progress``: its download's
    bar), then stage it at ``<dest>/<name>`` (any fsspec URL, ``file://`` or a
    directory), ``jobs`` files at a time."""
    dest = check_destination(dest)
    if jobs < 1:
        raise UsageError(f"jobs must be at least 1, got {jobs}")
    settings = settings or Settings.from_env()
    registry = load_registry(settings.registry_files)
    model = registry.resolve(name)
    target = open_target(dest, model.name)  # a missing backend is reported before any download
    fetched = fetch(model.name, settings=settings, registry=registry, progress=progress)
    files = model_files(fetched)
    with target.errors():
        return _Staging(fetched, files, target, jobs).run()


def check_destination(dest: str) -> str:
    """``dest`` without trailing slashes, or UsageError: no HTTP, no empty bucket,
    a plain key path (no ``..``, no empty part, no control character)."""
    where = f"destination {dest!r}"
    if not dest.strip():
        raise UsageError("the destination is empty: give gs://bucket/prefix, s3://..., or a directory")
    scheme = scheme_of(dest)
    if scheme is Scheme.HTTP:
        raise UsageError(f"{where}: a model is staged to an object store (gs://, s3://, az://...) or a directory, "
                         "not over HTTP")  # fmt: skip
    if scheme is Scheme.LOCAL:
        return str(local_path(dest).expanduser().absolute())
    parts = urlsplit(dest)
    if not parts.netloc:
        raise UsageError(f"{where}: no bucket (expected {parts.scheme}://bucket/prefix)")
    if parts.query or parts.fragment or "?" in dest or "#" in dest:
        raise UsageError(f"{where}: a destination has no query or fragment ('?', '#')")
    key = f"{parts.netloc}/{parts.path.strip('/')}".rstrip("/")
    check_key(key, where, UsageError)
    return f"{parts.scheme}://{key}"


def model_files(fetched: FetchResult) -> list[LocalFile]:
    """The files a trainer needs, as staged below ``<dest>/<name>``: the checkpoint
    (index, shards, the ``checkpoint`` state file), pipeline.config, the sample
    config; the archive's layout kept, saved_model/ and the archive left out."""
    prefix = fetched.checkpoint
    root = model_root(prefix)
    sources = [p for p in prefix.parent.iterdir() if p.name.startswith(f"{prefix.name}.") or p.name == "checkpoint"]
    sources.append(root / "pipeline.config")
    if fetched.config is not None and not fetched.config.is_relative_to(root):
        sources.append(fetched.config)  # the registry's sample config, beside files/
    found = {}
    for source in sources:
        info = os.lstat(source) if os.path.lexists(source) else None
        if info is not None and stat.S_ISREG(info.st_mode):
            relative = source.relative_to(root) if source.is_relative_to(root) else Path(source.name)
            found[relative.as_posix()] = LocalFile(relative.as_posix(), source, info.st_size)
    return [found[key] for key in sorted(found)]


def model_root(prefix: Path) -> Path:
    """The archive's model directory: what ``<dest>/<name>`` mirrors."""
    return prefix.parent.parent if prefix.parent.name == "checkpoint" else prefix.parent


# -- hashing ---------------------------------------------------------------------------


def digest_stream(handle: IO[bytes], path: str, size_hint: int, multipart: bool = False) -> Digest:
    """CRC32C, MD5 and (``multipart``, past one part) S3's multipart ETag of a stream, in one pass."""
    import crc32c

    crc, md5, size = 0, hashlib.md5(), 0
    parts: list[bytes] = []
    part = hashlib.md5() if multipart and size_hint > PART_SIZE else None
    while block := handle.read(BLOCK):
        crc = crc32c.crc32c(block, crc)
        md5.update(block)
        size += len(block)
        if part is not None:
            part.update(block)
            if size % PART_SIZE == 0:
                parts.append(part.digest())
                part = hashlib.md5()
    etag = None
    if part is not None:
        if size % PART_SIZE:
            parts.append(part.digest())
        etag = f"{hashlib.md5(b''.join(parts)).hexdigest()}-{len(parts)}"
    return Digest(path, size, f"{crc:08x}", md5.hexdigest(), etag)


def digest_file(local: LocalFile, multipart: bool = False) -> Digest:
    with open(local.source, "rb") as handle:
        return digest_stream(handle, local.path, local.size, multipart)


def crc32c_stream(handle: IO[bytes]) -> str:
    import crc32c

    crc = 0
    while block := handle.read(BLOCK):
        crc = crc32c.crc32c(block, crc)
    return f"{crc:08x}"


def reported_match(info: Mapping[str, Any], digest: Digest) -> bool | None:
    """Whether an object's listing entry vouches for ``digest``: size, then the
    hash its store reports; None when the store reports no hash we can check."""
    if info.get("size") != digest.size:
        return False
    if isinstance(info.get("crc32c"), str):  # GCS: base64 of the big-endian CRC32C
        return info["crc32c"] == _b64(digest.crc32c)
    if isinstance(info.get("md5Hash"), str):  # GCS, when it has no CRC32C
        return info["md5Hash"] == _b64(digest.md5)
    etag = info.get("ETag")
    if isinstance(etag, str) and _ETAG.fullmatch(etag.strip('"')):  # S3: MD5, or MD5 of part MD5s "-N"
        return etag.strip('"') in (digest.md5, digest.etag)
    content_md5 = (info.get("content_settings") or {}).get("content_md5")
    if isinstance(content_md5, (bytes, bytearray)):  # Azure blob storage
        return content_md5.hex() == digest.md5
    return None


def _b64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


# -- the remote marker -----------------------------------------------------------------


def marker_bytes(fetched: FetchResult, checkpoint: str, digests: Sequence[Digest]) -> bytes:
    data = {
        "format": STAGED_FORMAT, "model": fetched.name, "sha256": fetched.sha256, "checkpoint": checkpoint,
        "part_size": PART_SIZE, "staged_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "files": [d.to_dict() for d in sorted(digests, key=lambda d: d.path)],
    }  # fmt: skip
    return (json.dumps(data, indent=1) + "\n").encode()


@dataclass(frozen=True)
class StagedMarker:
    """What a ``.zoo-staged.json`` claims: which entry was staged, and its files."""

    model: object
    sha256: object
    files: dict[str, Digest]


def parse_marker(data: bytes, where: str) -> StagedMarker | None:
    """The marker's claims; None (with a warning) when it is not a marker this
    zoo can read. A newer zoo's marker is refused: this one must not overwrite
    what it does not understand."""
    try:
        marker = json.loads(data)
    except ValueError as exc:
        return _unreadable(where, f"not valid JSON ({one_line(exc)})")
    if not isinstance(marker, dict) or type(marker.get("format")) is not int:
        return _unreadable(where, "no format number")
    if marker["format"] > STAGED_FORMAT:
        raise ZooError(f"{where}: written by a newer zoo (marker format {marker['format']}); "
                       "upgrade zoo or stage to another prefix")  # fmt: skip
    files = marker.get("files")
    try:
        digests = [_marker_digest(item, where) for item in files] if isinstance(files, list) else None
    except (UsageError, TypeError, KeyError):
        digests = None
    if digests is None:
        return _unreadable(where, "its file list is malformed")
    return StagedMarker(marker.get("model"), marker.get("sha256"), {d.path: d for d in digests})


def _marker_digest(item: dict[str, Any], where: str) -> Digest:
    digest = Digest(check_key(item["path"], where, UsageError), item["size"], item["crc32c"], item["md5"],
                    item.get("etag"))  # fmt: skip
    valid = (type(digest.size) is int and digest.size >= 0 and isinstance(digest.crc32c, str)
             and _HEX8.fullmatch(digest.crc32c) and isinstance(digest.md5, str) and _HEX32.fullmatch(digest.md5)
             and (digest.etag is None or (isinstance(digest.etag, str) and _ETAG.fullmatch(digest.etag))))  # fmt: skip
    if not valid:
        raise TypeError(digest.path)
    return digest


def _unreadable(where: str, why: str) -> None:
    log.warning("%s: %s; not a staging marker zoo can read: verifying every object and writing it again", where, why)
    return None


# -- where the files go ----------------------------------------------------------------


class FsspecTarget:
    """``<dest>/<name>`` in an fsspec store (gs://, s3://, az:// ...)."""

    def __init__(self, dest: str, name: str) -> None:
        self.url = f"{dest}/{name}"
        self.protocol = urlsplit(dest).scheme
        # Large objects arrive in parts, and the ETag is an MD5 of the parts' MD5s.
        self.multipart = EXTRAS.get(self.protocol) == "s3"
        self.fs, self.base = open_filesystem(self.url)

    def errors(self) -> ContextManager[None]:
        return store_errors(self.url, self.protocol)

    def _path(self, relative: str) -> str:
        return f"{self.base}/{relative}"

    def listing(self) -> dict[str, Mapping[str, Any]]:
        """Every object below the model's prefix, by checked relative path (one listing)."""
        self.fs.invalidate_cache(self.base)  # a listing cached earlier in this process may be stale
        found = self.fs.find(self.base, detail=True)
        return _relative_listing(found.items(), self.base, self.url)

    def info(self, relative: str) -> Mapping[str, Any]:
        self.fs.invalidate_cache(self._path(relative))
        return self.fs.info(self._path(relative))

    def read_marker(self, size: int) -> bytes:
        with self.fs.open(self._path(STAGED_MARKER), "rb") as handle:
            return read_limited(handle, min(size, MARKER_LIMIT), self.marker_url, UsageError)

    def crc32c(self, relative: str) -> str:
        with self.fs.open(self._path(relative), "rb", block_size=8 << 20) as handle:
            return crc32c_stream(handle)

    def put(self, source: Path, relative: str) -> None:
        # An object store's PUT is atomic: a reader sees the old object or the new one.
        options = {"chunksize": PART_SIZE} if self.multipart else {}
        self.fs.put_file(str(source), self._path(relative), **options)

    def write_marker(self, data: bytes) -> None:
        self.fs.pipe_file(self._path(STAGED_MARKER), data)

    def remove_marker(self) -> None:
        with suppress(FileNotFoundError):
            self.fs.rm_file(self._path(STAGED_MARKER))

    @property
    def marker_url(self) -> str:
        return f"{self.url}/{STAGED_MARKER}"


class LocalTarget:
    """``<dest>/<name>`` in a directory: written through temporary names renamed
    into place, every level opened without following a symlink."""

    def __init__(self, dest: str, name: str) -> None:
        self.root = Path(dest)
        self.name = name
        self.url = str(self.root / name)
        self.multipart = False

    @contextmanager
    def errors(self) -> Iterator[None]:
        # Access errors get their own exit code; the rest as every write zoo makes.
        with writing(Path(self.url)), store_errors(self.url, ""):
            yield

    def _key(self, relative: str) -> str:
        return f"{self.name}/{relative}"

    def listing(self) -> dict[str, Mapping[str, Any]]:
        top = self.root / self.name
        if not _is_real_dir(top):
            return {}
        found = {}
        for directory, _dirs, names in os.walk(top):  # never descends through a symlink
            for name in names:
                info = os.lstat(os.path.join(directory, name))
                if stat.S_ISREG(info.st_mode):
                    found[os.path.join(directory, name)] = {"size": info.st_size}
        return _relative_listing(found.items(), str(top), self.url)

    def info(self, relative: str) -> Mapping[str, Any]:
        fd = self._open(relative)
        with os.fdopen(fd, "rb"):
            return {"size": os.fstat(fd).st_size}

    def read_marker(self, size: int) -> bytes:
        with os.fdopen(self._open(STAGED_MARKER), "rb") as handle:
            return read_limited(handle, min(size, MARKER_LIMIT), self.marker_url, UsageError)

    def crc32c(self, relative: str) -> str:
        with os.fdopen(self._open(relative), "rb") as handle:
            return crc32c_stream(handle)

    def _open(self, relative: str) -> int:
        fd = open_beneath(self.root, self._key(relative), os.O_RDONLY | os.O_NONBLOCK)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise FileNotFoundError(f"{self.url}/{relative} is not a regular file")
        os.set_blocking(fd, True)
        return fd

    def put(self, source: Path, relative: str) -> None:
        with open(source, "rb") as handle:
            self._write(relative, lambda out: _copy(handle, out))

    def write_marker(self, data: bytes) -> None:
        self._write(STAGED_MARKER, lambda out: _copy(io.BytesIO(data), out))

    def remove_marker(self) -> None:
        with suppress(FileNotFoundError), self._directory(STAGED_MARKER) as (parent, name):
            os.unlink(name, dir_fd=parent)

    @property
    def marker_url(self) -> str:
        return f"{self.url}/{STAGED_MARKER}"

    def _write(self, relative: str, fill: Callable[[int], object]) -> None:
        """Write ``relative`` through a temporary name renamed over it: a reader
        sees the old file or the new one, and a symlink there is replaced, not followed."""
        with self._directory(relative, create=True) as (parent, name):
            temporary = f".{name}.zoo-{secrets.token_hex(8)}.tmp"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                         dir_fd=parent)  # fmt: skip
            try:
                try:
                    fill(fd)
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=parent)
                raise

    @contextmanager
    def _directory(self, relative: str, create: bool = False) -> Iterator[tuple[int, str]]:
        """The open directory ``relative`` is in (no symlink at any level) and its file name."""
        parent_key, _, name = self._key(relative).rpartition("/")
        if create:  # join_beneath: a symlink already inside cannot carry the new directories out
            join_beneath(self.root, parent_key, self.url, UsageError).mkdir(parents=True, exist_ok=True)
        fd = open_beneath(self.root, parent_key, os.O_RDONLY | os.O_DIRECTORY)
        try:
            yield fd, name
        finally:
            os.close(fd)


Target = FsspecTarget | LocalTarget


def open_target(dest: str, name: str) -> Target:
    """Where ``name`` is staged below ``dest`` (already checked by check_destination)."""
    return LocalTarget(dest, name) if scheme_of(dest) is Scheme.LOCAL else FsspecTarget(dest, name)


def _relative_listing(found: Any, base: str, where: str) -> dict[str, Mapping[str, Any]]:
    """Listing entries by path relative to ``base``; names that are not plain
    keys (a hostile or foreign object) are left out, so never used."""
    prefix = base.rstrip("/") + "/"
    listing = {}
    for path, info in found:
        relative = path[len(prefix):] if isinstance(path, str) and path.startswith(prefix) else None
        try:
            listing[check_key(relative, where, UsageError)] = info
        except UsageError as exc:
            log.debug("%s", exc)
    return listing


def _is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except FileNotFoundError:
        return False


def _copy(source: IO[bytes], fd: int) -> None:
    while block := source.read(BLOCK):
        view = memoryview(block)
        while view:
            view = view[os.write(fd, view):]


# -- staging ---------------------------------------------------------------------------

T = TypeVar("T")


class _Staging:
    """One stage run: the marker's fast path, else each file checked, uploaded
    if needed and verified, then the marker written last."""

    def __init__(self, fetched: FetchResult, files: list[LocalFile], target: Target, jobs: int) -> None:
        self.fetched, self.files, self.target, self.jobs = fetched, files, target, jobs
        self.checkpoint = fetched.checkpoint.relative_to(model_root(fetched.checkpoint)).as_posix()

    def run(self) -> StageResult:
        listing = self.target.listing()
        marker = self._marker(listing)
        if marker is not None and self._still_staged(marker, listing):
            return self._result(uploaded=())
        if STAGED_MARKER in listing:
            self.target.remove_marker()  # nothing claims the model is staged while objects change
        outcomes = self._parallel(lambda local: self._sync(local, listing.get(local.path)), self.files)
        self.target.write_marker(marker_bytes(self.fetched, self.checkpoint, [d for d, _ in outcomes]))
        return self._result(uploaded=tuple(d.path for d, uploaded in outcomes if uploaded))

    def _marker(self, listing: Mapping[str, Mapping[str, Any]]) -> StagedMarker | None:
        info = listing.get(STAGED_MARKER)
        if info is None:
            return None
        size = info.get("size")
        if type(size) is not int or size > MARKER_LIMIT:
            return _unreadable(self.target.marker_url, f"larger than {MARKER_LIMIT >> 20} MiB")
        try:
            data = self.target.read_marker(size)  # refused if it grew since the listing
        except (UsageError, FileNotFoundError) as exc:
            return _unreadable(self.target.marker_url, one_line(exc))
        return parse_marker(data, self.target.marker_url)

    def _still_staged(self, marker: StagedMarker, listing: Mapping[str, Mapping[str, Any]]) -> bool:
        """Whether the marker records this entry's files and every object still
        matches it. Only CRC32Cs of the cache's files are computed (fast), to
        tie the marker to the cache's bytes; objects are checked by the hash
        their store reports (read back only where it reports none)."""
        recorded_files = marker.files
        if (marker.model, marker.sha256) != (self.fetched.name, self.fetched.sha256):
            return False
        if {path: d.size for path, d in recorded_files.items()} != {f.path: f.size for f in self.files}:
            return False

        def unchanged(local: LocalFile) -> bool:
            recorded = recorded_files[local.path]
            with open(local.source, "rb") as handle:
                if crc32c_stream(handle) != recorded.crc32c:
                    return False
            return self._holds(recorded, listing.get(local.path))

        return all(self._parallel(unchanged, self.files))

    def _sync(self, local: LocalFile, info: Mapping[str, Any] | None) -> tuple[Digest, bool]:
        """Upload one file unless its object already holds the cache's bytes; then verify it."""
        if info is not None and info.get("size") == local.size:
            digest = digest_file(local, self.target.multipart)
            if self._holds(digest, info):
                return digest, False
            self.target.put(local.source, local.path)
        else:  # certainly uploaded: hashed meanwhile, in a thread of its own
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="zoo-hash") as hasher:
                hashing = hasher.submit(digest_file, local, self.target.multipart)
                self.target.put(local.source, local.path)
                digest = hashing.result()
        if not self._holds(digest, self.target.info(local.path)):
            raise IntegrityError(f"{self.target.url}/{local.path}: the stored object does not match the cache's "
                                 f"bytes after upload (size {digest.size}, crc32c {digest.crc32c})",
                                 url=f"{self.target.url}/{local.path}")  # fmt: skip
        return digest, True

    def _holds(self, digest: Digest, info: Mapping[str, Any] | None) -> bool:
        if info is None:
            return False
        reported = reported_match(info, digest)
        if reported is None and info.get("size") == digest.size:
            return self.target.crc32c(digest.path) == digest.crc32c
        return bool(reported)

    def _parallel(self, work: Callable[[LocalFile], T], files: Sequence[LocalFile]) -> list[T]:
        if self.jobs == 1 or len(files) < 2:
            return [work(f) for f in files]
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="zoo-stage")
        try:
            return list(pool.map(work, files))
        finally:
            # Not `with`: on Ctrl-C it would wait for every running upload.
            pool.shutdown(wait=False, cancel_futures=True)

    def _result(self, uploaded: tuple[str, ...]) -> StageResult:
        sizes = {f.path: f.size for f in self.files}
        skipped = tuple(path for path in sizes if path not in uploaded)
        config = next((path for path in ("pipeline.config", "sample.config") if path in sizes), None)
        return StageResult(
            name=self.fetched.name,
            destination=self.target.url,
            checkpoint=f"{self.target.url}/{self.checkpoint}",
            config=f"{self.target.url}/{config}" if config else None,
            uploaded=uploaded,
            skipped=skipped,
            uploaded_bytes=sum(sizes[p] for p in uploaded),
            skipped_bytes=sum(sizes[p] for p in skipped),
        )
