"""Warps and correspondences between a painted face and a photographed
one, for the portrait gain maps.

:func:`sample` (in JAX) and :func:`warp` (for NumPy callers) sample an
image bilinearly at a dense field of source coordinates (a flow);
:func:`field_to_flow` turns a cell-level nearest-neighbour field into one;
:func:`resize_flow` fits a flow to another scale. Flows come from
:mod:`nst_jax.portrait.patchmatch` (VGG feature matching),
:mod:`nst_jax.portrait.landmarks` (a thin-plate spline through face points),
face masks (:func:`align_with_masks`: scale and translation) or the user
(:func:`align_with_flow`). :func:`nn_field` is the exhaustive nearest-neighbour
search at one layer: too weak between a photo and a painting on its own, kept
as the reference PatchMatch is tested against.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping, Sequence, Union

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from nst_jax import executables
from nst_jax.io import images

#: features_fn(rgb (H, W, 3) 0..255, layers) -> {layer: (1, h, w, C)}.
FeaturesFn = Callable[[np.ndarray, Sequence[str]], Mapping[str, jax.Array]]

# Cap on one chunk of the patch-similarity tensor (16M float32 = 64 MiB).
_MAX_CHUNK_ENTRIES = 1 << 24


def _grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) float32 array of each position's own (y, x)."""
    return np.stack(np.mgrid[:h, :w], axis=-1).astype(np.float32)


def as_hwc(feat: jax.Array, what: str = "") -> jax.Array:
    """Features as (h, w, C) float32, from (h, w, C) or (1, h, w, C)."""
    feat = jnp.asarray(feat, jnp.float32)
    feat = feat[0] if feat.ndim == 4 and feat.shape[0] == 1 else feat
    if feat.ndim != 3:
        raise ValueError(f"{what} features must be (h, w, C) or "
                         f"(1, h, w, C), got shape {feat.shape}".lstrip())
    return feat


@functools.partial(jax.jit, static_argnames=("patch",))
def _match_rows(dst_rows, src_padded, patch):
    """Best source cell for a band of destination rows.

    The patch score is the sum over the patch's offsets of per-cell cosine
    similarities, i.e. the cosine of the concatenated normalised patch
    vectors (times patch**2), computed from one cell-to-cell matrix plus
    shifted adds instead of materialising patch**2 * C descriptors.
    """
    r = patch // 2
    rows, wd = dst_rows.shape[0] - 2 * r, dst_rows.shape[1] - 2 * r
    hs, ws = src_padded.shape[0] - 2 * r, src_padded.shape[1] - 2 * r
    sim = jnp.einsum("abc,dec->abde", dst_rows, src_padded)
    score = jnp.zeros((rows, wd, hs, ws), jnp.float32)
    for oy in range(patch):
        for ox in range(patch):
            score += sim[oy:oy + rows, ox:ox + wd, oy:oy + hs, ox:ox + ws]
    flat = score.reshape(rows, wd, hs * ws)
    best = jnp.argmax(flat, axis=-1)
    return best, jnp.max(flat, axis=-1) / patch ** 2


def _nn_search(src_feat, dst_feat, patch):
    if patch < 1 or patch % 2 == 0:
        raise ValueError(f"patch must be a positive odd integer, got {patch}")
    src, dst = as_hwc(src_feat, "source"), as_hwc(dst_feat, "destination")
    if src.shape[-1] != dst.shape[-1]:
        raise ValueError(f"channel counts differ: {src.shape} vs {dst.shape}")
    # Normalise per cell so the match ignores feature magnitude (which the
    # gain map is there to transfer) and compares only feature direction.
    src = src / (jnp.linalg.norm(src, axis=-1, keepdims=True) + 1e-8)
    dst = dst / (jnp.linalg.norm(dst, axis=-1, keepdims=True) + 1e-8)
    r = patch // 2
    # Edge padding, not zeros, so border cells are not penalised for having
    # fewer real neighbours.
    pad = ((r, r), (r, r), (0, 0))
    src_p, dst_p = jnp.pad(src, pad, "edge"), jnp.pad(dst, pad, "edge")
    hd, ws_p = dst.shape[0], dst_p.shape[1]
    per_row = ws_p * src_p.shape[0] * src_p.shape[1]
    band = max(1, _MAX_CHUNK_ENTRIES // per_row - 2 * r)
    bands = [_match_rows(dst_p[y0:min(hd, y0 + band) + 2 * r], src_p, patch)
             for y0 in range(0, hd, band)]
    idx = np.concatenate([np.asarray(b[0]) for b in bands])
    score = np.concatenate([np.asarray(b[1]) for b in bands])
    field = np.stack(np.divmod(idx, src.shape[1]), axis=-1).astype(np.int32)
    return field, score


def nn_field(src_feat_hxwxC: jax.Array, dst_feat_hxwxC: jax.Array,
             patch: int = 3) -> np.ndarray:
    """Nearest-neighbour field from destination (content) to source (style).

    Args:
      src_feat_hxwxC: (h_s, w_s, C) source features ((1, h, w, C) accepted).
      dst_feat_hxwxC: (h_d, w_d, C) destination features.
      patch: odd patch side, in cells, over which similarities are summed.

    Returns:
      (h_d, w_d, 2) int32 (y, x) of the source cell whose patch has the
      highest mean cosine similarity, per destination cell.
    """
    return _nn_search(src_feat_hxwxC, dst_feat_hxwxC, patch)[0]


def field_to_flow(field: np.ndarray, out_hw: Sequence[int],
                  stride: Union[float, Sequence[float]], smooth: int = 3
                  ) -> np.ndarray:
    """Turns a coarse correspondence into per-pixel source coordinates.

    The displacement (source cell - destination cell) is median filtered
    over ``smooth`` x ``smooth`` cells (drops isolated wrong matches, keeps
    sharp motion boundaries), bilinearly upsampled with cell i centred on
    pixel ``(i + 0.5) * stride - 0.5`` and scaled to pixels.

    Args:
      field: (h, w, 2) int source (y, x) cell per destination cell.
      out_hw: output (H, W).
      stride: pixels per cell, one number or (sy, sx).
      smooth: median window in cells; 1 disables it.

    Returns:
      (H, W, 2) float32 absolute source (y, x) pixel coordinates.
    """
    field = np.asarray(field)
    if field.ndim != 3 or field.shape[-1] != 2:
        raise ValueError(f"field must be (h, w, 2), got {field.shape}")
    sy, sx = (stride, stride) if np.isscalar(stride) else stride
    disp = field - _grid(*field.shape[:2])
    if smooth > 1:
        lo, hi = smooth // 2, smooth - 1 - smooth // 2
        disp = np.pad(disp, ((lo, hi), (lo, hi), (0, 0)), mode="edge")
        disp = np.median(np.lib.stride_tricks.sliding_window_view(
            disp, (smooth, smooth), axis=(0, 1)), axis=(-2, -1))
    pixels, scale = _grid(*out_hw), np.array([sy, sx], np.float32)
    return pixels + warp(disp, (pixels + 0.5) / scale - 0.5) * scale


def sample(image_hxwxC: jax.Array, coords_HxWx2: jax.Array) -> jax.Array:
    """Bilinear sampling ``out[p] = image[coords[p]]`` with edge clamping.

    The portrait code's one bilinear sampler: :func:`warp` (NumPy callers)
    and PatchMatch's field upsampling (inside ``jit``) both call it, so a
    flow means the same thing wherever it is read. Coordinates are clamped
    to the image before interpolating, so a point outside takes the value
    of the nearest border point; built on
    ``jax.scipy.ndimage.map_coordinates(order=1)``, one channel at a time.

    Args:
      image_hxwxC: (h, w) or (h, w, C) image; computed in its float dtype
        (float32 for any other).
      coords_HxWx2: (H, W, 2) source (y, x) pixel coordinates.

    Returns:
      (H, W[, C]) JAX array of the image's float dtype.
    """
    img = jnp.asarray(image_hxwxC)
    if not jnp.issubdtype(img.dtype, jnp.floating):
        img = img.astype(jnp.float32)
    coords = jnp.asarray(coords_HxWx2, img.dtype)
    if coords.ndim != 3 or coords.shape[-1] != 2:
        raise ValueError(f"coords must be (H, W, 2), got {coords.shape}")
    if img.ndim not in (2, 3):
        raise ValueError(f"image must be (h, w) or (h, w, C), got "
                         f"{img.shape}")
    h, w = img.shape[:2]
    yx = (jnp.clip(coords[..., 0], 0, h - 1),
          jnp.clip(coords[..., 1], 0, w - 1))

    def one(plane_hxw: jax.Array) -> jax.Array:
        # "nearest" only matters for the upper neighbour of a point on the
        # last row or column, whose weight is 0.
        return jax.scipy.ndimage.map_coordinates(plane_hxw, yx, order=1,
                                                 mode="nearest")

    return one(img) if img.ndim == 2 else jax.vmap(
        one, in_axes=-1, out_axes=-1)(img)


def _float64():
    """A context in which JAX keeps float64 arrays: ``jax.enable_x64``
    from JAX 0.8, ``jax.experimental.enable_x64`` before."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64
    return enable_x64(True)


def warp(image_hxwxC: np.ndarray, coords_HxWx2: np.ndarray) -> np.ndarray:
    """:func:`sample` for NumPy callers: ``out[p] = image[coords[p]]``.

    ``image`` is (h, w) or (h, w, C); ``coords`` (H, W, 2) source (y, x)
    pixel coordinates, clamped to the image. Returns (H, W[, C]) float32.

    Both are read as float32 and interpolated in float64, rounding once to
    float32 at the end. This is the arithmetic NumPy gave this function
    before it used :func:`sample` (float32 coordinates minus int64
    indices promote to float64), so warped images keep their bits: a
    float32 interpolation, which XLA evaluates with fused multiply-adds,
    differs from it in the last bit of many values, and those bits reach
    the final image through the gain maps.
    """
    img = np.asarray(image_hxwxC, np.float32)
    coords = np.asarray(coords_HxWx2, np.float32)
    with _float64():
        args = (img.astype(np.float64), coords.astype(np.float64))
        # One kept program per shape, not map_coordinates op by op.
        fn, _ = executables.compiled(_sample, "alignment.sample", *args)
        return np.asarray(fn(*args)).astype(np.float32)


_sample = jax.jit(sample)


def _moments(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    m = np.asarray(mask, np.float64)
    total = m.sum()
    if m.ndim != 2 or total <= 0:
        raise ValueError(f"a face mask must be a non-empty (H, W) array, got "
                         f"shape {m.shape} with sum {total}")
    yx = _grid(*m.shape).astype(np.float64)
    centre = (m[..., None] * yx).sum(axis=(0, 1)) / total
    var = (m[..., None] * (yx - centre) ** 2).sum(axis=(0, 1)) / total
    return centre, np.sqrt(np.maximum(var, 1e-12))


def align_with_masks(style_rgb: np.ndarray, content_rgb: np.ndarray,
                     style_mask: np.ndarray, content_mask: np.ndarray
                     ) -> np.ndarray:
    """Scale + translation mapping the style face onto the content face.

    Each mask (values in 0..1, same H, W as its image) gives a centroid and
    a per-axis extent (square root of the second central moment). Content
    pixel p samples the style at ``c_s + (p - c_c) * ext_s / ext_c``, so the
    faces' centres and extents coincide; no rotation or shear is modelled.

    Returns:
      (H, W[, C]) float32 style warped to the content's size.
    """
    for name, img, mask in (("style", style_rgb, style_mask),
                            ("content", content_rgb, content_mask)):
        if np.shape(mask) != np.shape(img)[:2]:
            raise ValueError(f"{name} mask shape {np.shape(mask)} does not "
                             f"match its image {np.shape(img)[:2]}")
    c_s, e_s = _moments(style_mask)
    c_c, e_c = _moments(content_mask)
    grid = _grid(*np.shape(content_rgb)[:2])
    return warp(style_rgb, c_s + (grid - c_c) * (e_s / e_c))


def resize_flow(flow_HxWx2: np.ndarray, out_hw: Sequence[int]
                ) -> np.ndarray:
    """A dense correspondence made at one size, for a frame of another.

    ``flow`` holds, per pixel of an (H, W) frame, absolute (y, x) source
    coordinates in the style image resized to that same frame. For an
    (h, w) frame of the same picture both the sampling grid and the
    coordinates are rescaled (pixel centres at ``(i + 0.5) * s - 0.5``;
    the displacement is resampled, so a uniform shift stays uniform),
    so one flow serves every scale of a coarse-to-fine run. Equal sizes
    return the flow unchanged.
    """
    flow = np.asarray(flow_HxWx2, np.float32)
    if flow.ndim != 3 or flow.shape[-1] != 2:
        raise ValueError(f"flow must be (H, W, 2), got {flow.shape}")
    h, w = int(out_hw[0]), int(out_hw[1])
    if flow.shape[:2] == (h, w):
        return flow
    scale = np.array([h / flow.shape[0], w / flow.shape[1]], np.float32)
    # Resample the displacement, not the coordinates: at the borders the
    # sampling clamps, and a clamped displacement keeps a shift a shift.
    disp = flow - _grid(*flow.shape[:2])
    pixels = _grid(h, w)
    return pixels + warp(disp, (pixels + 0.5) / scale - 0.5) * scale


def align_with_flow(style_rgb: np.ndarray, flow_HxWx2: np.ndarray,
                    out_hw: Sequence[int]) -> np.ndarray:
    """Warps the style with a user-supplied dense correspondence.

    ``style_rgb`` is resized to ``out_hw`` (the content's H, W); ``flow``
    (see :func:`resize_flow`, any size with the content's aspect) gives,
    per content pixel, absolute (y, x) source coordinates in it; points
    outside are clamped to its border.

    Raises:
      ValueError: wrong shape or non-finite coordinates.
    """
    flow = np.asarray(flow_HxWx2)
    if not np.all(np.isfinite(flow)):
        raise ValueError("flow contains NaN or infinite coordinates")
    hw = (int(out_hw[0]), int(out_hw[1]))
    style = images.resize(style_rgb, hw, Image.BILINEAR)
    return warp(style, resize_flow(flow, hw))
