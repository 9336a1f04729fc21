"""Histogram statistic of Risser et al. 2017 ("Stable and controllable
neural texture synthesis and style transfer using histogram losses"): each
channel of the image's features is histogram-matched exactly to the
style's, and the loss pulls the features towards that matched map. Only
the histogram part: the caller adds the Gram term.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nst_jax.style.quantiles import argsort_rows, resample_sorted


def target(style_feats_1xHxWxC: jax.Array, out_hw: tuple[int, int]
           ) -> dict[str, jax.Array]:
    """The style's per-channel quantiles, one per image position.

    -> {"sorted": (h*w, C)} with ``h, w = out_hw``: column c is channel c's
    quantile function read at levels (r + 0.5) / (h*w), r = 0 .. h*w-1
    (:func:`resample_sorted`), the value :func:`matched` gives the image
    position of rank r.
    """
    _, hs, ws, c = style_feats_1xHxWxC.shape
    h, w = out_hw
    sorted_PxC = jnp.sort(style_feats_1xHxWxC.reshape(hs * ws, c), axis=0)
    return {"sorted": resample_sorted(sorted_PxC, h * w)}


def matched(feats_1xHxWxC: jax.Array, target: dict) -> jax.Array:
    """R(F): F histogram-matched to the style per channel -> (1, h, w, C).

    The position of rank r among channel c's P = h*w values gets
    ``target["sorted"][r, c]``: the 1-d optimal transport map, monotone in
    each channel. Tied values get distinct consecutive quantiles, in
    :func:`argsort_rows`'s order. Held constant
    (stop_gradient): :func:`loss` differentiates as against a fixed target.
    """
    _, h, w, c = feats_1xHxWxC.shape
    sorted_PxC = target["sorted"]
    if sorted_PxC.shape != (h * w, c):
        raise ValueError(f"target for {sorted_PxC.shape} (positions, "
                         f"channels), features have {(h * w, c)}")
    order_CxP = argsort_rows(feats_1xHxWxC.reshape(h * w, c).T)
    r_CxP = jnp.put_along_axis(jnp.zeros((c, h * w), sorted_PxC.dtype),
                               order_CxP, sorted_PxC.T, axis=-1,
                               inplace=False)
    return jax.lax.stop_gradient(r_CxP.T.reshape(1, h, w, c))


def loss(feats_1xHxWxC: jax.Array, target: dict) -> jax.Array:
    """mean((F - R(F))^2) over positions and channels, float32 scalar.

    Its gradient is 2 (F - R(F)) / (h*w*C): R(F) is piecewise constant in F.
    """
    f = feats_1xHxWxC.astype(jnp.float32)
    r = matched(feats_1xHxWxC, target).astype(jnp.float32)
    return jnp.mean((f - r) ** 2)
