"""MRF patch statistic (Li & Wand 2016, CNNMRF): every 3x3 patch of the
image's feature map is matched to its nearest style patch by normalised
cross-correlation, and pulled towards it.

The match is a constant in the gradient; the loss is the mean over image
patches of the squared distance to the matched style patch, per patch
element (divided by 9*C). The score matrix is (Ni, Ns), so callers cap
:func:`count` of both maps before building a target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_K = 3  # patch side


def count(h: int, w: int, stride: int = 1) -> int:
    """Number of :func:`patches` of an h x w map (0 below 3x3)."""
    if h < _K or w < _K:
        return 0
    return ((h - _K) // stride + 1) * ((w - _K) // stride + 1)


def _check(shape: tuple, what: str) -> None:
    if len(shape) != 4 or shape[0] != 1:
        raise ValueError(f"mrf.{what}: expected a 1xHxWxC map, got {shape}")
    if shape[1] < _K or shape[2] < _K:
        raise ValueError(f"mrf.{what}: map {shape[1]}x{shape[2]} is smaller "
                         f"than the {_K}x{_K} patch")


def patches(feats_1xHxWxC: jax.Array, stride: int = 1) -> jax.Array:
    """All valid 3x3 patches at ``stride`` -> (N, 9*C), N = :func:`count`.

    Rows run row-major over patch positions (top-left corners 0, stride,
    ... along y then x). Within a row the 9 offsets (dy, dx) run row-major,
    each contributing its C channels: element ``(dy*3 + dx)*C + c`` is
    ``feats[0, y + dy, x + dx, c]``. Built from 9 strided slices.
    """
    _check(feats_1xHxWxC.shape, "patches")
    _, h, w, c = feats_1xHxWxC.shape
    ny, nx = (h - _K) // stride + 1, (w - _K) // stride + 1
    shifts = [feats_1xHxWxC[:, dy:dy + stride * (ny - 1) + 1:stride,
                            dx:dx + stride * (nx - 1) + 1:stride]
              for dy in range(_K) for dx in range(_K)]
    return jnp.concatenate(shifts, axis=-1).reshape(ny * nx, _K * _K * c)


def _unit(p_NxD: jax.Array) -> jax.Array:
    norm_N = jnp.sqrt(jnp.sum(jnp.square(p_NxD.astype(jnp.float32)), axis=1))
    return (p_NxD / jnp.maximum(norm_N, 1e-8)[:, None]).astype(p_NxD.dtype)


def target(style_feats_1xHxWxC: jax.Array, out_hw: tuple[int, int],
           stride: int = 1) -> dict[str, jax.Array]:
    """Style patches at ``stride``: raw ("patches") and each row divided by
    its L2 norm ("unit"), both (Ns, 9*C). ``out_hw`` is unused."""
    del out_hw
    p_NsxD = patches(style_feats_1xHxWxC, stride)
    return {"patches": p_NsxD, "unit": _unit(p_NsxD)}


def loss(feats_1xHxWxC: jax.Array, target: dict) -> jax.Array:
    """Mean squared distance of each stride-1 image patch to its nearest
    style patch by cosine similarity, divided by 9*C -> float32 scalar.

    The match (argmax of the (Ni, Ns) scores) is held fixed: the gradient
    is 2 (P - matched) / (Ni * 9C), summed back onto the map positions.
    """
    _check(feats_1xHxWxC.shape, "loss")
    p_NixD = patches(feats_1xHxWxC)
    unit_NsxD = target["unit"]
    if unit_NsxD.shape[1] != p_NixD.shape[1]:
        raise ValueError(f"mrf.loss: image patch length {p_NixD.shape[1]} "
                         f"!= style patch length {unit_NsxD.shape[1]}")
    scores_NixNs = jnp.matmul(jax.lax.stop_gradient(_unit(p_NixD)),
                              unit_NsxD.T, preferred_element_type=jnp.float32)
    nn_Ni = jnp.argmax(scores_NixNs, axis=1)
    matched_NixD = jax.lax.stop_gradient(target["patches"][nn_Ni])
    diff_NixD = p_NixD.astype(jnp.float32) - matched_NixD.astype(jnp.float32)
    return jnp.mean(jnp.sum(jnp.square(diff_NixD), axis=1)) / p_NixD.shape[1]
