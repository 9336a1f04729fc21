"""Gram statistics of VGG19 feature maps: whole, guided (masked) and per
cell of a grid. The style losses (:mod:`nst_jax.optimize.losses`) and the
tile-by-tile forward pass (:mod:`nst_jax.vgg.tiling`) both build on them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def _gram(feats_NxHxWxC: jax.Array) -> jax.Array:
    # Flattened to (N, H*W, C) first: XLA:CPU lowers the 4-d einsum through
    # two layout transposes, ~2.8x slower on a 512x512x64 map (87 vs 31 ms).
    n, h, w, c = feats_NxHxWxC.shape
    f_NxPxC = feats_NxHxWxC.reshape(n, h * w, c)
    return jnp.einsum("npc,npd->ncd", f_NxPxC, f_NxPxC,
                      preferred_element_type=jnp.float32) / (h * w)


@jax.custom_vjp
def gram(feats_NxHxWxC: jax.Array) -> jax.Array:
    """Gram matrix normalised by the number of positions H*W -> (N, C, C).

    Its gradient is one matmul, dF = F (dG + dG^T) / (H*W), written in the
    features' own (N, H, W, C) layout. Autodiff of the einsum emits two
    matmuls into a (C, H*W) layout plus a transpose back, which costs about
    13% of a whole 512 px L-BFGS step on XLA:CPU (1310 -> 1134 ms).
    """
    return _gram(feats_NxHxWxC)


def _gram_fwd(feats):
    return _gram(feats), feats


def _gram_bwd(feats, g_NxCxC):
    n, h, w, c = feats.shape
    sym = (g_NxCxC + jnp.swapaxes(g_NxCxC, 1, 2)) / (h * w)
    d_NxPxC = jnp.einsum("npc,ncd->npd", feats.reshape(n, h * w, c),
                         sym.astype(feats.dtype),
                         preferred_element_type=jnp.float32)
    return (d_NxPxC.reshape(n, h, w, c).astype(feats.dtype),)


gram.defvjp(_gram_fwd, _gram_bwd)


def masked_gram(feats_1xHxWxC: jax.Array, masks_SxHxW: jax.Array
                ) -> jax.Array:
    """Guided Grams (Gatys et al. 2017): one per mask -> (S, C, C).

    Each is normalised by the mask's energy, so a region's Gram is on the
    same scale as a whole-image Gram and comparable to the style target.
    """
    _, h, w, c = feats_1xHxWxC.shape
    s = masks_SxHxW.shape[0]
    fm_SxPxC = (feats_1xHxWxC.reshape(1, h * w, c)
                * masks_SxHxW.reshape(s, h * w, 1))
    norm_S = mask_energy(masks_SxHxW)
    return jnp.einsum("spc,spd->scd", fm_SxPxC, fm_SxPxC,
                      preferred_element_type=jnp.float32) / norm_S[:, None,
                                                                   None]


def mask_energy(masks_SxHxW: jax.Array) -> jax.Array:
    """(S,) sum of each mask's squares: :func:`masked_gram`'s divisor."""
    return jnp.maximum(jnp.sum(masks_SxHxW ** 2, axis=(1, 2)), 1e-8)


def cell_grams(feats_NxHxWxC: jax.Array, grid: int) -> jax.Array:
    """Grams of a grid x grid tiling of each map -> (N, cells, C, C).

    Cells split the map as evenly as whole positions allow; each Gram is
    normalised by its own cell's positions. A map fewer than ``grid``
    positions high (wide) gets one cell row (column) per position, so
    ``cells = min(grid, H) * min(grid, W)``. The cells do not overlap:
    all of them together cost about one whole-map Gram. (Static slices,
    each through :func:`gram`: a zero-padded (grid, cell, grid, cell)
    reshape with one einsum took 7x as long forward and backward at
    256 px on XLA:CPU, 153 vs 22 ms.)
    """
    _, h, w, _ = feats_NxHxWxC.shape
    return jnp.stack([gram(feats_NxHxWxC[:, y0:y1, x0:x1])
                      for (y0, y1), (x0, x1) in cell_bounds(h, w, grid)],
                     axis=1)


def cell_bounds(h: int, w: int, grid: int) -> list:
    """((y0, y1), (x0, x1)) of :func:`cell_grams`'s cells, row by row."""
    ey = np.linspace(0, h, min(grid, h) + 1).round().astype(int)
    ex = np.linspace(0, w, min(grid, w) + 1).round().astype(int)
    return [((y0, y1), (x0, x1)) for y0, y1 in zip(ey, ey[1:])
            for x0, x1 in zip(ex, ex[1:])]
