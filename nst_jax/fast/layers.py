"""Layers of Magenta's fast style networks (``nst_jax.fast.model``):
MobileNetV2's depthwise conv and inverted residual, the conditional
instance norm, and the transformer's upsampling conv and residual block.
NHWC; paddings and formulas follow the ONNX graphs (see the model)."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

#: The conditional instance norm's epsilon (the graph's int8 eps constant).
NORM_EPS = 1e-5


# UpsampleConv: output row 2i + a takes the kernel's row d from the padded
# input's row i + e with weight _PHASE_TAPS[a, e, d] (columns alike).
_PHASE_TAPS = np.array([[[1, 0, 0], [0, 1, 1], [0, 0, 0]],
                        [[0, 0, 0], [1, 1, 0], [0, 0, 1]]], np.float32)
#: Padding of the predictor's 3x3 convs by stride. Stride 2 pads only the
# bottom/right: TF "SAME" at even sizes, hard-coded by the export (at odd
# sizes TF would pad both sides).
PAD = {1: ((1, 1), (1, 1)), 2: ((0, 1), (0, 1))}

# The parameters are always read from the weights file, never drawn. Flax
# traces each parameter's initializer at every apply to check its shape;
# zeros trace in a fraction of the time lecun_normal's sampling does (the
# two networks hold 300+ parameters, traced on every launch).
ZERO = nn.initializers.zeros
Conv = functools.partial(nn.Conv, kernel_init=ZERO)
Dense = functools.partial(nn.Dense, kernel_init=ZERO)


def relu6(x: jax.Array) -> jax.Array:
    """MobileNet's activation: the graph's Clip(0, 6)."""
    return jnp.clip(x, 0.0, 6.0)


def reflect_pad(x_NxHxWxC: jax.Array, top: int, bottom: int, left: int,
                right: int) -> jax.Array:
    """Mirror padding without repeating the edge (TF MIRROR_PAD REFLECT)."""
    return jnp.pad(x_NxHxWxC, ((0, 0), (top, bottom), (left, right), (0, 0)),
                   mode="reflect")


class DepthwiseConv3x3(nn.Module):
    """3x3 depthwise conv with bias (kernel HWIO with I = 1), padded as the
    graph pads by stride, written as nine shifted multiply-adds that XLA
    fuses into one loop: XLA:CPU runs the same conv as a grouped
    ``conv_general_dilated`` 15-50x slower."""

    stride: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NxHxWxC: jax.Array) -> jax.Array:
        c, s = x_NxHxWxC.shape[-1], self.stride
        kernel_3x3x1xC = self.param("kernel", ZERO,
                                    (3, 3, 1, c), jnp.float32)
        bias_C = self.param("bias", nn.initializers.zeros, (c,), jnp.float32)
        x = jnp.pad(x_NxHxWxC.astype(self.dtype),
                    ((0, 0),) + PAD[s] + ((0, 0),))
        h, w = (x.shape[1] - 3) // s + 1, (x.shape[2] - 3) // s + 1
        k = kernel_3x3x1xC.astype(self.dtype)
        y = sum(x[:, dy:dy + s * (h - 1) + 1:s, dx:dx + s * (w - 1) + 1:s]
                * k[dy, dx, 0] for dy in range(3) for dx in range(3))
        return y + bias_C.astype(self.dtype)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand + ReLU6 (none if ``expansion`` is 1),
    depthwise 3x3 + ReLU6, linear 1x1 project, plus the input when the
    shape is kept. BatchNorm is folded into the conv biases."""

    features: int
    expansion: int
    stride: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NxHxWxC: jax.Array) -> jax.Array:
        c_in = x_NxHxWxC.shape[-1]
        hidden = c_in * self.expansion
        x = x_NxHxWxC
        if self.expansion != 1:
            x = relu6(Conv(hidden, (1, 1), dtype=self.dtype,
                              name="expand")(x))
        x = relu6(DepthwiseConv3x3(self.stride, self.dtype,
                                   name="depthwise")(x))
        x = Conv(self.features, (1, 1), dtype=self.dtype,
                    name="project")(x)
        if self.stride == 1 and c_in == self.features:
            x = x + x_NxHxWxC
        return x


class ConditionalInstanceNorm(nn.Module):
    """Instance norm whose scale and offset are Dense layers of the style
    embedding (Dumoulin et al. 2017, as generalised by Ghiasi et al.).

    Per sample and channel, over H and W, with the biased variance:
    ``inv = gamma / sqrt(var + eps)``, ``out = x * inv + (beta - mean *
    inv)``: the graph's TF ``batch_normalization`` formula, term by term.
    """

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NxHxWxC: jax.Array,
                 embedding_Nx100: jax.Array) -> jax.Array:
        # gamma is the graph's StyleNorm/Conv_1, beta its StyleNorm/Conv.
        gamma_NxC = Dense(self.features, name="gamma")(embedding_Nx100)
        beta_NxC = Dense(self.features, name="beta")(embedding_Nx100)
        # Statistics in float32 whatever the compute dtype: a variance of a
        # bfloat16 map loses most of its digits.
        x = x_NxHxWxC.astype(jnp.float32)
        mean = x.mean(axis=(1, 2), keepdims=True)
        var = jnp.square(x - mean).mean(axis=(1, 2), keepdims=True)
        inv = jax.lax.rsqrt(var + NORM_EPS) * gamma_NxC[:, None, None, :]
        offset = beta_NxC[:, None, None, :] - mean * inv
        return (x * inv + offset).astype(self.dtype)


class UpsampleConv(nn.Module):
    """Nearest x2 upsample (the graph's Resize), reflect pad 1 and a 3x3
    conv without bias, computed at the input's resolution.

    Reflect-padding the upsampled map by 1 repeats its edge, so it is the
    upsampled edge-padded input, and each output phase (row and column
    parity) is a 3x3 conv of that input with summed taps. One conv to 4x
    the channels and a depth-to-space give the same values to rounding:
    14 ms instead of 87 for expand_conv1 at 512 px on XLA:CPU (2 cores),
    where a 32-channel 3x3 conv at 256x256 falls off a cache cliff.
    """

    features: int
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NxHxWxC: jax.Array) -> jax.Array:
        n, h, w, c = x_NxHxWxC.shape
        o = self.features
        kernel_3x3xCxO = self.param("kernel", ZERO,
                                    (3, 3, c, o), jnp.float32)
        taps = jnp.asarray(_PHASE_TAPS)
        phases_3x3xCx4O = jnp.einsum("aed,bfg,dgco->efcabo", taps, taps,
                                     kernel_3x3xCxO).reshape(3, 3, c, 4 * o)
        x = jnp.pad(x_NxHxWxC, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
        y = jax.lax.conv_general_dilated(
            x.astype(self.dtype), phases_3x3xCx4O.astype(self.dtype), (1, 1),
            "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        y = y.reshape(n, h, w, 2, 2, o).transpose(0, 1, 3, 2, 4, 5)
        return y.reshape(n, 2 * h, 2 * w, o)


class ResidualBlock(nn.Module):
    """(reflect pad 1, 3x3 conv, CIN) twice with a ReLU between, plus the
    input. The convs have no bias: the graph's are zero, and the norm's
    mean would cancel any."""

    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NxHxWxC: jax.Array,
                 embedding_Nx100: jax.Array) -> jax.Array:
        c = x_NxHxWxC.shape[-1]
        y = x_NxHxWxC
        for i in (1, 2):
            y = Conv(c, (3, 3), padding="VALID", use_bias=False,
                        dtype=self.dtype, name=f"conv{i}")(
                            reflect_pad(y, 1, 1, 1, 1))
            y = ConditionalInstanceNorm(c, self.dtype, name=f"norm{i}")(
                y, embedding_Nx100)
            if i == 1:
                y = nn.relu(y)
        return x_NxHxWxC + y
