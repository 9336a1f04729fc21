"""The loss curve: one panel per term on its own axis, scale marks,
axis ticks, per-layer style curves."""

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from nst_jax import config as cfg
from nst_jax.app import runner
from nst_jax.figures import loss_panels, plot
from nst_jax.figures.loss_curve import _LAYER_COLOURS
from nst_jax.vgg import vgg19
from tests.test_config import load_preset

LAYERS = ("relu1_1", "relu2_1", "relu3_1")


def _records(scales=((128, 100), (256, 200)), every=25):
    """Records as the driver writes them: global steps, scale, size,
    terms and per-layer style terms, falling within each scale."""
    out, done = [], 0
    for s, (size, steps) in enumerate(scales):
        for k in range(every, steps + 1, every):
            t = k / steps
            rec = {"step": done + k, "scale": s, "size": size,
                   "loss": 1e7 * math.exp(-3 * t), "content": 1e3 * (1 + t),
                   "style": 1e5 * math.exp(-4 * t), "tv": 50 * (1 + t)}
            for i, l in enumerate(LAYERS):
                rec[f"style/{l}"] = 10.0 ** (i + 2) * math.exp(-(i + 1) * t)
            out.append(rec)
        done += steps
    return out


def _draw(tmp_path, metrics, layers=False, name="curve.png"):
    path = str(tmp_path / name)
    ps = plot.loss_curve(metrics, path, layers=layers)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), {p.key: p for p in ps}


def _is(pixels, colour):
    return np.all(pixels == np.asarray(colour, np.uint8), axis=-1)


def _inside(img, p):
    """A panel's plot box without its frame."""
    return img[p.top + 1:p.bottom, p.left + 1:p.right]


def _curve_rows(img, p, colour):
    """(first, last) row, relative to the box's inner height (0 = top,
    1 = bottom), holding the colour inside a panel."""
    rows = np.flatnonzero(_is(_inside(img, p), colour).any(axis=1))
    inner = p.bottom - p.top - 2
    return rows.min() / inner, rows.max() / inner


def test_nice_ticks_are_round_and_cover_the_range():
    assert plot.nice_ticks(0, 300) == list(range(0, 301, 50))
    assert plot.nice_ticks(0, 20) == [0, 5, 10, 15, 20]
    assert plot.nice_ticks(0, 3) == [0, 1, 2, 3]
    assert plot.nice_ticks(0, 1) == [0, 1]
    assert plot.nice_ticks(0, 130) == list(range(0, 121, 20))
    for hi in (7, 40, 130, 999, 2500, 123456):
        ticks = plot.nice_ticks(0, hi)
        assert 5 <= len(ticks) <= 9, (hi, ticks)
        spacing = ticks[1] - ticks[0]
        assert spacing / 10 ** math.floor(math.log10(spacing)) in (1, 2, 5)
        assert ticks[0] == 0 and hi - ticks[-1] < spacing


def _mantissa(v):
    """v / 10**floor(log10 v), rounded off float noise."""
    return round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)


@pytest.mark.parametrize("lo,hi", [
    (1.2e7, 1.7e7), (7e6, 1e7), (200, 260), (0.98, 1.03), (1e-3, 3e-3),
    (3e3, 8e4), (1e3, 1e7), (1, 1e11), (48.8, 51.3)])
def test_value_ticks_are_round_distinct_and_inside(lo, hi):
    ticks = plot.value_ticks(math.log10(lo), math.log10(hi))
    values = [v for v, _ in ticks]
    labels = [l for _, l in ticks]
    assert 2 <= len(ticks) <= 5, ticks
    assert all(lo * (1 - 1e-9) <= v <= hi * (1 + 1e-9) for v in values)
    assert len(set(labels)) == len(labels), labels
    assert all(len(l) <= 6 for l in labels), labels
    for v, l in ticks:
        # The label reads back as the value.
        assert float(l) == pytest.approx(v, rel=1e-9), (v, l)
    # Round: over decades 1, 2 or 5 times a power of ten; within one,
    # evenly spaced multiples of such a spacing.
    if hi / lo > 10:
        for v in values:
            assert _mantissa(v) in (1, 2, 5), v
    else:
        gaps = np.diff(values)
        assert gaps == pytest.approx(gaps[0]) and _mantissa(gaps[0]) in (
            1, 2, 5), values
        for v in values:
            assert v / gaps[0] == pytest.approx(round(v / gaps[0])), v
    assert plot.value_ticks(7, 7.2) == [(1e7, "1.0e7"), (1.2e7, "1.2e7"),
                                        (1.4e7, "1.4e7")]
    assert [l for _, l in plot.value_ticks(3, 7)] == [
        "1000", "1e4", "1e5", "1e6", "1e7"]


def test_one_panel_per_term_stacked_on_a_shared_step_axis(tmp_path):
    metrics = _records()
    metrics[-1]["local"] = 2.0
    img, ps = _draw(tmp_path, metrics)
    assert list(ps) == ["loss", "content", "style", "tv", "local"]
    boxes = list(ps.values())
    for upper, lower in zip(boxes, boxes[1:]):
        assert upper.bottom < lower.top
        assert (upper.left, upper.right, upper.x0, upper.x1) == (
            lower.left, lower.right, lower.x0, lower.x1)
    assert img.shape[:2] == (boxes[-1].bottom + loss_panels._BOTTOM, 640)
    for key, p in ps.items():
        # Each term in its own colour in its own panel only.
        colour = loss_panels._COLOURS[key]
        assert _is(_inside(img, p), colour).sum() > (5 if key == "local"
                                                      else 100), key
        for other in boxes:
            if other.key != key and key != "loss":
                assert not _is(_inside(img, other), colour).any(), (key,
                                                                     other)


def test_a_30_percent_fall_fills_its_panel(tmp_path):
    """The main command's records: terms from 1e3 to 1e11 unweighted and a
    total that falls 30%, which on one shared log axis was a flat line."""
    metrics = [{"step": k, "loss": 1e7 * (1 - 0.3 * k / 300),
                "content": 1e3 * (1 + k / 300), "style": 1e11 * 0.99 ** k,
                "tv": 5e4} for k in range(25, 301, 25)]
    img, ps = _draw(tmp_path, metrics)
    top, bottom = _curve_rows(img, ps["loss"], loss_panels._COLOURS["loss"])
    assert bottom - top > 0.7, (top, bottom)
    # Falling: its first point near the top, its last near the bottom.
    p = ps["loss"]
    last = metrics[-1]["loss"] / metrics[0]["loss"]
    assert p.py(1.0) < p.top + 0.2 * (p.bottom - p.top)
    assert p.py(last) > p.bottom - 0.2 * (p.bottom - p.top)
    top, bottom = _curve_rows(img, ps["content"],
                              loss_panels._COLOURS["content"])
    assert bottom - top > 0.7, (top, bottom)
    # A term that does not move is a flat line mid-panel, not noise blown
    # up to the panel's height.
    top, bottom = _curve_rows(img, ps["tv"], loss_panels._COLOURS["tv"])
    assert bottom - top < 0.05 and 0.4 < top < 0.6, (top, bottom)


def test_each_scale_is_measured_from_its_own_first_record(tmp_path):
    # The larger scale's loss is 10x lower (another objective); within
    # each scale it falls 30%. Both falls fill most of the panel.
    metrics = [{"step": k, "scale": s, "size": size,
                "loss": base * (1 - 0.3 * (k - k0) / 90)}
               for s, size, base, k0 in ((0, 64, 1e8, 10), (1, 128, 1e7, 110))
               for k in range(k0, k0 + 91, 10)]
    img, ps = _draw(tmp_path, metrics)
    p = ps["loss"]
    segments = plot.relative_segments(metrics, "loss")
    assert [(seg[0][1], round(seg[-1][1], 6)) for seg in segments] == [
        (1.0, 0.7), (1.0, 0.7)]
    black = _is(img, (0, 0, 0))
    inner = p.bottom - p.top - 2
    for x0, x1 in ((10, 100), (110, 200)):
        cols = slice(round(p.px(x0)) + 3, round(p.px(x1)) - 3)
        rows = np.flatnonzero(black[p.top + 1:p.bottom, cols].any(axis=1))
        assert (rows.max() - rows.min()) / inner > 0.6, (x0, rows)


def test_value_axes_read_as_a_percentage_of_the_first_record(tmp_path):
    img, ps = _draw(tmp_path, _records())
    for p in ps.values():
        ticks = plot.percent_ticks(p)
        assert 2 <= len(ticks) <= 5, (p.key, ticks)
        for ratio, label in ticks:
            assert label.endswith("%")
            assert float(label[:-1]) == pytest.approx(ratio * 100)
            assert p.top <= p.py(ratio) <= p.bottom
    # Each scale's loss starts at 100% (its first record, step 25 of 100
    # and of 200) and falls to 11% and 7% of it.
    assert ps["loss"].py(1.0) < ps["loss"].top + 10
    assert [label for _, label in plot.percent_ticks(ps["loss"])] == [
        "10%", "20%", "50%", "100%"]


def test_a_new_scale_is_a_dashed_line_at_its_first_step(tmp_path):
    img, ps = _draw(tmp_path, _records())
    first = ps["loss"]
    assert (first.x0, first.x1) == (0, 300)
    x = round(first.px(100))
    for p in ps.values():
        marked = _is(_inside(img, p), plot.SCALE_MARK)
        cols = np.flatnonzero(marked.any(axis=0)) + p.left + 1
        assert list(cols) == [x], p.key
        # Dashed: about half of the column, in several pieces.
        share = marked[:, x - p.left - 1].mean()
        assert 0.3 < share < 0.7, (p.key, share)
    # Each scale's size is written in the row above the panels, just
    # right of the line; the first scale's at the left edge.
    row = first.top - loss_panels._HEADER_H
    band = img[row - loss_panels._SCALES_H:row]
    assert (band[:, x + 2:x + 40] < 128).any()
    assert (band[:, first.left + 2:first.left + 40] < 128).any()
    assert not (band[:, first.left + 45:x - 2] < 128).any()


def test_one_scale_draws_no_mark_and_no_size(tmp_path):
    img, ps = _draw(tmp_path, _records(((256, 300),)))
    first = ps["loss"]
    for p in ps.values():
        assert not _is(_inside(img, p), plot.SCALE_MARK).any()
    row = first.top - loss_panels._HEADER_H
    assert not (img[row - loss_panels._SCALES_H:row] < 128).any()


def test_curves_break_where_the_scale_changes(tmp_path):
    img, ps = _draw(tmp_path, _records())
    for key, p in ps.items():
        # Between the boundary (step 100) and the next scale's first
        # record (step 125) no term's line is drawn: white and grid only.
        gap = img[p.top + 1:p.bottom, round(p.px(100)) + 4:
                  round(p.px(125)) - 4]
        assert gap.size and np.all(_is(gap, (255, 255, 255))
                                   | _is(gap, plot.GRID)), key
        # ... while within a scale each term is one unbroken line.
        inside = img[p.top + 1:p.bottom, round(p.px(30)):round(p.px(95))]
        assert _is(inside, loss_panels._COLOURS[key]).any(axis=0).all(), key


def test_headers_name_the_term_and_give_its_change(tmp_path):
    img, ps = _draw(tmp_path, _records())
    for key, p in ps.items():
        header = img[p.top - loss_panels._HEADER_H:p.top - 1, p.left:p.right]
        # The title in black, the change per scale in the term's colour
        # (anti-aliased text: pixels near it).
        assert _is(header, (0, 0, 0)).any(), key
        if key != "loss":
            near = np.abs(header.astype(int)
                          - loss_panels._COLOURS[key]).max(-1)
            assert (near < 40).sum() > 30, key


def test_step_axis_and_value_axes_have_round_ticks(tmp_path):
    img, ps = _draw(tmp_path, _records())
    last = list(ps.values())[-1]
    ticks = plot.nice_ticks(last.x0, last.x1)
    assert len(ticks) >= 5
    for p in ps.values():
        for t in ticks:
            assert _is(img[p.bottom + 2, round(p.px(t))], (0, 0, 0)), t
        # Not ticked between round steps.
        assert not _is(img[p.bottom + 2, round(p.px(25))], (0, 0, 0))
        # Every value tick is marked left of the box, with a grid line.
        values = plot.percent_ticks(p)
        assert len(values) >= 2, p.key
        for v, _ in values:
            y = round(p.py(v))
            assert p.top <= y <= p.bottom
            assert _is(img[y, p.left - 3], (0, 0, 0)), (p.key, v)
            assert not _is(img[y, (p.left + p.right) // 2],
                           (255, 255, 255)), (p.key, v)
        # ... and labelled: dark pixels in the margin.
        assert (img[p.top:p.bottom, :p.left - 5] < 128).any(), p.key


def test_per_layer_style_curves_only_when_asked(tmp_path):
    metrics = _records()
    off, ps_off = _draw(tmp_path, metrics, name="off.png")
    on, ps_on = _draw(tmp_path, metrics, layers=True, name="on.png")
    assert plot.layer_keys(metrics) == [f"style/{l}" for l in LAYERS]
    assert plot.LAYERS_PANEL not in ps_off
    assert list(ps_on) == list(ps_off) + [plot.LAYERS_PANEL]
    layer_panel = ps_on[plot.LAYERS_PANEL]
    for colour in _LAYER_COLOURS[:len(LAYERS)]:
        assert not _is(off, colour).any()
        # Drawn inside their panel (not only as a legend swatch).
        assert _is(_inside(on, layer_panel), colour).sum() > 100
    # Each layer relative to its own first record: the deepest, which
    # falls fastest, ends lowest.
    ends = [plot.relative_segments(metrics, k)[-1][-1][1]
            for k in plot.layer_keys(metrics)]
    assert ends == sorted(ends, reverse=True)
    colour = _LAYER_COLOURS[len(LAYERS) - 1]
    deepest = np.flatnonzero(_is(on[:, round(layer_panel.px(300)) - 3],
                                 colour))
    assert deepest.size and deepest.min() > layer_panel.py(ends[1])


def test_nothing_to_plot_still_writes_a_picture(tmp_path):
    img, ps = _draw(tmp_path, [{"step": 1, "loss": float("nan")},
                               {"step": 2, "loss": 0.0}])
    assert ps == {} and img.shape[1] == 640


def test_a_coarse_to_fine_run_records_and_plots_scales_and_layers(
        tmp_path):
    config = cfg.override(load_preset("tiny"), {
        "multiscale.sizes": (16, 32), "multiscale.steps": (2, 2),
        "log_every": 2, "plot_layers": True})
    wd = str(tmp_path / "run")
    runner.execute(config, wd, vgg_params=vgg19.random_params(0),
                   out=io.StringIO())
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        metrics = [json.loads(line) for line in f]
    assert [(m["step"], m["scale"], m["size"]) for m in metrics] == [
        (2, 0, 16), (4, 1, 32)]
    for m in metrics:
        for l in config.loss.style_layers:
            assert m[f"style/{l}"] > 0 and np.isfinite(m[f"style/{l}"])
        # The layers add up to the style term (all layer weights 1).
        assert sum(m[f"style/{l}"] for l in config.loss.style_layers) == (
            pytest.approx(m["style"], rel=1e-5))
    with Image.open(os.path.join(wd, "loss_curve.png")) as im:
        img = np.asarray(im.convert("RGB"))
    ps = {p.key: p for p in plot.panels(metrics, layers=True)}
    assert list(ps) == ["loss", "content", "style", "tv", plot.LAYERS_PANEL]
    for p in ps.values():
        x = round(p.px(2)) - p.left - 1
        assert _is(_inside(img, p)[:, x], plot.SCALE_MARK).mean() > 0.3
    # One record per scale: every layer's dot sits at 100%, the deepest
    # drawn last, on top.
    deepest = _LAYER_COLOURS[len(config.loss.style_layers) - 1]
    assert _is(_inside(img, ps[plot.LAYERS_PANEL]), deepest).any()
