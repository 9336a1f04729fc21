"""Writing image files: float RGB in 0..255 rounded to 8 bits and written
atomically, the format from the extension; a bad path or extension is one
``UserError`` line that names it."""

from __future__ import annotations

import os
from typing import Any, Union

import numpy as np
from PIL import Image

from nst_jax.errors import UserError
from nst_jax.io import atomic

PathLike = Union[str, "os.PathLike[str]"]

_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
            ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


def to_uint8(rgb: Any) -> np.ndarray:
    """Clips to 0..255 and rounds half-to-even; NaN becomes 0."""
    x = np.nan_to_num(np.asarray(rgb, np.float32), nan=0.0, posinf=255.0,
                      neginf=0.0)
    return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)


def save(path: PathLike, rgb: Any) -> None:
    """Atomically writes an RGB image; the format comes from the extension.

    Args:
        path: Output file (.png, .jpg/.jpeg at quality 95, .webp, .tif/.tiff,
            .bmp). Parent folders are created.
        rgb: float (H, W, 3) or (1, H, W, 3) in 0..255 (clipped and rounded).

    Raises:
        UserError: Unknown extension, bad array shape, or the file cannot be
            written. An existing file at ``path`` is then left untouched.
    """
    p = os.fspath(path)
    fmt = _FORMATS.get(os.path.splitext(p)[1].lower())
    if fmt is None:
        raise UserError(f"cannot save image {p}: unknown extension; use one "
                        f"of {', '.join(sorted(_FORMATS))}")
    x = np.asarray(rgb)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise UserError(f"cannot save image {p}: expected an (H, W, 3) array, "
                        f"got shape {x.shape}")
    im = Image.fromarray(to_uint8(x))
    # PNG gets no metadata and fixed settings, so equal pixels give equal bytes.
    opts = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95},
            "PNG": {"compress_level": 6, "optimize": False}}.get(fmt, {})
    try:
        atomic.write(p, lambda f: im.save(f, format=fmt, **opts))
    except OSError as e:
        raise UserError(f"cannot save image {p}: {e.strerror or e}; check "
                        "that the folder exists, is writable and has "
                        "space") from None
