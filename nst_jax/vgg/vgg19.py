"""VGG19 feature extractor (Simonyan & Zisserman 2014): the Flax module
and the functional extraction of activations from a parameter tree.

Describes architecture only: no IO, no weights. The layers and their
Caffe-style names (``conv1_1`` ... ``conv5_4``, ``relu1_1`` ..., ``pool1``
... ``pool5``, the parameter tree's keys) are :mod:`nst_jax.vgg.layers`;
this module runs them whole (:class:`VGG19`, ``remat="none"``) or block
by block, each block recomputed in the backward pass (``remat="blocks"``).
Inputs are BGR, 0-255 scale, minus the mean pixel (see
``nst_jax.io.images.to_vgg``).
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import executables
from nst_jax.io import images
from nst_jax.vgg import layers as L
# The layer table and primitives, re-exported: other modules read them here.
from nst_jax.vgg.layers import (
    CONV_CHANNELS, CONV_LAYERS, LAYERS, POOLINGS, STRIDE, check_layers,
    conv3x3, deepest, pool2x2)

__all__ = ["CONV_CHANNELS", "CONV_LAYERS", "LAYERS", "POOLINGS", "REMATS",
           "STRIDE", "VGG19", "check_layers", "conv3x3", "deepest",
           "extract", "extract_from", "features", "param_shapes", "pool2x2",
           "random_params", "recompute_in_backward", "to_input"]

#: Rematerialisation of activations in the backward pass: "none" keeps
#: every residual; "blocks" keeps only each block's input (and the
#: activations the loss reads) and recomputes the rest of the block while
#: its gradient is taken.
REMATS = ("none", "blocks")


class _ConvParams(nn.Module):
    """One conv's parameters, Flax-style ("kernel" HWIO, "bias")."""

    c_in: int
    c_out: int
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self) -> dict[str, jax.Array]:
        # Zeros: weights are always loaded (random_params draws its own);
        # Flax traces this initializer at every apply to check the shape,
        # and zeros trace far faster than a normal sample.
        return {"kernel": self.param("kernel", nn.initializers.zeros,
                                     (3, 3, self.c_in, self.c_out),
                                     self.param_dtype),
                "bias": self.param("bias", nn.initializers.zeros,
                                   (self.c_out,), self.param_dtype)}


class VGG19(nn.Module):
    """VGG19 convolutional trunk returning the requested activations.

    Attributes:
      layers: names to return; the network stops after the deepest one.
      pooling: "max" (the original network) or "avg" (Gatys et al. 2016 found
        average pooling gives slightly smoother results).
      dtype: compute dtype (bfloat16 on accelerators); outputs are float32.
      param_dtype: parameter storage dtype.
    """

    layers: Sequence[str]
    pooling: str = "max"
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x_NxHxWx3: jax.Array) -> dict[str, jax.Array]:
        L.check_pooling(self.pooling)
        wanted = set(check_layers(self.layers))
        names = LAYERS[:LAYERS.index(deepest(wanted)) + 1]
        params = {n: _ConvParams(*CONV_CHANNELS[n], self.param_dtype,
                                 name=n)() for n in names
                  if n in CONV_CHANNELS}
        _, out = L.forward(params, x_NxHxWx3.astype(self.dtype), names,
                           self.pooling, self.dtype, wanted)
        return out


def param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
    """Expected {conv: {"kernel": HWIO, "bias": (O,)}} for all 16 convs."""
    return {n: {"kernel": (3, 3, i, o), "bias": (o,)}
            for n, (i, o) in CONV_CHANNELS.items()}


def _blocks(stop: int, start: int = 0) -> list[tuple[str, ...]]:
    """``LAYERS[start:stop + 1]`` split after each pooling layer."""
    blocks, current = [], []
    for name in LAYERS[start:stop + 1]:
        current.append(name)
        if name.startswith("pool"):
            blocks.append(tuple(current))
            current = []
    return blocks + [tuple(current)] if current else blocks


def recompute_in_backward(fn: Callable) -> Callable:
    """``fn(params, x)`` whose backward pass recomputes it from its inputs.

    Only the inputs are kept as residuals, and the recomputation waits
    for the incoming cotangent (:func:`nst_jax.vgg.layers.after`).
    ``jax.checkpoint`` saved nothing on XLA:CPU (jax 0.10.2), with either nothing_saveable or
    dots_saveable: its recomputation was merged back into the forward
    pass, and the compiled step's temporary memory came out 0.5-0.8%
    above no remat (512 and 1024 px, L-BFGS, default layers).
    """
    @jax.custom_vjp
    def f(params, x):
        return fn(params, x)

    def fwd(params, x):
        return fn(params, x), (params, x)

    def bwd(res, g):
        params, x = res
        return jax.vjp(fn, params, L.after(x, g))[1](g)

    f.defvjp(fwd, bwd)
    return f


def _extract_blocks(params, x_NxHxWx3: jax.Array, layers: Sequence[str],
                    pooling: str, dtype: jnp.dtype,
                    start: int = 0) -> dict[str, jax.Array]:
    """:class:`VGG19`'s forward pass, each block recomputed in backward.

    Only each block's input and the activations it returns (the block
    output and the requested layers, which the loss's own gradient keeps
    anyway) live until the gradient reaches the block; the block then
    recomputes its convolutions (:func:`recompute_in_backward`). With
    ``start``, ``x_NxHxWx3`` is the output of ``LAYERS[start - 1]``.
    """
    L.check_pooling(pooling)
    wanted = set(check_layers(layers))
    x = x_NxHxWx3.astype(dtype)
    out = {}
    for block in _blocks(LAYERS.index(deepest(wanted)), start):
        def run(p, x, block=block):
            return L.forward(p, x, block, pooling, dtype, wanted,
                             tie_bias=True)
        p = {n: params[n] for n in block if n in CONV_CHANNELS}
        x, feats = recompute_in_backward(run)(p, x)
        out.update(feats)
    return out


def extract(params, images_bgr_nhwc: jax.Array, layers: Sequence[str],
            pooling: str = "max", dtype: jnp.dtype = jnp.float32,
            remat: str = "none") -> dict[str, jax.Array]:
    """Runs VGG19 up to the deepest of ``layers``.

    Args:
      params: {conv name: {"kernel", "bias"}} as returned by
        ``nst_jax.weights.vgg.load_vgg19_params`` (convs past the deepest layer
        may be present and are ignored).
      images_bgr_nhwc: float array (N, H, W, 3), BGR minus the mean pixel.
      layers: layer names to return.
      pooling: "max" or "avg".
      dtype: compute dtype.
      remat: one of :data:`REMATS`; the values and gradients are the same,
        only what the backward pass keeps (and recomputes) differs.

    Returns:
      {name: activation (N, h, w, C) float32} for every requested name.
    """
    if remat not in REMATS:
        raise ValueError(f"remat must be one of {REMATS}, got {remat!r}")
    if remat == "blocks":
        return _extract_blocks(params, images_bgr_nhwc, layers, pooling,
                               dtype)
    model = VGG19(layers=tuple(layers), pooling=pooling, dtype=dtype)
    return model.apply({"params": params}, images_bgr_nhwc)


def extract_from(params, x: jax.Array, start: int, layers: Sequence[str],
                 pooling: str = "max", dtype: jnp.dtype = jnp.float32
                 ) -> dict[str, jax.Array]:
    """The network from layer index ``start`` on, given the output ``x`` of
    the layer before it; each block recomputed in the backward pass."""
    return _extract_blocks(params, x, layers, pooling, dtype, start)


@functools.lru_cache(maxsize=8)
def _jitted_features(layers: tuple[str, ...], pooling: str, dtype: str):
    return jax.jit(lambda p, x: extract(p, x, layers, pooling,
                                        jnp.dtype(dtype)))


def features(params, rgb_HxWx3, layers: Sequence[str], pooling: str = "max",
             dtype: str = "float32") -> dict[str, jax.Array]:
    """Activations of one RGB 0..255 image (H, W, 3): {layer: (1, h, w, C)}.

    Pre-processes with ``images.to_vgg`` and runs a program compiled once
    per (layer set, pooling, dtype) and image size.
    """
    x = to_input(rgb_HxWx3)
    fn, _ = executables.compiled(
        _jitted_features(tuple(layers), pooling, dtype),
        ("vgg19.features", tuple(layers), pooling, dtype), params, x)
    return fn(params, x)


def to_input(rgb_HxWx3) -> jax.Array:
    """One RGB 0..255 image as the network's (1, H, W, 3) input, on device
    (``device_put``: ``jnp.asarray`` would compile a program per shape)."""
    return jax.device_put(
        images.to_vgg(np.asarray(rgb_HxWx3, np.float32))[None])


def random_params(seed: int = 0, scale: float = 1.0):
    """He-initialised parameters for all 16 convs (tests, benchmarks)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), len(CONV_CHANNELS))
    params = {}
    for k, (name, (i, o)) in zip(keys, CONV_CHANNELS.items()):
        std = scale * (2.0 / (9 * i)) ** 0.5
        params[name] = {
            "kernel": std * jax.random.normal(k, (3, 3, i, o), jnp.float32),
            "bias": jnp.zeros((o,), jnp.float32)}
    return params
