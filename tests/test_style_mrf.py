"""MRF patch loss (nst_jax.style.mrf): patch layout against a naive double
loop, loss and gradient against numpy references with the match held
fixed, scale-invariant matching, jit and vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.style import mrf


def _naive_patches(f_HxWxC, stride=1):
    """Explicit loops: rows row-major over positions, (dy, dx, c) inside."""
    h, w, _ = f_HxWxC.shape
    rows = []
    for y in range(0, h - 2, stride):
        for x in range(0, w - 2, stride):
            rows.append([f_HxWxC[y + dy, x + dx, c]
                         for dy in range(3) for dx in range(3)
                         for c in range(f_HxWxC.shape[2])])
    return np.asarray(rows, np.float64)


def _naive_match(p_img, p_sty):
    """Nearest style patch of each image patch by cosine, and the gap
    between its score and the runner-up's (the match's margin)."""
    nn, gaps = [], []
    for p in p_img:
        cos = [float(p @ q) / max(np.linalg.norm(p), 1e-8)
               / max(np.linalg.norm(q), 1e-8) for q in p_sty]
        order = np.argsort(cos)[::-1]
        nn.append(int(order[0]))
        gaps.append(cos[order[0]] - cos[order[1]])
    return np.asarray(nn), np.asarray(gaps)


def _naive_loss(f_HxWxC, s_HxWxC, nn=None):
    p_img = _naive_patches(f_HxWxC)
    p_sty = _naive_patches(s_HxWxC)
    if nn is None:
        nn, _ = _naive_match(p_img, p_sty)
    total = 0.0
    for i, j in enumerate(nn):
        total += float(np.sum((p_img[i] - p_sty[j]) ** 2))
    return total / len(p_img) / p_img.shape[1], nn


def _naive_grad(f_HxWxC, s_HxWxC, nn):
    """2 (P - matched) / (Ni * 9C), each element summed back onto the map
    position it was read from."""
    h, w, c = f_HxWxC.shape
    p_img = _naive_patches(f_HxWxC)
    p_sty = _naive_patches(s_HxWxC)
    ni, d = p_img.shape
    g = np.zeros((h, w, c))
    i = 0
    for y in range(h - 2):
        for x in range(w - 2):
            dp = 2.0 * (p_img[i] - p_sty[nn[i]]) / (ni * d)
            for dy in range(3):
                for dx in range(3):
                    k = (dy * 3 + dx) * c
                    g[y + dy, x + dx] += dp[k:k + c]
            i += 1
    return g


def _feats(seed, h=7, w=6, c=4):
    return np.random.default_rng(seed).normal(size=(1, h, w, c)).astype(
        np.float32)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("hwc", [(7, 6, 3), (5, 8, 5), (3, 3, 4)])
def test_patches_match_naive_loop(stride, hwc):
    f = _feats(0, *hwc)
    p = np.asarray(mrf.patches(jnp.asarray(f), stride))
    np.testing.assert_array_equal(p, _naive_patches(f[0], stride))
    assert mrf.count(hwc[0], hwc[1], stride) == p.shape[0]


def test_count_and_small_maps():
    assert mrf.count(2, 9) == 0 and mrf.count(9, 2) == 0
    assert mrf.count(3, 3) == 1 and mrf.count(7, 6, 2) == 3 * 2
    with pytest.raises(ValueError, match="smaller than"):
        mrf.patches(jnp.zeros((1, 2, 5, 3)))
    t = mrf.target(jnp.asarray(_feats(1, 5, 5, 3)), (2, 5))
    with pytest.raises(ValueError, match="smaller than"):
        mrf.loss(jnp.zeros((1, 2, 5, 3)), t)


def test_target_unit_rows():
    s = jnp.asarray(_feats(2)).at[0, :3, :3].set(0.0)  # one all-zero patch
    t = mrf.target(s, (7, 6))
    norms = np.linalg.norm(np.asarray(t["unit"]), axis=1)
    np.testing.assert_allclose(norms[1:], 1.0, rtol=1e-5)
    assert norms[0] == 0.0 and np.all(np.isfinite(np.asarray(t["unit"])))


def test_loss_matches_naive_reference():
    f, s = _feats(3), _feats(4, 8, 7, 4)
    got = float(mrf.loss(jnp.asarray(f), mrf.target(jnp.asarray(s),
                                                    (7, 6))))
    want, _ = _naive_loss(f[0].astype(np.float64), s[0].astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_gradient_matches_scatter_and_finite_differences():
    # Image = style + noise: each image patch's match is its own counterpart
    # by a clear margin, so a small perturbation cannot flip it.
    s = _feats(5)
    f = s + 0.3 * _feats(6)
    p_img, p_sty = _naive_patches(f[0]), _naive_patches(s[0])
    nn, gaps = _naive_match(p_img, p_sty)
    assert gaps.min() > 0.05
    t = mrf.target(jnp.asarray(s), (7, 6))
    g = np.asarray(jax.grad(mrf.loss)(jnp.asarray(f), t))[0]
    np.testing.assert_allclose(g, _naive_grad(f[0].astype(np.float64),
                                              s[0].astype(np.float64), nn),
                               rtol=1e-4, atol=1e-7)
    # With the match fixed the loss is quadratic: central differences are
    # exact up to float32 rounding.
    eps = 1e-2
    for y, x, c in [(0, 0, 0), (3, 2, 1), (6, 5, 3), (2, 4, 2)]:
        fp, fm = f.copy(), f.copy()
        fp[0, y, x, c] += eps
        fm[0, y, x, c] -= eps
        assert np.array_equal(_naive_match(_naive_patches(fp[0]), p_sty)[0],
                              nn)
        fd = (float(mrf.loss(jnp.asarray(fp), t))
              - float(mrf.loss(jnp.asarray(fm), t))) / (2 * eps)
        np.testing.assert_allclose(fd, g[y, x, c], rtol=2e-2, atol=1e-5)


def test_identity_zero_and_difference_positive():
    s = jnp.asarray(_feats(7))
    t = mrf.target(s, (7, 6))
    assert abs(float(mrf.loss(s, t))) < 1e-10
    assert float(mrf.loss(s + 0.5 * jnp.asarray(_feats(8)), t)) > 1e-3


def test_match_ignores_scale():
    s = _feats(9)
    t = mrf.target(jnp.asarray(s), (7, 6))
    # Every image patch is k times a style patch: matched to that one by
    # cosine, so the loss is (k - 1)^2 mean |P|^2 / 9C. (At k = 0.1 the
    # Euclidean nearest is another patch for 11 of the 20.)
    p = _naive_patches(s[0])
    for k in (0.1, 2.0):
        want = (k - 1) ** 2 * np.mean(np.sum(p ** 2, axis=1)) / p.shape[1]
        np.testing.assert_allclose(float(mrf.loss(jnp.asarray(k * s), t)),
                                   want, rtol=1e-5)
    # Scaling any image by a positive constant keeps every match.
    f = _feats(10)
    _, nn = _naive_loss(f[0].astype(np.float64), s[0].astype(np.float64))
    for k in (0.1, 3.0):
        want, _ = _naive_loss(k * f[0].astype(np.float64),
                              s[0].astype(np.float64), nn)
        np.testing.assert_allclose(float(mrf.loss(jnp.asarray(k * f), t)),
                                   want, rtol=1e-5)


def test_jit_and_vmap():
    t = mrf.target(jnp.asarray(_feats(11)), (7, 6))
    fs = jnp.asarray(np.stack([_feats(12 + i) for i in range(3)]))
    one = [float(mrf.loss(fs[i], t)) for i in range(3)]
    np.testing.assert_allclose(jax.jit(mrf.loss)(fs[0], t), one[0],
                               rtol=1e-6)
    batched = jax.jit(jax.vmap(mrf.loss, in_axes=(0, None)))(fs, t)
    assert batched.shape == (3,) and batched.dtype == jnp.float32
    np.testing.assert_allclose(batched, one, rtol=1e-6)
    grads = jax.vmap(jax.grad(mrf.loss), in_axes=(0, None))(fs, t)
    np.testing.assert_allclose(grads[1], jax.grad(mrf.loss)(fs[1], t),
                               rtol=1e-6, atol=1e-8)
    pb = jax.vmap(mrf.patches)(fs)
    assert pb.shape == (3, mrf.count(7, 6), 36)
