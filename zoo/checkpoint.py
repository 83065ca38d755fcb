"""Read, inspect and verify TensorFlow checkpoints without TensorFlow.

A checkpoint is a prefix such as ``.../checkpoint/ckpt-0``: ``<prefix>.index``
lists every tensor (dtype, shape, shard, offset, size, masked CRC32C; see
zoo.bundle_index) and ``<prefix>.data-NNNNN-of-MMMMM`` hold the bytes. The zoo
publishes no checksums, so these CRCs are what a downloaded checkpoint can be
checked against. Reading the index takes milliseconds and imports neither
TensorFlow nor numpy; verification streams each shard once.
"""

from __future__ import annotations

import glob
import os
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from io import FileIO
from pathlib import Path
from typing import Any

import crc32c

from zoo.bundle_index import BundleHeader, ByteOrder, Malformed, TensorEntry, mask, parse_index, read_varint
from zoo.errors import CheckpointError

__all__ = [
    "BundleHeader",
    "Checkpoint",
    "TensorEntry",
    "check_files",
    "read_checkpoint",
    "resolve_prefix",
    "summarize",
    "verify_checkpoint",
]

OBJECT_GRAPH = "_CHECKPOINTABLE_OBJECT_GRAPH"
CHUNK_SIZE = 8 << 20  # large sequential reads; the page cache serves them at memory speed
_SUFFIX = re.compile(r"\.(index|meta|data-\d{5}-of-\d{5})$")
_STATE_FILE = "checkpoint"  # tf.train.CheckpointManager's and Saver's record of the latest prefix
_STATE_PATH = re.compile(r'^\s*model_checkpoint_path:\s*"([^"]*)"', re.MULTILINE)
_NOT_PARAMETERS = {"string", "variant", "resource"}


@dataclass(frozen=True)
class Checkpoint:
    """A checkpoint's index: what it holds, where, and which CRCs the bytes must have.

    ``entries`` are the tensors TensorFlow lists (``tf.train.list_variables``), in
    name order; ``slices`` hold the data of partitioned tensors, named after them.
    """

    prefix: Path
    header: BundleHeader
    entries: tuple[TensorEntry, ...]
    slices: tuple[TensorEntry, ...] = ()

    @property
    def index_file(self) -> Path:
        return _index_of(self.prefix)

    @property
    def data_files(self) -> tuple[Path, ...]:
        count = self.header.num_shards
        return tuple(self.prefix.with_name(f"{self.prefix.name}.data-{i:05d}-of-{count:05d}") for i in range(count))

    @property
    def is_object_based(self) -> bool:
        """Written by tf.train.Checkpoint (TF2), which the Object Detection API's fine-tuning requires."""
        return any(entry.name == OBJECT_GRAPH for entry in self.entries)

    @property
    def format(self) -> str:
        return "tf2-object-based" if self.is_object_based else "tf1-name-based"

    @property
    def num_parameters(self) -> int:
        """Elements of all numeric tensors (optimizer slots and counters included)."""
        return sum(entry.num_elements for entry in self.entries if entry.dtype not in _NOT_PARAMETERS)

    @property
    def num_bytes(self) -> int:
        """Bytes the index points to: what verify_checkpoint reads and reports progress against."""
        return sum(entry.size for entry in self.entries if not entry.slices) + sum(s.size for s in self.slices)

    def root_objects(self) -> list[str]:
        """First components of the names: ``model``, ``optimizer``, ``save_counter`` (TF1: scopes)."""
        return sorted({entry.name.split("/", 1)[0] for entry in self.entries if entry.name != OBJECT_GRAPH})

    def children(self, parent: str) -> list[str]:
        """Components right below ``parent`` (a ``/`` path), without TF's ``.ATTRIBUTES``-style markers."""
        start = parent.rstrip("/") + "/"
        found = {entry.name[len(start) :].split("/", 1)[0] for entry in self.entries if entry.name.startswith(start)}
        return sorted(child for child in found if child and not child.startswith("."))

    def model_children(self) -> list[str]:
        """What ``model`` holds: ``_feature_extractor``, ``_box_predictor`` ..."""
        return self.children("model")

    def has_name_prefix(self, prefix: str) -> bool:
        """Whether a listed name starts with ``prefix`` (the API's ``feature_extractor`` check)."""
        return any(entry.name.startswith(prefix) for entry in self.entries)


# -- finding and reading ---------------------------------------------------------------


def resolve_prefix(path: str | Path) -> Path:
    """The absolute prefix of the checkpoint ``path`` names, whose ``.index`` exists.

    ``path`` is a prefix, its ``.index``, ``.meta`` or a ``.data-*`` file, or a
    directory: the one its ``checkpoint`` state file names, else its single
    ``*.index``, else the same in its ``checkpoint/`` sub-directory (a TF2 zoo
    model's layout).
    """
    given = Path(path)
    if given.is_dir():
        return _absolute(_prefix_in_directory(given))
    prefix = given.with_name(_SUFFIX.sub("", given.name))
    if not _index_of(prefix).is_file():
        raise CheckpointError(_no_index_message(prefix))
    return _absolute(prefix)


def is_checkpoint_path(target: str) -> bool:
    """Whether ``target`` names a checkpoint by path rather than a model by name:
    it exists, or has a directory part or a checkpoint file's suffix (no model
    name has a '/'; the registry refuses one)."""
    exists = os.path.exists(target) or os.path.exists(target + ".index")
    return exists or "/" in target or bool(_SUFFIX.search(target))


def read_checkpoint(path: str | Path) -> Checkpoint:
    """Resolve ``path`` (see resolve_prefix) and read its index; no data shard is opened."""
    prefix = resolve_prefix(path)
    index = _index_of(prefix)
    try:
        header, entries, slices = parse_index(index.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{index}: cannot read: {exc.strerror or exc}") from None
    except Malformed as exc:
        raise CheckpointError(f"{index}: {exc}") from None
    return Checkpoint(prefix, header, tuple(entries), tuple(slices))


def _prefix_in_directory(directory: Path) -> Path:
    state = directory / _STATE_FILE
    if state.is_file():
        return _prefix_from_state(state)
    indexes = sorted(directory.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    if not indexes and state.is_dir():
        return _prefix_in_directory(state)
    if not indexes:
        raise CheckpointError(f"{directory}: no checkpoint here (no '{_STATE_FILE}' state file, no *.index file)")
    names = ", ".join(index.stem for index in indexes)
    raise CheckpointError(
        f"{directory}: several checkpoints ({names}) and no '{_STATE_FILE}' state file; pass a prefix"
    )


def _prefix_from_state(state: Path) -> Path:
    try:
        match = _STATE_PATH.search(state.read_text(errors="replace"))
    except OSError as exc:
        raise CheckpointError(f"{state}: cannot read: {exc.strerror or exc}") from None
    if not match:
        raise CheckpointError(f"{state}: state file names no model_checkpoint_path")
    named = Path(match.group(1))
    # TF keeps an absolute path as written, so a state file from another machine names
    # that machine's directory; the checkpoint then sits next to the state file.
    for prefix in (state.parent / named, state.parent / named.name):
        if _index_of(prefix).is_file():
            return prefix
    raise CheckpointError(f"{state}: model_checkpoint_path {match.group(1)!r} names no checkpoint "
                          f"({_index_of(state.parent / named)} does not exist)")  # fmt: skip


def _no_index_message(prefix: Path) -> str:
    shards = sorted(p.name for p in prefix.parent.glob(f"{glob.escape(prefix.name)}.data-*"))
    if shards:
        return f"{_index_of(prefix)} is missing; only data shards are there ({', '.join(shards)})"
    if not prefix.parent.is_dir():
        return f"{prefix}: no checkpoint there ({prefix.parent} is not a directory)"
    others = sorted(index.stem for index in prefix.parent.glob("*.index"))
    found = f"checkpoints there: {', '.join(others)}" if others else f"{prefix.parent} holds no *.index file"
    return f"{prefix}: no checkpoint there ({_index_of(prefix).name} does not exist; {found})"


def _index_of(prefix: Path) -> Path:
    return prefix.with_name(prefix.name + ".index")


def _absolute(path: Path) -> Path:
    return Path(os.path.abspath(path))  # normalised, but symlinks kept as the user laid them out


# -- verification ----------------------------------------------------------------------


def check_files(checkpoint: Checkpoint) -> None:
    """Every data shard is there and every tensor lies within its shard (stat calls only)."""
    for path, stored in zip(checkpoint.data_files, _layout(checkpoint), strict=True):
        try:
            size = path.stat().st_size
        except OSError:
            raise CheckpointError(f"{path}: data shard is missing") from None
        for label, entry in stored:
            if entry.offset + entry.size > size:
                raise CheckpointError(f"{path}: {label} at offset {entry.offset} ({entry.size} bytes) runs past the "
                                      f"end of the shard ({size} bytes): the shard is truncated")  # fmt: skip


def verify_checkpoint(checkpoint: Checkpoint, progress: Callable[[int], None] | None = None) -> None:
    """Check every tensor's bytes against its masked CRC32C, or raise CheckpointError.

    Each shard is read once, sequentially, through one reused buffer.
    ``progress`` is called with the number of bytes just checked; the calls
    add up to ``checkpoint.num_bytes``.
    """
    check_files(checkpoint)
    buffer = bytearray(CHUNK_SIZE)
    for path, stored in zip(checkpoint.data_files, _layout(checkpoint), strict=True):
        try:
            with open(path, "rb", buffering=0) as file:
                reader = _ShardReader(file, buffer, progress)
                for label, entry in stored:
                    _verify_tensor(reader, label, entry, checkpoint.header.endianness, path)
        except OSError as exc:
            raise CheckpointError(f"{path}: cannot read: {exc.strerror or exc}") from None
        except EOFError as exc:
            raise CheckpointError(f"{path}: ended at byte {exc} while being read: truncated meanwhile") from None


def _layout(checkpoint: Checkpoint) -> list[list[tuple[str, TensorEntry]]]:
    """Per shard, the entries whose bytes it holds, in file order, with how to name them."""
    shards: list[list[tuple[str, TensorEntry]]] = [[] for _ in checkpoint.data_files]
    for entry in checkpoint.entries:
        if not entry.slices:  # a partitioned tensor's bytes are in its slices
            shards[entry.shard_id].append((f"tensor {entry.name!r}", entry))
    for piece in checkpoint.slices:
        shards[piece.shard_id].append((f"a slice of tensor {piece.name!r}", piece))
    for stored in shards:
        stored.sort(key=lambda item: (item[1].offset, item[1].size))
    return shards


def _verify_tensor(reader: _ShardReader, label: str, entry: TensorEntry, byteorder: ByteOrder, path: Path) -> None:
    where = f"{path}: {label} at offset {entry.offset} ({entry.size} bytes)"
    pieces = reader.pieces(entry.offset, entry.size)
    try:
        if entry.dtype == "string":
            computed = _string_crc(_joined(pieces), entry.num_elements, byteorder)
        elif entry.dtype == "variant":
            computed = _variant_crc(_joined(pieces), entry.num_elements, byteorder)
        else:
            computed = _raw_crc(pieces)
    except Malformed as exc:
        raise CheckpointError(f"{where} is corrupt: {exc}") from None
    if computed != entry.crc32c:
        raise CheckpointError(f"{where} fails its CRC32C: stored {entry.crc32c:#010x}, computed {computed:#010x}")


def _raw_crc(pieces: Iterator[memoryview]) -> int:
    crc = 0
    for piece in pieces:
        crc = crc32c.crc32c(piece, crc)
    return mask(crc)


def _string_crc(data: bytes, count: int, byteorder: ByteOrder) -> int:
    """The CRC tensor_bundle.cc's WriteStringTensor computes.

    On disk: the lengths as varints, a masked CRC32C of the lengths, the bytes.
    The CRC covers the lengths as 4-byte integers in the writer's byte order
    (8 bytes past 4 GiB), not the varints, then the stored checksum and the bytes.
    """
    if count > len(data):
        raise Malformed(f"{count} strings cannot fit in {len(data)} bytes")
    lengths = []
    pos = 0
    for _ in range(count):
        length, pos = read_varint(data, pos)
        lengths.append(length)
    if pos + 4 + sum(lengths) != len(data):
        raise Malformed("its string lengths do not add up to its size")
    crc = crc32c.crc32c(b"".join(n.to_bytes(4 if n < 1 << 32 else 8, byteorder) for n in lengths))
    return mask(crc32c.crc32c(memoryview(data)[pos:], crc))


def _variant_crc(data: bytes, count: int, byteorder: ByteOrder) -> int:
    """The CRC WriteVariantTensor computes: per element, a varint length, the bytes and
    their masked CRC32C on disk; the length is checksummed as an 8-byte integer."""
    crc = 0
    pos = 0
    for _ in range(count):
        length, start = read_varint(data, pos)
        pos = start + length + 4
        if pos > len(data):
            raise Malformed("a variant element runs past the tensor's end")
        crc = crc32c.crc32c(data[start:pos], crc32c.crc32c(length.to_bytes(8, byteorder), crc))
    if pos != len(data):
        raise Malformed("its variant elements do not add up to its size")
    return mask(crc)


def _joined(pieces: Iterator[memoryview]) -> bytes:
    data = bytearray()
    for piece in pieces:  # copied one by one: each piece is overwritten by the next read
        data += piece
    return bytes(data)


class _ShardReader:
    """One shard read front to back through a reused buffer; any byte is read once
    when tensors lie back to back, as TensorFlow writes them."""

    def __init__(self, file: FileIO, buffer: bytearray, progress: Callable[[int], None] | None) -> None:
        self._file = file
        self._view = memoryview(buffer)
        self._progress = progress
        self._start = self._end = self._position = 0  # the buffer holds file bytes [start, end)

    def pieces(self, offset: int, size: int) -> Iterator[memoryview]:
        """Views of the bytes [offset, offset + size), valid until the next one is taken."""
        end = offset + size
        while offset < end:
            if not self._start <= offset < self._end:
                self._fill(offset)
            stop = min(end, self._end)
            yield self._view[offset - self._start : stop - self._start]
            if self._progress:
                self._progress(stop - offset)
            offset = stop

    def _fill(self, offset: int) -> None:
        if offset != self._position:
            self._file.seek(offset)
        read = self._file.readinto(self._view)
        if not read:
            raise EOFError(offset)
        self._start, self._end, self._position = offset, offset + read, offset + read


# -- inspection ------------------------------------------------------------------------


def summarize(checkpoint: Checkpoint, filter_prefix: str | None = None) -> dict[str, Any]:
    """What ``zoo inspect`` shows, JSON-ready; with ``filter_prefix``, the variables whose names start with it."""
    summary: dict[str, Any] = {
        "prefix": str(checkpoint.prefix),
        "format": checkpoint.format,
        "root_objects": checkpoint.root_objects(),
        "model_children": checkpoint.model_children(),
        "tensors": len(checkpoint.entries),
        "parameters": checkpoint.num_parameters,
        "bytes": checkpoint.num_bytes,
        "shards": checkpoint.header.num_shards,
        "dtypes": dict(sorted(Counter(entry.dtype for entry in checkpoint.entries).items())),
    }
    if filter_prefix is not None:
        summary["variables"] = [
            {"name": entry.name, "dtype": entry.dtype, "shape": list(entry.shape)}
            for entry in checkpoint.entries
            if entry.name.startswith(filter_prefix)
        ]
    return summary
