"""The TFLite ops the face networks use, as pure JAX functions of NHWC
arrays and the ops' options (:mod:`nst_jax.tflite.network` runs them).

Convolutions run at ``Precision.HIGHEST`` so that CPU, GPU and TPU
compute them alike. Depthwise convolutions and max-pools are written as
one elementwise step per window tap: a grouped convolution was several
times slower on XLA:CPU, and ``lax.reduce_window`` fused after padding and
convolutions gave wrong results on jaxlib 0.10.2's CPU backend.
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
from jax import lax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "NONE": lambda x: x,
    "RELU": jax.nn.relu,
    "RELU_N1_TO_1": lambda x: jnp.clip(x, -1.0, 1.0),
    "RELU6": lambda x: jnp.clip(x, 0.0, 6.0),
    "TANH": jnp.tanh,
}


def _taps(x, size, strides, dilation, padding, fill):
    """((i, j), slice) for each tap of a 2D sliding window over NHWC ``x``:
    the slice holds, at each output position, the input the window's
    (i, j) tap sees. ``x`` is padded with ``fill`` as TFLite pads: SAME
    splits the padding with the odd row or column at the bottom/right."""
    (kh, kw), (sh, sw), (dh, dw) = size, strides, dilation
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    (top, bottom), (left, right) = lax.padtype_to_pads(
        x.shape[1:3], (span_h, span_w), strides, padding)
    x = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                constant_values=fill)
    out_h = (x.shape[1] - span_h) // sh + 1
    out_w = (x.shape[2] - span_w) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield (i, j), x[:, i * dh:i * dh + (out_h - 1) * sh + 1:sh,
                            j * dw:j * dw + (out_w - 1) * sw + 1:sw]


def conv_2d(x, w_HxWxIxO, bias=None, *, padding, stride_h, stride_w,
            dilation_h, dilation_w, activation):
    y = lax.conv_general_dilated(
        x, w_HxWxIxO, (stride_h, stride_w), padding,
        rhs_dilation=(dilation_h, dilation_w),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=lax.Precision.HIGHEST)
    if bias is not None:
        y = y + bias
    return ACTIVATIONS[activation](y)


def depthwise_conv_2d(x, w_HxWx1xO, bias=None, *, depth_multiplier,
                      padding, stride_h, stride_w, dilation_h, dilation_w,
                      activation):
    """One multiply-add per filter tap, which XLA fuses into one loop: the
    same grouped ``conv_general_dilated`` (one group per channel) runs
    several times slower on XLA:CPU. Output channel c * M + m is input
    channel c times filter channel c * M + m (M: the depth multiplier,
    which newer TFLite kernels take from the filter's shape, as here)."""
    del depth_multiplier
    multiplier = w_HxWx1xO.shape[-1] // x.shape[-1]
    if multiplier != 1:
        x = jnp.repeat(x, multiplier, axis=-1)
    y = sum(tap * w_HxWx1xO[i, j, 0] for (i, j), tap in _taps(
        x, w_HxWx1xO.shape[:2], (stride_h, stride_w),
        (dilation_h, dilation_w), padding, 0.0))
    if bias is not None:
        y = y + bias
    return ACTIVATIONS[activation](y)


def max_pool_2d(x, *, padding, stride_h, stride_w, filter_h, filter_w,
                activation):
    """The elementwise max of the window's taps. Not
    ``lax.reduce_window``: jaxlib 0.10's XLA:CPU fuses a reduce-window
    together with the pads and convolutions feeding it into one YNNPACK
    fusion that computes BlazeFace's channel-padded residual blocks
    wrongly (off by up to ~3 under jit, right op by op); slices and
    maxima stay out of that fusion. -inf padding: SAME windows at the
    border take the max of what they cover, as TFLite's pool does."""
    taps = _taps(x, (filter_h, filter_w), (stride_h, stride_w), (1, 1),
                 padding, -jnp.inf)
    return ACTIVATIONS[activation](
        functools.reduce(jnp.maximum, (tap for _, tap in taps)))


def add(x, y, *, activation="NONE"):
    return ACTIVATIONS[activation](x + y)


def prelu(x, alpha):
    return jnp.where(x >= 0, x, alpha * x)


def relu(x):
    return jax.nn.relu(x)


def pad(x, *, paddings):
    return jnp.pad(x, paddings)


def reshape(x, *, shape):
    # ``shape`` is the target without its batch dimension.
    return x.reshape((x.shape[0],) + shape)


def concatenation(*xs, axis, activation):
    return ACTIVATIONS[activation](jnp.concatenate(xs, axis=axis))


#: TFLite op -> its function of (runtime or parameter) inputs and options.
OPS: dict[str, Callable[..., jax.Array]] = {
    "CONV_2D": conv_2d,
    "DEPTHWISE_CONV_2D": depthwise_conv_2d,
    "MAX_POOL_2D": max_pool_2d,
    "ADD": add,
    "PRELU": prelu,
    "RELU": relu,
    "PAD": pad,
    "RESHAPE": reshape,
    "CONCATENATION": concatenation,
}
