"""Properties of the portrait gain maps and style-to-content alignment."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import portrait, vgg19

_MEAN_BGR = np.array([103.939, 116.779, 123.68], np.float32)


def _to_vgg(rgb):
    # Local stand-in for images.to_vgg: RGB 0..255 -> BGR minus mean pixel.
    return jnp.asarray(np.asarray(rgb, np.float32)[..., ::-1] - _MEAN_BGR)


@pytest.fixture(scope="module")
def features_fn():
    params = vgg19.random_params(0)
    return lambda rgb, layers: vgg19.extract(params, _to_vgg(rgb)[None],
                                             layers)


def _smooth_image(n, seed=0, cell=6):
    """Smooth random colour texture in 0..255 (bilinear upsampled noise)."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n // cell + 4, n // cell + 4, 3))
    py, px = np.mgrid[:n, :n] / cell + 1.0
    img = portrait.warp(coarse, np.stack([py, px], axis=-1))
    return (img - img.min()) / (img.max() - img.min()) * 255.0


def _grid(h, w):
    return np.stack(np.mgrid[:h, :w], axis=-1).astype(np.float32)


def test_gain_formula_and_clamps():
    content = np.array([1.0, 1.0, 2.0, 10.0, 1.0, 0.0]).reshape(1, 1, 6, 1)
    style = np.array([0.5, 8.0, 4.0, 20.0, 0.7, 0.0]).reshape(1, 1, 6, 1)
    gain = np.asarray(portrait.gain_map(content, style, eps=1e-4))
    ratio = style / (content + 1e-4)
    # 0.5 and 8 clamp; 0.7 / 1.0001 is just under g_min and clamps too;
    # 0 / (0 + eps) = 0 clamps to g_min.
    expected = [0.7, 5.0, ratio[0, 0, 2, 0], ratio[0, 0, 3, 0], 0.7, 0.7]
    np.testing.assert_allclose(gain.ravel(), expected, rtol=1e-6)
    np.testing.assert_allclose(gain[0, 0, 2:4, 0], 2.0, rtol=1e-4)
    jitted = jax.jit(portrait.gain_map)(content, style)
    np.testing.assert_allclose(np.asarray(jitted), gain, rtol=1e-6)
    wide = portrait.gain_map(content, style, g_min=0.1, g_max=100.0)
    np.testing.assert_allclose(np.asarray(wide).ravel()[:2], [0.5, 8.0],
                               rtol=1e-3)


def test_self_style_gain_is_identity(features_fn):
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    feats = features_fn(_smooth_image(64, seed=1), layers)
    for layer in layers:
        c = np.asarray(feats[layer])
        gain = np.asarray(portrait.gain_map(c, c))
        strong = c > 0.1
        assert strong.mean() > 0.1, layer
        np.testing.assert_allclose(gain[strong], 1.0, atol=1e-3)
    targets = portrait.gain_targets(feats, feats, layers)
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
        portrait.gain_targets(a, a, ["relu3_1"])
    with pytest.raises(ValueError, match="relu4_1.*differ"):
        portrait.gain_targets(a, {"relu4_1": jnp.ones((1, 4, 5, 8))},
                              ["relu4_1"])


def test_nn_field_self_is_identity_and_recovers_shift():
    feat = np.random.default_rng(0).normal(size=(12, 10, 16))
    np.testing.assert_array_equal(portrait.nn_field(feat, feat, 3),
                                  _grid(12, 10).astype(np.int32))
    np.testing.assert_array_equal(portrait.nn_field(feat[None], feat, 1),
                                  _grid(12, 10).astype(np.int32))
    # src[p + (2, -1)] == feat[p] -> field = p + (2, -1) wherever the 3x3
    # patch around p + (2, -1) does not wrap around (rows 1..8, cols 2..8).
    src = np.roll(feat, (2, -1), axis=(0, 1))
    disp = portrait.nn_field(src, feat, 3) - _grid(12, 10)
    np.testing.assert_array_equal(disp[1:9, 2:9], np.broadcast_to(
        [2, -1], disp[1:9, 2:9].shape))
    with pytest.raises(ValueError, match="odd"):
        portrait.nn_field(feat, feat, 2)


def test_nn_field_chunked_matches_unchunked(monkeypatch):
    rng = np.random.default_rng(1)
    src, dst = rng.normal(size=(9, 7, 8)), rng.normal(size=(11, 10, 8))
    whole = portrait.nn_field(src, dst, 3)
    assert whole.shape == (11, 10, 2)
    # Room for a band of 3 destination rows (+2 padding rows) at a time.
    monkeypatch.setattr(portrait, "_MAX_CHUNK_ENTRIES", 5 * 12 * 11 * 9)
    np.testing.assert_array_equal(portrait.nn_field(src, dst, 3), whole)


def test_field_to_flow_constant_displacement():
    field = (_grid(6, 5) + [1, -2]).astype(np.int32)
    flow = portrait.field_to_flow(field, (24, 20), 4)
    np.testing.assert_allclose(flow, _grid(24, 20) + [4, -8], atol=1e-4)
    # An isolated wrong match is removed by the median smoothing.
    field[3, 2] += [3, 3]
    flow = portrait.field_to_flow(field, (24, 20), 4, smooth=3)
    np.testing.assert_allclose(flow, _grid(24, 20) + [4, -8], atol=1e-4)


def test_warp_bilinear_and_clamped():
    img = np.arange(12, dtype=np.float32).reshape(3, 4)
    coords = np.array([[[0.5, 0.5], [1.0, 2.5], [-5.0, 10.0]]], np.float32)
    out = portrait.warp(img, coords)
    np.testing.assert_allclose(out, [[2.5, 6.5, 3.0]])


def test_align_style_recovers_shift(features_fn):
    n, (dy, dx) = 96, (8, -8)
    original = _smooth_image(n, seed=2)
    # shifted[p + (dy, dx)] == original[p]: aligning the shifted copy to the
    # original must sample it at p + (dy, dx).
    shifted = np.roll(original, (dy, dx), axis=(0, 1))
    aligned, info = portrait.align_style(shifted, original, features_fn,
                                         layer="relu3_1")
    assert aligned.shape == original.shape
    assert info["stride"] == (4, 4) and info["field"].shape == (24, 24, 2)
    inner = np.s_[16:-16, 16:-16]
    disp = (info["flow"] - _grid(n, n))[inner].mean(axis=(0, 1))
    np.testing.assert_allclose(disp, [dy, dx], atol=2.0)
    mse_before = ((shifted - original)[inner] ** 2).mean()
    mse_after = ((aligned - original)[inner] ** 2).mean()
    assert mse_after < 0.1 * mse_before, (mse_after, mse_before)


def test_align_style_resizes_style(features_fn):
    content = _smooth_image(64, seed=3)
    style = _smooth_image(80, seed=4)[:, :72]
    aligned, info = portrait.align_style(style, content, features_fn,
                                         layer="relu3_1")
    assert aligned.shape == (64, 64, 3) and info["flow"].shape == (64, 64, 2)
    assert 0.0 <= aligned.min() and aligned.max() <= 255.0


def _disc(hw, centre, radius):
    yx = _grid(*hw)
    return (np.linalg.norm(yx - centre, axis=-1) <= radius).astype(np.float32)


def test_align_with_masks_overlaps_content_face():
    content_mask = _disc((80, 80), (44, 30), 18)
    style_mask = _disc((60, 70), (20, 45), 9)
    style_rgb = np.random.default_rng(0).uniform(0, 255, (60, 70, 3))
    aligned = portrait.align_with_masks(style_rgb, np.zeros((80, 80, 3)),
                                        style_mask, content_mask)
    assert aligned.shape == (80, 80, 3)
    warped = portrait.align_with_masks(style_mask, content_mask,
                                       style_mask, content_mask) > 0.5
    target = content_mask > 0.5
    iou = (warped & target).sum() / (warped | target).sum()
    assert iou > 0.9, iou
    with pytest.raises(ValueError, match="non-empty"):
        portrait.align_with_masks(style_rgb, content_mask,
                                  style_mask, np.zeros((80, 80)))


def test_align_with_flow(tmp_path):
    img = _smooth_image(32, seed=5)
    identity = _grid(32, 32)
    np.testing.assert_allclose(portrait.align_with_flow(img, identity,
                                                        (32, 32)),
                               img, atol=1e-4)
    path = tmp_path / "flow.npy"
    np.save(path, identity + [0, 1])
    out = portrait.align_with_flow(img, str(path), (32, 32))
    np.testing.assert_allclose(out[:, :-1], img[:, 1:], atol=1e-4)
    with pytest.raises(ValueError, match="shape"):
        portrait.align_with_flow(img, identity[..., :1], (32, 32))
    with pytest.raises(ValueError, match="shape"):
        portrait.align_with_flow(img, identity, (32, 30))
    identity[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        portrait.align_with_flow(img, identity, (32, 32))


def test_align_methods_listed():
    assert portrait.ALIGN_METHODS == ("none", "features", "masks", "flow")
