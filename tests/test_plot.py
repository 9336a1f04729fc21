"""The loss curve: scale marks, axis ticks, per-layer style curves."""

import io
import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from nst_jax import config as cfg
from nst_jax.app import runner
from nst_jax.io import plot
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
    frame = plot.loss_curve(metrics, path, layers=layers)
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")), frame


def _is(pixels, colour):
    return np.all(pixels == np.asarray(colour, np.uint8), axis=-1)


def _inside(img, f):
    """The plot box without its frame."""
    return img[f.top + 1:f.bottom, f.left + 1:f.right]


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


def test_scale_starts_read_from_the_records():
    assert plot.scale_starts(_records()) == [(0, 128), (100, 256)]
    assert plot.scale_starts(_records(((32, 10), (64, 10), (128, 30)),
                                      every=5)) == [(0, 32), (10, 64),
                                                    (20, 128)]
    assert plot.scale_starts(_records(((256, 100),))) == [(0, 256)]
    # The fast method's records have no scale: nothing to mark.
    assert plot.scale_starts([{"step": 1, "loss": 3.0}]) == []


def test_a_new_scale_is_a_dashed_line_at_its_first_step(tmp_path):
    img, f = _draw(tmp_path, _records())
    assert (f.x0, f.x1) == (0, 300)
    x = round(f.px(100))
    box = _inside(img, f)
    marked = _is(box, plot.SCALE_MARK)
    cols = np.flatnonzero(marked.any(axis=0)) + f.left + 1
    assert list(cols) == [x]
    # Dashed: about half of the column, in several pieces.
    share = marked[:, x - f.left - 1].mean()
    assert 0.3 < share < 0.7, share
    # Its size is written above the box, just right of the line; the
    # first scale's at the left edge.
    band = img[f.top - 14:f.top - 1]
    assert (band[:, x + 2:x + 40] < 128).any()
    assert (band[:, f.left + 2:f.left + 40] < 128).any()


def test_one_scale_draws_no_mark_and_no_size(tmp_path):
    img, f = _draw(tmp_path, _records(((256, 300),)))
    assert not _is(_inside(img, f), plot.SCALE_MARK).any()
    assert not (img[f.top - 14:f.top - 1, f.left:f.right] < 128).any()


def test_curves_break_where_the_scale_changes(tmp_path):
    img, f = _draw(tmp_path, _records())
    # Between the boundary (step 100) and the next scale's first record
    # (step 125) no term's line is drawn.
    gap = img[f.top + 1:f.bottom, round(f.px(100)) + 4:round(f.px(125)) - 4]
    assert gap.size and np.all(gap == 255)
    # ... while within a scale the total loss is one unbroken line.
    inside = img[f.top + 1:f.bottom, round(f.px(30)):round(f.px(95))]
    assert _is(inside, plot._COLOURS["loss"]).any(axis=0).all()


def test_step_axis_has_round_ticks_and_log_axis_has_decades(tmp_path):
    img, f = _draw(tmp_path, _records())
    ticks = plot.nice_ticks(f.x0, f.x1)
    assert len(ticks) >= 5
    for t in ticks:
        assert _is(img[f.bottom + 2, round(f.px(t))], (0, 0, 0)), t
    # Not ticked between round steps.
    assert not _is(img[f.bottom + 2, round(f.px(25))], (0, 0, 0))
    # A tick at every decade the curves span, on a whole-decade range.
    assert f.y0 <= 1 and f.y1 >= 7
    for e in range(f.y0, f.y1 + 1):
        assert _is(img[round(f.py(10.0 ** e)), f.left - 3], (0, 0, 0)), e


def test_per_layer_style_curves_only_when_asked(tmp_path):
    metrics = _records()
    off, f_off = _draw(tmp_path, metrics, name="off.png")
    on, f_on = _draw(tmp_path, metrics, layers=True, name="on.png")
    assert plot.layer_keys(metrics) == [f"style/{l}" for l in LAYERS]
    for colour in plot._LAYER_COLOURS[:len(LAYERS)]:
        assert not _is(off, colour).any()
        # Drawn inside the box (not only as a legend swatch).
        assert _is(_inside(on, f_on), colour).sum() > 100
    # The legend needs room for "style/relu1_1".
    assert f_on.right < f_off.right


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
    f = plot.frame(metrics, layers=True)
    box = _inside(img, f)
    x = round(f.px(2)) - f.left - 1
    assert _is(box[:, x], plot.SCALE_MARK).mean() > 0.3
    assert _is(box, plot._LAYER_COLOURS[0]).any()
