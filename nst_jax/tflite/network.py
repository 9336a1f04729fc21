"""Runs a float TFLite conv net (``nst_jax.tflite.model``) as a Flax module.

``convert`` turns a model into a static ``Program`` (the op list, hashable,
so it can be a module field or a jit static argument) and a dict of float32
parameters; ``Network(program)`` interprets the program op by op.

What conversion settles once, so that running is plain JAX:

- DEQUANTIZE of a float16 constant (how the BlazeFace file stores its
  weights) is folded away: the parameter is the float16 data cast to
  float32, named after the float16 tensor.
- CONV_2D filters are stored OHWI and become HWIO; DEPTHWISE_CONV_2D
  filters (1, H, W, C * M) become (H, W, 1, C * M), the layout of a
  grouped conv with one group per input channel (depth multiplier M puts
  input channel c's outputs at c * M + m).
- Integer constants (PAD paddings, RESHAPE shapes) become op options.
- RESHAPE keeps the batch of its input: the files are exported at batch
  1, and their target shapes' other dimensions are per example.

Parameters are named after their tensors (``conv2d/Kernel``,
``p_re_lu/Alpha``). Everything runs in float32; the ops themselves are
in :mod:`nst_jax.tflite.ops`.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.errors import WeightsError
from nst_jax.tflite import model as tflite, ops


class Step(NamedTuple):
    """One op: its kind, input tensor indices (-1: an absent optional
    input, or one read into the options), output tensor index and options
    as sorted (key, value) pairs."""
    op: str
    inputs: tuple[int, ...]
    output: int
    options: tuple[tuple[str, Any], ...]


class Program(NamedTuple):
    """A static, hashable description of a converted network."""
    steps: tuple[Step, ...]
    #: (tensor index, parameter name, shape) of each float constant.
    params: tuple[tuple[int, str, tuple[int, ...]], ...]
    input: int
    outputs: tuple[int, ...]


#: Options each op takes from the file (the rest are made by ``convert``).
_OPTION_KEYS = {
    "CONV_2D": ("padding", "stride_h", "stride_w", "dilation_h",
                "dilation_w", "activation"),
    "DEPTHWISE_CONV_2D": ("padding", "stride_h", "stride_w", "dilation_h",
                          "dilation_w", "activation", "depth_multiplier"),
    "MAX_POOL_2D": ("padding", "stride_h", "stride_w", "filter_h",
                    "filter_w", "activation"),
    "ADD": ("activation",),
    "CONCATENATION": ("axis", "activation"),
}
#: (fewest, most) inputs of each op, optional ones included.
_ARITY = {"CONV_2D": (2, 3), "DEPTHWISE_CONV_2D": (2, 3),
          "MAX_POOL_2D": (1, 1), "ADD": (2, 2), "PRELU": (2, 2),
          "RELU": (1, 1), "PAD": (2, 2), "RESHAPE": (1, 2),
          "CONCATENATION": (1, 1 << 16)}
#: Filter layouts: (op, input slot) -> transpose from the file's layout.
_LAYOUTS = {("CONV_2D", 1): (1, 2, 3, 0),  # OHWI -> HWIO.
            ("DEPTHWISE_CONV_2D", 1): (1, 2, 0, 3)}  # 1HWC -> HW1C.


def _unsupported(message: str) -> WeightsError:
    return WeightsError(f"the face network port cannot run this model: "
                        f"{message}")


def _static_ints(model: tflite.Model, index: int, what: str) -> np.ndarray:
    value = tflite.constant(model, index)
    if value is None or value.dtype.kind not in "iu":
        raise _unsupported(f"{what} is not an integer constant")
    return value.astype(np.int64)


def _pad_options(model: tflite.Model, op: tflite.Operator) -> dict:
    paddings = _static_ints(model, op.inputs[1], "PAD's paddings")
    if paddings.ndim != 2 or paddings.shape[1] != 2 or (paddings < 0).any():
        raise _unsupported(f"PAD's paddings {paddings.tolist()}")
    if paddings[0].any():
        raise _unsupported("PAD along the batch axis")
    return {"paddings": tuple(tuple(int(v) for v in p) for p in paddings)}


def _reshape_options(model: tflite.Model, op: tflite.Operator) -> dict:
    if len(op.inputs) > 1 and op.inputs[1] >= 0:
        shape = tuple(_static_ints(model, op.inputs[1], "RESHAPE's shape")
                      .reshape(-1).tolist())
    else:
        shape = op.options.get("new_shape") or model.tensors[
            op.outputs[0]].shape
    source = model.tensors[op.inputs[0]].shape
    if not shape or shape[0] not in (1, -1) or source[:1] != (1,):
        raise _unsupported(f"RESHAPE from {source} to {shape} (only the "
                           "batch-1 exports keeping the batch axis run)")
    return {"shape": tuple(int(d) for d in shape[1:])}


#: Ops whose options need more than the file's builtin options.
_EXTRA_OPTIONS = {"PAD": _pad_options, "RESHAPE": _reshape_options}
#: (op, input slot) read into options above rather than run.
_STATIC_INPUTS = {("PAD", 1), ("RESHAPE", 1)}


def _options(model: tflite.Model, op: tflite.Operator) -> dict:
    keys = _OPTION_KEYS.get(op.op, ())
    if not set(keys) <= set(op.options):
        raise _unsupported(f"{op.op} without its builtin options")
    options = {k: op.options[k] for k in keys}
    sizes = {k: v for k, v in options.items()
             if k.startswith(("stride", "dilation", "filter"))}
    if any(v < 1 for v in sizes.values()):
        raise _unsupported(f"{op.op} with {sizes}")
    if options.get("activation", "NONE") not in ops.ACTIVATIONS:
        raise _unsupported(f"{op.op} with fused activation "
                           f"{options['activation']}")
    if op.op in _EXTRA_OPTIONS:
        options.update(_EXTRA_OPTIONS[op.op](model, op))
    return options


def _dequantized(model: tflite.Model, op: tflite.Operator
                 ) -> Optional[np.ndarray]:
    """A DEQUANTIZE's float32 result when its input is a float16
    constant (a cast), else None."""
    if len(op.inputs) != 1 or op.inputs[0] < 0:
        return None
    value = tflite.constant(model, op.inputs[0])
    if value is None or value.dtype != np.float16:
        return None
    return value.astype(np.float32)


def convert(model: tflite.Model
            ) -> tuple[Program, dict[str, np.ndarray]]:
    """A model's program and float32 parameters, filters in HWIO.

    Raises:
      WeightsError: an op, data type or layout the port cannot run, or a
        graph that reads a tensor before writing it (one line).
    """
    if len(model.inputs) != 1:
        raise _unsupported(f"{len(model.inputs)} inputs (one image only)")
    x = model.tensors[model.inputs[0]]
    if x.dtype != np.float32 or len(x.shape) != 4:
        raise _unsupported(f"input {x.name!r} of {x.dtype.name} {x.shape} "
                           "(a float32 NHWC image only)")
    written = {model.inputs[0]}
    # Tensor index -> (parameter name, value): float constants, and the
    # results of DEQUANTIZE ops on them under the constant's name.
    constants: dict[int, tuple[str, np.ndarray]] = {}
    params: dict[str, np.ndarray] = {}
    declared: dict[int, tuple[str, tuple[int, ...]]] = {}
    steps = []

    def constant(index: int) -> Optional[tuple[str, np.ndarray]]:
        if index not in constants:
            value = tflite.constant(model, index)
            if value is None:
                return None
            if value.dtype.kind != "f":
                return None  # Integers only ever feed static options.
            constants[index] = (model.tensors[index].name,
                                value.astype(np.float32))
        return constants[index]

    for op in model.operators:
        if op.op == "DEQUANTIZE":
            value = _dequantized(model, op)
            if value is None:
                raise _unsupported("DEQUANTIZE of anything but a float16 "
                                   "constant (quantised models)")
            constants[op.outputs[0]] = (
                model.tensors[op.inputs[0]].name, value)
            continue
        if op.op not in ops.OPS:
            raise _unsupported(f"unsupported TFLite op {op.op} "
                               f"{op.options.get('custom_code', '')}".strip())
        fewest, most = _ARITY[op.op]
        if (not fewest <= len(op.inputs) <= most
                or min(op.inputs[:fewest]) < 0):
            raise _unsupported(f"{op.op} with inputs {op.inputs}")
        if len(op.outputs) != 1:
            raise _unsupported(f"{op.op} with {len(op.outputs)} outputs")
        out = model.tensors[op.outputs[0]]
        if out.dtype != np.float32:
            raise _unsupported(f"{op.op} writing {out.dtype.name} tensor "
                               f"{out.name!r} (float32 models only)")
        for slot, index in enumerate(op.inputs):
            if index < 0 or (op.op, slot) in _STATIC_INPUTS:
                continue
            found = constant(index)
            if found is None:
                if index not in written:
                    raise _unsupported(
                        f"{op.op} reads tensor "
                        f"{model.tensors[index].name!r} before it is "
                        "written (or an integer constant)")
                continue
            name, value = found
            layout = _LAYOUTS.get((op.op, slot))
            if layout is not None:
                if value.ndim != 4:
                    raise _unsupported(f"{op.op} filter {name!r} of shape "
                                       f"{value.shape}")
                value = value.transpose(layout)
                channels = model.tensors[op.inputs[0]].shape[-1:]
                if op.op == "DEPTHWISE_CONV_2D" and (
                        not channels or value.shape[3] % channels[0]):
                    raise _unsupported(f"{op.op} filter {name!r} of shape "
                                       f"{value.shape} on {channels} "
                                       "channels")
            if index in declared:
                if declared[index][1] != value.shape:
                    raise _unsupported(f"tensor {name!r} used in two "
                                       "layouts")
                continue
            if name in params:
                name = f"{name}#{index}"  # Two tensors with one name.
            declared[index] = (name, value.shape)
            params[name] = np.ascontiguousarray(value)
        inputs = tuple(-1 if (op.op, slot) in _STATIC_INPUTS else i
                       for slot, i in enumerate(op.inputs))
        steps.append(Step(op.op, inputs, op.outputs[0],
                          tuple(sorted(_options(model, op).items()))))
        written.add(op.outputs[0])
    for index in model.outputs:
        if index not in written:
            raise _unsupported(f"output {model.tensors[index].name!r} is "
                               "never written")
    program = Program(
        tuple(steps),
        tuple((i, n, tuple(s)) for i, (n, s) in sorted(declared.items())),
        model.inputs[0], model.outputs)
    return program, params


class Network(nn.Module):
    """A converted TFLite network: (N, H, W, C) float32 -> the model's
    outputs, in its output order, each with batch N."""

    program: Program

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, ...]:
        env: dict[int, jax.Array] = {
            self.program.input: jnp.asarray(x, jnp.float32)}
        for index, name, shape in self.program.params:
            env[index] = self.param(name, nn.initializers.zeros_init(),
                                    shape, jnp.float32)
        for step in self.program.steps:
            args = [None if i < 0 else env[i] for i in step.inputs]
            while args and args[-1] is None:  # Absent optional, static.
                args.pop()
            env[step.output] = ops.OPS[step.op](*args, **dict(step.options))
        return tuple(env[i] for i in self.program.outputs)


@functools.partial(jax.jit, static_argnums=0)
def apply(program: Program, params: dict, x: jax.Array
          ) -> tuple[jax.Array, ...]:
    """``Network(program)`` on ``x``, compiled once per program and
    input shape."""
    return Network(program).apply({"params": params}, x)
