"""The loss curve of a run, drawn with Pillow: one panel per term, each on
its own log axis (laid out by :mod:`nst_jax.figures.loss_panels`), with the
scale marks, the value and step axes and each panel's header."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax.io import images
from nst_jax.figures.loss_panels import (
    _BOTTOM, _COLOURS, _HEADER_H, _SCALES_H, _TITLE_H, LAYERS_PANEL, Panel,
    _drawn, _plottable, _segments, layer_keys, panels, percent_ticks,
    relative_segments, scale_starts)
from nst_jax.figures.ticks import _number, nice_ticks

_INK = (0, 0, 0)
# Per-layer style terms, shallow to deep: the rest of tab10, so a layer
# never shares a colour with a term.
_LAYER_COLOURS = ((255, 127, 14), (140, 86, 75), (227, 119, 194),
                  (188, 189, 34), (23, 190, 207), (127, 127, 127))
#: Colour of the dashed line where a coarse-to-fine scale starts.
SCALE_MARK = (160, 160, 160)
#: Colour of the horizontal lines at a panel's value ticks.
GRID = (232, 232, 232)
_TITLES = {"loss": "loss (weighted total)", "content": "content",
           "style": "style", "tv": "tv", "local": "local",
           LAYERS_PANEL: "style per layer:"}
_TITLE = ("loss per step: each term as a % of its first record at each "
          "scale (log axes), before its weight")
_FONT_SIZE = 12


def _font() -> ImageFont.ImageFont:
    """Pillow's built-in font at a legible size (10 px before Pillow 10.1,
    whose load_default takes no size)."""
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:
        return ImageFont.load_default()


def _layer_colour(key: str, keys: list[str]) -> tuple[int, int, int]:
    return _LAYER_COLOURS[keys.index(key) % len(_LAYER_COLOURS)]


def _draw_scales(d: ImageDraw.ImageDraw, ps: list[Panel],
                 starts: list[tuple[int, int]], font) -> None:
    """A dashed line through every panel where each later scale starts;
    every scale's size in the row above the panels (skipped where it
    would overprint the one before)."""
    if len(starts) < 2:
        return
    free_x = 0.0
    for step, size in starts:
        x = round(ps[0].px(step))
        if step > ps[0].x0:
            for p in ps:
                for y in range(p.top, p.bottom, 7):
                    d.line([x, y, x, min(y + 3, p.bottom)], fill=SCALE_MARK)
        label = f"{size} px"
        if x + 3 >= free_x:
            d.text((x + 3, _TITLE_H), label, fill=_INK, font=font)
            free_x = x + 3 + d.textlength(label, font=font) + 8


def _draw_value_axis(d: ImageDraw.ImageDraw, p: Panel, font) -> None:
    """Round percentages on a panel's log axis: a tick and a light grid
    line across the panel at each, and a label, top down, wherever it
    clears the one above (the log axis crowds the larger ones)."""
    free_y = -math.inf
    for ratio, label in sorted(percent_ticks(p), reverse=True):
        y = round(p.py(ratio))
        d.line([p.left + 1, y, p.right - 1, y], fill=GRID)
        d.line([p.left - 4, y, p.left, y], fill=_INK)
        if y - _FONT_SIZE // 2 - 1 >= free_y:
            w = d.textlength(label, font=font)
            d.text((p.left - 7 - w, y - _FONT_SIZE // 2 - 1), label,
                   fill=_INK, font=font)
            free_y = y + _FONT_SIZE // 2 + 2


def _draw_step_axis(d: ImageDraw.ImageDraw, ps: list[Panel], font) -> None:
    """Round step ticks under every panel, labelled under the last."""
    last = ps[-1]
    for t in nice_ticks(last.x0, last.x1):
        x = round(last.px(t))
        for p in ps:
            d.line([x, p.bottom, x, p.bottom + 3], fill=_INK)
        label = str(t)
        d.text((x - d.textlength(label, font=font) / 2, last.bottom + 6),
               label, fill=_INK, font=font)
    d.text(((last.left + last.right) // 2 - 12, last.bottom + 22), "step",
           fill=_INK, font=font)


def _changes(metrics: list[dict], key: str, multiscale: bool,
             long: bool) -> str:
    """How a term changed within each scale: first to last record and
    the percentage (``long``), or the percentage alone."""
    sizes: dict = {}
    for m in metrics:
        if _plottable(m, key):
            sizes.setdefault(m.get("scale"), m.get("size"))
    parts = []
    for size, seg in zip(sizes.values(), _segments(metrics, key)):
        (_, first), (_, last) = seg[0], seg[-1]
        pct = (last / first - 1) * 100
        change = f"{pct:+.1f}%" if abs(pct) < 10 else f"{pct:+.0f}%"
        text = (f"{_number(first, first / 100)} to "
                f"{_number(last, last / 100)} ({change})" if long
                else change)
        parts.append(f"{size} px: {text}" if multiscale else text)
    return "   ".join(parts)


def _header(d: ImageDraw.ImageDraw, p: Panel, metrics: list[dict],
            multiscale: bool, font) -> None:
    """The panel's title and, for a term, its values: first to last
    record at each scale (the percentages alone where that does not
    fit); for the layers, their colours."""
    x, y = p.left, p.top - _HEADER_H + 5
    title = _TITLES[p.key]
    d.text((x, y), title, fill=_INK, font=font)
    x += d.textlength(title, font=font) + 14
    if p.key == LAYERS_PANEL:
        keys = layer_keys(metrics)
        for key in keys:
            d.line([x, y + 7, x + 16, y + 7],
                   fill=_layer_colour(key, keys), width=2)
            name = key.split("/", 1)[1]
            d.text((x + 20, y), name, fill=_INK, font=font)
            x += 20 + d.textlength(name, font=font) + 12
        return
    text = _changes(metrics, p.key, multiscale, long=True)
    if x + d.textlength(text, font=font) > p.right:
        text = _changes(metrics, p.key, multiscale, long=False)
    d.text((x, y), text, fill=_COLOURS[p.key], font=font)


def loss_curve(metrics: list[dict], path: str, width: int = 640,
               panel_height: int = 90, layers: bool = False
               ) -> list[Panel]:
    """Plots each term against step, one panel per term.

    The total loss and each term (before its weight, so it shows how well
    that objective is met) get a panel of their own, drawn as a share of
    the term's first record at each scale on a log axis fitted to that
    panel: the terms differ by many decades, and on one shared axis a
    run's progress (often a fall of tens of percent) is a flat line. A
    larger scale is another objective, so each scale starts again from
    100%; each panel's header gives the absolute values. Where a
    coarse-to-fine run starts a new scale a dashed grey line crosses every
    panel, each scale's size is written above the panels, and the curves
    break there.

    Args:
      metrics: the run's records (``step``, the terms, ``scale``/``size``
        and ``style/<layer>`` where present).
      path: the PNG to write.
      width: image width in px.
      panel_height: height of each panel's plot box in px.
      layers: add a panel of each style layer's unweighted Gram MSE, to
        show which layer is slow to fit.

    Returns:
      The :class:`Panel` of each term, top to bottom (maps steps and
      ratios to pixels).
    """
    ps = panels(metrics, width, panel_height, layers)
    font = _font()
    bottom = ps[-1].bottom if ps else _TITLE_H + _SCALES_H + _HEADER_H
    img = Image.new("RGB", (width, bottom + _BOTTOM), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 3), _TITLE if ps
           else "loss per step: no positive finite value to plot",
           fill=_INK, font=font)
    if ps:
        starts = scale_starts(metrics)
        _draw_scales(d, ps, starts, font)
        for p in ps:
            _draw_value_axis(d, p, font)
            d.rectangle([p.left, p.top, p.right, p.bottom], outline=_INK)
            _header(d, p, metrics, len(starts) > 1, font)
            keys = _drawn(metrics, p.key)
            for key in keys:
                c = (_COLOURS[key] if p.key != LAYERS_PANEL
                     else _layer_colour(key, keys))
                for segment in relative_segments(metrics, key):
                    coords = [(p.px(x), p.py(r)) for x, r in segment]
                    if len(coords) > 1:
                        d.line(coords, fill=c, width=2)
                    cx, cy = coords[-1]
                    d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=c)
        _draw_step_axis(d, ps, font)
    images.save(path, np.asarray(img, np.float32))
    return ps
