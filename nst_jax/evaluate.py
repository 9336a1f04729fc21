"""Comparable figures for finished images, whatever config made them.

Every run optimises its own loss, so its own numbers do not compare across
presets. These use one fixed yardstick: content (structure) loss at relu4_2
and Gatys style loss at relu1_1..relu5_1, unweighted, in float32.
"""

from __future__ import annotations

import numpy as np

from nst_jax import images, losses, vgg19

STRUCTURE_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def score(vgg_params, image_rgb: np.ndarray, content_rgb: np.ndarray,
          style_rgb: np.ndarray) -> dict[str, float]:
    """{"structure": relu4_2 MSE to the content, "style": summed Gram MSE}.

    The content is resized to the image's size first; the style is used at
    the size given.
    """
    if content_rgb.shape[:2] != image_rgb.shape[:2]:
        content_rgb = images.resize(content_rgb, image_rgb.shape[:2])
    layers = (STRUCTURE_LAYER,) + STYLE_LAYERS
    fi = vgg19.features(vgg_params, image_rgb, layers)
    fc = vgg19.features(vgg_params, content_rgb, (STRUCTURE_LAYER,))
    fs = vgg19.features(vgg_params, style_rgb, STYLE_LAYERS)
    structure = losses.mse(fi[STRUCTURE_LAYER], fc[STRUCTURE_LAYER])
    style = sum(losses.mse(losses.gram(fi[l]), losses.gram(fs[l]))
                for l in STYLE_LAYERS)
    return {"structure": float(structure), "style": float(style)}
