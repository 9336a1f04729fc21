"""The contact sheet of a sweep: a grid of images, each labelled underneath,
drawn with Pillow."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from nst_jax.io import images


def contact_sheet(rgbs: list, labels: list[list[str]],
                  path: Optional[str], thumb: int = 160,
                  cols: Optional[int] = None) -> np.ndarray:
    """A grid of images, each with its label lines underneath.

    ``cols`` columns (default: a square-ish grid); written to ``path``
    unless it is None; returns the sheet (H, W, 3) float32 0..255.
    """
    thumbs = []
    for rgb in rgbs:
        im = Image.fromarray(images.to_uint8(rgb))
        s = thumb / max(im.size)
        thumbs.append(im.resize((max(1, round(im.width * s)),
                                 max(1, round(im.height * s))),
                                Image.LANCZOS))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(measure.textlength(t) for lines in labels for t in lines)
    line_h = 12
    cell_w = int(max(thumb, text_w)) + 8
    cell_h = thumb + line_h * max(len(l) for l in labels) + 10
    cols = cols or math.ceil(math.sqrt(len(rgbs)))
    rows = math.ceil(len(rgbs) / cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, lines) in enumerate(zip(thumbs, labels)):
        x, y = (i % cols) * cell_w + 4, (i // cols) * cell_h + 4
        sheet.paste(im, (x, y))
        for j, text in enumerate(lines):
            draw.text((x, y + thumb + 2 + j * line_h), text, fill=(0, 0, 0))
    out = np.asarray(sheet, np.float32)
    if path is not None:
        images.save(path, out)
    return out
