"""Sliced Wasserstein style statistic (Heitz et al., CVPR 2021): the
distance between the distributions of feature vectors, each position's
C-vector one sample, measured along K random 1-d directions.

Along one direction the optimal transport between two equal-size sets of
scalars pairs them in sorted order, so the squared W2 distance is the mean
squared difference of the sorted projections. The style's sorted
projections are resampled to the image's position count
(:func:`~nst_jax.style.quantiles.resample_sorted`), so style and image maps
may differ in size.

The directions are FIXED for a run: drawn once in :func:`target` from a PRNG
key and kept in the target, not redrawn each step as in the paper. The
L-BFGS optimiser needs one fixed objective across its line searches and
history, and a run must reproduce bit for bit from its key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax.style.quantiles import argsort_rows, resample_sorted


def directions(key: jax.Array, c: int, k: int) -> jax.Array:
    """K unit-length random directions in feature space -> (C, K) float32.

    Each column is a standard-normal draw divided by its norm, so the
    directions are uniform on the sphere.
    """
    d_CxK = jax.random.normal(key, (c, k), dtype=jnp.float32)
    return d_CxK / jnp.linalg.norm(d_CxK, axis=0, keepdims=True)


def _sorted_projections(feats_1xHxWxC: jax.Array, dirs_CxK: jax.Array
                        ) -> jax.Array:
    # (P, C) @ (C, K) -> (K, P) projections, each row gathered in sorted
    # order (the gradient goes back through the gather) -> (P, K).
    _, h, w, c = feats_1xHxWxC.shape
    f_PxC = feats_1xHxWxC.reshape(h * w, c)
    proj_KxP = jnp.matmul(f_PxC, dirs_CxK.astype(f_PxC.dtype),
                          preferred_element_type=jnp.float32).T
    order_KxP = argsort_rows(proj_KxP)
    return jnp.take_along_axis(proj_KxP, order_KxP, axis=-1).T


def target(style_feats_1xHxWxC: jax.Array, out_hw: tuple[int, int],
           key: jax.Array, n_proj: int = 0) -> dict[str, jax.Array]:
    """Directions and the style's sorted projections at the image's size.

    ``n_proj``: number of directions K; 0 means one per channel (K = C).
    Returns ``{"dirs": (C, K), "sorted": (h*w, K)}`` with ``h, w = out_hw``:
    each column of ``"sorted"`` is the style's projections onto that
    direction, sorted and read at ``h*w`` evenly spaced quantiles.
    """
    c = style_feats_1xHxWxC.shape[-1]
    dirs_CxK = directions(key, c, n_proj or c)
    h, w = out_hw
    sorted_SxK = _sorted_projections(style_feats_1xHxWxC, dirs_CxK)
    return {"dirs": dirs_CxK, "sorted": resample_sorted(sorted_SxK, h * w)}


def loss(feats_1xHxWxC: jax.Array, target: dict) -> jax.Array:
    """Sliced squared W2 distance to :func:`target` -> scalar float32.

    The mean over positions and directions of the squared difference
    between the image's sorted projections and the target's, i.e. the mean
    of the K per-direction squared W2 distances. Invariant to permuting
    positions; its gradient reaches each position through its rank.
    """
    _, h, w, _ = feats_1xHxWxC.shape
    t_PxK = target["sorted"]
    if h * w != t_PxK.shape[0]:
        raise ValueError(f"feature map has {h}x{w} = {h * w} positions but "
                         f"the target was made for {t_PxK.shape[0]}")
    s_PxK = _sorted_projections(feats_1xHxWxC, target["dirs"])
    return jnp.mean((s_PxK - t_PxK) ** 2)
