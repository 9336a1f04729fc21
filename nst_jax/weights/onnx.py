"""A small reader of ONNX model files: nodes and initializers, no onnx.

An ONNX file is one protobuf message (``ModelProto``). The protobuf wire
format is a sequence of fields, each a varint key (field number << 3 |
wire type) followed by a varint (type 0), 8 bytes (1), a length-delimited
byte string (2: strings, bytes, nested messages, packed repeated numbers)
or 4 bytes (5). Only what a conv net's graph needs is decoded:

    ModelProto.graph (7) -> GraphProto
    GraphProto: node (1), name (2), initializer (5), input (11), output (12)
    NodeProto: input (1), output (2), name (3), op_type (4), attribute (5)
    AttributeProto: name (1), f (2), i (3), s (4), t (5), floats (7),
        ints (8), strings (9), type (20)
    TensorProto: dims (1), data_type (2), float_data (4), int32_data (5),
        string_data (6), int64_data (7), name (8), raw_data (9),
        double_data (10), uint64_data (11)
    ValueInfoProto: name (1)

Every read is bounds-checked; a truncated or malformed file raises
``WeightsError`` with one line, never an IndexError or a huge allocation.
Field numbers are those of onnx/onnx.proto (IR version 8).
"""

from __future__ import annotations

import struct
from typing import Any, Iterator, NamedTuple

import numpy as np

from nst_jax.errors import WeightsError

#: TensorProto.DataType -> numpy dtype (the ones a quantised graph uses).
DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16,
          5: np.int16, 6: np.int32, 7: np.int64, 9: np.bool_,
          10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64}
# Most elements one tensor may claim (2**31: far above any real weight).
_MAX_ELEMENTS = 1 << 31


class Node(NamedTuple):
    op_type: str
    name: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]  # int, float, str, tuple of ints/floats, array.


class Graph(NamedTuple):
    nodes: list[Node]  # In file (topological) order.
    initializers: dict[str, np.ndarray]
    inputs: list[str]
    outputs: list[str]


def _fail(message: str) -> WeightsError:
    return WeightsError(f"malformed ONNX file: {message}")


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise _fail("a varint runs past the end of the data")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise _fail("a varint is longer than 10 bytes")


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) for each field of a message; value
    is an int for types 0, 1, 5 (raw little-endian bits) and bytes for 2."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _fail("field number 0")
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if pos + size > len(data):
                raise _fail("a fixed-size field runs past the end")
            value = int.from_bytes(data[pos:pos + size], "little")
            pos += size
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise _fail(f"field {number} claims {size} bytes, "
                            f"{len(data) - pos} remain")
            value = data[pos:pos + size]
            pos += size
        else:  # 3 and 4 (groups) are obsolete; 6 and 7 do not exist.
            raise _fail(f"unsupported wire type {wire}")
        yield number, wire, value


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def _float(bits: int) -> float:
    return struct.unpack("<f", bits.to_bytes(4, "little"))[0]


def _packed_varints(wire: int, value) -> list[int]:
    if wire == 0:
        return [_signed(value)]
    out, pos = [], 0
    while pos < len(value):
        v, pos = _varint(value, pos)
        out.append(_signed(v))
    return out


def _packed_floats(wire: int, value) -> list[float]:
    if wire == 5:
        return [_float(value)]
    if len(value) % 4:
        raise _fail("packed floats are not a multiple of 4 bytes")
    return list(np.frombuffer(value, "<f4").astype(float))


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise _fail("a name is not UTF-8") from None


def tensor(data: bytes) -> tuple[str, np.ndarray]:
    """A TensorProto as (name, array)."""
    name, dims, dtype_code = "", [], 1
    raw, ints, floats, doubles = None, [], [], []
    for number, wire, value in _fields(data):
        if number == 1:
            dims += _packed_varints(wire, value)
        elif number == 2:
            dtype_code = value
        elif number == 4:
            floats += _packed_floats(wire, value)
        elif number in (5, 7, 11):
            ints += _packed_varints(wire, value)
        elif number == 8:
            name = _text(value)
        elif number == 9:
            raw = value
        elif number == 10:
            doubles += list(np.frombuffer(value, "<f8"))
    if dtype_code not in DTYPES:
        raise _fail(f"tensor {name!r} has unsupported data type "
                    f"{dtype_code}")
    if any(d < 0 for d in dims):
        raise _fail(f"tensor {name!r} has a negative dimension {dims}")
    count = int(np.prod(dims, dtype=np.int64)) if dims else 1
    if count > _MAX_ELEMENTS:
        raise _fail(f"tensor {name!r} claims {count} elements")
    dtype = np.dtype(DTYPES[dtype_code]).newbyteorder("<")
    if raw is not None:
        if len(raw) != count * dtype.itemsize:
            raise _fail(f"tensor {name!r}: {len(raw)} bytes of data for "
                        f"shape {dims} of {dtype.name}")
        array = np.frombuffer(raw, dtype)
    else:
        values = floats or doubles or ints
        if len(values) != count:
            raise _fail(f"tensor {name!r}: {len(values)} values for shape "
                        f"{dims}")
        array = np.asarray(values).astype(dtype)
    return name, array.astype(dtype.newbyteorder("=")).reshape(dims)


def _attribute(data: bytes) -> tuple[str, Any]:
    name, single, lists = "", None, []
    for number, wire, value in _fields(data):
        if number == 1:
            name = _text(value)
        elif number == 2:
            single = _float(value)
        elif number == 3:
            single = _signed(value)
        elif number == 4:
            single = _text(value)
        elif number == 5:
            single = tensor(value)[1]
        elif number == 7:
            lists += _packed_floats(wire, value)
        elif number == 8:
            lists += _packed_varints(wire, value)
        elif number == 9:
            lists.append(_text(value))
    return name, single if single is not None else tuple(lists)


def _node(data: bytes) -> Node:
    inputs, outputs, name, op, attrs = [], [], "", "", {}
    for number, _, value in _fields(data):
        if number == 1:
            inputs.append(_text(value))
        elif number == 2:
            outputs.append(_text(value))
        elif number == 3:
            name = _text(value)
        elif number == 4:
            op = _text(value)
        elif number == 5:
            key, attr = _attribute(value)
            attrs[key] = attr
    return Node(op, name, tuple(inputs), tuple(outputs), attrs)


def _value_name(data: bytes) -> str:
    return next((_text(v) for n, _, v in _fields(data) if n == 1), "")


def read_graph(data: bytes) -> Graph:
    """The graph of a serialised ModelProto.

    Raises:
      WeightsError: not an ONNX model, or malformed (one line).
    """
    graphs = [v for n, w, v in _fields(data) if n == 7 and w == 2]
    if len(graphs) != 1:
        raise _fail(f"expected one graph, found {len(graphs)}")
    nodes, inits, inputs, outputs = [], {}, [], []
    for number, wire, value in _fields(graphs[0]):
        if wire != 2:
            continue
        if number == 1:
            nodes.append(_node(value))
        elif number == 5:
            name, array = tensor(value)
            inits[name] = array
        elif number == 11:
            inputs.append(_value_name(value))
        elif number == 12:
            outputs.append(_value_name(value))
    if not nodes:
        raise _fail("the graph has no nodes")
    return Graph(nodes, inits, inputs, outputs)
