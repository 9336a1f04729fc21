"""Geometry of VGG19's tile-by-tile head (:mod:`nst_jax.vgg.tiling`).

Which layers run tile by tile (:func:`head`), the context each tile needs
around it (:func:`halo`), the tile side used (:func:`tile_side`), and how
whole-image arrays are padded to the grid of tiles and cut into tiles'
windows and centres (:class:`Grid`). Shapes here are static: they are
read at trace time, and the tile indices may be traced.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.vgg import gram
from nst_jax.vgg.layers import LAYERS, STRIDE, deepest

#: The last layer computed tile by tile (blocks 1-3). Ending at pool2
#: instead: 1024 px L-BFGS, 256 px tiles, XLA's program 1155 MiB and
#: 38.3 s/step, against 863 MiB and 45.3 s (remat="blocks": 2438 MiB,
#: 34.5 s).
HEAD_END = "pool3"


def head(layers) -> tuple[str, ...]:
    """The layers run tile by tile for a loss reading ``layers``."""
    stop = min(LAYERS.index(deepest(layers)), LAYERS.index(HEAD_END))
    return tuple(LAYERS[:stop + 1])


def halo(head_layers) -> int:
    """Pixels of context each tile needs on every side (a multiple of the
    head's pooling factor).

    Tracks how far in from a window's edge values are wrong: one more
    position per convolution, half as many (rounded up) after a pooling;
    the worst over the layers, in input pixels.
    """
    bad, stride, worst = 0, 1, 0
    for name in head_layers:
        if name.startswith("conv"):
            bad += 1
        elif name.startswith("pool"):
            bad, stride = -(-bad // 2), stride * 2
        worst = max(worst, bad * stride)
    return -(-worst // _align(head_layers)) * _align(head_layers)


def _align(head_layers) -> int:
    """The head's total pooling factor: tiles start on its multiples."""
    return 2 ** sum(n.startswith("pool") for n in head_layers)


def tile_side(head_layers, tile: int, hw: tuple[int, int]) -> int:
    """The tile side actually used: ``tile`` rounded up to the pooling's
    alignment, and no wider than the image (rounded up the same way)."""
    a = _align(head_layers)
    return min(max(a, -(-int(tile) // a) * a), -(-max(hw) // a) * a)


class Grid(NamedTuple):
    """The tiles over one image size."""

    tile: int  # Tile side in input pixels (multiple of the alignment).
    halo: int
    hw: tuple  # (H, W) of the image.

    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return tuple(-(-n // self.tile) for n in self.hw)

    def origin(self, ty, tx) -> tuple:
        """Input position of tile (ty, tx)'s window's first pixel."""
        return (ty * self.tile - self.halo, tx * self.tile - self.halo)

    def pad(self, x_NxHxWxC) -> jax.Array:
        """The input padded by the halo, and out to whole tiles."""
        ny, nx = self.shape()
        (h, w), t, o = self.hw, self.tile, self.halo
        return jnp.pad(x_NxHxWxC, ((0, 0), (o, ny * t - h + o),
                                   (o, nx * t - w + o), (0, 0)))

    def pad_to_grid(self, a, stride: int, axes=(1, 2)) -> jax.Array:
        """A head layer's whole-image array padded to the tiles' extent."""
        pads = [(0, 0)] * a.ndim
        for ax, n in zip(axes, self.shape()):
            pads[ax] = (0, n * self.tile // stride - a.shape[ax])
        return jnp.pad(a, pads)

    def window(self, x_pad, ty, tx) -> jax.Array:
        """Tile (ty, tx)'s window (the tile and its halo) of the padded
        input."""
        w = self.tile + 2 * self.halo
        return jax.lax.dynamic_slice(
            x_pad, (0, ty * self.tile, tx * self.tile, 0),
            (x_pad.shape[0], w, w, x_pad.shape[3]))

    def centre(self, a, stride: int, ty, tx, axes=(1, 2)) -> jax.Array:
        """Tile (ty, tx)'s centre of an array padded by :meth:`pad_to_grid`
        at ``stride``."""
        t = self.tile // stride
        starts = [0] * a.ndim
        sizes = list(a.shape)
        for ax, k in zip(axes, (ty, tx)):
            starts[ax], sizes[ax] = k * t, t
        return jax.lax.dynamic_slice(a, starts, sizes)

    def context(self, ctx_full, ty, tx):
        """The tile's centre slices of the padded masks and content
        targets ({kind: {layer: array}})."""
        return {k: {l: self.centre(a, STRIDE[l], ty, tx)
                    for l, a in d.items()} for k, d in ctx_full.items()}


def valid(origin, stride: int, n: int, size: int) -> jax.Array:
    """Positions of a tile's axis (at ``stride``) inside the image's extent."""
    g = origin // stride + jnp.arange(size)
    return (g >= 0) & (g < n // stride)


def cell_masks(h: int, w: int, grid: int) -> np.ndarray:
    """(cells, h, w) 0/1 indicators of
    :func:`nst_jax.vgg.gram.cell_grams`'s
    cells on an h x w map."""
    out = []
    for (y0, y1), (x0, x1) in gram.cell_bounds(h, w, grid):
        m = np.zeros((h, w), np.float32)
        m[y0:y1, x0:x1] = 1.0
        out.append(m)
    return np.stack(out)
