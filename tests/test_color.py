"""Tests for nst_jax.optimize.color: YIQ conversions and colour
preservation."""

import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.optimize import color


def _gaussian_image(rng, shape, mean, cov):
    """Pixels drawn from N(mean, cov), reshaped to ``shape + (3,)``."""
    n = int(np.prod(shape))
    pix = rng.multivariate_normal(mean, cov, size=n)
    return pix.reshape(tuple(shape) + (3,)).astype(np.float32)


def _stats(img):
    pix = np.asarray(img, np.float64).reshape(-1, 3)
    return pix.mean(axis=0), np.cov(pix, rowvar=False, bias=True)


def test_yiq_round_trip_numpy_and_jax():
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, (2, 7, 5, 3)).astype(np.float32)
    back = color.yiq_to_rgb(color.rgb_to_yiq(rgb))
    assert back.dtype == np.float32 and back.shape == rgb.shape
    assert np.abs(back - rgb).max() < 1e-3
    # The JAX path must give the same numbers and stay a JAX array.
    yiq_jax = color.rgb_to_yiq(jnp.asarray(rgb))
    assert isinstance(yiq_jax, jnp.ndarray)
    np.testing.assert_allclose(np.asarray(yiq_jax), color.rgb_to_yiq(rgb),
                               atol=1e-3)
    back_jax = color.yiq_to_rgb(yiq_jax)
    assert np.abs(np.asarray(back_jax) - rgb).max() < 1e-3


def test_luminance_of_grey_and_white():
    grey = np.full((4, 6, 3), 87.0, np.float32)
    np.testing.assert_allclose(color.luminance(grey), 87.0, atol=1e-4)
    assert color.luminance(grey).shape == (4, 6)
    white = np.full((1, 1, 3), 255.0, np.float32)
    assert abs(float(color.luminance(white)[0, 0]) - 255.0) < 1e-4
    # Grey has no chrominance.
    np.testing.assert_allclose(color.rgb_to_yiq(grey)[..., 1:], 0.0,
                               atol=1e-4)


def test_to_luminance_rgb_replicates_y():
    rng = np.random.default_rng(1)
    rgb = rng.uniform(0, 255, (5, 4, 3)).astype(np.float32)
    lum = color.to_luminance_rgb(rgb)
    assert lum.shape == rgb.shape
    for ch in range(3):
        np.testing.assert_allclose(lum[..., ch], color.luminance(rgb),
                                   rtol=1e-6)
    lum_jax = color.to_luminance_rgb(jnp.asarray(rgb))
    np.testing.assert_allclose(np.asarray(lum_jax), lum, atol=1e-3)


def test_recombine_keeps_output_y_and_content_chroma():
    rng = np.random.default_rng(2)
    # Mid-grey content with small colour offsets, and a grey output well
    # inside the range, so the recombination never needs clipping.
    base = rng.uniform(90, 160, (8, 9, 1))
    content = (base + rng.uniform(-12, 12, (8, 9, 3))).astype(np.float32)
    out_y = rng.uniform(70, 180, (8, 9, 1))
    output = np.repeat(out_y, 3, axis=-1).astype(np.float32)
    result = color.recombine_luminance(output, content)
    assert result.dtype == np.float32 and result.shape == content.shape
    assert result.min() > 0 and result.max() < 255  # no clipping happened
    yiq_r = color.rgb_to_yiq(result)
    yiq_c = color.rgb_to_yiq(content)
    np.testing.assert_allclose(yiq_r[..., 1:], yiq_c[..., 1:], atol=1e-3)
    np.testing.assert_allclose(yiq_r[..., 0], out_y[..., 0], atol=1e-3)


def test_recombine_clips_and_rejects_shape_mismatch():
    content = np.zeros((3, 3, 3), np.float32)
    content[..., 0] = 255.0  # saturated red: strong chroma
    output = np.full((3, 3, 3), 250.0, np.float32)
    result = color.recombine_luminance(output, content)
    assert result.min() >= 0.0 and result.max() <= 255.0
    with pytest.raises(ValueError, match="same shape"):
        color.recombine_luminance(output, np.zeros((4, 3, 3), np.float32))


def test_match_luminance_matches_content_mean_std():
    rng = np.random.default_rng(3)
    style = rng.uniform(100, 160, (20, 30, 3)).astype(np.float32)
    content = rng.uniform(60, 200, (16, 12, 3)).astype(np.float32)
    out = color.match_luminance(style, content)
    assert out.shape == style.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    y, yc = color.luminance(out), color.luminance(content)
    assert out.min() > 0 and out.max() < 255  # clipping did not interfere
    np.testing.assert_allclose(y.mean(), yc.mean(), rtol=1e-3)
    np.testing.assert_allclose(y.std(), yc.std(), rtol=1e-3)


def test_match_luminance_flat_style_is_finite():
    style = np.full((4, 4, 3), 30.0, np.float32)
    content = np.random.default_rng(4).uniform(0, 255, (4, 4, 3))
    out = color.match_luminance(style, content)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, color.luminance(content).mean(),
                               atol=1e-3)


@pytest.mark.parametrize("method", ["linear", "sym"])
def test_match_color_linear_matches_mean_and_covariance(method):
    rng = np.random.default_rng(5)
    # Correlated colour distributions that stay inside 0..255 before and
    # after the transform, so clipping does not bias the statistics.
    cov_s = np.array([[300.0, 120.0, -40.0], [120.0, 200.0, 30.0],
                      [-40.0, 30.0, 150.0]])
    cov_c = np.array([[150.0, -60.0, 50.0], [-60.0, 250.0, 80.0],
                      [50.0, 80.0, 220.0]])
    style = _gaussian_image(rng, (40, 30), [100.0, 150.0, 120.0], cov_s)
    content = _gaussian_image(rng, (24, 36), [140.0, 110.0, 130.0], cov_c)
    out = color.match_color(style, content, method=method)
    assert out.shape == style.shape and out.dtype == np.float32
    assert out.min() > 0 and out.max() < 255
    mu_o, cov_o = _stats(out)
    mu_c, cov_c_emp = _stats(content)
    np.testing.assert_allclose(mu_o, mu_c, rtol=1e-2)
    scale = np.abs(cov_c_emp).max()
    assert np.abs(cov_o - cov_c_emp).max() < 1e-2 * scale
    # The transform must actually change the style's colours.
    _, cov_style = _stats(style)
    assert np.abs(cov_style - cov_c_emp).max() > 0.2 * scale


def test_match_color_linear_and_sym_differ():
    rng = np.random.default_rng(6)
    cov = np.array([[200.0, 150.0, 0.0], [150.0, 200.0, 0.0],
                    [0.0, 0.0, 50.0]])
    style = _gaussian_image(rng, (20, 20), [128.0] * 3, cov)
    content = _gaussian_image(rng, (20, 20), [128.0] * 3, cov[::-1, ::-1])
    lin = color.match_color(style, content, "linear")
    sym = color.match_color(style, content, "sym")
    assert np.abs(lin - sym).max() > 1.0


def test_match_color_histogram_matches_quantiles():
    rng = np.random.default_rng(7)
    style = rng.uniform(0, 255, (30, 20, 3)).astype(np.float32)
    # Skewed content channels: a linear map could not reproduce these.
    content = np.stack([
        255 * rng.beta(0.5, 2.0, (16, 25)),
        255 * rng.beta(3.0, 1.0, (16, 25)),
        rng.choice([10.0, 200.0], (16, 25)),
    ], axis=-1).astype(np.float32)
    out = color.match_color(style, content, method="histogram")
    assert out.shape == style.shape and out.dtype == np.float32
    n_s, n_c = 30 * 20, 16 * 25
    q_s = (np.arange(n_s) + 0.5) / n_s
    q_c = (np.arange(n_c) + 0.5) / n_c
    for ch in range(3):
        want = np.interp(q_s, q_c, np.sort(content[..., ch].ravel()))
        np.testing.assert_allclose(np.sort(out[..., ch].ravel()), want,
                                   atol=1e-3)
        # Ranks are preserved: brighter style pixels stay brighter.
        s, o = style[..., ch].ravel(), out[..., ch].ravel()
        order = np.argsort(s)
        assert np.all(np.diff(o[order]) >= 0)


def test_match_color_histogram_same_size_is_exact():
    rng = np.random.default_rng(8)
    style = rng.uniform(0, 255, (10, 10, 3)).astype(np.float32)
    content = rng.uniform(0, 255, (10, 10, 3)).astype(np.float32)
    out = color.match_color(style, content, method="histogram")
    for ch in range(3):
        np.testing.assert_allclose(np.sort(out[..., ch].ravel()),
                                   np.sort(content[..., ch].ravel()),
                                   atol=1e-4)


def test_match_color_near_grey_style_stays_bounded():
    rng = np.random.default_rng(9)
    grey = rng.uniform(0, 255, (12, 12, 1))
    style = (grey + rng.normal(0, 0.3, (12, 12, 3))).astype(np.float32)
    content = rng.uniform(0, 255, (12, 12, 3)).astype(np.float32)
    for method in ("linear", "sym"):
        out = color.match_color(style, content, method=method)
        assert np.isfinite(out).all()
        assert out.min() >= 0 and out.max() <= 255


def test_match_color_invalid_method():
    img = np.zeros((2, 2, 3), np.float32)
    with pytest.raises(ValueError, match="linear, sym, histogram"):
        color.match_color(img, img, method="cholesky")
