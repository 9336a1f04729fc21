"""VGG19 feature extractor (Simonyan & Zisserman 2014) as a Flax linen module.

Describes architecture only: no IO, no weights. Layers carry Caffe-style
names (``conv1_1`` ... ``conv5_4``, ``relu1_1`` ..., ``pool1`` ... ``pool5``)
so the parameter tree keys are the names used throughout nst_jax. Inputs are
BGR, 0-255 scale, minus the mean pixel (see ``nst_jax.io.images.to_vgg``).
"""

from __future__ import annotations

import functools
from typing import Callable, Iterable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.io import images

# Convolutions per block (VGG19: 2, 2, 4, 4, 4) and their output channels.
_BLOCKS = ((2, 64), (2, 128), (4, 256), (4, 512), (4, 512))


def _layer_table() -> tuple[list[str], dict[str, tuple[int, int]]]:
    names, convs, c_in = [], {}, 3
    for b, (n_convs, c_out) in enumerate(_BLOCKS, start=1):
        for i in range(1, n_convs + 1):
            convs[f"conv{b}_{i}"] = (c_in, c_out)
            names += [f"conv{b}_{i}", f"relu{b}_{i}"]
            c_in = c_out
        names.append(f"pool{b}")
    return names, convs


#: Every layer name in forward order.
LAYERS, _CONVS = _layer_table()
#: conv name -> (input channels, output channels), in forward order.
CONV_CHANNELS: dict[str, tuple[int, int]] = dict(_CONVS)
#: The 16 conv layers in forward order.
CONV_LAYERS: tuple[str, ...] = tuple(CONV_CHANNELS)
#: Spatial downsampling factor at the output of each layer.
STRIDE = {}
_s = 1
for _name in LAYERS:
    if _name.startswith("pool"):
        _s *= 2
    STRIDE[_name] = _s
del _s, _name

POOLINGS = ("max", "avg")
#: Rematerialisation of activations in the backward pass: "none" keeps
#: every residual; "blocks" keeps only each block's input (and the
#: activations the loss reads) and recomputes the rest of the block while
#: its gradient is taken.
REMATS = ("none", "blocks")

_DN = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, kernel: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=_DN)


@jax.custom_vjp
def conv3x3(x_NxHxWxI: jax.Array, kernel_3x3xIxO: jax.Array) -> jax.Array:
    """3x3 convolution, stride 1, zero padding 1 ("same").

    Its input gradient is written as a plain forward convolution with the
    flipped, transposed kernel. XLA:CPU runs the transposed convolution that
    autodiff emits about 8x slower inside a loop body (lax.scan) than this
    equivalent forward one (jax 0.10.2, 2-core x86: 168 ms vs 17 ms for a
    1x256x256x64 -> 64 conv), and the optimisation loop is a scan.
    """
    return _conv(x_NxHxWxI, kernel_3x3xIxO)


def _conv_fwd(x, kernel):
    return _conv(x, kernel), (x, kernel)


def _conv_bwd(res, g):
    x, kernel = res
    k_t = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    dx = _conv(g, k_t)
    # The kernel gradient is only computed if someone asks for it (XLA
    # removes it as dead code when only the image gradient is used).
    dk = jax.vjp(lambda k: _conv(x, k), kernel)[1](g)[0]
    return dx, dk


conv3x3.defvjp(_conv_fwd, _conv_bwd)


def pool2x2(x_NxHxWxC: jax.Array, kind: str = "max") -> jax.Array:
    """2x2 pooling, stride 2, odd sizes floored (as Caffe's VGG with VALID).

    Written as a reshape and a reduction rather than a reduce_window: the
    gradient of max reduce_window is select_and_scatter, which XLA:CPU runs
    ~6x slower than the reduction's gradient (47 ms vs 7 ms on a
    1x256x256x64 map). At exact ties the gradient is shared among the tied
    inputs instead of given to the first; the forward values are identical.
    """
    n, h, w, c = x_NxHxWxC.shape
    x = x_NxHxWxC[:, :h // 2 * 2, :w // 2 * 2]
    x = x.reshape(n, h // 2, 2, w // 2, 2, c)
    return x.max(axis=(2, 4)) if kind == "max" else x.mean(axis=(2, 4))


class Conv3x3(nn.Module):
    """Conv layer with Flax's parameter names ("kernel" HWIO, "bias")."""

    features: int
    dtype: jnp.dtype = jnp.float32
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        # Zeros: weights are always loaded (random_params draws its own);
        # Flax traces this initializer at every apply to check the shape,
        # and zeros trace far faster than a normal sample.
        kernel = self.param("kernel", nn.initializers.zeros,
                            (3, 3, x.shape[-1], self.features),
                            self.param_dtype)
        bias = self.param("bias", nn.initializers.zeros, (self.features,),
                          self.param_dtype)
        y = conv3x3(x.astype(self.dtype), kernel.astype(self.dtype))
        return y + bias.astype(self.dtype)


def check_layers(layers: Iterable[str]) -> tuple[str, ...]:
    """Validates layer names; returns them as a tuple in the given order.

    Raises:
      ValueError: an unknown or repeated name (message lists valid names).
    """
    layers = tuple(layers)
    unknown = [l for l in layers if l not in STRIDE]
    if unknown:
        raise ValueError(
            f"unknown VGG19 layer(s) {unknown}; valid names are "
            f"conv1_1..conv5_4, relu1_1..relu5_4, pool1..pool5")
    dupes = sorted({l for l in layers if layers.count(l) > 1})
    if dupes:
        raise ValueError(f"layer(s) listed more than once: {dupes}")
    return layers


def deepest(layers: Iterable[str]) -> str:
    """The layer furthest along the network among ``layers``."""
    return max(layers, key=LAYERS.index)


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
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, "
                             f"got {self.pooling!r}")
        wanted = set(check_layers(self.layers))
        stop = LAYERS.index(deepest(wanted))
        x = x_NxHxWx3.astype(self.dtype)
        out = {}
        for name in LAYERS[:stop + 1]:
            if name.startswith("conv"):
                x = Conv3x3(CONV_CHANNELS[name][1], dtype=self.dtype,
                            param_dtype=self.param_dtype, name=name)(x)
            elif name.startswith("relu"):
                x = nn.relu(x)
            else:
                x = pool2x2(x, self.pooling)
            if name in wanted:
                out[name] = x.astype(jnp.float32)
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


def _after(x: jax.Array, after) -> jax.Array:
    """``x`` plus an exact zero computed from every leaf of ``after``.

    Work on the result can neither start before all of ``after`` exists
    nor be merged with the same work on ``x`` (common-subexpression
    elimination). ``lax.optimization_barrier`` means the same, but XLA:CPU
    drops barriers before it merges duplicate work.
    """
    firsts = [jnp.ravel(leaf)[0].astype(jnp.float32)
              for leaf in jax.tree_util.tree_leaves(after)]
    probe = sum(firsts[1:], firsts[0])
    zero = jnp.where(jnp.isfinite(probe), probe, 0.0) * 0.0
    return x + zero.astype(x.dtype)


def _layer(params, name: str, x: jax.Array, pooling: str,
           dtype: jnp.dtype) -> jax.Array:
    """One layer of the table, as :class:`VGG19` computes it.

    The bias is tied to the layer's input (:func:`_after`): otherwise
    XLA:CPU broadcast every layer's bias to its activation's shape at the
    start of the pass, all blocks at once, and those buffers were 40% of
    the backward pass's peak under remat (default layers, 256-512 px).
    """
    if name.startswith("conv"):
        y = conv3x3(x, params[name]["kernel"].astype(dtype))
        return y + _after(params[name]["bias"].astype(dtype), x)
    if name.startswith("relu"):
        return nn.relu(x)
    return pool2x2(x, pooling)


def recompute_in_backward(fn: Callable) -> Callable:
    """``fn(params, x)`` whose backward pass recomputes it from its inputs.

    Only the inputs are kept as residuals, and the recomputation waits
    for the incoming cotangent (:func:`_after`). ``jax.checkpoint`` saved
    nothing on XLA:CPU (jax 0.10.2), with either nothing_saveable or
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
        return jax.vjp(fn, params, _after(x, g))[1](g)

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
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, "
                         f"got {pooling!r}")
    wanted = set(check_layers(layers))
    x = x_NxHxWx3.astype(dtype)
    out = {}
    for block in _blocks(LAYERS.index(deepest(wanted)), start):
        def run(p, x, block=block):
            feats = {}
            for name in block:
                x = _layer(p, name, x, pooling, dtype)
                if name in wanted:
                    feats[name] = x.astype(jnp.float32)
            return x, feats
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
def _features_fn(layers: tuple[str, ...], pooling: str, dtype: str):
    return jax.jit(lambda p, x: extract(p, x, layers, pooling,
                                        jnp.dtype(dtype)))


def features(params, rgb_HxWx3, layers: Sequence[str], pooling: str = "max",
             dtype: str = "float32") -> dict[str, jax.Array]:
    """Activations of one RGB 0..255 image (H, W, 3): {layer: (1, h, w, C)}.

    Pre-processes with ``images.to_vgg`` and runs a program compiled once
    per (layer set, pooling, dtype) and image size.
    """
    return _features_fn(tuple(layers), pooling, dtype)(params,
                                                      to_input(rgb_HxWx3))


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
