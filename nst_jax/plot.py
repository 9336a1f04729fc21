"""Pictures drawn with Pillow (no plotting dependency): the loss curve of a
run and the contact sheet of a sweep."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from nst_jax import images

_COLOURS = {"loss": (0, 0, 0), "content": (31, 119, 180),
            "style": (214, 39, 40), "tv": (44, 160, 44)}


def loss_curve(metrics: list[dict], path: str, width: int = 640,
               height: int = 400) -> None:
    """Plots the total loss and each term (log10 y) against step.

    The terms are drawn before their alpha/beta/tv weights, so each curve
    shows how well that objective is met.
    """
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, width - 110, 20, height - 40
    d.rectangle([left, top, right, bottom], outline=(0, 0, 0))
    series = {}
    for key in _COLOURS:
        pts = [(m["step"], m[key]) for m in metrics
               if key in m and m[key] > 0 and math.isfinite(m[key])]
        if len(pts) >= 1:
            series[key] = pts
    if series:
        xs = [x for pts in series.values() for x, _ in pts]
        ys = [math.log10(y) for pts in series.values() for _, y in pts]
        x0, x1 = min(xs), max(max(xs), min(xs) + 1)
        y0, y1 = math.floor(min(ys)), math.ceil(max(ys))
        y1 = max(y1, y0 + 1)

        def xy(x, y):
            return (left + (x - x0) / (x1 - x0) * (right - left),
                    bottom - (math.log10(y) - y0) / (y1 - y0) * (bottom - top))
        for e in range(y0, y1 + 1):
            _, py = xy(x0, 10.0 ** e)
            d.line([left - 4, py, left, py], fill=(0, 0, 0))
            d.text((5, py - 6), f"1e{e}", fill=(0, 0, 0))
        d.text((left, bottom + 8), str(x0), fill=(0, 0, 0))
        d.text((right - 30, bottom + 8), str(x1), fill=(0, 0, 0))
        d.text(((left + right) // 2 - 10, bottom + 20), "step",
               fill=(0, 0, 0))
        for i, (key, pts) in enumerate(series.items()):
            c = _COLOURS[key]
            coords = [xy(x, y) for x, y in pts]
            if len(coords) > 1:
                d.line(coords, fill=c, width=2)
            for px, py in coords[-1:]:
                d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=c)
            d.line([right + 10, top + 10 + 16 * i, right + 30,
                    top + 10 + 16 * i], fill=c, width=2)
            d.text((right + 35, top + 4 + 16 * i), key, fill=(0, 0, 0))
    images.save(path, np.asarray(img, np.float32))


def contact_sheet(rgbs: list, labels: list[list[str]], path: str,
                  thumb: int = 160) -> None:
    """A grid of images, each with its label lines underneath."""
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
    cols = math.ceil(math.sqrt(len(rgbs)))
    rows = math.ceil(len(rgbs) / cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, lines) in enumerate(zip(thumbs, labels)):
        x, y = (i % cols) * cell_w + 4, (i // cols) * cell_h + 4
        sheet.paste(im, (x, y))
        for j, text in enumerate(lines):
            draw.text((x, y + thumb + 2 + j * line_h), text, fill=(0, 0, 0))
    images.save(path, np.asarray(sheet, np.float32))
