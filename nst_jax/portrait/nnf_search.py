"""One level of PatchMatch: a nearest-neighbour field (NNF) from each
destination cell to its best-matching source patch, improved in parallel
from a starting field (:mod:`nst_jax.portrait.patchmatch` runs the levels
coarse to fine).

The patch distance is the sum over a small patch of squared distances
between per-cell unit-length features. Unlike the original's sequential
scan, propagation is parallel, in the manner of jump flooding: every cell
at once tries the matches of its neighbours at +-k (k halving) shifted by
the offset, then a random candidate in a shrinking window.

A level is one jit-compiled ``lax.fori_loop`` (static shapes, static
candidate count). Candidate t of a level draws from ``fold_in(key, t)``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax.portrait import alignment

#: Largest jump at a level that starts from a coarser field: that field is
#: already right to within a coarse cell or two, so long jumps only cost.
FINE_JUMP = 2
#: Random-search window (+- cells) at the first step of a refined level.
FINE_RADIUS = 2
#: How far (+- cells) a refined level may move a match from where the
#: coarser level put it: a coarse cell is 2 fine cells, so 2 covers its
#: error. Unbounded, fine layers (texture, not parts) drift to look-alike
#: patches anywhere and rebuild the photo out of the painting's strokes.
FINE_WINDOW = 2


def _grid(h: int, w: int) -> jax.Array:
    return jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w),
                                  indexing="ij"), axis=-1)


def _unit(feat_hxwxC: jax.Array) -> jax.Array:
    # Unit length per cell, as in Deep Image Analogy: the match compares
    # what a cell responds to, not how strongly (the gain map's business).
    norm = jnp.linalg.norm(feat_hxwxC, axis=-1, keepdims=True)
    return feat_hxwxC / (norm + 1e-8)


def patch_distance(src_pad: jax.Array, dst_pad: jax.Array,
                   field_hxwx2: jax.Array, patch: int) -> jax.Array:
    """(h, w) sum over a patch of squared distances of unit features.

    ``src_pad`` (hs + 2r, ws + 2r, C) and ``dst_pad`` (h + 2r, w + 2r, C)
    are unit features edge padded by r = patch // 2; ``field_hxwx2`` holds
    the candidate source (y, x) of each destination cell.
    """
    h, w = field_hxwx2.shape[:2]
    c = src_pad.shape[-1]
    src_flat = src_pad.reshape(-1, c)
    base = field_hxwx2[..., 0] * src_pad.shape[1] + field_hxwx2[..., 1]

    # A loop over the patch's offsets rather than an unrolled sum: XLA:CPU
    # compiles it in half the time and runs it no slower (one gather each).
    def add_offset(k, total_hxw):
        oy, ox = k // patch, k % patch
        dst = jax.lax.dynamic_slice(dst_pad, (oy, ox, 0), (h, w, c))
        diff = dst - src_flat[base + oy * src_pad.shape[1] + ox]
        return total_hxw + jnp.sum(diff * diff, axis=-1)

    return jax.lax.fori_loop(0, patch * patch, add_offset,
                             jnp.zeros((h, w), jnp.float32))


def _median3(disp_hxwx2: jax.Array) -> jax.Array:
    h, w = disp_hxwx2.shape[:2]
    padded = jnp.pad(disp_hxwx2, ((1, 1), (1, 1), (0, 0)), mode="edge")
    return jnp.median(jnp.stack([padded[dy:dy + h, dx:dx + w]
                                 for dy in range(3) for dx in range(3)]),
                      axis=0)


def upsample_field(field_hcxwcx2: jax.Array, dst_hw: Sequence[int],
                   src_hw: Sequence[int], ratio: Sequence[int]
                   ) -> jax.Array:
    """Starting fields for the next finer level, from a coarse field.

    The coarse displacement (source cell - own cell) is median filtered
    over 3x3 cells, then (a) bilinearly upsampled, coarse cell c centred on
    fine cell ``(c + 0.5) * r - 0.5``, and (b) read at each of the four
    coarse cells around the fine cell; each is scaled by the source's ratio.
    :func:`search_level` keeps the best of the five per cell. Nearest
    upsampling alone leaves r x r blocks whose edges a level held near its
    start (:data:`FINE_WINDOW`) cannot undo; bilinear alone drags good
    matches toward bad ones beside them (where the source has no
    counterpart). A uniform shift stays exact in all five.

    Args:
      field_hcxwcx2: (hc, wc, 2) int source (y, x) per coarse cell.
      dst_hw, src_hw: the fine destination's and source's (h, w).
      ratio: integer (r_dst_y, r_dst_x, r_src_y, r_src_x) fine cells per
        coarse cell (2 for VGG's pooling, which halves and floors).

    Returns:
      (5, h, w, 2) int32 candidate source (y, x) per fine cell.
    """
    hc, wc = field_hcxwcx2.shape[:2]
    r_dst = jnp.array(ratio[:2], jnp.float32)
    r_src = jnp.array(ratio[2:], jnp.float32)
    disp = (field_hcxwcx2 - _grid(hc, wc)).astype(jnp.float32)
    grid = _grid(*dst_hw).astype(jnp.float32)
    at = (grid + 0.5) / r_dst - 0.5
    y0 = jnp.clip(jnp.floor(at[..., 0]), 0, hc - 1).astype(jnp.int32)
    x0 = jnp.clip(jnp.floor(at[..., 1]), 0, wc - 1).astype(jnp.int32)
    y1, x1 = jnp.minimum(y0 + 1, hc - 1), jnp.minimum(x0 + 1, wc - 1)
    smooth = _median3(disp)
    disps = [alignment.sample(smooth, at)] + [
        smooth[y, x] for y in (y0, y1) for x in (x0, x1)]
    own = (grid + 0.5) * r_src / r_dst - 0.5
    starts = jnp.round(own + jnp.stack(disps) * r_src)
    return jnp.clip(starts, 0, jnp.array(src_hw) - 1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("patch", "ratio"))
def search_level(src_hsxwsxC: jax.Array, dst_hxwxC: jax.Array,
                 coarse_field: Optional[jax.Array], key: jax.Array,
                 schedule_Tx3: jax.Array, window: jax.Array, patch: int,
                 ratio: Optional[tuple[int, int, int, int]] = None
                 ) -> tuple[jax.Array, jax.Array]:
    """One level: a starting field improved by propagation and search.

    Args:
      src_hsxwsxC: source features (raw; normalised here).
      dst_hxwxC: destination features, same channels.
      coarse_field: the coarser level's field, whose upsampled versions
        (:func:`upsample_field` with ``ratio``) compete for the start;
        None starts from uniform random matches.
      key: PRNG key of this level.
      schedule_Tx3: int32 rows (dy, dx, radius): candidate t of every cell
        is the current match of its neighbour at (dy, dx), shifted by that
        offset, plus a uniform integer offset in [-radius, radius]^2.
      window: int32 scalar; candidates are clamped to +-window cells of
        the start.
      patch: odd patch side in cells.
      ratio: see :func:`upsample_field`.

    Returns:
      ``(field (h, w, 2) int32, distance (h, w) float32)``.
    """
    h, w = dst_hxwxC.shape[:2]
    n_rows = schedule_Tx3.shape[0]
    src_max = jnp.array(src_hsxwsxC.shape[:2]) - 1
    dst_max = jnp.array([h - 1, w - 1])
    if coarse_field is None:
        # Index past every candidate's: those draw from fold_in(key, t).
        u = jax.random.uniform(jax.random.fold_in(key, n_rows + 1),
                               (1, h, w, 2))
        starts = jnp.floor(u * (src_max + 1)).astype(jnp.int32)
    else:
        starts = upsample_field(coarse_field, (h, w),
                                src_hsxwsxC.shape[:2], ratio)
    n_starts = starts.shape[0]
    r = patch // 2
    pad = ((r, r), (r, r), (0, 0))
    src_pad = jnp.pad(_unit(src_hsxwsxC), pad, mode="edge")
    dst_pad = jnp.pad(_unit(dst_hxwxC), pad, mode="edge")
    grid = _grid(h, w)

    # One loop body for the starts and the schedule (one compile of the
    # patch distance): steps t < n_starts try start t; later steps try
    # schedule row t - n_starts, clamped to the window around the start
    # chosen by then (the anchor).
    def try_candidate(t, carry):
        field, dist, anchor = carry
        row = schedule_Tx3[jnp.maximum(t - n_starts, 0)]
        near = jnp.clip(grid + row[:2], 0, dst_max)
        cand = field[near[..., 0], near[..., 1]] - (near - grid)
        u = jax.random.uniform(jax.random.fold_in(key, t), (h, w, 2))
        jitter = jnp.floor(u * (2 * row[2] + 1)).astype(jnp.int32) - row[2]
        cand = jnp.clip(cand + jitter, anchor - window, anchor + window)
        cand = jnp.where(t < n_starts, starts[jnp.minimum(t, n_starts - 1)],
                         cand)
        cand = jnp.clip(cand, 0, src_max).astype(jnp.int32)
        cand_dist = patch_distance(src_pad, dst_pad, cand, patch)
        better = cand_dist < dist
        field = jnp.where(better[..., None], cand, field)
        return (field, jnp.where(better, cand_dist, dist),
                jnp.where(t < n_starts, field, anchor))

    dist = jnp.full((h, w), jnp.inf, jnp.float32)
    field, dist, _ = jax.lax.fori_loop(
        0, n_starts + n_rows, try_candidate, (starts[0], dist, starts[0]))
    return field, dist


def schedule(iterations: int, dst_hw: Sequence[int], src_hw: Sequence[int],
             coarsest: bool) -> np.ndarray:
    """Candidate rows (dy, dx, radius) for :func:`search_level`.

    Per iteration, jumps k = K, K/2, ..., 1: four neighbours at +-k along
    each axis, then one random candidate whose window halves each step. The coarsest level starts
    from random matches, so K spans the field and the window the whole
    source; finer levels use :data:`FINE_JUMP` and :data:`FINE_RADIUS`.
    """
    if coarsest:
        k = 1 << max(0, (max(dst_hw) // 2).bit_length() - 1)
        radius = max(src_hw)
    else:
        k, radius = FINE_JUMP, FINE_RADIUS
    rows = []
    while k >= 1:
        rows += [(k, 0, 0), (-k, 0, 0), (0, k, 0), (0, -k, 0),
                 (0, 0, max(1, radius))]
        k, radius = k // 2, radius // 2
    return np.array(rows * iterations, np.int32)
