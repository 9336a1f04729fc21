"""Portrait gain maps and style-to-content alignment, alone and through
the driver with every alignment mode."""

import io
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import runner
from nst_jax.drive import driver
from nst_jax.io import images
from nst_jax.portrait import alignment, gains as gain_maps, patchmatch
from nst_jax.vgg import vgg19
from tests.test_config import load_preset

LANDMARKS = os.path.join(os.path.dirname(__file__), "data", "landmarks")

_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def _to_vgg(rgb):
    # Local stand-in for images.to_vgg: RGB 0..255 -> BGR minus mean pixel.
    return jnp.asarray(np.asarray(rgb, np.float32)[..., ::-1] - _MEAN_BGR)



@pytest.fixture(scope="module")
def features_fn(params):
    return lambda rgb, layers: vgg19.extract(params, _to_vgg(rgb)[None],
                                             layers)


def _smooth_image(n, seed=0, cell=6):
    """Smooth random colour texture in 0..255 (bilinear upsampled noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n // cell + 4, n // cell + 4, 3))
    py, px = np.mgrid[:n, :n] / cell + 1.0
    img = alignment.warp(coarse, np.stack([py, px], axis=-1))
    return (img - img.min()) / (img.max() - img.min()) * 255.0


def _grid(h, w):
    return np.stack(np.mgrid[:h, :w], axis=-1).astype(np.float32)


def test_gain_formula_and_clamps():
    content = np.array([1.0, 1.0, 2.0, 10.0, 1.0, 0.0]).reshape(1, 1, 6, 1)
    style = np.array([0.5, 8.0, 4.0, 20.0, 0.7, 0.0]).reshape(1, 1, 6, 1)
    gain = np.asarray(gain_maps.gain_map(content, style, eps=1e-4))
    ratio = style / (content + 1e-4)
    # 0.5 and 8 clamp; 0.7 / 1.0001 is just under g_min and clamps too;
    # 0 / (0 + eps) = 0 clamps to g_min.
    expected = [0.7, 5.0, ratio[0, 0, 2, 0], ratio[0, 0, 3, 0], 0.7, 0.7]
    np.testing.assert_allclose(gain.ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(gain[0, 0, 2:4, 0], 2.0, rtol=1e-4)
    jitted = jax.jit(gain_maps.gain_map)(content, style)
    np.testing.assert_allclose(np.asarray(jitted), gain, rtol=1e-6)
    wide = gain_maps.gain_map(content, style, g_min=0.1, g_max=100.0)
    np.testing.assert_allclose(np.asarray(wide).ravel()[:2], [0.5, 8.0],
                               rtol=1e-3)


def test_self_style_gain_is_identity(features_fn):
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    feats = features_fn(_smooth_image(64, seed=1), layers)
    for layer in layers:
        c = np.asarray(feats[layer])
        gain = np.asarray(gain_maps.gain_map(c, c))
        strong = c > 0.1
        assert strong.mean() > 0.1, layer
        np.testing.assert_allclose(gain[strong], 1.0, atol=1e-3)
    targets = gain_maps.gain_targets(feats, feats, layers)
    assert set(targets) == set(layers)
    for layer in layers:
        # target = c * c / (c + eps) differs from c by c * eps / (c + eps),
        # under eps everywhere; where c == 0 the gain clamps to 0.7 but the
        # target is still exactly 0.
        c = np.asarray(feats[layer])
        np.testing.assert_allclose(np.asarray(targets[layer]), c,
                                   rtol=0, atol=1.1e-4)
        np.testing.assert_array_equal(np.asarray(targets[layer])[c == 0], 0)


def test_gain_targets_validation():
    a = {"relu4_1": jnp.ones((1, 4, 4, 8))}
    with pytest.raises(ValueError, match="relu3_1.*missing.*content"):
        gain_maps.gain_targets(a, a, ["relu3_1"])
    with pytest.raises(ValueError, match="relu4_1.*differ"):
        gain_maps.gain_targets(a, {"relu4_1": jnp.ones((1, 4, 5, 8))},
                              ["relu4_1"])


def test_nn_field_self_is_identity_and_recovers_shift():
    feat = np.random.default_rng(0).normal(size=(12, 10, 16))
    np.testing.assert_array_equal(alignment.nn_field(feat, feat, 3),
                                  _grid(12, 10).astype(np.int32))
    np.testing.assert_array_equal(alignment.nn_field(feat[None], feat, 1),
                                  _grid(12, 10).astype(np.int32))
    # src[p + (2, -1)] == feat[p] -> field = p + (2, -1) wherever the 3x3
    # patch around p + (2, -1) does not wrap around (rows 1..8, cols 2..8).
    src = np.roll(feat, (2, -1), axis=(0, 1))
    disp = alignment.nn_field(src, feat, 3) - _grid(12, 10)
    np.testing.assert_array_equal(disp[1:9, 2:9], np.broadcast_to(
        [2, -1], disp[1:9, 2:9].shape))
    with pytest.raises(ValueError, match="odd"):
        alignment.nn_field(feat, feat, 2)


def test_nn_field_chunked_matches_unchunked(monkeypatch):
    rng = np.random.default_rng(1)
    src, dst = rng.normal(size=(9, 7, 8)), rng.normal(size=(11, 10, 8))
    whole = alignment.nn_field(src, dst, 3)
    assert whole.shape == (11, 10, 2)
    # Room for a band of 3 destination rows (+2 padding rows) at a time.
    monkeypatch.setattr(alignment, "_MAX_CHUNK_ENTRIES", 5 * 12 * 11 * 9)
    np.testing.assert_array_equal(alignment.nn_field(src, dst, 3), whole)


def test_field_to_flow_constant_displacement():
    field = (_grid(6, 5) + [1, -2]).astype(np.int32)
    flow = alignment.field_to_flow(field, (24, 20), 4)
    np.testing.assert_allclose(flow, _grid(24, 20) + [4, -8], atol=1e-4)
    # An isolated wrong match is removed by the median smoothing.
    field[3, 2] += [3, 3]
    flow = alignment.field_to_flow(field, (24, 20), 4, smooth=3)
    np.testing.assert_allclose(flow, _grid(24, 20) + [4, -8], atol=1e-4)


def test_warp_bilinear_and_clamped():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    coords = np.array([[[0.5, 0.5], [1.0, 2.5], [-5.0, 10.0]]], np.float32)
    out = alignment.warp(img, coords)
    np.testing.assert_allclose(out, [[2.5, 6.5, 3.0]])


def _nested_lerps(img, coords):
    """The NumPy sampler warp replaced: float32 inputs, float64 arithmetic
    (float32 minus int64 promotes), lerp along x then y, one rounding."""
    img = np.asarray(img, np.float32)
    coords = np.asarray(coords, np.float32)
    h, w = img.shape[:2]
    y, x = np.clip(coords[..., 0], 0, h - 1), np.clip(coords[..., 1], 0, w - 1)
    y0, x0 = np.floor(y).astype(np.int64), np.floor(x).astype(np.int64)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = y - y0, x - x0
    if img.ndim == 3:
        wy, wx = wy[..., None], wx[..., None]
    top = img[y0, x0] * (1 - wx) + img[y0, x1] * wx
    bottom = img[y1, x0] * (1 - wx) + img[y1, x1] * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


@pytest.mark.parametrize("channels", [(), (3,), (2,)])
def test_warp_keeps_the_bits_of_the_numpy_sampler(channels):
    # Existing runs' images depend on these bits: a float32 evaluation
    # (fused multiply-adds) differs in the last bit of many values.
    rng = np.random.default_rng(len(channels))
    for h, w in ((37, 53), (2, 5), (64, 64)):
        img = rng.uniform(-300, 300, (h, w) + channels).astype(np.float32)
        coords = np.stack([rng.uniform(-4, h + 3, (41, 29)),
                           rng.uniform(-4, w + 3, (41, 29))], axis=-1)
        out = alignment.warp(img, coords)
        assert out.dtype == np.float32 and out.shape == (41, 29) + channels
        np.testing.assert_array_equal(out, _nested_lerps(img, coords))
    # JAX's 64-bit mode is left as it was.
    assert jnp.zeros(1).dtype == jnp.float32


def test_sample_runs_under_jit_in_float32_and_clamps_to_the_edge():
    img = np.arange(24, dtype=np.float32).reshape(3, 4, 2)
    coords = np.array([[[0.5, 0.5], [1.0, 2.5], [-5.0, 10.0],
                        [2.0, 3.0], [9.0, -1.0], [2.25, 0.0]]], np.float32)
    out = jax.jit(alignment.sample)(jnp.asarray(img), jnp.asarray(coords))
    assert out.dtype == jnp.float32 and out.shape == (1, 6, 2)
    # Bilinear inside; a point outside takes its nearest border point.
    expect = np.array([[img[:2, :2].mean(axis=(0, 1)),
                        (img[1, 2] + img[1, 3]) / 2, img[0, 3], img[2, 3],
                        img[2, 0], img[2, 0]]])
    np.testing.assert_allclose(out, expect, rtol=1e-6)
    np.testing.assert_allclose(out, alignment.warp(img, coords), rtol=1e-6)
    # Integer images are sampled as float32; one channel is (h, w).
    plane = alignment.sample(np.arange(12).reshape(3, 4), coords)
    assert plane.dtype == jnp.float32
    np.testing.assert_allclose(plane, expect[..., 0] / 2, rtol=1e-6)
    with pytest.raises(ValueError, match="coords"):
        alignment.sample(img, coords[0])
    with pytest.raises(ValueError, match="image"):
        alignment.sample(img[..., None], coords)


def _disc(hw, centre, radius):
    yx = _grid(*hw)
    return (np.linalg.norm(yx - centre, axis=-1) <= radius).astype(np.float32)


def test_align_with_masks_overlaps_content_face():
    content_mask = _disc((80, 80), (44, 30), 18)
    style_mask = _disc((60, 70), (20, 45), 9)
    style_rgb = np.random.default_rng(0).uniform(0, 255, (60, 70, 3))
    aligned = alignment.align_with_masks(style_rgb, np.zeros((80, 80, 3)),
                                        style_mask, content_mask)
    assert aligned.shape == (80, 80, 3)
    warped = alignment.align_with_masks(style_mask, content_mask,
                                       style_mask, content_mask) > 0.5
    target = content_mask > 0.5
    iou = (warped & target).sum() / (warped | target).sum()
    assert iou > 0.9, iou
    with pytest.raises(ValueError, match="non-empty"):
        alignment.align_with_masks(style_rgb, content_mask,
                                  style_mask, np.zeros((80, 80)))


def test_align_with_flow_and_resize_flow():
    img = _smooth_image(32, seed=5)
    identity = _grid(32, 32)
    np.testing.assert_allclose(alignment.align_with_flow(img, identity,
                                                        (32, 32)),
                               img, atol=1e-4)
    out = alignment.align_with_flow(img, identity + [0, 1], (32, 32))
    np.testing.assert_allclose(out[:, :-1], img[:, 1:], atol=1e-4)
    # A flow made at 16x16 serves a 32x32 frame: identity stays identity,
    # a shift of 1 px at 16 px is 2 px at 32.
    small = _grid(16, 16)
    np.testing.assert_allclose(alignment.resize_flow(small, (32, 32)),
                               identity, atol=1e-4)
    shifted = alignment.resize_flow(small + [0, 1], (32, 32))
    np.testing.assert_allclose(shifted - identity,
                               np.broadcast_to([0, 2], (32, 32, 2)),
                               atol=1e-4)
    with pytest.raises(ValueError, match=r"\(H, W, 2\)"):
        alignment.resize_flow(identity[..., :1], (32, 32))
    identity[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        alignment.align_with_flow(img, identity, (32, 32))


# ------------------------------------------------ the preset, end to end

def _preset(**over):
    """configs/portrait.py, shrunk: 2 + 2 steps at 32 then 48 px (and
    PatchMatch searching at 48), the local style term at one layer (each
    layer's cells add to the compile, which dominates at this size)."""
    base = {"multiscale.sizes": (32, 48), "multiscale.steps": (2, 2),
            "size": 48, "log_every": 2, "save_every": 0,
            "portrait.match_size": 48,
            "portrait.local_layers": ("relu2_1",)}
    return cfg.override(load_preset("portrait"), {**base, **over})


@pytest.fixture(scope="module")
def face_files(tmp_path_factory):
    """Face masks for the embedded pair and flows (any size, same aspect)."""
    d = tmp_path_factory.mktemp("portrait")
    content_hw = images.load(plan_lib.DEFAULT_CONTENT).shape[:2]
    style_hw = images.load(plan_lib.DEFAULT_STYLE).shape[:2]
    paths = {}
    for name, hw, centre in (("content_mask", content_hw, (0.4, 0.5)),
                             ("style_mask", style_hw, (0.5, 0.4))):
        paths[name] = str(d / f"{name}.png")
        disc = _disc(hw, np.multiply(hw, centre), min(hw) / 4)
        images.save(paths[name], np.repeat(disc[..., None] * 255, 3, -1))
    ch, cw = content_hw
    for name, shift in (("identity", 0.0), ("shifted", 6.0)):
        paths[name] = str(d / f"{name}.npy")
        np.save(paths[name], _grid(40, round(40 * cw / ch)) + [0, shift])
    bad = _grid(40, 80)
    np.save(d / "wide.npy", bad)
    paths["wide"] = str(d / "wide.npy")
    bad = _grid(40, 40)
    bad[3, 3, 0] = np.inf
    np.save(d / "inf.npy", bad)
    paths["inf"] = str(d / "inf.npy")
    # The photo's hand-placed points, and the same face shape placed in
    # the (landscape) painting, shifted and squeezed.
    paths["content_landmarks"] = os.path.join(LANDMARKS, "astronaut.json")
    with open(paths["content_landmarks"]) as f:
        marks = json.load(f)
    sw, sh = style_hw[1], style_hw[0]
    marks.update(image="style.jpg", size=[sw, sh], points=[
        [x / 512 * sw * 0.8 + 40, y / 512 * sh] for x, y in marks["points"]])
    paths["style_landmarks"] = str(d / "style_landmarks.json")
    with open(paths["style_landmarks"], "w") as f:
        json.dump(marks, f)
    return paths


@pytest.mark.parametrize("align,marks", [
    ("none", False), ("features", False), ("features", True),
    ("landmarks", True), ("masks", False), ("flow", False)])
def test_portrait_preset_runs_through_the_driver(tmp_path, face_files,
                                                 params, monkeypatch, align,
                                                 marks):
    searches = []
    real = patchmatch.correspondence

    def counted(*args, **kwargs):
        searches.append(kwargs.get("size"))
        return real(*args, **kwargs)
    monkeypatch.setattr(patchmatch, "correspondence", counted)
    c = _preset(**{"portrait.align": align,
                   "portrait.content_mask": face_files["content_mask"],
                   "portrait.style_mask": face_files["style_mask"],
                   "portrait.flow": face_files["identity"],
                   "portrait.content_landmarks":
                       face_files["content_landmarks"] if marks else "",
                   "portrait.style_landmarks":
                       face_files["style_landmarks"] if marks else ""})
    wd = tmp_path / "run"
    final = runner.execute(c, str(wd), vgg_params=params,
                           out=io.StringIO())
    out = images.load(final)
    assert out.shape == (48, 48, 3) and out.std() > 1
    with open(wd / "metrics.jsonl") as f:
        steps = [json.loads(l)["step"] for l in f]
    assert steps == [2, 4]
    # The search runs once per run (at portrait.match_size), not per scale.
    assert searches == ([48] if align == "features" else [])


def test_the_flow_steers_the_gain_targets(face_files, params):
    out = {}
    for name in ("identity", "shifted"):
        c = _preset(**{"portrait.align": "flow",
                       "portrait.flow": face_files[name]})
        out[name], _ = driver.stylize(plan_lib.build(c), params)
    assert np.abs(out["identity"] - out["shifted"]).mean() > 0.1


@pytest.mark.parametrize("over,message", [
    ({"portrait.align": "landmarks"}, "needs portrait.content_landmarks"),
    ({"portrait.align": "landmarks",
      "portrait.content_landmarks": "content_landmarks",
      "portrait.style_landmarks": "inf"}, "is not valid JSON"),
    ({"portrait.align": "flow", "portrait.flow": "wide"}, "shape"),
    ({"portrait.align": "flow", "portrait.flow": "inf"}, "NaN or infinite"),
    ({"portrait.align": "flow", "portrait.flow": "missing.npy"},
     "does not exist"),
    ({"portrait.align": "masks", "portrait.content_mask": "style_mask"},
     "shape"),
    ({"portrait.align": "masks", "portrait.style_mask": ""}, "empty"),
])
def test_bad_flows_and_masks_stop_before_any_directory(
        tmp_path, face_files, params, capsys, over, message):
    files = dict(face_files, **{"missing.npy": str(tmp_path / "no.npy")})
    over = {k: files.get(v, v) if k != "portrait.align" else v
            for k, v in over.items()}
    base = {"portrait.content_mask": face_files["content_mask"],
            "portrait.style_mask": face_files["style_mask"]}
    c = _preset(**{**base, **over})
    wd = tmp_path / "run"
    assert runner.main(c, str(wd), vgg_params=params) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not wd.exists()


def test_local_style_term_pulls_each_cell_toward_the_aligned_painting(
        params):
    local = {}
    for weight in (0.0, 1.0):  # Traced: the second run reuses the program.
        c = _preset(**{"portrait.align": "none", "init": "content",
                       "portrait.local_weight": weight,
                       "multiscale.sizes": (48,), "multiscale.steps": (6,),
                       "log_every": 6})
        _, metrics = driver.stylize(plan_lib.build(c), params)
        assert "local" in metrics[-1]
        local[weight] = metrics[-1]["local"]
    assert local[1.0] < 0.5 * local[0.0], local
