"""Resizing float images without quantising: to an exact (h, w), or to a
long side with the aspect kept (the size a run works at)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from PIL import Image


def long_side_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) with the long side equal to ``size`` and the aspect kept."""
    if h >= w:
        return size, max(1, int(round(w * size / h)))
    return max(1, int(round(h * size / w))), size


def resize(rgb: Any, hw: Sequence[int],
           resample: int = Image.LANCZOS) -> np.ndarray:
    """Resizes an (H, W, C) or (H, W) float array to ``hw`` without quantising.

    Each channel goes through Pillow as a 32-bit float image, so values keep
    full precision and are not clipped (Lanczos may overshoot slightly).
    """
    x = np.asarray(rgb, np.float32)
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be positive, got {tuple(hw)}")
    if x.shape[:2] == (h, w):
        return x.copy()
    if x.ndim == 2:
        return resize(x[..., None], hw, resample)[..., 0]
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]))
                        .resize((w, h), resample), np.float32)
             for c in range(x.shape[-1])]
    return np.stack(chans, axis=-1)


def resize_long_side(rgb: Any, size: int) -> np.ndarray:
    """Resizes so the long side is ``size`` px, keeping the aspect ratio."""
    x = np.asarray(rgb, np.float32)
    return resize(x, long_side_hw(x.shape[0], x.shape[1], int(size)))
