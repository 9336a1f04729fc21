"""Pictures drawn with Pillow (no plotting dependency): the loss curve of a
run and the contact sheet of a sweep."""

from __future__ import annotations

import math
from typing import NamedTuple, Optional

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nst_jax.io import images

_INK = (0, 0, 0)
#: Line colour of each term (matplotlib's tab10 where it has one).
_COLOURS = {"loss": (0, 0, 0), "content": (31, 119, 180),
            "style": (214, 39, 40), "tv": (44, 160, 44),
            "local": (148, 103, 189)}
# Per-layer style terms, shallow to deep: the rest of tab10, so a layer
# never shares a colour with a term.
_LAYER_COLOURS = ((255, 127, 14), (140, 86, 75), (227, 119, 194),
                  (188, 189, 34), (23, 190, 207), (127, 127, 127))
#: Colour of the dashed line where a coarse-to-fine scale starts.
SCALE_MARK = (160, 160, 160)
#: Colour of the horizontal lines at a panel's value ticks.
GRID = (232, 232, 232)
#: Key of the panel that draws every ``style/<layer>`` term.
LAYERS_PANEL = "style/*"
_TITLES = {"loss": "loss (weighted total)", "content": "content",
           "style": "style", "tv": "tv", "local": "local",
           LAYERS_PANEL: "style per layer:"}
_TITLE = ("loss per step: each term as a % of its first record at each "
          "scale (log axes), before its weight")
_FONT_SIZE = 12
# Layout in px: left margin (value labels), right margin, the title row,
# the scale-size row, each panel's header row and the step axis below.
_LEFT, _RIGHT, _TITLE_H, _SCALES_H, _HEADER_H, _BOTTOM = 62, 16, 20, 16, 22, 40
# Headroom above and below the curves, as a share of a panel's range.
_PAD = 0.08
# A panel spans at least this many decades (a factor of 1.05), so a term
# that hardly moves is drawn nearly flat instead of filling the panel.
_MIN_DECADES = math.log10(1.05)


def _font() -> ImageFont.ImageFont:
    """Pillow's built-in font at a legible size (10 px before Pillow 10.1,
    whose load_default takes no size)."""
    try:
        return ImageFont.load_default(size=_FONT_SIZE)
    except TypeError:
        return ImageFont.load_default()


class Panel(NamedTuple):
    """One term's plot box in pixels and the data ranges it spans: steps,
    and log10 of the value relative to the term's first record at its
    scale (1 = that record).

    Every panel of a loss curve shares the step range; each has its own
    value range, fitted to its own curve, so a fall of a few percent is
    as visible as one of a few decades.
    """
    key: str  # The term ("loss", "content", ...) or LAYERS_PANEL.
    left: int
    top: int
    right: int
    bottom: int
    x0: float  # Step at the left edge.
    x1: float  # Step at the right edge.
    lo: float  # log10 of the ratio at the bottom edge.
    hi: float  # log10 of the ratio at the top edge.

    def px(self, step: float) -> float:
        """The pixel column of a step."""
        return self.left + (step - self.x0) / (self.x1 - self.x0) * (
            self.right - self.left)

    def py(self, ratio: float) -> float:
        """The pixel row of a positive ratio to the first record (log
        scale)."""
        return self.bottom - (math.log10(ratio) - self.lo) / (
            self.hi - self.lo) * (self.bottom - self.top)


def layer_keys(metrics: list[dict]) -> list[str]:
    """The per-layer style keys ("style/<layer>") of the records, in order
    of first appearance."""
    seen: dict[str, None] = {}
    for m in metrics:
        seen.update((k, None) for k in m if k.startswith("style/"))
    return list(seen)


def _plottable(m: dict, key: str) -> bool:
    """Whether a record has a value of ``key`` a log axis can show."""
    try:
        value = float(m[key])
    except (KeyError, TypeError, ValueError):
        return False
    return math.isfinite(value) and value > 0


def term_keys(metrics: list[dict]) -> list[str]:
    """The terms (total, content, style, tv, local) with a positive finite
    value in some record, in that order: one panel each."""
    return [k for k in _COLOURS if any(_plottable(m, k) for m in metrics)]


def _layer_colour(key: str, keys: list[str]) -> tuple[int, int, int]:
    return _LAYER_COLOURS[keys.index(key) % len(_LAYER_COLOURS)]


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


def value_ticks(lo: float, hi: float, max_ticks: int = 5
                ) -> list[tuple[float, str]]:
    """(value, label) of round values between 10**lo and 10**hi, for a
    log axis.

    Over more than a decade: 1, 2 and 5 times powers of ten, or only the
    powers (every k-th) where those are too many. Within a decade (the
    usual panel: a fall of a few tens of percent) the axis is nearly
    linear, so evenly spaced round values (1, 2 or 5 times a power of ten
    apart) with as many digits as tell them apart.
    """
    a, b = 10.0 ** lo, 10.0 ** hi
    e_lo, e_hi = math.floor(lo), math.ceil(hi)
    if hi - lo > 1:
        for mantissas in ((1, 2, 5), (1,)):
            ticks = [m * 10.0 ** e for e in range(e_lo, e_hi + 1)
                     for m in mantissas if a <= m * 10.0 ** e <= b]
            if len(ticks) <= max_ticks:
                return [(t, _number(t, t)) for t in ticks]
        every = math.ceil(len(ticks) / max_ticks)
        return [(t, _number(t, t)) for t in ticks
                if round(math.log10(t)) % every == 0]
    mag = 10.0 ** math.floor(math.log10(b - a))
    for spacing in (m * mag for m in (0.1, 0.2, 0.5, 1, 2, 5, 10)):
        first, last = math.ceil(a / spacing), math.floor(b / spacing)
        if last - first + 1 <= max_ticks:
            return [(k * spacing, _number(k * spacing, spacing))
                    for k in range(first, last + 1)]
    return []  # Not reached: spacing 10 * mag > b - a leaves one tick.


def _number(value: float, spacing: float) -> str:
    """A compact label of a positive value, with as many digits as a
    tick ``spacing`` needs: 250, 0.05, 1.4e7 (at most 5 characters from
    0.01 to 9999, a mantissa and exponent outside)."""
    digits = math.floor(math.log10(spacing))
    if 1e-2 <= value < 1e4:
        return f"{value:.{max(0, -digits)}f}"
    sig = max(1, math.floor(math.log10(value)) - digits + 1)
    mantissa, exponent = f"{value:.{sig - 1}e}".split("e")
    return f"{mantissa}e{int(exponent)}"


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
            current.append((m["step"], float(m[key])))
    return segments + [current] if current else segments


def relative_segments(metrics: list[dict], key: str) -> list[list[tuple]]:
    """(step, value / the scale's first value) points of one key, one list
    per scale.

    A larger scale's loss is another objective, often far from where the
    last scale ended, so each scale is measured from its own first record:
    the curves show the progress the optimiser makes at each scale.
    """
    return [[(x, v / seg[0][1]) for x, v in seg]
            for seg in _segments(metrics, key)]


def _panel_keys(metrics: list[dict], layers: bool) -> list[str]:
    keys = term_keys(metrics)
    if layers and any(_plottable(m, k) for m in metrics
                      for k in layer_keys(metrics)):
        keys.append(LAYERS_PANEL)
    return keys


def _drawn(metrics: list[dict], key: str) -> list[str]:
    """The record keys a panel draws."""
    return layer_keys(metrics) if key == LAYERS_PANEL else [key]


def panels(metrics: list[dict], width: int = 640, panel_height: int = 90,
           layers: bool = False) -> list[Panel]:
    """The :class:`Panel` of each term :func:`loss_curve` draws, top to
    bottom: loss, content, style, tv, local (those in the records), then
    the style layers when ``layers``.

    Steps run from 0 (or the first record, if earlier) to the last record.
    A panel's log axis spans its curve's ratios (at least a factor 1.05)
    with a little headroom above and below.
    """
    steps = [m["step"] for m in metrics if "step" in m] or [0]
    x0 = min(0, min(steps))
    x1 = max(max(steps), x0 + 1)
    out = []
    top = _TITLE_H + _SCALES_H
    for key in _panel_keys(metrics, layers):
        logs = [math.log10(r) for k in _drawn(metrics, key)
                for seg in relative_segments(metrics, k) for _, r in seg]
        lo, hi = min(logs), max(logs)
        if hi - lo < _MIN_DECADES:
            mid = (lo + hi) / 2
            lo, hi = mid - _MIN_DECADES / 2, mid + _MIN_DECADES / 2
        pad = _PAD * (hi - lo)
        box_top = top + _HEADER_H
        out.append(Panel(key, _LEFT, box_top, width - _RIGHT,
                         box_top + panel_height, x0, x1, lo - pad,
                         hi + pad))
        top = box_top + panel_height
    return out


def percent_ticks(p: Panel) -> list[tuple[float, str]]:
    """(ratio, label) of a panel's value ticks: round percentages of the
    first record ("100%", "96%", "10%")."""
    return [(v / 100, f"{label}%")
            for v, label in value_ticks(p.lo + 2, p.hi + 2)]


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
