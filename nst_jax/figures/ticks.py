"""Round tick values for a plot's axes and their compact labels: integer
steps at 1, 2 or 5 times a power of ten, and round values on a log axis."""

from __future__ import annotations

import math


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
