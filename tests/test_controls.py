"""Perceptual controls through the driver: masks, multi-scale, init, pooling."""

import re

import numpy as np
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.drive import driver, inputs
from nst_jax.errors import UserError
from nst_jax.io import images
from nst_jax.optimize import color, losses
from nst_jax.vgg import vgg19
from tests.helpers import plans, small_config



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    rng = np.random.RandomState(0)
    yy, xx = np.mgrid[0:40, 0:40]
    content = np.stack([yy * 6, xx * 6, 255 - yy * 6], -1).astype(np.float32)
    red = np.zeros((40, 40, 3), np.float32)
    red[..., 0] = 200 + 50 * rng.rand(40, 40)
    stripes = np.zeros((40, 40, 3), np.float32)
    stripes[..., 2] = 255.0 * ((xx // 3) % 2)
    left = np.zeros((40, 40, 3), np.float32)
    left[:, :20] = 255
    paths = {}
    for name, img in [("content", content), ("red", red),
                      ("stripes", stripes), ("left", left),
                      ("right", 255 - left)]:
        paths[name] = str(d / f"{name}.png")
        images.save(paths[name], img)
    return paths


def _config(files, **over):
    return small_config(files["content"], files["red"], **over)


@pytest.mark.parametrize("opt", ["adam", "lbfgs", "sgd"])
def test_multiscale_runs_coarse_to_fine_with_every_optimiser(files, params,
                                                             opt):
    c = _config(files, **{"multiscale.sizes": (24, 32),
                          "multiscale.steps": (2, 3), "optim.name": opt,
                          "optim.learning_rate": {"sgd": 1e-3, "adam": 4.0,
                                                  "lbfgs": 1.0}[opt]})
    img, metrics = driver.stylize(plan_lib.build(c), params)
    assert img.shape == (32, 32, 3)
    assert [(m["scale"], m["size"], m["step"]) for m in metrics] == [
        (0, 24, 2), (1, 32, 4), (1, 32, 5)]


def test_the_last_scale_has_its_own_style_layers(files, params):
    """multiscale.last_style_layers: the last of two scales has those
    layers, each with its loss.style_layer_weights entry; the scales
    before it and a single-scale run keep loss.style_layers; a layer
    outside loss.style_layers is refused."""
    c = _config(files, **{"multiscale.sizes": (24, 32),
                          "multiscale.steps": (2, 2), "log_every": 2,
                          "loss.style_layers": ("relu1_1", "relu2_1"),
                          "loss.style_layer_weights": (3.0, 5.0),
                          "multiscale.last_style_layers": ("relu2_1",)})
    _, (coarse, fine) = driver.stylize(plan_lib.build(c), params)
    assert np.isclose(coarse["style"], 3 * coarse["style/relu1_1"]
                      + 5 * coarse["style/relu2_1"], rtol=1e-4)
    assert "style/relu1_1" not in fine
    assert np.isclose(fine["style"], 5 * fine["style/relu2_1"], rtol=1e-4)
    one = cfg.override(c, {"multiscale.sizes": (), "multiscale.steps": ()})
    assert plan_lib.spec(plan_lib.build(one)).style_layers == (
        "relu1_1", "relu2_1")
    with pytest.raises(UserError, match=re.escape(
            "multiscale.last_style_layers = ('relu3_1',) must be distinct "
            "layers of loss.style_layers ('relu1_1', 'relu2_1')")):
        plan_lib.build(cfg.override(
            c, {"multiscale.last_style_layers": ("relu3_1",)}))


def test_masks_give_each_region_its_own_style(files, params):
    c = _config(files, **{
        "style": (files["red"], files["stripes"]),
        "masks": (files["left"], files["right"]),
        "loss.style_weight": 1.0, "loss.content_weight": 0.0,
        "optim.steps": 30, "optim.learning_rate": 8.0, "log_every": 10})
    img, _ = driver.stylize(plan_lib.build(c), params)
    layer = "relu1_1"
    feats = vgg19.features(params, img, (layer,))[layer]
    h, w = feats.shape[1:3]
    left = np.zeros((h, w), np.float32)
    left[:, :w // 2] = 1
    masks = np.stack([left, 1 - left])
    g = np.asarray(losses.masked_gram(feats, masks))
    styles = [images.load(files[n], 32) for n in ("red", "stripes")]
    a = [np.asarray(losses.gram(vgg19.features(params, s, (layer,))[
        layer]))[0] for s in styles]
    err = lambda x, y: float(np.mean((x - y) ** 2))
    assert err(g[0], a[0]) < err(g[0], a[1])  # Left region: red.
    assert err(g[1], a[1]) < err(g[1], a[0])  # Right region: stripes.


def test_mask_count_must_match_styles(files):
    from nst_jax.errors import UserError
    c = _config(files, masks=(files["left"], files["right"]))
    with pytest.raises(UserError, match="one mask per style"):
        plan_lib.fields(c)


@pytest.mark.parametrize("init", ["content", "noise", "style", "file"])
def test_init_options(files, params, init):
    c = _config(files, init=init, init_path=files["stripes"],
                **{"optim.steps": 1, "log_every": 1})
    c.optim.learning_rate = 1e-6  # One negligible step: see the start.
    img, _ = driver.stylize(plan_lib.build(c), params)
    expect = {"content": images.load(files["content"], 32),
              "style": images.load(files["red"], 32),
              "file": images.load(files["stripes"], 32)}.get(init)
    if expect is None:  # Noise: far from every input image.
        assert np.abs(img - images.load(files["content"], 32)).mean() > 30
    else:
        np.testing.assert_allclose(img, images.resize(expect, img.shape[:2]),
                                   atol=1.0)


def test_luminance_preservation_keeps_content_chroma(files, params):
    c = _config(files, **{"color.preserve": "luminance",
                          "loss.style_weight": 1.0, "optim.steps": 6})
    img, _ = driver.stylize(plan_lib.build(c), params)
    content = images.load(files["content"], 32)
    iq_out = color.rgb_to_yiq(img)[..., 1:]
    iq_content = color.rgb_to_yiq(content)[..., 1:]
    inside = np.all((img > 1) & (img < 254), axis=-1)  # Unclipped pixels.
    assert inside.mean() > 0.5
    assert np.abs(iq_out - iq_content)[inside].max() < 1.0
    # ...while the luminance did change (the style was applied).
    y_change = np.abs(color.luminance(img) - color.luminance(content))
    assert y_change.mean() > 1.0


def test_colour_match_recolours_the_style_targets(files, params):
    c = _config(files, **{"color.preserve": "match",
                          "color.match_method": "histogram"})
    inp = inputs.prepare(plan_lib.build(c), 32)
    content_mean = inp.content_rgb.reshape(-1, 3).mean(0)
    raw = images.load(files["red"], 32).reshape(-1, 3).mean(0)
    matched = inp.style_rgbs[0].reshape(-1, 3).mean(0)
    assert np.abs(matched - content_mean).max() < 5.0
    assert np.abs(raw - content_mean).max() > 50.0
    img, metrics = driver.stylize(plan_lib.build(c), params)
    assert np.isfinite(img).all() and len(metrics) == 2


def test_luminance_coarse_to_fine_carries_the_grey_optimised_image(
        files, params):
    # Scale 1 must start from scale 0's raw (grey) image, upsampled: its
    # targets are grey too. The saved output is the recoloured one.
    c = _config(files, **{"color.preserve": "luminance",
                          "multiscale.sizes": (24, 32),
                          "multiscale.steps": (1, 1), "log_every": 1,
                          "optim.learning_rate": 1e-6})
    seen = []
    driver.run_group(plans([c]), params, callback=lambda info: seen.append(
        (info.scale, info.raw_images[0], info.images[0])))
    (s0, raw0, out0), (s1, raw1, out1) = seen
    assert (s0, s1) == (0, 1) and raw1.shape == (32, 32, 3)
    spread = lambda x: float(np.abs(x - x.mean(-1, keepdims=True)).max())
    assert spread(raw0) < 0.5 and spread(raw1) < 0.5  # Grey throughout.
    assert spread(out1) > 20  # The photo's colours are put back.
