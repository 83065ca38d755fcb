"""Verification of a checkpoint's bytes against the CRC32Cs its index records.

The zoo publishes no checksums, so these CRCs are what a downloaded
checkpoint can be checked against. Verification streams each shard once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from io import FileIO
from pathlib import Path

import crc32c

from zoo.checkpoint.reader import Checkpoint
from zoo.checkpoint.tensor_bundle import ByteOrder, Malformed, TensorEntry, mask, read_varint
from zoo.errors import CheckpointError

CHUNK_SIZE = 8 << 20  # large sequential reads; the page cache serves them at memory speed


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
