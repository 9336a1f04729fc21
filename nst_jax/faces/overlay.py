"""What was found, drawn on the image, for a person to check."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax.faces.finder import Search
from nst_jax.io import images
from nst_jax.portrait import landmarks

# One colour per named point, in the order of nst_jax.portrait.landmarks.NAMES.
_COLOURS = ((0, 200, 255), (0, 120, 255), (255, 220, 0), (255, 80, 80),
            (255, 0, 160), (255, 140, 0), (0, 230, 90), (170, 90, 255),
            (120, 255, 255))


def draw(rgb: np.ndarray, search: Search) -> np.ndarray:
    """(H, W, 3) uint8: the image, the mesh as small grey dots, the named
    points as coloured rings with their names, the detector box and the
    scores; a red "no face" banner when none was accepted."""
    im = Image.fromarray(images.to_uint8(rgb))
    d = ImageDraw.Draw(im)
    scale = max(im.size) / 512
    r, dot = max(3.0, 5 * scale), max(0.8, scale)
    font = ImageFont.load_default(size=max(11, round(12 * scale)))
    text = dict(font=font, stroke_width=2, stroke_fill=(0, 0, 0))
    face = search.face
    if face is not None:
        for x, y in face.mesh_xy:
            d.ellipse([x - dot, y - dot, x + dot, y + dot],
                      fill=(235, 235, 235))
        d.rectangle([float(v) for v in face.box], outline=(255, 255, 255))
        for (x, y), name, c in zip(face.points_xy, landmarks.NAMES,
                                   _COLOURS):
            d.ellipse([x - r, y - r, x + r, y + r], outline=(0, 0, 0),
                      width=max(3, round(3 * scale)))
            d.ellipse([x - r, y - r, x + r, y + r], outline=c,
                      width=max(1, round(1.5 * scale)))
            d.text((x + r + 2, y - r), name, fill=c, **text)
    d.text((4, 4), search.describe(), fill=(255, 255, 255) if face
           is not None else (255, 60, 60), **text)
    return np.asarray(im)
