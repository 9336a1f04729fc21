"""The layout of the loss curve (:mod:`nst_jax.figures.loss_curve`): which terms
the run's records hold, their curves as a share of each scale's first
record, and the :class:`Panel` (pixel box and data ranges) of each term.

No pixel is drawn here: the figure's boxes, ranges and ticks only.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from nst_jax.figures.ticks import value_ticks

#: Line colour of each term (matplotlib's tab10 where it has one).
_COLOURS = {"loss": (0, 0, 0), "content": (31, 119, 180),
            "style": (214, 39, 40), "tv": (44, 160, 44),
            "local": (148, 103, 189)}
#: Key of the panel that draws every ``style/<layer>`` term.
LAYERS_PANEL = "style/*"
# Layout in px: left margin (value labels), right margin, the title row,
# the scale-size row, each panel's header row and the step axis below.
_LEFT, _RIGHT, _TITLE_H, _SCALES_H, _HEADER_H, _BOTTOM = 62, 16, 20, 16, 22, 40
# Headroom above and below the curves, as a share of a panel's range.
_PAD = 0.08
# A panel spans at least this many decades (a factor of 1.05), so a term
# that hardly moves is drawn nearly flat instead of filling the panel.
_MIN_DECADES = math.log10(1.05)


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
