"""The histogram statistic (nst_jax.style.histogram) against a plain numpy
reference, plus its properties, on tiny feature maps."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.style import histogram


def _feats(seed, h=6, w=5, c=4, scale=3.0):
    return jax.random.normal(jax.random.PRNGKey(seed), (1, h, w, c)) * scale


def _distinct(seed, h=6, w=5, c=4):
    """Values a whole unit apart within each channel: ranks are stable
    under small perturbations."""
    rng = np.random.default_rng(seed)
    cols = [rng.permutation(h * w) - h * w / 2 for _ in range(c)]
    return jnp.asarray(np.stack(cols, axis=1).reshape(1, h, w, c),
                       jnp.float32)


def _ref_quantiles(values, n):
    """Style values' quantile function at levels (j + 0.5) / n: order
    statistic i of m sits at level (i + 0.5) / m, linear in between,
    clamped to the extreme values outside them."""
    s = sorted(float(v) for v in values)
    m = len(s)
    out = []
    for j in range(n):
        x = (j + 0.5) / n * m - 0.5
        if x <= 0:
            out.append(s[0])
        elif x >= m - 1:
            out.append(s[-1])
        else:
            i = math.floor(x)
            t = x - i
            out.append(s[i] + t * (s[i + 1] - s[i]))
    return out


def _ref_matched(feats, style):
    f = np.asarray(feats, np.float64)
    st = np.asarray(style, np.float64)
    _, h, w, c = f.shape
    f_pc = f.reshape(h * w, c)
    s_pc = st.reshape(-1, c)
    out = np.empty_like(f_pc)
    for ch in range(c):
        q = _ref_quantiles(s_pc[:, ch], h * w)
        order = np.argsort(f_pc[:, ch], kind="stable")
        for rank, pos in enumerate(order):
            out[pos, ch] = q[rank]
    return out.reshape(1, h, w, c)


@pytest.mark.parametrize("style_hw,img_hw,c", [
    ((6, 5), (6, 5), 3),     # equal position counts
    ((4, 7), (6, 5), 4),     # style fewer positions than the image
    ((9, 8), (3, 5), 6),     # style more positions
    ((2, 2), (6, 5), 5),     # heavy upsampling: clamped ends
])
def test_matched_matches_numpy(style_hw, img_hw, c):
    style = _feats(1, *style_hw, c)
    feats = _feats(2, *img_hw, c)
    tg = histogram.target(style, img_hw)
    assert tg["sorted"].shape == (img_hw[0] * img_hw[1], c)
    got = histogram.matched(feats, tg)
    assert got.shape == (1, *img_hw, c)
    np.testing.assert_allclose(got, _ref_matched(feats, style),
                               rtol=1e-5, atol=1e-5)


def test_loss_and_grad_match_numpy():
    style = _feats(3, 7, 4, 4)
    feats = _feats(4)
    tg = histogram.target(style, (6, 5))
    ref_r = _ref_matched(feats, style)
    f = np.asarray(feats, np.float64)
    val, grad = jax.value_and_grad(histogram.loss)(feats, tg)
    assert val.dtype == jnp.float32 and val.shape == ()
    np.testing.assert_allclose(val, np.mean((f - ref_r) ** 2), rtol=1e-5)
    np.testing.assert_allclose(grad, 2 * (f - ref_r) / f.size,
                               rtol=1e-5, atol=1e-7)


def test_grad_matches_finite_differences():
    style = _feats(5, scale=10.0)
    feats = _distinct(6)
    tg = histogram.target(style, (6, 5))
    f_loss = jax.jit(histogram.loss)
    grad = jax.grad(histogram.loss)(feats, tg)
    eps = 0.05                       # values 1 apart: no rank flips
    for idx in [(0, 0, 0, 0), (0, 3, 2, 1), (0, 5, 4, 3)]:
        up = f_loss(feats.at[idx].add(eps), tg)
        down = f_loss(feats.at[idx].add(-eps), tg)
        fd = (float(up) - float(down)) / (2 * eps)
        np.testing.assert_allclose(grad[idx], fd, rtol=1e-3, atol=1e-5)


def test_matched_has_style_values_and_keeps_order():
    style = _feats(7)
    feats = _feats(8)
    tg = histogram.target(style, (6, 5))
    r_pc = np.asarray(histogram.matched(feats, tg)).reshape(30, 4)
    s_pc = np.asarray(style).reshape(30, 4)
    # Same counts: exactly the style's own values, per channel.
    np.testing.assert_array_equal(np.sort(r_pc, axis=0),
                                  np.sort(s_pc, axis=0))
    # Monotone: the image's order within each channel is kept.
    f_pc = np.asarray(feats).reshape(30, 4)
    for ch in range(4):
        order = np.argsort(f_pc[:, ch])
        assert np.all(np.diff(r_pc[order, ch]) >= 0)


def test_loss_zero_on_style_positive_otherwise():
    style = _feats(9)
    tg = histogram.target(style, (6, 5))
    assert float(histogram.loss(style, tg)) == pytest.approx(0.0, abs=1e-10)
    # Same values rearranged in space: still the same histogram.
    shuffled = jnp.flip(style, axis=(1, 2))
    assert float(histogram.loss(shuffled, tg)) == pytest.approx(0.0,
                                                                abs=1e-10)
    assert float(histogram.loss(_feats(10), tg)) > 1e-3
    assert float(histogram.loss(style * 1.1, tg)) > 1e-4


def test_permuting_positions_permutes_the_map():
    style = _feats(11, 5, 5, 3)
    feats = _feats(12, c=3)
    tg = histogram.target(style, (6, 5))
    perm = np.random.default_rng(0).permutation(30)
    shuf = feats.reshape(1, 30, 3)[:, perm].reshape(1, 6, 5, 3)
    np.testing.assert_allclose(histogram.loss(shuf, tg),
                               histogram.loss(feats, tg), rtol=1e-6)
    r = histogram.matched(feats, tg).reshape(1, 30, 3)[:, perm]
    np.testing.assert_array_equal(histogram.matched(shuf, tg),
                                  r.reshape(1, 6, 5, 3))


def test_ties_take_every_quantile_once():
    style = _feats(13, c=2)
    tg = histogram.target(style, (6, 5))
    r_pc = np.asarray(histogram.matched(jnp.zeros((1, 6, 5, 2)), tg))
    np.testing.assert_array_equal(np.sort(r_pc.reshape(30, 2), axis=0),
                                  tg["sorted"])


def test_mismatched_target_raises():
    tg = histogram.target(_feats(14), (4, 4))
    with pytest.raises(ValueError):
        histogram.matched(_feats(15), tg)


def test_jit_and_vmap():
    style = _feats(16, 4, 4, 3)
    tg = histogram.target(style, (6, 5))
    batch = jnp.stack([_feats(s, c=3) for s in (17, 18, 19)])  # 3x1x6x5x3
    loop_l = [histogram.loss(b, tg) for b in batch]
    loop_g = [jax.grad(histogram.loss)(b, tg) for b in batch]
    loop_m = [histogram.matched(b, tg) for b in batch]
    vm_l = jax.jit(jax.vmap(histogram.loss, in_axes=(0, None)))(batch, tg)
    vm_g = jax.jit(jax.vmap(jax.grad(histogram.loss), in_axes=(0, None)))(
        batch, tg)
    vm_m = jax.vmap(histogram.matched, in_axes=(0, None))(batch, tg)
    np.testing.assert_allclose(vm_l, np.stack(loop_l), rtol=1e-6)
    np.testing.assert_allclose(vm_g, np.stack(loop_g), rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(vm_m, np.stack(loop_m))
    # The target itself can be built under jit (out_hw static).
    tg_jit = jax.jit(histogram.target, static_argnums=1)(style, (6, 5))
    # (allclose: XLA may fuse the interpolation differently, 1 ulp apart)
    np.testing.assert_allclose(tg_jit["sorted"], tg["sorted"], rtol=1e-6)
