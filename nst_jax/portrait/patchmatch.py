"""Coarse-to-fine PatchMatch over VGG19 features: a dense correspondence
between a painted face and a photographed one for the portrait gain maps.

After Liao et al. 2017, "Visual Attribute Transfer through Deep Image
Analogy": a nearest-neighbour field (NNF) is found at the deepest layer
(relu5_1 by default) from a random start, then refined layer by layer down
to relu2_1, each level starting from the coarser field upsampled by the
stride ratio (one level's search: :mod:`nst_jax.portrait.nnf_search`). A
forward and a backward field give a bidirectional consistency check, the
confidence of each content pixel.

Every level is one jit-compiled ``lax.fori_loop`` (static shapes, static
candidate count); only the loop over levels runs on the host. Results are
deterministic for a seed: candidate t of level l draws from
``fold_in(fold_in(key, l), t)``.
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from nst_jax.io import images
from nst_jax.portrait import alignment
from nst_jax.portrait.nnf_search import (FINE_WINDOW, _grid, schedule,
                                         search_level)
from nst_jax.vgg import vgg19

#: Default long side (px) at which :func:`correspondence` searches. VGG's
#: deep layers see a face's parts, not its texture, when the face spans a
#: few of their receptive fields: on a painted and a photographed head
#: (Van Gogh, Grace Hopper) the median error at 7 hand-marked landmarks
#: was 15-17 px searching at 256 and 30-96 px at 512 (in 512 px units).
SEARCH_SIZE = 256

Patch = Union[int, Sequence[int]]


def _check_patches(patch: Patch, levels: int) -> tuple[int, ...]:
    sizes = ((patch,) * levels if np.isscalar(patch) else tuple(patch))
    if len(sizes) != levels or any(int(p) < 1 or int(p) % 2 == 0
                                   for p in sizes):
        raise ValueError(f"patch must be a positive odd integer or one per "
                         f"level ({levels}), got {patch}")
    return tuple(int(p) for p in sizes)


def _nnf(src_feats: Sequence[jax.Array], dst_feats: Sequence[jax.Array],
         iterations: int, patch: Patch, key: jax.Array,
         anchored: bool = False) -> jax.Array:
    src = [alignment.as_hwc(f) for f in src_feats]
    dst = [alignment.as_hwc(f) for f in dst_feats]
    if not src or len(src) != len(dst):
        raise ValueError(f"need the same non-zero number of source and "
                         f"destination levels, got {len(src)}, {len(dst)}")
    if iterations < 1:
        raise ValueError(f"iterations must be >= 1, got {iterations}")
    patches = _check_patches(patch, len(src))
    field = None
    for level, (s, d, p) in enumerate(zip(src, dst, patches)):
        if s.shape[-1] != d.shape[-1]:
            raise ValueError(f"level {level}: channel counts differ, "
                             f"{s.shape} vs {d.shape}")
        ratio = None
        if level:
            ratio = tuple(max(1, a // b) for a, b in zip(
                d.shape[:2] + s.shape[:2],
                dst[level - 1].shape[:2] + src[level - 1].shape[:2]))
        elif anchored:
            # Start from "every cell matches itself" (the maps are already
            # roughly aligned) and only look nearby, as at finer levels.
            field = jnp.minimum(_grid(*d.shape[:2]),
                                jnp.array(s.shape[:2]) - 1)
            ratio = (1, 1, 1, 1)
        coarsest = level == 0 and not anchored
        rows = schedule(iterations, d.shape[:2], s.shape[:2], coarsest)
        window = max(s.shape[:2]) if coarsest else FINE_WINDOW
        field, _ = search_level(s, d, field, jax.random.fold_in(key, level),
                                jnp.asarray(rows), jnp.int32(window), p,
                                ratio)
    return field


def nnf(src_feats: Sequence[jax.Array], dst_feats: Sequence[jax.Array],
        iterations: int = 4, patch: Patch = 3, seed: int = 0,
        anchored: bool = False) -> jax.Array:
    """Coarse-to-fine nearest-neighbour field from destination to source.

    Args:
      src_feats: source feature maps (h_l, w_l, C_l) (or (1, h, w, C)),
        coarse to fine, e.g. relu5_1 ... relu2_1 of one image.
      dst_feats: the destination's maps of the same layers; sizes may
        differ from the source's.
      iterations: propagation and random-search passes per level.
      patch: odd patch side in cells, one for all levels or one per level.
      seed: PRNG seed; equal inputs and seed give equal fields.
      anchored: the two images are already roughly aligned (e.g. by a
        landmark morph): the coarsest level starts from the identity and,
        like every level, moves a match at most :data:`FINE_WINDOW` cells
        from its start, instead of searching the whole source from random
        matches.

    Returns:
      (h, w, 2) int32 source (y, x) cell per destination cell of the
      finest level.
    """
    key = jax.random.fold_in(jax.random.PRNGKey(seed), 0)
    return _nnf(src_feats, dst_feats, iterations, patch, key, anchored)


@functools.partial(jax.jit, static_argnames=("tolerance",))
def consistency(fwd_hxwx2: jax.Array, bwd_hsxwsx2: jax.Array,
                tolerance: int = 1) -> jax.Array:
    """(h, w) bool: following fwd then bwd lands within ``tolerance`` cells
    (Chebyshev distance) of where it started."""
    back = bwd_hsxwsx2[fwd_hxwx2[..., 0], fwd_hxwx2[..., 1]]
    miss = jnp.max(jnp.abs(back - _grid(*fwd_hxwx2.shape[:2])), axis=-1)
    return miss <= tolerance


def _to_pixels(mask_hxw: np.ndarray, out_hw: Sequence[int],
               stride: Sequence[float]) -> np.ndarray:
    # A 3x3 mean, then bilinear with cell i centred on pixel
    # (i + 0.5) * stride - 0.5 as in alignment.field_to_flow: a soft
    # confidence, no blocky cell edges; convex weights keep it in [0, 1].
    m = np.pad(np.asarray(mask_hxw, np.float32), 1, mode="edge")
    h, w = mask_hxw.shape
    m = sum(m[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3)) / 9
    pixels = np.stack(np.mgrid[:out_hw[0], :out_hw[1]], axis=-1)
    coords = (pixels + 0.5) / np.asarray(stride, np.float32) - 0.5
    return np.clip(alignment.warp(m, coords), 0.0, 1.0)


def correspondence(style_rgb: np.ndarray, content_rgb: np.ndarray,
                   features_fn: alignment.FeaturesFn,
                   layers: Sequence[str] = ("relu5_1", "relu4_1", "relu3_1",
                                            "relu2_1"),
                   iterations: int = 4, seed: int = 0, patch: Patch = 3,
                   size: Optional[int] = SEARCH_SIZE,
                   anchored: bool = False
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Dense correspondence from a content portrait to a style portrait.

    Args:
      style_rgb: (Hs, Ws, 3) 0..255; resized to the content's frame first,
        as the gain maps see it.
      content_rgb: (H, W, 3) 0..255.
      features_fn: ``features_fn(rgb, layers) -> {layer: (1, h, w, C)}``,
        e.g. a closure over :func:`nst_jax.vgg.vgg19.features`.
      layers: VGG19 layers, searched deepest first whatever their order.
      iterations: passes per level (see :func:`nnf`).
      seed: PRNG seed.
      patch: patch side(s) in cells, in the order searched.
      size: long side in pixels of the frame searched (both images resized
        to the content's aspect), see :data:`SEARCH_SIZE`; None searches
        at (H, W). The results are returned at (H, W) either way.
      anchored: refine an alignment the style already has (see
        :func:`nnf`) rather than search from scratch.

    Returns:
      ``(flow (H, W, 2) float32, confidence (H, W) float32)``: flow holds
      absolute (y, x) pixel coordinates in the style resized to (H, W),
      per content pixel (for :func:`nst_jax.portrait.alignment.warp`);
      confidence in [0, 1] is 1 where the match survives the forward-backward
      check.
    """
    layers = sorted(vgg19.check_layers(layers), key=vgg19.LAYERS.index,
                    reverse=True)
    content = np.asarray(content_rgb, np.float32)
    out_h, out_w = content.shape[:2]
    if size is None:
        work_h, work_w = out_h, out_w
    else:
        scale = int(size) / max(out_h, out_w)
        work_h = max(1, round(out_h * scale))
        work_w = max(1, round(out_w * scale))
    content = images.resize(content, (work_h, work_w), Image.BILINEAR)
    style = images.resize(style_rgb, (work_h, work_w), Image.BILINEAR)
    f_style = features_fn(style, layers)
    f_content = features_fn(content, layers)
    src = [f_style[name] for name in layers]
    dst = [f_content[name] for name in layers]
    root = jax.random.PRNGKey(seed)
    # The forward key is nnf()'s, so nnf(..., seed) gives the same field.
    fwd = np.asarray(_nnf(src, dst, iterations, patch,
                          jax.random.fold_in(root, 0), anchored))
    bwd = _nnf(dst, src, iterations, patch, jax.random.fold_in(root, 1),
               anchored)
    h, w = fwd.shape[:2]
    # VGG floors odd sizes, so work_h / h is not the true stride; prefer
    # the network's stride when the shapes agree with it.
    s = vgg19.STRIDE[layers[-1]]
    stride = ((s, s) if work_h // s == h and work_w // s == w
              else (work_h / h, work_w / w))
    # Output pixels per cell: cell centres land where they belong in (H, W)
    # and coordinates come out in the (H, W) frame's pixels.
    stride = (stride[0] * out_h / work_h, stride[1] * out_w / work_w)
    flow = alignment.field_to_flow(fwd, (out_h, out_w), stride, smooth=3)
    confidence = _to_pixels(np.asarray(consistency(fwd, bwd)),
                            (out_h, out_w), stride)
    return flow.astype(np.float32), confidence.astype(np.float32)
