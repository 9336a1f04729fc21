"""1-d distributions as sorted samples: the order of each row
(:func:`argsort_rows`) and a quantile function read at another count
(:func:`resample_sorted`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def argsort_rows(x_KxP: jax.Array) -> jax.Array:
    """Indices that sort each row ascending -> (K, P) int32, no gradient.

    On the CPU backend the sort runs in NumPy through a host callback:
    XLA:CPU sorts with a comparator call per comparison, about 40x slower
    than NumPy's vectorised sort on the 64 x 65536 rows of relu1_1 at
    256 px (figures: docs/style_losses.md). Such a program cannot be
    serialized (:func:`nst_jax.style.terms.serializable`). Elsewhere it is
    ``jnp.argsort``. Ties may come in either order; each backend is
    deterministic.
    """
    x_KxP = jax.lax.stop_gradient(x_KxP)
    if jax.default_backend() != "cpu":
        return jnp.argsort(x_KxP, axis=-1).astype(jnp.int32)
    return jax.pure_callback(
        lambda a: np.argsort(a, axis=-1).astype(np.int32),
        jax.ShapeDtypeStruct(x_KxP.shape, jnp.int32), x_KxP,
        vmap_method="broadcast_all")


def resample_sorted(sorted_NxK: jnp.ndarray, n: int) -> jnp.ndarray:
    """Each column's quantiles at the midpoints of ``n`` equal bins -> (n, K).

    ``sorted_NxK``: each column sorted ascending. Linear interpolation
    between order statistics, so ``n == N`` returns the input unchanged
    and a column of equal values stays equal.
    """
    m = sorted_NxK.shape[0]
    if n == m:
        return sorted_NxK
    # Level of order statistic i is (i + 0.5) / m; read levels (j + 0.5) / n.
    pos = (jnp.arange(n, dtype=jnp.float32) + 0.5) * (m / n) - 0.5
    pos = jnp.clip(pos, 0.0, m - 1.0)
    lo = jnp.floor(pos).astype(jnp.int32)
    hi = jnp.minimum(lo + 1, m - 1)
    frac = (pos - lo)[:, None]
    return sorted_NxK[lo] * (1.0 - frac) + sorted_NxK[hi] * frac
