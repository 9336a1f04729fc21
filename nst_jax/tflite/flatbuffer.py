"""Bounds-checked reading of one FlatBuffer: tables, their fields, vectors
and strings (:mod:`nst_jax.tflite.model` walks the TFLite schema with it).

The FlatBuffers wire format, all little-endian:

- the file starts with a uint32 offset to the root table, then the
  4-byte file identifier;
- a table starts with an int32 ``soffset``; its vtable sits at
  ``table - soffset`` and holds uint16s: the vtable's size in bytes, the
  table's inline size, then one offset per field (0 = absent, the
  schema's default applies) relative to the table's start;
- a field that refers to a table, vector or string holds a uint32 offset
  relative to the field's own position; a vector (or string) is a uint32
  length followed by its elements (a vector of tables holds one such
  offset per element);
- a union is two fields: a uint8 type id, then the offset to its table.

Every read is bounds-checked; a truncated or malformed file raises
``WeightsError`` with one line, never an IndexError or a huge allocation.
A TFLite model is the only FlatBuffer the package reads, so the message
says "malformed TFLite file".
"""

from __future__ import annotations

import struct
from typing import Any, NamedTuple, Optional

import numpy as np

from nst_jax.errors import WeightsError


def _fail(message: str) -> WeightsError:
    return WeightsError(f"malformed TFLite file: {message}")


class _File:
    """The file's bytes and how many more bytes its vectors may claim.
    Vectors hold the file's content, so a valid file's claims add up to
    about its size (a writer may share a string or vector, hence the
    slack). A crafted file whose vectors all point at one long vector is
    refused before it costs more than a few times its size."""

    def __init__(self, data: bytes):
        self.data = data
        self.budget = 4 * len(data) + 4096

    def claim(self, size: int) -> None:
        self.budget -= size
        if self.budget < 0:
            raise _fail("its vectors claim more bytes than the file holds")


class _Table(NamedTuple):
    """A table at ``pos`` in the file, its vtable checked."""
    file: _File
    pos: int
    vtable: int
    vsize: int  # Bytes in the vtable.
    size: int  # Inline bytes of the table.

    def field(self, index: int, width: int) -> Optional[int]:
        """Where field ``index`` (``width`` bytes) is, None when absent."""
        slot = 4 + 2 * index
        if slot + 2 > self.vsize:
            return None
        offset = _unpack(self.file.data, self.vtable + slot, "<H")
        if offset == 0:
            return None
        if offset + width > self.size:
            raise _fail(f"a field at {offset} runs past its table's "
                        f"{self.size} bytes")
        return self.pos + offset

    def scalar(self, index: int, fmt: str, default: Any = 0) -> Any:
        pos = self.field(index, struct.calcsize(fmt))
        return default if pos is None else _unpack(self.file.data, pos, fmt)

    def ref(self, index: int) -> Optional[int]:
        """Where the table, vector or string field ``index`` points."""
        pos = self.field(index, 4)
        return None if pos is None else _follow(self.file.data, pos)

    def table(self, index: int) -> Optional[_Table]:
        pos = self.ref(index)
        return None if pos is None else _table(self.file, pos)

    def vector(self, index: int, width: int) -> tuple[int, int]:
        """(start, count) of a vector of ``width``-byte elements; (0, 0)
        when absent."""
        pos = self.ref(index)
        if pos is None:
            return 0, 0
        count = _unpack(self.file.data, pos, "<I")
        if pos + 4 + count * width > len(self.file.data):
            raise _fail(f"a vector of {count} elements runs past the end")
        self.file.claim(count * width)
        return pos + 4, count

    def ints(self, index: int) -> tuple[int, ...]:
        start, count = self.vector(index, 4)
        return tuple(int(v) for v in np.frombuffer(
            self.file.data, "<i4", count, start)) if count else ()

    def tables(self, index: int) -> list[_Table]:
        start, count = self.vector(index, 4)
        return [_table(self.file, _follow(self.file.data, start + 4 * i))
                for i in range(count)]

    def blob(self, index: int) -> bytes:
        start, count = self.vector(index, 1)
        return self.file.data[start:start + count]

    def string(self, index: int) -> str:
        try:
            return self.blob(index).decode("utf-8")
        except UnicodeDecodeError:
            raise _fail("a name is not UTF-8") from None


def _unpack(data: bytes, pos: int, fmt: str) -> Any:
    if pos < 0 or pos + struct.calcsize(fmt) > len(data):
        raise _fail(f"a read at byte {pos} falls outside the file "
                    f"({len(data)} bytes)")
    return struct.unpack_from(fmt, data, pos)[0]


def _follow(data: bytes, pos: int) -> int:
    """The position a uint32 offset at ``pos`` refers to."""
    target = pos + _unpack(data, pos, "<I")
    if target >= len(data):
        raise _fail(f"an offset at byte {pos} points past the end")
    return target


def _table(file: _File, pos: int) -> _Table:
    data = file.data
    vtable = pos - _unpack(data, pos, "<i")
    vsize = _unpack(data, vtable, "<H")
    size = _unpack(data, vtable + 2, "<H")
    if vsize < 4 or vsize % 2 or vtable + vsize > len(data):
        raise _fail(f"a vtable at byte {vtable} has size {vsize}")
    if size < 4 or pos + size > len(data):
        raise _fail(f"a table at byte {pos} claims {size} bytes")
    return _Table(file, pos, vtable, vsize, size)
