"""One layer's style term for each ``loss.style_loss`` but the Gram (whose
path in :mod:`nst_jax.optimize.losses` is the original one).

Each statistic's own value (:mod:`nst_jax.style.gaussian_w2`,
:mod:`~nst_jax.style.sliced_w2`, :mod:`~nst_jax.style.mrf`,
:mod:`~nst_jax.style.histogram`) is in squared feature units, per channel or
per patch element; a Gram MSE is in feature units to the fourth. Each term
is therefore multiplied by the style layer's energy (the mean of the
style's squared features, the mean diagonal of its Gram), which puts it in
the Gram's units and keeps the Gram's balance between layers, and by a
constant per statistic (:data:`SCALE`) that makes the default
``loss.style_weight`` start every statistic at the Gram's style loss on
the embedded pair (figures: docs/style_losses.md).
"""

from __future__ import annotations

from typing import Optional

import jax
import jax.numpy as jnp

from nst_jax.style import gaussian_w2, histogram, mrf, sliced_w2
from nst_jax.vgg.gram import gram

#: ``loss.style_loss`` values.
NAMES = ("gram", "gaussian_w2", "sliced_w2", "mrf", "histogram")
#: Statistics with a guided (masked) form: each style's region weights
#: the image's statistics. The others refuse ``masks``.
MASKED = ("gram", "gaussian_w2")
#: Patch-matching statistics, whose cost grows with the product of the
#: image's and the style's positions (``loss.mrf_max_pairs``).
PATCHES = ("mrf",)

#: Statistics whose targets depend on the run's seed (random directions):
#: sweep members with different seeds need targets of their own.
SEEDED = ("sliced_w2",)
#: Statistics that sort feature values every evaluation; on the CPU
#: backend they sort in NumPy (:func:`nst_jax.style.quantiles.argsort_rows`).
SORTS = ("sliced_w2", "histogram")


def serializable(name: str) -> bool:
    """Whether a step program of statistic ``name`` can be serialized (it
    has no host callback) on this backend."""
    return name not in SORTS or jax.default_backend() != "cpu"


#: Per statistic: the factor that starts it at the Gram's style loss
#: (the photo scored against the painting, embedded pair at 256 px; for
#: histogram, its histogram part at its Gram part).
SCALE = {"gaussian_w2": 0.39, "sliced_w2": 0.80, "mrf": 0.20,
         "histogram": 0.53}


def energy(style_feats_1xHxWxC: jax.Array) -> jax.Array:
    """Mean squared feature value: the mean diagonal of the Gram."""
    f = style_feats_1xHxWxC.astype(jnp.float32)
    return jnp.mean(jnp.square(f))


def layer_target(name: str, style_feats_1xHxWxC: jax.Array,
                 out_hw: tuple[int, int], key: jax.Array,
                 n_proj: int = 0) -> dict[str, jax.Array]:
    """One style image's target at one layer for statistic ``name``.

    ``out_hw``: the optimised image's map at this layer; ``key``: this
    layer's and style's PRNG key (sliced_w2's directions).
    """
    f = style_feats_1xHxWxC.astype(jnp.float32)
    if name == "gaussian_w2":
        t = gaussian_w2.target(f, out_hw)
    elif name == "sliced_w2":
        t = sliced_w2.target(f, out_hw, key, n_proj)
    elif name == "mrf":
        t = mrf.target(f, out_hw)
    elif name == "histogram":
        t = dict(histogram.target(f, out_hw), gram=gram(f)[0])
    else:
        raise ValueError(f"no style statistic {name!r}")
    return dict(t, energy=energy(f))


def layer_loss(name: str, feats_1xHxWxC: jax.Array, target: dict,
               weights_HxW: Optional[jax.Array] = None) -> jax.Array:
    """The scaled style term of one layer and style image (scalar).

    ``weights_HxW``: the style's region at this layer (guided statistics,
    :data:`MASKED` only).
    """
    f = feats_1xHxWxC.astype(jnp.float32)
    if name == "gaussian_w2":
        v = gaussian_w2.loss(f, target, weights_HxW)
    elif name == "sliced_w2":
        v = sliced_w2.loss(f, target)
    elif name == "mrf":
        v = mrf.loss(f, target)
    elif name == "histogram":
        v = histogram.loss(f, target)
    else:
        raise ValueError(f"no style statistic {name!r}")
    v = SCALE[name] * target["energy"] * v
    if name == "histogram":  # Risser et al.: histogram and Gram together.
        v = v + jnp.mean(jnp.square(gram(f)[0] - target["gram"]))
    return v
