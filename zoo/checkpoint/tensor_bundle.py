"""Decoding of a checkpoint's ``.index`` file: a LevelDB table of protobuf messages.

TensorFlow writes the index of a tensor bundle with its LevelDB-derived table
builder (tensorflow/core/lib/io/table_builder.cc): blocks of prefix-compressed
keys with restart points, each followed by a type byte and a masked CRC32C, an
index block of handles to them, and a 48-byte footer that ends in a magic
number. The empty key holds a BundleHeaderProto; every other key names a
tensor and holds its BundleEntryProto (tensor_bundle.proto). Both messages are
decoded here straight from the protobuf wire format, so that reading an index
needs neither TensorFlow nor a protobuf runtime.

Everything here works on bytes and raises ``Malformed``; zoo.checkpoint.reader owns
the files and turns that into a CheckpointError naming the file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import crc32c

MAGIC = 0xDB4775248B80FB57
_FOOTER_SIZE = 48  # two block handles padded to 40 bytes, then the magic number
_TRAILER_SIZE = 5  # type byte + masked CRC32C after every block
_COMPRESSIONS = {1: "snappy", 2: "zstd"}  # LevelDB's block types; TF's table knows snappy only
_MASK_DELTA = 0xA282EAD8
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5
# Field number -> wire type, per message of tensor_bundle.proto / versions.proto / tensor_shape.proto.
_HEADER = {1: _VARINT, 2: _VARINT, 3: _BYTES}  # num_shards, endianness, version
_VERSION = {1: _VARINT, 2: _VARINT}  # producer, min_consumer
_ENTRY = {1: _VARINT, 2: _BYTES, 3: _VARINT, 4: _VARINT, 5: _VARINT, 6: _FIXED32, 7: _BYTES}
_SHAPE = {2: _BYTES}  # dim
_DIM = {1: _VARINT}  # size
_HEADER_KEY = b""
_SLICE_KEY_START = 0  # slice keys start with OrderedCode's encoding of the number 0
_BUNDLE_VERSION = 1  # tensor_bundle.h kTensorBundleVersion, which TF checks min_consumer against
_MAX_SHARDS = 99_999  # shard file names carry five digits

# types.proto's DataType, named as tf.DType.name names them.
DTYPES = {
    1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string",
    8: "complex64", 9: "int64", 10: "bool", 11: "qint8", 12: "quint8", 13: "qint32",
    14: "bfloat16", 15: "qint16", 16: "quint16", 17: "uint16", 18: "complex128", 19: "float16",
    20: "resource", 21: "variant", 22: "uint32", 23: "uint64", 24: "float8_e5m2",
    25: "float8_e4m3fn", 26: "float8_e4m3fnuz", 27: "float8_e4m3b11fnuz", 28: "float8_e5m2fnuz",
    29: "int4", 30: "uint4", 31: "int2", 32: "uint2", 33: "float4_e2m1fn",
}  # fmt: skip


ByteOrder = Literal["little", "big"]  # as int.to_bytes spells it


class Malformed(Exception):
    """The bytes do not follow the format; the message says where and how."""


@dataclass(frozen=True, slots=True)
class BundleHeader:
    """BundleHeaderProto: how many data shards, their byte order, the format version."""

    num_shards: int
    endianness: ByteOrder
    producer: int
    min_consumer: int


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """BundleEntryProto: where a tensor's bytes are and the masked CRC32C they must have.

    ``slices`` counts the slice entries that hold the data of a partitioned
    (TF1) variable; such an entry stores no bytes itself.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int
    slices: int = 0

    @property
    def num_elements(self) -> int:
        return math.prod(self.shape)


def mask(crc: int) -> int:
    """TensorFlow's (and LevelDB's) masking of a stored CRC32C (crc32c.h)."""
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + _MASK_DELTA) & 0xFFFFFFFF


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The base-128 varint at ``data[pos]`` and the position after it."""
    result = shift = 0
    while shift < 70:
        if pos >= len(data):
            raise Malformed("a varint runs past the end of its field")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
    raise Malformed("a varint is longer than 10 bytes")


def parse_index(data: bytes) -> tuple[BundleHeader, list[TensorEntry], list[TensorEntry]]:
    """The header, the tensors (in key order) and the slices of partitioned tensors."""
    header = None
    entries: list[TensorEntry] = []
    slices: list[TensorEntry] = []
    for key, value in _table_items(data):
        if key == _HEADER_KEY:
            header = _header(value)
        elif key[0] == _SLICE_KEY_START:
            slices.append(_entry(_slice_owner(key), value))
        else:
            entries.append(_entry(key.decode(errors="replace"), value))
    if header is None:
        raise Malformed("no bundle header (the entry under the empty key)")
    _check_header(header)
    for entry in (*entries, *slices):
        _check_entry(entry, header)
    return header, entries, slices


# -- the table -------------------------------------------------------------------------


def _table_items(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(data) < _FOOTER_SIZE:
        raise Malformed(f"{len(data)} bytes is too short for the table footer: truncated, or not an index")
    magic = int.from_bytes(data[-8:], "little")
    if magic != MAGIC:
        raise Malformed(f"bad magic number {magic:#018x} (expected {MAGIC:#x}): truncated, or not an index")
    metaindex, pos = _handle(data, len(data) - _FOOTER_SIZE)
    index, _ = _handle(data, pos)
    _block(data, metaindex, "metaindex block")  # holds nothing TF uses; read for its CRC only
    for _separator, value in _block_items(_block(data, index, "index block")):
        handle, _ = _handle(value, 0)
        yield from _block_items(_block(data, handle, "data block"))


def _handle(data: bytes, pos: int) -> tuple[tuple[int, int], int]:
    offset, pos = read_varint(data, pos)
    size, pos = read_varint(data, pos)
    return (offset, size), pos


def _block(data: bytes, handle: tuple[int, int], what: str) -> bytes:
    offset, size = handle
    end = offset + size
    if end + _TRAILER_SIZE > len(data) - _FOOTER_SIZE:
        raise Malformed(f"{what} at offset {offset} ({size} bytes) runs past the end of the file "
                        f"({len(data)} bytes): truncated")  # fmt: skip
    stored = int.from_bytes(data[end + 1 : end + _TRAILER_SIZE], "little")
    computed = mask(crc32c.crc32c(data[offset : end + 1]))  # the type byte is covered too
    if stored != computed:
        raise Malformed(f"bad CRC32C in the {what} at offset {offset}: stored {stored:#010x}, "
                        f"computed {computed:#010x}")  # fmt: skip
    kind = data[end]
    if kind:
        name = _COMPRESSIONS.get(kind, f"type {kind}")
        raise Malformed(f"the {what} at offset {offset} is compressed ({name}); TensorFlow writes "
                        "uncompressed indexes and only those can be read")  # fmt: skip
    return data[offset:end]


def _block_items(block: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise Malformed(f"a block of {len(block)} bytes cannot hold its restart count")
    restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * restarts  # entries end where the restart offsets begin
    if limit < 0:
        raise Malformed(f"a block of {len(block)} bytes claims {restarts} restart points")
    key = b""
    pos = 0
    while pos < limit:
        shared, pos = read_varint(block, pos)
        unshared, pos = read_varint(block, pos)
        length, pos = read_varint(block, pos)
        if shared > len(key) or pos + unshared + length > limit:
            raise Malformed(f"a block entry at byte {pos} overruns its block")
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared + length
        yield key, block[pos - length : pos]


def _slice_owner(key: bytes) -> str:
    """The tensor a slice key belongs to (tensor_slice.cc EncodeTensorNameSlice).

    After the leading 0x00 comes OrderedCode's string encoding of the name: 0x00
    is escaped as 00 ff, 0xff as ff 00, and 00 01 ends it; the extents follow.
    """
    name = bytearray()
    pos = 1
    while pos + 1 < len(key):
        byte, following = key[pos], key[pos + 1]
        if byte == 0x00 and following == 0x01:
            return name.decode(errors="replace")
        if byte in (0x00, 0xFF):
            if following != byte ^ 0xFF:
                break
            pos += 1
        name.append(byte)
        pos += 1
    raise Malformed(f"slice key {bytes(key[:40])!r} holds no tensor name")


# -- the messages ----------------------------------------------------------------------


def _header(message: bytes) -> BundleHeader:
    fields, _ = _decode(message, _HEADER)
    version, _ = _decode(fields.get(3, b""), _VERSION)
    return BundleHeader(
        num_shards=_signed(fields.get(1, 0)),
        endianness="big" if fields.get(2) == 1 else "little",
        producer=_signed(version.get(1, 0)),
        min_consumer=_signed(version.get(2, 0)),
    )


def _entry(name: str, message: bytes) -> TensorEntry:
    fields, slices = _decode(message, _ENTRY, repeated=7)
    dtype = fields.get(1, 0)
    return TensorEntry(
        name=name,
        dtype=DTYPES.get(dtype, f"DataType({dtype})"),
        shape=_shape(fields.get(2, b"")),
        shard_id=_signed(fields.get(3, 0)),
        offset=_signed(fields.get(4, 0)),
        size=_signed(fields.get(5, 0)),
        crc32c=fields.get(6, 0),
        slices=len(slices),
    )


@functools.lru_cache(maxsize=4096)  # a model's tensors share a handful of shapes
def _shape(message: bytes) -> tuple[int, ...]:
    _, dims = _decode(message, _SHAPE, repeated=2)
    return tuple(_signed(_decode(dim, _DIM)[0].get(1, 0)) for dim in dims)


def _check_header(header: BundleHeader) -> None:
    if not 1 <= header.num_shards <= _MAX_SHARDS:
        raise Malformed(f"the header claims {header.num_shards} data shards")
    if header.min_consumer > _BUNDLE_VERSION:
        raise Malformed(f"written in bundle format {header.producer}, which needs a reader of version "
                        f"{header.min_consumer} or later (this one reads version {_BUNDLE_VERSION})")  # fmt: skip


def _check_entry(entry: TensorEntry, header: BundleHeader) -> None:
    if not 0 <= entry.shard_id < header.num_shards:
        raise Malformed(f"tensor {entry.name!r} is in shard {entry.shard_id} of a bundle of {header.num_shards}")
    if entry.offset < 0 or entry.size < 0 or any(dim < 0 for dim in entry.shape):
        raise Malformed(f"tensor {entry.name!r} has a negative offset, size or dimension")


def _decode(message: bytes, wires: dict[int, int], repeated: int = 0) -> tuple[dict[int, Any], list[Any]]:
    """The last value of each field numbered in ``wires`` (protobuf's rule for a singular
    field) and every value of the ``repeated`` one. ``wires`` gives each field's wire type."""
    last: dict[int, Any] = {}
    every: list[Any] = []
    pos, end = 0, len(message)
    while pos < end:
        # One-byte tags and varints inlined: this loop is most of the time a listing takes.
        tag = message[pos]
        if tag < 0x80:
            pos += 1
        else:
            tag, pos = read_varint(message, pos)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == _VARINT:
            if pos < end and message[pos] < 0x80:
                value, pos = message[pos], pos + 1
            else:
                value, pos = read_varint(message, pos)
        elif wire == _BYTES:
            length, pos = read_varint(message, pos)
            value, pos = message[pos : pos + length], pos + length
        elif wire in (_FIXED32, _FIXED64):
            width = 4 if wire == _FIXED32 else 8
            value, pos = int.from_bytes(message[pos : pos + width], "little"), pos + width
        else:
            raise Malformed(f"protobuf wire type {wire} where none is expected")
        if pos > end:
            raise Malformed(f"protobuf field {number} runs past the end of its message")
        expected = wires.get(number)
        if expected is None:
            continue  # a field newer than this reader; protobuf skips those too
        if wire != expected:
            raise Malformed(f"protobuf field {number} has wire type {wire}, expected {expected}")
        if number == repeated:
            every.append(value)
        else:
            last[number] = value
    return last, every


def _signed(value: int) -> int:
    """int32/int64 fields travel as 64-bit two's complement varints."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value
