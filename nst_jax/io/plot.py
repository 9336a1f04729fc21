"""Pictures drawn with Pillow (no plotting dependency): the loss curve of a
run and the contact sheet of a sweep."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image, ImageDraw

from nst_jax.io import images

_INK = (0, 0, 0)
_COLOURS = {"loss": (0, 0, 0), "content": (31, 119, 180),
            "style": (214, 39, 40), "tv": (44, 160, 44)}
# Per-layer style terms, shallow to deep: the rest of matplotlib's tab10,
# so they never share a colour with the terms above.
_LAYER_COLOURS = ((255, 127, 14), (148, 103, 189), (140, 86, 75),
                  (227, 119, 194), (188, 189, 34), (23, 190, 207),
                  (127, 127, 127))
#: Colour of the dashed line where a coarse-to-fine scale starts.
SCALE_MARK = (160, 160, 160)
_LEFT, _TOP, _BOTTOM_MARGIN = 60, 32, 40
_LEGEND_PAD = 50  # Legend swatch and gaps around its longest label.


class Frame(NamedTuple):
    """Where a loss curve's data lands: the plot box in pixels and the
    data ranges it spans (steps; decades of the loss)."""
    left: int
    top: int
    right: int
    bottom: int
    x0: float  # Step at the left edge.
    x1: float  # Step at the right edge.
    y0: int  # log10 of the loss at the bottom edge.
    y1: int  # log10 of the loss at the top edge.

    def px(self, step: float) -> float:
        """The pixel column of a step."""
        return self.left + (step - self.x0) / (self.x1 - self.x0) * (
            self.right - self.left)

    def py(self, value: float) -> float:
        """The pixel row of a positive loss value (log scale)."""
        return self.bottom - (math.log10(value) - self.y0) / (
            self.y1 - self.y0) * (self.bottom - self.top)


def layer_keys(metrics: list[dict]) -> list[str]:
    """The per-layer style keys ("style/<layer>") of the records, in order
    of first appearance."""
    seen: dict[str, None] = {}
    for m in metrics:
        seen.update((k, None) for k in m if k.startswith("style/"))
    return list(seen)


def _keys(metrics: list[dict], layers: bool) -> list[str]:
    return list(_COLOURS) + (layer_keys(metrics) if layers else [])


def _colour(key: str, keys: list[str]) -> tuple[int, int, int]:
    if key in _COLOURS:
        return _COLOURS[key]
    i = keys.index(key) - len(_COLOURS)
    return _LAYER_COLOURS[i % len(_LAYER_COLOURS)]


def _plottable(m: dict, key: str) -> bool:
    return key in m and m[key] > 0 and math.isfinite(m[key])


def scale_starts(metrics: list[dict]) -> list[tuple[int, int]]:
    """(step where it starts, long side in px) of each scale in the records.

    The first scale starts at step 0; each later one at the last step
    recorded for the scale before it (records count steps over all
    scales and a scale always ends with a record). Records without a
    ``scale`` field (the fast method) give [].
    """
    starts: list[tuple[int, int]] = []
    prev_scale, prev_step = None, 0
    for m in metrics:
        if "scale" not in m:
            continue
        if m["scale"] != prev_scale:
            starts.append((prev_step if starts else 0, int(m["size"])))
            prev_scale = m["scale"]
        prev_step = m["step"]
    return starts


def nice_ticks(lo: float, hi: float, max_intervals: int = 8) -> list[int]:
    """Integer ticks from lo to hi at the finest round spacing (1, 2 or 5
    times a power of ten) that leaves at most ``max_intervals`` gaps."""
    span = max(hi - lo, 1)
    mag = 10 ** max(0, math.floor(math.log10(span / max_intervals)))
    spacing = next(m * mag for m in (1, 2, 5, 10)
                   if span / (m * mag) <= max_intervals)
    first = math.ceil(lo / spacing) * spacing
    return list(range(first, math.floor(hi) + 1, spacing))


def frame(metrics: list[dict], width: int = 640, height: int = 400,
          layers: bool = False) -> Frame:
    """The :class:`Frame` :func:`loss_curve` draws these records in.

    Steps run from 0 (or the first record, if earlier) to the last record;
    the loss axis spans whole decades around every plotted value.
    """
    keys = _keys(metrics, layers)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    legend_w = max(measure.textlength(k) for k in keys) + _LEGEND_PAD
    pts = [(m["step"], math.log10(m[k])) for m in metrics for k in keys
           if _plottable(m, k)]
    xs = [x for x, _ in pts] or [0]
    ys = [y for _, y in pts] or [0.0]
    x0 = min(0, min(xs))
    y0 = math.floor(min(ys))
    return Frame(_LEFT, _TOP, int(width - legend_w), height - _BOTTOM_MARGIN,
                 x0, max(max(xs), x0 + 1), y0,
                 max(math.ceil(max(ys)), y0 + 1))


def _segments(metrics: list[dict], key: str) -> list[list[tuple]]:
    """(step, value) points of one key, split where the scale changes:
    each scale has its own objective, so its curve is drawn apart."""
    segments: list[list[tuple]] = []
    current: list[tuple] = []
    scale = None
    for m in metrics:
        if m.get("scale") != scale and current:
            segments.append(current)
            current = []
        scale = m.get("scale")
        if _plottable(m, key):
            current.append((m["step"], m[key]))
    return segments + [current] if current else segments


def _draw_scales(d: ImageDraw.ImageDraw, f: Frame,
                 starts: list[tuple[int, int]]) -> None:
    """A dashed line where each later scale starts; every scale's size
    above the box (skipped where it would overprint the one before)."""
    if len(starts) < 2:
        return
    free_x = 0.0
    for step, size in starts:
        x = round(f.px(step))
        if step > f.x0:
            for y in range(f.top, f.bottom, 7):
                d.line([x, y, x, min(y + 3, f.bottom)], fill=SCALE_MARK)
        label = f"{size} px"
        if x + 3 >= free_x:
            d.text((x + 3, f.top - 14), label, fill=_INK)
            free_x = x + 3 + d.textlength(label) + 6


def _draw_axes(d: ImageDraw.ImageDraw, f: Frame) -> None:
    """Decade ticks (and 2..9 minor ticks over a few decades) on the log
    loss axis; round step ticks on the step axis; both titled."""
    decades = f.y1 - f.y0
    every = max(1, math.ceil(decades / 10))
    for e in range(f.y0, f.y1 + 1):
        py = round(f.py(10.0 ** e))
        d.line([f.left - 4, py, f.left, py], fill=_INK)
        if (e - f.y0) % every == 0:
            d.text((5, py - 6), f"1e{e}", fill=_INK)
        if decades <= 4 and e < f.y1:
            for k in range(2, 10):
                pk = round(f.py(k * 10.0 ** e))
                d.line([f.left - 2, pk, f.left, pk], fill=_INK)
    d.text((5, 2), "loss (log)", fill=_INK)
    for t in nice_ticks(f.x0, f.x1):
        px = round(f.px(t))
        d.line([px, f.bottom, px, f.bottom + 4], fill=_INK)
        label = str(t)
        d.text((px - d.textlength(label) / 2, f.bottom + 6), label,
               fill=_INK)
    d.text(((f.left + f.right) // 2 - 10, f.bottom + 22), "step", fill=_INK)


def loss_curve(metrics: list[dict], path: str, width: int = 640,
               height: int = 400, layers: bool = False) -> Frame:
    """Plots the total loss and each term (log10 y) against step.

    The terms are drawn before their alpha/beta/tv weights, so each curve
    shows how well that objective is met. Where a coarse-to-fine run
    starts a new scale a dashed grey line marks it, each scale's size is
    written above the box, and the curves break there (the loss of a
    larger image is another objective).

    Args:
      metrics: the run's records (``step``, the terms, ``scale``/``size``
        and ``style/<layer>`` where present).
      path: the PNG to write.
      width: image width in px.
      height: image height in px.
      layers: also draw each style layer's unweighted Gram MSE (thin
        lines), to show which layer is slow to fit.

    Returns:
      The :class:`Frame` drawn in (maps steps and losses to pixels).
    """
    f = frame(metrics, width, height, layers)
    all_keys = _keys(metrics, layers)
    keys = [k for k in all_keys if any(_plottable(m, k) for m in metrics)]
    img = Image.new("RGB", (width, height), "white")
    d = ImageDraw.Draw(img)
    _draw_scales(d, f, scale_starts(metrics))
    d.rectangle([f.left, f.top, f.right, f.bottom], outline=_INK)
    if keys:
        _draw_axes(d, f)
    # Layers first, so the terms they add up to stay on top.
    for key in sorted(keys, key=lambda k: k in _COLOURS):
        c, w = _colour(key, all_keys), 2 if key in _COLOURS else 1
        for segment in _segments(metrics, key):
            coords = [(f.px(x), f.py(y)) for x, y in segment]
            if len(coords) > 1:
                d.line(coords, fill=c, width=w)
            px, py = coords[-1]
            d.ellipse([px - 2, py - 2, px + 2, py + 2], fill=c)
    for i, key in enumerate(keys):
        y = f.top + 10 + 16 * i
        d.line([f.right + 10, y, f.right + 30, y],
               fill=_colour(key, all_keys), width=2 if key in _COLOURS else 1)
        d.text((f.right + 35, y - 6), key, fill=_INK)
    images.save(path, np.asarray(img, np.float32))
    return f


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
