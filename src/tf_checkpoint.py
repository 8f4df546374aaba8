"""Read TensorFlow checkpoints (the TensorBundle format, TF 1.x ``Saver`` V2 / TF 2.x) without TensorFlow.

Standard library + numpy only, so it also runs in an environment without this workspace.

A checkpoint with prefix ``P`` is two kinds of file:

* ``P.index``: an SSTable (LevelDB table format). Its last 48 bytes are the footer (block handles
  of the meta-index and index blocks, then the magic number ``0xdb4775248b80fb57``). Every block
  is followed by a 5-byte trailer (compression type, masked CRC32C). Block entries are
  prefix-compressed ``(shared, non_shared, value_length, key delta, value)`` records, with a
  restart array at the end of the block. The index block maps the last key of each data block to
  that block's handle. In the data blocks the key ``""`` holds the ``BundleHeaderProto``
  (number of data shards, endianness, version) and every other key is a tensor name whose value
  is a ``BundleEntryProto``: dtype (field 1), shape (2), shard id (3), offset (4), size (5),
  masked CRC32C of the bytes (6), slices (7, for partitioned variables: not supported here).
* ``P.data-SSSSS-of-NNNNN``: the raw little-endian tensor bytes, at the entry's offset and size.

Everything is checked as it is read: the footer magic, every block's CRC, every tensor's size
against its shape and dtype, and every tensor's CRC32C (a pure-Python CRC, ~1 s for 10 MB; pass
``verify=False`` to skip it). Any problem raises :class:`CheckpointFormatError` naming the file.

``TensorBundle(prefix)`` opens files on disk (``prefix`` may also be a folder whose files are
``.index`` / ``.data-...``: that is how the ``musicnn`` wheel ships them);
``TensorBundle.from_bytes(index, [data])`` reads the same from memory (e.g. out of a wheel).
``read_checkpoint(prefix)`` returns ``{name: np.ndarray}`` for every tensor.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # two BlockHandles padded to 40 bytes + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type (1) + masked crc32c (4)

# tensorflow/core/framework/types.proto -> numpy (little-endian)
DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"), 2: np.dtype("<f8"), 3: np.dtype("<i4"), 4: np.dtype("u1"), 5: np.dtype("<i2"),
    6: np.dtype("i1"), 9: np.dtype("<i8"), 10: np.dtype("?"), 17: np.dtype("<u2"), 19: np.dtype("<f2"),
    22: np.dtype("<u4"), 23: np.dtype("<u8"),
}
DTYPE_NAMES = {1: "float32", 2: "float64", 3: "int32", 4: "uint8", 5: "int16", 6: "int8", 7: "string", 8: "complex64",
               9: "int64", 10: "bool", 14: "bfloat16", 17: "uint16", 18: "complex128", 19: "float16", 20: "resource",
               21: "variant", 22: "uint32", 23: "uint64"}


class CheckpointFormatError(ValueError):
    """The files are missing, truncated, corrupt, or use a feature this reader does not support."""


# ----------------------------------------------------------------------------- CRC32C (Castagnoli)


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()
# slicing-by-4 tables: T[k][b] = crc of byte b followed by k zero bytes
_CRC_T4 = [_CRC_TABLE]
for _k in range(3):
    _CRC_T4.append([(_CRC_T4[-1][b] >> 8) ^ _CRC_TABLE[_CRC_T4[-1][b] & 0xFF] for b in range(256)])


def crc32c(data: bytes | memoryview) -> int:
    """CRC-32C of ``data`` (pure Python, slicing-by-4: about 10 MB/s)."""
    t0, t1, t2, t3 = _CRC_T4
    crc = 0xFFFFFFFF
    mv = memoryview(data).cast("B")
    n4 = len(mv) // 4 * 4
    if n4:
        for word in np.frombuffer(mv[:n4], dtype="<u4").tolist():
            crc ^= word
            crc = t3[crc & 0xFF] ^ t2[(crc >> 8) & 0xFF] ^ t1[(crc >> 16) & 0xFF] ^ t0[crc >> 24]
    for b in mv[n4:]:
        crc = t0[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def unmask_crc(masked: int) -> int:
    """Undo LevelDB/TF's CRC masking (``((crc >> 15) | (crc << 17)) + 0xa282ead8``)."""
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def mask_crc(crc: int) -> int:
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


# ----------------------------------------------------------------------------- protobuf wire format


def _varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointFormatError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise CheckpointFormatError("varint too long")


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    """(field number, wire type, value) of a serialized protobuf message."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos:pos + 8], "little"), pos + 8
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = bytes(buf[pos:pos + n]), pos + n
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos:pos + 4], "little"), pos + 4
        else:
            raise CheckpointFormatError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise CheckpointFormatError("truncated protobuf message")
        yield field, wire, value


def _signed64(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


@dataclass(frozen=True)
class BundleEntry:
    """One tensor's ``BundleEntryProto``."""

    name: str
    dtype: int
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int
    crc32c: int | None  # masked, as stored
    sliced: bool = False

    @property
    def dtype_name(self) -> str:
        return DTYPE_NAMES.get(self.dtype, f"dtype#{self.dtype}")


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    dims = []
    for field, _, value in _fields(buf):
        if field == 2:  # Dim { int64 size = 1; string name = 2; }
            size = 0
            for f, _, v in _fields(value):
                if f == 1:
                    size = _signed64(v)
            dims.append(size)
        elif field == 3 and value:
            raise CheckpointFormatError("tensor of unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> BundleEntry:
    dtype, shape, shard, offset, size, crc, sliced = 0, (), 0, 0, 0, None, False
    for field, _, value in _fields(buf):
        if field == 1:
            dtype = value
        elif field == 2:
            shape = _parse_shape(value)
        elif field == 3:
            shard = value
        elif field == 4:
            offset = _signed64(value)
        elif field == 5:
            size = _signed64(value)
        elif field == 6:
            crc = value
        elif field == 7:
            sliced = True
    return BundleEntry(name, dtype, shape, shard, offset, size, crc, sliced)


# ----------------------------------------------------------------------------- SSTable


def _block(index: bytes, offset: int, size: int, what: str) -> bytes:
    end = offset + size + BLOCK_TRAILER_SIZE
    if offset < 0 or end > len(index):
        raise CheckpointFormatError(f"{what}: block [{offset}, {end}) lies outside the {len(index)}-byte index file (truncated?)")
    contents, ctype = index[offset:offset + size], index[offset + size]
    stored = int.from_bytes(index[offset + size + 1:end], "little")
    if unmask_crc(stored) != crc32c(index[offset:offset + size + 1]):
        raise CheckpointFormatError(f"{what}: block at offset {offset} fails its CRC check (corrupt index file)")
    if ctype != 0:
        raise CheckpointFormatError(f"{what}: compressed table block (type {ctype}) not supported; TensorBundle "
                                    "index files are written uncompressed")
    return contents


def _block_entries(block: bytes, what: str) -> Iterator[tuple[bytes, bytes]]:
    if len(block) < 4:
        raise CheckpointFormatError(f"{what}: block too short")
    n_restarts = int.from_bytes(block[-4:], "little")
    limit = len(block) - 4 - 4 * n_restarts
    if limit < 0:
        raise CheckpointFormatError(f"{what}: bad restart count {n_restarts}")
    pos, key = 0, b""
    while pos < limit:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        vlen, pos = _varint(block, pos)
        if shared > len(key) or pos + non_shared + vlen > limit:
            raise CheckpointFormatError(f"{what}: malformed block entry at byte {pos}")
        key = key[:shared] + block[pos:pos + non_shared]
        pos += non_shared
        yield key, block[pos:pos + vlen]
        pos += vlen


def _handle(buf: bytes, pos: int = 0) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos)
    size, pos = _varint(buf, pos)
    return offset, size, pos


# ----------------------------------------------------------------------------- the bundle


class TensorBundle:
    """The tensors of one checkpoint: ``names()``, ``entry(name)``, ``read(name)``, ``read_all()``."""

    def __init__(self, prefix: str | Path, verify: bool = True):
        prefix = str(prefix)
        if Path(prefix).is_dir():
            prefix = prefix.rstrip("/") + "/"  # the musicnn layout: <folder>/.index, <folder>/.data-00000-of-00001
        elif prefix.endswith(".index"):
            prefix = prefix[: -len(".index")]
        self.prefix = prefix
        index_path = Path(prefix + ".index")
        if not index_path.is_file():
            raise CheckpointFormatError(f"checkpoint index {index_path} not found")
        self._source = str(index_path)
        self._parse_index(index_path.read_bytes())
        self._shard_paths = [Path(f"{prefix}.data-{i:05d}-of-{self.num_shards:05d}") for i in range(self.num_shards)]
        for p in self._shard_paths:
            if not p.is_file():
                raise CheckpointFormatError(f"checkpoint data file {p} not found")
        self._shard_bytes: list[bytes] | None = None
        self.verify = verify

    @classmethod
    def from_bytes(cls, index: bytes, shards: list[bytes], verify: bool = True, source: str = "<memory>") -> "TensorBundle":
        """A bundle whose ``.index`` and ``.data-*`` contents are already in memory (e.g. read from a wheel)."""
        self = cls.__new__(cls)
        self.prefix, self._source, self.verify = source, source, verify
        self._parse_index(index)
        if len(shards) != self.num_shards:
            raise CheckpointFormatError(f"{source}: the index names {self.num_shards} data shard(s), got {len(shards)}")
        self._shard_paths, self._shard_bytes = [], list(shards)
        return self

    def _parse_index(self, index: bytes) -> None:
        what = self._source
        if len(index) < FOOTER_SIZE:
            raise CheckpointFormatError(f"{what}: {len(index)} bytes, too short for an SSTable (truncated?)")
        footer = index[-FOOTER_SIZE:]
        if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
            raise CheckpointFormatError(f"{what}: no SSTable magic number at the end (truncated or not a TF checkpoint index)")
        _, _, pos = _handle(footer)  # meta-index block: unused
        idx_off, idx_size, _ = _handle(footer, pos)
        self.num_shards, self.endianness = 1, 0
        self.entries: dict[str, BundleEntry] = {}
        for _, handle in _block_entries(_block(index, idx_off, idx_size, what), what):
            off, size, _ = _handle(handle)
            for key, value in _block_entries(_block(index, off, size, what), what):
                if key == b"":
                    for field, _, v in _fields(value):
                        if field == 1:
                            self.num_shards = v
                        elif field == 2:
                            self.endianness = v
                else:
                    name = key.decode("utf-8")
                    self.entries[name] = _parse_entry(name, value)
        if self.endianness != 0:
            raise CheckpointFormatError(f"{what}: big-endian checkpoint not supported")

    def names(self) -> list[str]:
        return sorted(self.entries)

    def entry(self, name: str) -> BundleEntry:
        if name not in self.entries:
            raise KeyError(f"{name!r} not in checkpoint {self.prefix} ({len(self.entries)} tensors)")
        return self.entries[name]

    def _bytes(self, e: BundleEntry) -> bytes:
        if self._shard_bytes is not None:
            data = self._shard_bytes[e.shard_id]
            if e.offset + e.size > len(data):
                raise CheckpointFormatError(f"{self._source}: tensor {e.name!r} [{e.offset}, {e.offset + e.size}) lies beyond "
                                            f"the {len(data)}-byte data shard {e.shard_id} (truncated?)")
            return data[e.offset:e.offset + e.size]
        path = self._shard_paths[e.shard_id]
        with open(path, "rb") as f:
            f.seek(e.offset)
            data = f.read(e.size)
        if len(data) != e.size:
            raise CheckpointFormatError(f"{path}: tensor {e.name!r} needs bytes [{e.offset}, {e.offset + e.size}) but the "
                                        f"file has {path.stat().st_size} (truncated?)")
        return data

    def read(self, name: str) -> np.ndarray:
        """The tensor as a (writable) numpy array of its dtype and shape."""
        e = self.entry(name)
        if e.sliced:
            raise CheckpointFormatError(f"{self._source}: {name!r} is a partitioned (sliced) variable: not supported")
        if e.dtype not in DTYPES:
            raise CheckpointFormatError(f"{self._source}: {name!r} has dtype {e.dtype_name}: not supported")
        dtype = DTYPES[e.dtype]
        count = int(np.prod(e.shape, dtype=np.int64)) if e.shape else 1
        if count * dtype.itemsize != e.size:
            raise CheckpointFormatError(f"{self._source}: {name!r} is {e.dtype_name}{list(e.shape)} = {count * dtype.itemsize} "
                                        f"bytes but its entry says {e.size}")
        data = self._bytes(e)
        if self.verify and e.crc32c is not None and unmask_crc(e.crc32c) != crc32c(data):
            raise CheckpointFormatError(f"{self._source}: tensor {name!r} fails its CRC32C check (corrupt data file)")
        return np.frombuffer(data, dtype=dtype).reshape(e.shape).copy()

    def read_all(self, skip_unsupported: bool = False) -> dict[str, np.ndarray]:
        out = {}
        for name in self.names():
            e = self.entries[name]
            if skip_unsupported and (e.sliced or e.dtype not in DTYPES):
                continue
            out[name] = self.read(name)
        return out


def read_checkpoint(prefix: str | Path, verify: bool = True) -> dict[str, np.ndarray]:
    """``{name: array}`` of every tensor of the checkpoint at ``prefix`` (or its folder / ``.index`` path)."""
    return TensorBundle(prefix, verify=verify).read_all()
