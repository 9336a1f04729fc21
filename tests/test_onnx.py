"""The ONNX reader on hand-encoded protobuf messages, good and broken."""

import struct

import numpy as np
import pytest

from nst_jax.errors import WeightsError
from nst_jax.weights import onnx


def _varint(v: int) -> bytes:
    v &= (1 << 64) - 1  # Negative ints are 10-byte two's complement.
    out = bytearray()
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _field(number: int, value) -> bytes:
    """One field: an int (varint), a float (fixed32) or bytes/str."""
    if isinstance(value, float):
        return _varint(number << 3 | 5) + struct.pack("<f", value)
    if isinstance(value, int):
        return _varint(number << 3) + _varint(value)
    data = value.encode() if isinstance(value, str) else value
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _tensor(name, dims, dtype_code, raw=None, int32s=None, floats=None):
    msg = b"".join(_field(1, d) for d in dims) + _field(2, dtype_code)
    msg += _field(8, name)
    if raw is not None:
        msg += _field(9, raw)
    if int32s is not None:  # Packed repeated varints.
        msg += _field(5, b"".join(_varint(v) for v in int32s))
    if floats is not None:  # Packed repeated fixed32.
        msg += _field(4, struct.pack(f"<{len(floats)}f", *floats))
    return msg


def _model(nodes, inits, inputs=("x",), outputs=("y",)):
    graph = b"".join(_field(1, n) for n in nodes)
    graph += _field(2, "g") + b"".join(_field(5, t) for t in inits)
    graph += b"".join(_field(11, _field(1, i)) for i in inputs)
    graph += b"".join(_field(12, _field(1, o)) for o in outputs)
    return _field(1, 8) + _field(7, graph)  # ir_version 8, graph.


def _conv_node():
    attrs = [_field(1, "kernel_shape") + _field(8, b"\x03\x03"),
             _field(1, "group") + _field(3, 4),
             _field(1, "alpha") + _field(2, 0.25),
             _field(1, "mode") + _field(4, "reflect"),
             _field(1, "pads") + _field(8, _varint(-1) + _varint(2))]
    return (_field(1, "x") + _field(1, "w") + _field(2, "y")
            + _field(3, "conv0") + _field(4, "Conv")
            + b"".join(_field(5, a) for a in attrs))


def test_reads_nodes_attributes_and_every_tensor_encoding():
    w = np.arange(-6, 6, dtype=np.int8).reshape(2, 1, 2, 3)
    data = _model([_conv_node()], [
        _tensor("w", w.shape, 3, raw=w.tobytes()),
        _tensor("b", [3], 6, int32s=[-7, 0, 2 ** 31 - 1]),
        _tensor("s", [2], 1, floats=[0.5, -1.25]),
        _tensor("scalar", [], 1, raw=struct.pack("<f", 3.0))])
    g = onnx.read_graph(data)
    assert g.inputs == ["x"] and g.outputs == ["y"]
    (node,) = g.nodes
    assert (node.op_type, node.name, node.inputs, node.outputs) == (
        "Conv", "conv0", ("x", "w"), ("y",))
    assert node.attrs == {"kernel_shape": (3, 3), "group": 4,
                          "alpha": 0.25, "mode": "reflect", "pads": (-1, 2)}
    np.testing.assert_array_equal(g.initializers["w"], w)
    assert g.initializers["w"].dtype == np.int8
    np.testing.assert_array_equal(g.initializers["b"], [-7, 0, 2 ** 31 - 1])
    assert g.initializers["b"].dtype == np.int32
    np.testing.assert_array_equal(g.initializers["s"], [0.5, -1.25])
    assert g.initializers["scalar"].shape == () and g.initializers[
        "scalar"] == 3.0


def test_unknown_fields_are_skipped():
    node = _conv_node() + _field(99, b"future") + _field(98, 7)
    g = onnx.read_graph(_model([node], []) + _field(14, "doc"))
    assert g.nodes[0].op_type == "Conv"


@pytest.mark.parametrize("damage,message", [
    (lambda d: d[:len(d) - 3], "claims"),  # The graph is cut short.
    (lambda d: d + b"\x08\xff", "varint runs past the end"),
    (lambda d: d[:-1] + b"\xff", "not UTF-8"),
    (lambda d: d + b"\x0d\x00", "fixed-size field runs past"),
    (lambda d: b"\x0b" + d, "wire type"),  # Field 1, wire type 3.
    (lambda d: b"\x00" + d, "field number 0"),
    (lambda d: b"\x12\xff\xff\xff\xff\x0f" + d, "claims"),
    (lambda d: b"", "one graph"),
])
def test_broken_files_raise_one_line(damage, message):
    data = _model([_conv_node()], [_tensor("b", [2], 6, int32s=[1, 2])])
    with pytest.raises(WeightsError, match=message) as e:
        onnx.read_graph(damage(data))
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("tensor,message", [
    (_tensor("t", [2, 3], 1, raw=b"\x00" * 20), "20 bytes of data"),
    (_tensor("t", [4], 6, int32s=[1, 2]), "2 values"),
    (_tensor("t", [-2, 3], 1, raw=b""), "negative dimension"),
    (_tensor("t", [1 << 40], 1, raw=b""), "claims"),
    (_tensor("t", [1], 8, raw=b"x"), "unsupported data type"),
])
def test_inconsistent_tensors_are_refused(tensor, message):
    with pytest.raises(WeightsError, match=message):
        onnx.read_graph(_model([_conv_node()], [tensor]))
