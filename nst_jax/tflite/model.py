"""A small reader of TFLite model files: tensors, operators, buffers.

A ``.tflite`` file is one FlatBuffer whose root table is ``tflite.Model``
(TensorFlow's ``schema.fbs``, file identifier "TFL3"), read with the
bounds-checked FlatBuffer primitives of :mod:`nst_jax.tflite.flatbuffer`.

Only what a float conv net needs is decoded (field numbers in order of
declaration in schema.fbs):

    Model: operator_codes (1), subgraphs (2), buffers (4)
    OperatorCode: deprecated_builtin_code (0, int8), custom_code (1),
        builtin_code (3, int32); the opcode is the larger of the two codes
    SubGraph: tensors (0), inputs (1), outputs (2), operators (3)
    Tensor: shape (0), type (1), buffer (2), name (3)
    Buffer: data (0), offset (1), size (2) (offset/size: >2 GB models)
    Operator: opcode_index (0), inputs (1), outputs (2),
        builtin_options_type (3), builtin_options (4)

Every read is bounds-checked; a truncated or malformed file raises
``WeightsError`` with one line, never an IndexError or a huge allocation.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np

from nst_jax.errors import WeightsError
from nst_jax.tflite.flatbuffer import _fail, _File, _follow, _Table, _table

IDENTIFIER = b"TFL3"

#: TensorType -> numpy dtype; the types numpy cannot hold (STRING,
# RESOURCE, VARIANT, INT4, BFLOAT16) are refused by name below.
DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8,
          4: np.int64, 6: np.bool_, 7: np.int16, 8: np.complex64,
          9: np.int8, 10: np.float64, 11: np.complex128, 12: np.uint64,
          15: np.uint32, 16: np.uint16}
_UNSUPPORTED_TYPES = {5: "STRING", 13: "RESOURCE", 14: "VARIANT",
                      17: "INT4", 18: "BFLOAT16"}

#: BuiltinOperator numbers of the ops a float image net may use; any other
# builtin is named BUILTIN_<number> (the port refuses it by that name).
OPS = {0: "ADD", 1: "AVERAGE_POOL_2D", 2: "CONCATENATION", 3: "CONV_2D",
       4: "DEPTHWISE_CONV_2D", 5: "DEPTH_TO_SPACE", 6: "DEQUANTIZE",
       9: "FULLY_CONNECTED", 11: "L2_NORMALIZATION", 14: "LOGISTIC",
       17: "MAX_POOL_2D", 18: "MUL", 19: "RELU", 20: "RELU_N1_TO_1",
       21: "RELU6", 22: "RESHAPE", 23: "RESIZE_BILINEAR", 25: "SOFTMAX",
       28: "TANH", 32: "CUSTOM", 34: "PAD", 39: "TRANSPOSE", 40: "MEAN",
       41: "SUB", 42: "DIV", 43: "SQUEEZE", 45: "STRIDED_SLICE",
       53: "CAST", 54: "PRELU", 55: "MAXIMUM", 57: "MINIMUM",
       60: "PADV2", 65: "SLICE", 67: "TRANSPOSE_CONV", 83: "PACK",
       97: "RESIZE_NEAREST_NEIGHBOR", 98: "LEAKY_RELU", 114: "QUANTIZE",
       117: "HARD_SWISH"}
PADDINGS = ("SAME", "VALID")
ACTIVATIONS = ("NONE", "RELU", "RELU_N1_TO_1", "RELU6", "TANH", "SIGN_BIT")


class Tensor(NamedTuple):
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    buffer: int  # Index into Model.buffers; an empty buffer: not constant.


class Operator(NamedTuple):
    op: str  # BuiltinOperator name, e.g. "CONV_2D".
    inputs: tuple[int, ...]  # Tensor indices; -1: an absent optional input.
    outputs: tuple[int, ...]
    options: dict  # The builtin options decoded below; {} when none.


class Model(NamedTuple):
    tensors: list[Tensor]
    operators: list[Operator]  # In execution order.
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    buffers: list[bytes]


def _enum(names: tuple[str, ...], value: int, what: str) -> str:
    if not 0 <= value < len(names):
        raise _fail(f"{what} {value} is not one of {', '.join(names)}")
    return names[value]


def _activation(t: _Table, index: int) -> dict:
    return {"activation": _enum(ACTIVATIONS, t.scalar(index, "<b"),
                                "activation")}


def _window(t: _Table, activation: int) -> dict:
    """The fields the conv and pool options share: padding, stride_w and
    stride_h come first (fields 0, 1, 2), the activation's field varies."""
    return {"padding": _enum(PADDINGS, t.scalar(0, "<b"), "padding"),
            "stride_w": t.scalar(1, "<i"), "stride_h": t.scalar(2, "<i"),
            **_activation(t, activation)}


def _conv2d(t: _Table) -> dict:
    return {**_window(t, 3), "dilation_w": t.scalar(4, "<i", 1),
            "dilation_h": t.scalar(5, "<i", 1)}


def _depthwise(t: _Table) -> dict:
    return {**_window(t, 4), "depth_multiplier": t.scalar(3, "<i"),
            "dilation_w": t.scalar(5, "<i", 1),
            "dilation_h": t.scalar(6, "<i", 1)}


def _pool2d(t: _Table) -> dict:
    return {**_window(t, 5), "filter_w": t.scalar(3, "<i"),
            "filter_h": t.scalar(4, "<i")}


#: BuiltinOptions union type id -> decoder of that options table; the
# options of other ops (PadOptions, DequantizeOptions: empty tables)
# decode to {}.
_OPTIONS = {
    1: _conv2d,  # Conv2DOptions.
    2: _depthwise,  # DepthwiseConv2DOptions.
    5: _pool2d,  # Pool2DOptions.
    10: lambda t: {"axis": t.scalar(0, "<i"),  # ConcatenationOptions.
                   **_activation(t, 1)},
    11: lambda t: _activation(t, 0),  # AddOptions.
    17: lambda t: {"new_shape": t.ints(0)},  # ReshapeOptions.
    21: lambda t: _activation(t, 0),  # MulOptions.
}


def _opcode(t: _Table) -> tuple[str, str]:
    """(op name, custom code) of an OperatorCode."""
    code = max(t.scalar(0, "<b"), t.scalar(3, "<i"))
    if code < 0:
        raise _fail(f"negative builtin operator code {code}")
    return OPS.get(code, f"BUILTIN_{code}"), t.string(1)


def _indices(values: tuple[int, ...], count: int, what: str,
             optional: bool = False) -> tuple[int, ...]:
    low = -1 if optional else 0
    for v in values:
        if not low <= v < count:
            raise _fail(f"{what} refers to tensor {v} of {count}")
    return values


def _operator(t: _Table, codes: list[tuple[str, str]],
              tensors: int) -> Operator:
    index = t.scalar(0, "<I")
    if index >= len(codes):
        raise _fail(f"operator code {index} of {len(codes)}")
    op, custom = codes[index]
    inputs = _indices(t.ints(1), tensors, f"a {op} input", optional=True)
    outputs = _indices(t.ints(2), tensors, f"a {op} output")
    options: dict = {}
    kind = t.scalar(3, "<B")
    table = t.table(4) if kind else None
    if table is not None and kind in _OPTIONS:
        options = _OPTIONS[kind](table)
    if op == "CUSTOM":
        options = {"custom_code": custom}
    return Operator(op, inputs, outputs, options)


def _tensor(t: _Table, buffers: int) -> Tensor:
    name = t.string(3)
    kind = t.scalar(1, "<b")
    if kind in _UNSUPPORTED_TYPES:
        raise WeightsError(f"unsupported TFLite tensor type "
                           f"{_UNSUPPORTED_TYPES[kind]} (tensor {name!r})")
    if kind not in DTYPES:
        raise _fail(f"tensor {name!r} has unknown type {kind}")
    buffer = t.scalar(2, "<I")
    if buffer >= buffers:
        raise _fail(f"tensor {name!r} refers to buffer {buffer} of "
                    f"{buffers}")
    return Tensor(name, t.ints(0), np.dtype(DTYPES[kind]), buffer)


def _buffer(t: _Table) -> bytes:
    offset, size = t.scalar(1, "<Q"), t.scalar(2, "<Q")
    if offset > 1:  # Stored after the FlatBuffer (models over 2 GB).
        if offset + size > len(t.file.data):
            raise _fail(f"a buffer of {size} bytes at {offset} runs past "
                        "the end")
        t.file.claim(size)
        return t.file.data[offset:offset + size]
    return t.blob(0)


def read(data: bytes) -> Model:
    """The first subgraph of a serialised TFLite model (the one the
    interpreter runs).

    Raises:
      WeightsError: not a TFLite model, or malformed (one line).
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != IDENTIFIER:
        raise _fail(f"no {IDENTIFIER.decode()} file identifier (not a "
                    ".tflite model, or truncated)")
    root = _table(_File(data), _follow(data, 0))
    codes = [_opcode(t) for t in root.tables(1)]
    subgraphs = root.tables(2)
    if not subgraphs:
        raise _fail("no subgraph")
    buffers = [_buffer(t) for t in root.tables(4)]
    graph = subgraphs[0]
    tensors = [_tensor(t, len(buffers)) for t in graph.tables(0)]
    operators = [_operator(t, codes, len(tensors))
                 for t in graph.tables(3)]
    inputs = _indices(graph.ints(1), len(tensors), "the model input")
    outputs = _indices(graph.ints(2), len(tensors), "the model output")
    if not operators:
        raise _fail("the subgraph has no operators")
    return Model(tensors, operators, inputs, outputs, buffers)


def constant(model: Model, index: int) -> Optional[np.ndarray]:
    """Tensor ``index``'s data as an array of its shape and dtype (a
    copy), None when it has no data (an activation or a model input).

    Raises:
      WeightsError: the data does not fit the shape (one line).
    """
    if not 0 <= index < len(model.tensors):
        raise IndexError(f"tensor {index} of {len(model.tensors)}")
    tensor = model.tensors[index]
    data = model.buffers[tensor.buffer]
    if not data:
        return None
    if any(d < 0 for d in tensor.shape):
        raise _fail(f"constant tensor {tensor.name!r} has shape "
                    f"{tensor.shape}")
    count = math.prod(tensor.shape)
    if count * tensor.dtype.itemsize != len(data):
        raise _fail(f"tensor {tensor.name!r}: {len(data)} bytes of data for "
                    f"shape {tensor.shape} of {tensor.dtype.name}")
    array = np.frombuffer(data, tensor.dtype.newbyteorder("<"))
    return array.astype(tensor.dtype).reshape(tensor.shape)
