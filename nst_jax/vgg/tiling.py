"""VGG19's full-resolution blocks run tile by tile: memory for big prints.

At 1024 px and above the peak of a loss-and-gradient evaluation is set by
blocks 1-2, which run at full and half resolution with 64-128 channels:
one 1024 px map of block 1 is 256 MiB, and its backward pass holds
several. ``model.remat="tiles"`` runs those blocks (the *head*: up to
``pool3``, or up to the deepest layer used if that comes first) over
square tiles of ``model.tile_size`` px in a ``lax.scan``, one tile at a
time, and never builds their full maps:

* what the loss needs of a head layer is reduced tile by tile to a sum:
  its Gram (plain, per style mask, per portrait cell) or its squared
  error to the content target;
* the head's last map (``pool3``, 1/64 of the pixels) is assembled from
  the tiles and the rest of the network runs on it as usual, each block
  recomputed in the backward pass (as ``remat="blocks"``);
* the backward pass is a second scan over the tiles that recomputes each
  tile and takes its gradient (:func:`run_head`'s custom VJP).

Each tile is computed on a window ``halo`` px wider on every side, and
only its centre is used, so the results are those of the whole image:
a 3x3 convolution corrupts one position at a window's edge, pooling
halves that, and the head's worst case is 24 px. Positions outside the
image are zeroed after every convolution and pooling, which is exactly
the zero padding the whole-image network sees at its borders. Tiles start
on multiples of the head's pooling factor (8 px) so that the poolings
pair the same positions. The geometry (head, halo, tile side, slicing)
is :mod:`nst_jax.vgg.tile_grid`; the layers are
:func:`nst_jax.vgg.layers.forward`'s, as in the whole-image network.

The weights are constants here (no gradient flows to them): the image
gradient is what style transfer takes.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from nst_jax.vgg import gram, vgg19
from nst_jax.vgg import layers as L
# The tiles' geometry, re-exported: other modules read it here.
from nst_jax.vgg.tile_grid import (
    HEAD_END, Grid, cell_masks, halo, head, tile_side, valid)

__all__ = ["HEAD_END", "cell_masks", "extract", "features", "halo", "head",
           "run_head", "tile_side"]

# Reductions summed over the tiles.
_SUMS = ("gram", "masked", "cells", "sq")


class _Static(NamedTuple):
    head: tuple  # Layers run per tile.
    maps: tuple  # Head layers returned whole (assembled from the tiles).
    grams: tuple  # Head layers whose Gram is wanted.
    pooling: str
    dtype: str
    grid: Grid


def _tile_fn(st: _Static):
    """(params, window, ctx tiles, origin) -> per-tile results.

    ``ctx`` holds the tile's slices of the masks and content targets,
    already cut to the tile's centre at each layer's stride.
    """
    dtype = jnp.dtype(st.dtype)
    n_img, tile, margin = st.grid.hw, st.grid.tile, st.grid.halo

    def f(params, win, ctx, origin):
        out = {"map": {}, "gram": {}, "masked": {}, "cells": {}, "sq": {}}

        def visit(name, x):
            stride = L.STRIDE[name]
            if not name.startswith("relu"):
                vy = valid(origin[0], stride, n_img[0], x.shape[1])
                vx = valid(origin[1], stride, n_img[1], x.shape[2])
                x = x * (vy[:, None] & vx[None, :])[None, :, :,
                                                    None].astype(dtype)
            o, t = margin // stride, tile // stride
            core = x[:, o:o + t, o:o + t].astype(jnp.float32)
            positions = (n_img[0] // stride) * (n_img[1] // stride)
            if name in st.maps:
                out["map"][name] = core
            if name in st.grams:
                # gram.gram normalises by the tile's positions; the sum
                # over tiles is the image's Gram.
                out["gram"][name] = gram.gram(core) * (t * t / positions)
            for kind in ("masked", "cells"):
                if name in ctx[kind]:
                    m_SxPx1 = ctx[kind][name].reshape(-1, t * t, 1)
                    c = core.shape[-1]
                    fm = core.reshape(1, t * t, c) * m_SxPx1
                    out[kind][name] = jnp.einsum(
                        "spc,spd->scd", fm, fm,
                        preferred_element_type=jnp.float32)
            if name in ctx["content"]:
                err = core - ctx["content"][name]
                out["sq"][name] = jnp.sum(jnp.square(err)) / (
                    core.shape[0] * positions * core.shape[-1])
            return x

        L.forward(params, win.astype(dtype), st.head, st.pooling, dtype,
                  tie_bias=True, visit=visit)
        return out

    return f


def _head_fwd_scan(params, x_pad, ctx_full, st: _Static):
    g = st.grid
    ny, nx = g.shape()
    f = _tile_fn(st)

    def body(acc, i):
        ty, tx = i // nx, i % nx
        out = f(params, g.window(x_pad, ty, tx), g.context(ctx_full, ty, tx),
                g.origin(ty, tx))
        sums = {k: out[k] for k in _SUMS}
        acc = jax.tree_util.tree_map(jnp.add, acc, sums)
        return acc, out["map"]

    zero = jax.eval_shape(
        lambda: f(params, g.window(x_pad, 0, 0), g.context(ctx_full, 0, 0),
                  (0, 0)))
    acc0 = {k: jax.tree_util.tree_map(
        lambda s: jnp.zeros(s.shape, s.dtype), zero[k])
        for k in _SUMS}
    sums, maps_T = jax.lax.scan(body, acc0, jnp.arange(ny * nx))
    maps = {}
    for name, m in maps_T.items():
        # (ny*nx, N, t, t, C) -> (N, ny*t, nx*t, C), cut to the layer's size.
        _, n, t, _, c = m.shape
        m = m.reshape(ny, nx, n, t, t, c).transpose(2, 0, 3, 1, 4, 5)
        s = L.STRIDE[name]
        maps[name] = m.reshape(n, ny * t, nx * t, c)[
            :, :g.hw[0] // s, :g.hw[1] // s]
    return {"map": maps, **sums}


@functools.lru_cache(maxsize=32)
def _head_op(st: _Static):
    """The head as a function with a tile-by-tile backward pass."""
    f = _tile_fn(st)
    grid = st.grid
    ny, nx = grid.shape()

    @jax.custom_vjp
    def op(params, x_pad, ctx_full):
        return _head_fwd_scan(params, x_pad, ctx_full, st)

    def fwd(params, x_pad, ctx_full):
        return op(params, x_pad, ctx_full), (params, x_pad, ctx_full)

    def bwd(res, g):
        params, x_pad, ctx_full = res
        g_maps = {l: grid.pad_to_grid(m, L.STRIDE[l])
                  for l, m in g["map"].items()}

        def body(dx, i):
            ty, tx = i // nx, i % nx
            origin = grid.origin(ty, tx)
            ctx = grid.context(ctx_full, ty, tx)
            # Gradient computation waits for the previous tile's, so one
            # tile's recomputed activations are alive at a time.
            win = L.after(grid.window(x_pad, ty, tx), dx)
            _, vjp = jax.vjp(lambda w: f(params, w, ctx, origin), win)
            t_maps = {l: grid.centre(gm, L.STRIDE[l], ty, tx)
                      for l, gm in g_maps.items()}
            cot = {"map": t_maps, **{k: g[k] for k in _SUMS}}
            (d_win,) = vjp(cot)
            cur = grid.window(dx, ty, tx)
            start = (0, ty * grid.tile, tx * grid.tile, 0)
            return jax.lax.dynamic_update_slice(dx, cur + d_win, start), None

        dx, _ = jax.lax.scan(body, jnp.zeros_like(x_pad),
                             jnp.arange(ny * nx))
        zeros = functools.partial(jax.tree_util.tree_map, jnp.zeros_like)
        return zeros(params), dx, zeros(ctx_full)

    op.defvjp(fwd, bwd)
    return op


def run_head(params, x_NxHxWx3: jax.Array, layers, *, tile: int,
             pooling: str = "max", dtype: str = "float32", maps=(),
             grams=(), masks=None, cells=None, content=None) -> dict:
    """The head's maps and reductions, computed tile by tile.

    Args:
      params: VGG19 conv params (treated as constants: no gradient).
      x_NxHxWx3: VGG-space images.
      layers: every layer the caller reads; :func:`head` picks the head.
      tile: tile side in pixels (rounded up to the head's pooling factor,
        :func:`tile_side`).
      maps: head layers to return whole, (N, h, w, C) each.
      grams: head layers whose Gram is wanted, (N, C, C) each, normalised
        by the layer's H*W as :func:`nst_jax.vgg.gram.gram`.
      masks: {head layer: (S, h, w)} weights; each gives the sums
        sum_p m_s(p)^2 F(p) F(p)^T, (S, C, C), unnormalised (N must be 1).
      cells: the same for the portrait's cell indicators
        (:func:`cell_masks`), kept apart from the style masks.
      content: {head layer: (N, h, w, C)} targets; each gives the mean
        squared error of the layer's map to it (a scalar).

    Returns:
      {"map": {...}, "gram": {...}, "masked": {...}, "cells": {...},
       "sq": {...}}.
    """
    hl = head(layers)
    h, w = x_NxHxWx3.shape[1:3]
    tile = tile_side(hl, tile, (h, w))
    grid = Grid(tile, halo(hl), (int(h), int(w)))
    st = _Static(hl, tuple(maps), tuple(grams), pooling, dtype, grid)
    ctx = {k: {l: grid.pad_to_grid(jnp.asarray(a), L.STRIDE[l])
               for l, a in (d or {}).items()}
           for k, d in (("masked", masks), ("cells", cells),
                        ("content", content))}
    params = {n: jax.lax.stop_gradient(params[n]) for n in hl
              if n in L.CONV_CHANNELS}
    return _head_op(st)(params, grid.pad(x_NxHxWx3), ctx)


def extract(params, x_NxHxWx3: jax.Array, layers, *, tile: int,
            pooling: str = "max", dtype: str = "float32", grams=(),
            masks=None, cells=None, content=None, maps=()
            ) -> tuple[dict, dict]:
    """The whole network with its head tiled: (maps past the head, head
    reductions).

    ``layers`` past the head come back as maps (the tail runs on the
    assembled head output, each block recomputed in backward). Head layers
    come back whole only if named in ``maps`` (in the second dict's
    "map"). Reductions as :func:`run_head`.
    """
    hl = head(layers)
    tail = [l for l in layers if l not in hl]
    whole = tuple(dict.fromkeys(tuple(maps) + ((hl[-1],) if tail else ())))
    out = run_head(params, x_NxHxWx3, layers, tile=tile, pooling=pooling,
                   dtype=dtype, maps=whole, grams=grams,
                   masks=masks, cells=cells, content=content)
    feats = {}
    if tail:
        feats = vgg19.extract_from(params, out["map"][hl[-1]], len(hl),
                                   tail, pooling, jnp.dtype(dtype))
    return feats, out


@functools.lru_cache(maxsize=16)
def _jitted_tiled_features(maps: tuple, grams: tuple, tile: int,
                           pooling: str, dtype: str):
    def f(params, x):
        layers = tuple(dict.fromkeys(maps + grams))
        hl = set(head(layers))
        feats, out = extract(params, x, layers, tile=tile, pooling=pooling,
                             dtype=dtype, maps=[l for l in maps if l in hl],
                             grams=[l for l in grams if l in hl])
        feats.update(out["map"])
        g = {l: out["gram"][l] if l in hl else gram.gram(feats[l])
             for l in grams}
        return {l: feats[l] for l in maps}, g
    return jax.jit(f)


def features(params, rgb_HxWx3, maps=(), grams=(), *, tile: int,
             pooling: str = "max", dtype: str = "float32"
             ) -> tuple[dict, dict]:
    """Maps ({layer: (1, h, w, C)}) and Grams ({layer: (1, C, C)}) of one
    RGB 0..255 image, its head run tile by tile: the targets of a run
    with ``remat="tiles"``, whose full-resolution maps never exist whole.
    """
    x = vgg19.to_input(rgb_HxWx3)
    return _jitted_tiled_features(tuple(maps), tuple(grams), int(tile),
                                  pooling, dtype)(params, x)
