"""VGG19's layers: the layer table and the one definition of a layer.

The table names every layer in forward order, Caffe-style (``conv1_1`` ...
``conv5_4``, ``relu1_1`` ..., ``pool1`` ... ``pool5``), with each conv's
channels and each layer's stride. :func:`apply_layer` says what a layer
computes (3x3 conv plus bias, ReLU, 2x2 pooling) and :func:`forward` runs
a span of the table; every forward pass of the network goes through them:
the Flax module and the block-recomputing extractor
(:mod:`nst_jax.vgg.vgg19`) and the tile-by-tile head
(:mod:`nst_jax.vgg.tiling`).
"""

from __future__ import annotations

from typing import Callable, Iterable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


def check_pooling(pooling: str) -> None:
    """Raises ValueError unless ``pooling`` is one of :data:`POOLINGS`."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, "
                         f"got {pooling!r}")


def deepest(layers: Iterable[str]) -> str:
    """The layer furthest along the network among ``layers``."""
    return max(layers, key=LAYERS.index)


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


def after(x: jax.Array, deps) -> jax.Array:
    """``x`` plus an exact zero computed from every leaf of ``deps``.

    Work on the result can neither start before all of ``deps`` exists
    nor be merged with the same work on ``x`` (common-subexpression
    elimination). ``lax.optimization_barrier`` means the same, but XLA:CPU
    drops barriers before it merges duplicate work.
    """
    firsts = [jnp.ravel(leaf)[0].astype(jnp.float32)
              for leaf in jax.tree_util.tree_leaves(deps)]
    probe = sum(firsts[1:], firsts[0])
    zero = jnp.where(jnp.isfinite(probe), probe, 0.0) * 0.0
    return x + zero.astype(x.dtype)


def apply_layer(name: str, x: jax.Array, conv: Mapping | None, pooling: str,
                dtype: jnp.dtype, tie_bias: bool = False) -> jax.Array:
    """Layer ``name`` of the table applied to ``x`` (already in ``dtype``).

    Args:
      conv: the layer's {"kernel": HWIO, "bias": (O,)} for a conv layer
        (cast to ``dtype``), unused otherwise.
      tie_bias: add the bias only once ``x`` exists (:func:`after`).
        Without it XLA:CPU broadcast every layer's bias to its
        activation's shape at the start of the pass, all blocks at once,
        and those buffers were 40% of the backward pass's peak under remat
        (default layers, 256-512 px).
    """
    if name.startswith("conv"):
        y = conv3x3(x, conv["kernel"].astype(dtype))
        bias = conv["bias"].astype(dtype)
        return y + (after(bias, x) if tie_bias else bias)
    if name.startswith("relu"):
        return nn.relu(x)
    return pool2x2(x, pooling)


def forward(params: Mapping, x: jax.Array, names: Sequence[str],
            pooling: str, dtype: jnp.dtype, wanted=(), *,
            tie_bias: bool = False,
            visit: Callable[[str, jax.Array], jax.Array] | None = None
            ) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The layers ``names`` (a contiguous span of the table) run from ``x``.

    Args:
      params: {conv name: {"kernel", "bias"}} for the convs in ``names``.
      wanted: layers whose output is returned, as float32.
      visit: ``visit(name, y) -> y`` applied to each layer's output before
        it goes on (it may record it, or change it).

    Returns:
      (the last layer's output, {wanted name: output as float32}).
    """
    feats = {}
    for name in names:
        x = apply_layer(name, x, params.get(name), pooling, dtype, tie_bias)
        if visit is not None:
            x = visit(name, x)
        if name in wanted:
            feats[name] = x.astype(jnp.float32)
    return x, feats
