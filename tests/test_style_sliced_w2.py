"""Sliced Wasserstein style statistic against naive numpy references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.style import sliced_w2


def _feats(seed, h=6, w=5, c=6):
    return np.random.RandomState(seed).randn(1, h, w, c).astype(np.float32)


def _np_resample(sorted_m, n):
    # Order statistic i sits at level (i + 0.5) / m; read levels
    # (j + 0.5) / n, holding the end values outside [0.5/m, 1 - 0.5/m].
    m = len(sorted_m)
    return np.interp((np.arange(n) + 0.5) / n, (np.arange(m) + 0.5) / m,
                     sorted_m)


def _np_loss(feats, style, dirs):
    f = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    s = style.reshape(-1, style.shape[-1]).astype(np.float64)
    dirs = np.asarray(dirs, np.float64)
    p, k = f.shape[0], dirs.shape[1]
    total = 0.0
    for j in range(k):
        a = np.sort(f @ dirs[:, j])
        b = _np_resample(np.sort(s @ dirs[:, j]), p)
        total += np.sum((a - b) ** 2)
    return total / (p * k)


def _np_grad(feats, style, dirs):
    # d/dproj of each direction's term is 2 (sorted - target) / (P K),
    # put back at each sample's rank; then chain through proj = F @ dirs.
    f = feats.reshape(-1, feats.shape[-1]).astype(np.float64)
    s = style.reshape(-1, style.shape[-1]).astype(np.float64)
    dirs = np.asarray(dirs, np.float64)
    p, k = f.shape[0], dirs.shape[1]
    g_proj = np.zeros((p, k))
    for j in range(k):
        proj = f @ dirs[:, j]
        order = np.argsort(proj)
        b = _np_resample(np.sort(s @ dirs[:, j]), p)
        g_proj[order, j] = 2.0 * (proj[order] - b) / (p * k)
    return (g_proj @ dirs.T).reshape(feats.shape)


@pytest.mark.parametrize("style_hw,n_proj", [
    ((6, 5), 0),    # same position count: no resampling
    ((7, 6), 9),    # more style positions than image positions
    ((3, 4), 5),    # fewer: quantiles interpolated and clamped at the ends
])
def test_value_matches_numpy(style_hw, n_proj):
    feats, style = _feats(0), _feats(1, *style_hw)
    t = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(0), n_proj)
    assert t["sorted"].shape == (30, n_proj or 6)
    np.testing.assert_allclose(sliced_w2.loss(feats, t),
                               _np_loss(feats, style, t["dirs"]), rtol=1e-5)


def test_target_sorted_matches_numpy():
    style = _feats(2, 7, 6)
    t = sliced_w2.target(style, (4, 5), jax.random.PRNGKey(1), 3)
    proj = style.reshape(42, 6).astype(np.float64) @ np.asarray(t["dirs"])
    want = np.stack([_np_resample(np.sort(proj[:, j]), 20)
                     for j in range(3)], axis=1)
    np.testing.assert_allclose(t["sorted"], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("style_hw", [(6, 5), (7, 6)])
def test_grad_matches_numpy_and_finite_differences(style_hw):
    feats, style = _feats(3), _feats(4, *style_hw)
    t = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(2), 7)
    g = jax.grad(sliced_w2.loss)(jnp.asarray(feats), t)
    np.testing.assert_allclose(g, _np_grad(feats, style, t["dirs"]),
                               rtol=1e-4, atol=1e-7)

    eps = 1e-3
    dirs = np.asarray(t["dirs"])
    for idx in [(0, 0, 0, 0), (0, 2, 3, 4), (0, 5, 4, 1)]:
        fd = []
        for sign in (1, -1):
            x = feats.copy()
            x[idx] += sign * eps
            # Piecewise quadratic: central differences are exact as long as
            # no two projections swap ranks within the step.
            ranks = np.argsort(x.reshape(30, 6) @ dirs, axis=0)
            assert np.array_equal(
                ranks, np.argsort(feats.reshape(30, 6) @ dirs, axis=0))
            fd.append(float(sliced_w2.loss(x, t)))
        np.testing.assert_allclose((fd[0] - fd[1]) / (2 * eps), g[idx],
                                   rtol=2e-2, atol=2e-5)


def test_zero_for_style_itself_positive_otherwise():
    style = _feats(5)
    t = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(3))
    assert float(sliced_w2.loss(style, t)) == 0.0
    assert float(sliced_w2.loss(_feats(6), t)) > 1e-3


def test_invariant_to_permuting_positions():
    feats, style = _feats(7), _feats(8, 4, 4)
    t = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(4), 10)
    perm = np.random.RandomState(0).permutation(30)
    shuffled = feats.reshape(30, 6)[perm].reshape(1, 6, 5, 6)
    np.testing.assert_allclose(sliced_w2.loss(shuffled, t),
                               sliced_w2.loss(feats, t), rtol=1e-6)


def test_same_key_reproduces_bitwise_different_key_differs():
    feats, style = _feats(9), _feats(10)
    t1 = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(5), 8)
    t2 = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(5), 8)
    t3 = sliced_w2.target(style, (6, 5), jax.random.PRNGKey(6), 8)
    assert np.array_equal(t1["dirs"], t2["dirs"])
    assert np.array_equal(t1["sorted"], t2["sorted"])
    assert (np.asarray(sliced_w2.loss(feats, t1)).tobytes()
            == np.asarray(sliced_w2.loss(feats, t2)).tobytes())
    assert not np.allclose(t1["dirs"], t3["dirs"])


@pytest.mark.parametrize("c,k,want_k", [(4, 0, 4), (8, 0, 8), (5, 12, 12)])
def test_directions_unit_columns(c, k, want_k):
    d = sliced_w2.directions(jax.random.PRNGKey(7), c, k or c)
    assert d.shape == (c, want_k) and d.dtype == jnp.float32
    np.testing.assert_allclose(np.linalg.norm(d, axis=0), 1.0, rtol=1e-6)
    t = sliced_w2.target(_feats(11, 3, 3, c), (2, 2), jax.random.PRNGKey(7),
                         k)
    assert t["dirs"].shape == (c, want_k)
    assert t["sorted"].shape == (4, want_k)


def test_position_count_mismatch_raises():
    t = sliced_w2.target(_feats(12), (6, 5), jax.random.PRNGKey(8))
    with pytest.raises(ValueError, match="positions"):
        sliced_w2.loss(_feats(13, 5, 5), t)


def test_jit_and_vmap():
    style = _feats(14, 7, 6)
    key = jax.random.PRNGKey(9)
    t = sliced_w2.target(style, (6, 5), key, 5)
    tj = jax.jit(sliced_w2.target, static_argnums=(1, 3))(style, (6, 5),
                                                          key, 5)
    np.testing.assert_allclose(tj["sorted"], t["sorted"], rtol=1e-6,
                               atol=1e-6)

    batch = np.stack([_feats(s) for s in (15, 16, 17)])   # (3, 1, 6, 5, 6)
    want = np.array([sliced_w2.loss(f, t) for f in batch])
    got = jax.jit(jax.vmap(sliced_w2.loss, in_axes=(0, None)))(batch, t)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    grads = jax.vmap(jax.grad(sliced_w2.loss), in_axes=(0, None))(batch, t)
    np.testing.assert_allclose(grads[1], jax.grad(sliced_w2.loss)(batch[1],
                                                                    t),
                               rtol=1e-5, atol=1e-8)
