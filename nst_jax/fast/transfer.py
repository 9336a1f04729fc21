"""One-pass stylization: embeddings, their blend, and the painted images.

Ghiasi et al. 2017's controls are all interpolations of the 100-d style
embedding: several styles are blended with weights (``style_blend``), and
``strength`` moves the blend toward the content photo's own embedding
(1 = the painting, 0 = the photo restyled by itself). Each member of a
sweep or of a folder of photos is one embedding, so a group paints all its
photos of one size in a single batched call.

Images here are RGB 0..255 numpy arrays, like everywhere in nst_jax; the
networks see [0, 1].
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from nst_jax import executables
from nst_jax.fast import model
from nst_jax.io import images


def square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The centred square crop of an image, resized to ``size`` (Lanczos):
    how the style predictor sees a painting (its texture keeps its
    aspect)."""
    h, w = rgb.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = np.asarray(rgb, np.float32)[top:top + s, left:left + s]
    return np.clip(images.resize(crop, (size, size), Image.LANCZOS), 0, 255)


def embeddings(params, rgbs: list, size: int) -> np.ndarray:
    """(len(rgbs), 100) embeddings of images seen as ``size`` squares."""
    batch = (np.stack([square(rgb, size) for rgb in rgbs]) / 255.0
             ).astype(np.float32)
    fn, _ = executables.compiled(model.embed, "fast.embed", params, batch)
    return np.asarray(fn(params, batch))


def mix(style_SxE: np.ndarray, content_E: np.ndarray, blend_S,
        strength: float) -> np.ndarray:
    """strength * (blend-weighted mean of the styles) + (1 - strength) *
    the content's own embedding."""
    w_S = np.asarray(blend_S, np.float32)
    w_S = w_S / w_S.sum()
    return (strength * (w_S @ style_SxE)
            + (1 - strength) * np.asarray(content_E)).astype(np.float32)


def member_embedding(emb_KxE: np.ndarray, blend: Sequence[float],
                     strength: float) -> np.ndarray:
    """One member's embedding from :func:`embeddings` of its style images
    followed by its content photo, by its style ``blend`` (() = equal)
    and ``strength``."""
    styles = len(emb_KxE) - 1
    return mix(emb_KxE[:-1], emb_KxE[-1], blend or [1.0] * styles, strength)


def paint(params, contents_NxHxWx3: np.ndarray, emb_NxE: np.ndarray
          ) -> np.ndarray:
    """The transformer on a batch of equal-sized photos: (N, H, W, 3) RGB
    0..255 in, the stylized images (N, H, W, 3) RGB 0..255 out."""
    x = np.asarray(contents_NxHxWx3, np.float32) / 255.0
    emb = np.asarray(emb_NxE, np.float32)
    fn, _ = executables.compiled(model.stylize, "fast.stylize", params, x,
                                 emb)
    out = fn(params, x, emb)
    return np.asarray(out, np.float32) * 255.0
