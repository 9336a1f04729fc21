"""Portrait style transfer after Selim, Elgharib & Doyle (SIGGRAPH 2016).

The paper replaces the content target of layer l by ``F_l[C] * G_l`` with
the gain map ``G_l = F_l[S_aligned] / (F_l[C] + eps)`` clamped to
``[0.7, 5]``: the content loss then carries the style's local feature
energy while keeping the facial structure. The gain maps and targets here
(:func:`gain_map`, :func:`gain_targets`) are exactly the paper's.

The aligned style comes from :mod:`nst_jax.portrait.alignment`.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def gain_map(content_feat: jax.Array, style_feat: jax.Array,
             g_min: float = 0.7, g_max: float = 5.0, eps: float = 1e-4
             ) -> jax.Array:
    """Clamped gain ``clip(style / (content + eps), g_min, g_max)``.

    Pure and jittable; meant for post-ReLU (non-negative) features of the
    content and of the aligned style, both (N, h, w, C). The paper's clamp
    is [0.7, 5]; eps keeps the ratio finite where the content is zero.
    """
    content, style = (jnp.asarray(f, jnp.float32)
                      for f in (content_feat, style_feat))
    return jnp.clip(style / (content + eps), g_min, g_max)


def gain_targets(content_feats: Mapping[str, jax.Array],
                 style_feats: Mapping[str, jax.Array], layers: Sequence[str],
                 g_min: float = 0.7, g_max: float = 5.0, eps: float = 1e-4,
                 confidence: Optional[np.ndarray] = None
                 ) -> dict[str, jax.Array]:
    """Gained content targets ``{layer: F[C] * gain}``.

    ``gain`` is :func:`gain_map`; with ``confidence`` (H, W) in [0, 1] at
    the image's resolution (how sure the alignment is of each pixel), it
    is blended toward 1 where the alignment is unsure:
    ``conf * gain + (1 - conf)``, the confidence averaged down to each
    layer's cells.

    Raises:
      ValueError: a layer missing from either dict, or differing shapes.
    """
    out = {}
    for layer in layers:
        for name, feats in (("content", content_feats),
                            ("style", style_feats)):
            if layer not in feats:
                raise ValueError(f"layer {layer!r} missing from the {name} "
                                 f"features (have {sorted(feats)})")
        c, s = content_feats[layer], style_feats[layer]
        if c.shape != s.shape:
            raise ValueError(f"layer {layer!r}: content features {c.shape} "
                             f"and style features {s.shape} differ in shape; "
                             "align/resize the style to the content first")
        gain = gain_map(c, s, g_min, g_max, eps)
        if confidence is not None:
            conf = jax.image.resize(jnp.asarray(confidence, jnp.float32),
                                    c.shape[1:3], "linear", antialias=True)
            conf = jnp.clip(conf, 0.0, 1.0)[None, :, :, None]
            gain = conf * gain + (1.0 - conf)
        out[layer] = jnp.asarray(c, jnp.float32) * gain
    return out
