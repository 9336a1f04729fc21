"""VGG19's input convention: RGB 0..255 to BGR minus the mean pixel of its
training set, and back."""

from __future__ import annotations

from typing import Any

import numpy as np

# The VGG19 weights were trained on BGR, 0-255, minus this mean pixel (B, G, R).
MEAN_BGR = (103.939, 116.779, 123.68)

_MEAN_BGR = np.asarray(MEAN_BGR, np.float32)


def to_vgg(rgb: Any) -> Any:
    """RGB 0..255 -> VGG input: BGR minus the mean pixel.

    Works on (..., 3) numpy or jax arrays (slicing and arithmetic only, so it
    traces under ``jax.jit``) and returns the same kind of array.
    """
    return rgb[..., ::-1] - _MEAN_BGR


def from_vgg(x: Any) -> Any:
    """Exact inverse of ``to_vgg``: RGB 0..255, not clipped."""
    return (x + _MEAN_BGR)[..., ::-1]
