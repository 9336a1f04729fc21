"""Gaussian 2-Wasserstein style statistic against a float64 numpy reference
(nst_jax.style.gaussian_w2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.style import gaussian_w2 as w2


def _feats(seed, h=6, w=5, c=5, shift=0.0):
    # Correlated channels, well conditioned: a rotation and scales in
    # [0.5, 2].
    rng = np.random.RandomState(seed)
    q, _ = np.linalg.qr(rng.randn(c, c))
    mix = q * rng.uniform(0.5, 2.0, c)
    return (rng.randn(1, h, w, c) @ mix + shift).astype(np.float32)


def _relu_feats(seed, h, w, c):
    # Non-negative, correlated channels, like a VGG relu map.
    rng = np.random.RandomState(seed)
    x = rng.randn(1, h, w, c) @ (rng.randn(c, c) / np.sqrt(c)) + 0.3
    return np.maximum(x, 0.0).astype(np.float32)


def _psd_sqrt(m):
    lam, u = np.linalg.eigh((m + m.T) / 2)
    return (u * np.sqrt(np.clip(lam, 0, None))) @ u.T


def _ref(feats, style, weights=None):
    """W2^2 / C in float64 through np.cov and an eigh-based matrix square
    root: tr (S_s^1/2 S S_s^1/2)^1/2."""
    f = np.asarray(feats, np.float64).reshape(-1, feats.shape[-1])
    s = np.asarray(style, np.float64).reshape(-1, style.shape[-1])
    aw = None if weights is None else np.asarray(weights, np.float64).ravel()
    mu = np.average(f, axis=0, weights=aw)
    cov = np.cov(f, rowvar=False, bias=True, aweights=aw)
    mu_s, cov_s = s.mean(0), np.cov(s, rowvar=False, bias=True)
    r = _psd_sqrt(cov_s)
    cross = np.trace(_psd_sqrt(r @ cov @ r))
    val = (np.sum((mu - mu_s) ** 2) + np.trace(cov) + np.trace(cov_s)
           - 2 * cross)
    return val / f.shape[1]


def _weights(seed, h=6, w=5):
    return np.random.RandomState(seed).uniform(0, 1, (h, w)).astype(
        np.float32)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("c", [4, 8])
def test_value_matches_reference(weighted, c):
    f, s = _feats(0, c=c), _feats(1, h=7, w=4, c=c, shift=0.5)
    wts = _weights(2) if weighted else None
    tgt = w2.target(jnp.asarray(s), (6, 5))
    assert set(tgt) == {"mean", "cov_trace", "cov_sqrt"}
    s64 = s.reshape(-1, c).astype(np.float64)
    cov_s = np.cov(s64, rowvar=False, bias=True)
    np.testing.assert_allclose(tgt["mean"], s64.mean(0), rtol=1e-5,
                               atol=1e-5)
    np.testing.assert_allclose(tgt["cov_trace"], np.trace(cov_s), rtol=1e-5)
    np.testing.assert_allclose(tgt["cov_sqrt"] @ tgt["cov_sqrt"], cov_s,
                               rtol=1e-4, atol=1e-4)
    got = w2.loss(jnp.asarray(f), tgt,
                  None if wts is None else jnp.asarray(wts))
    assert got.dtype == jnp.float32 and got.shape == ()
    np.testing.assert_allclose(got, _ref(f, s, wts), rtol=1e-4)


@pytest.mark.parametrize("weighted", [False, True])
def test_grad_matches_finite_differences(weighted):
    f, s = _feats(3, c=4), _feats(4, c=4, shift=0.3)
    wts = _weights(5) if weighted else None
    tgt = w2.target(jnp.asarray(s), (6, 5))
    g = jax.grad(w2.loss)(jnp.asarray(f), tgt,
                          None if wts is None else jnp.asarray(wts))
    g = np.asarray(g, np.float64)
    h = 1e-5
    f64 = f.astype(np.float64)
    for idx in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 5, 4, 3), (0, 1, 2, 2)]:
        e = np.zeros_like(f64)
        e[idx] = h
        fd = (_ref(f64 + e, s, wts) - _ref(f64 - e, s, wts)) / (2 * h)
        np.testing.assert_allclose(g[idx], fd, rtol=1e-2, atol=1e-4)


@pytest.mark.parametrize("shape", [(7, 4), (4, 7)])
def test_nuclear_norm_value_and_grad_match_finite_differences(shape):
    rng = np.random.RandomState(6)
    x = rng.randn(*shape)

    def ref(a):
        return np.sum(np.linalg.svd(a, compute_uv=False))

    x32 = jnp.asarray(x, jnp.float32)
    np.testing.assert_allclose(w2.nuclear_norm(x32), ref(x), rtol=1e-5)
    got = np.asarray(jax.grad(w2.nuclear_norm)(x32), np.float64)
    assert got.shape == shape
    h = 1e-6
    for _ in range(4):
        d = rng.randn(*shape)
        fd = (ref(x + h * d) - ref(x - h * d)) / (2 * h)
        np.testing.assert_allclose(np.sum(got * d), fd, rtol=1e-4)


def test_nuclear_norm_grad_bounded_on_degenerate_matrices():
    rng = np.random.RandomState(7)
    rank1 = np.outer(rng.randn(6), rng.randn(3)).astype(np.float32)
    for m in [rank1, rank1.T, np.zeros((6, 3), np.float32),
              np.zeros((3, 6), np.float32)]:
        val, g = jax.value_and_grad(w2.nuclear_norm)(jnp.asarray(m))
        g = np.asarray(g, np.float64)
        assert np.isfinite(val) and np.all(np.isfinite(g))
        assert np.linalg.norm(g, 2) <= 1 + 1e-5
        # A subgradient G of the nuclear norm has <G, X> = ||X||_*.
        np.testing.assert_allclose(np.sum(g * m), val, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w2.nuclear_norm(jnp.asarray(rank1)),
                               np.linalg.norm(rank1), rtol=1e-6)


def test_self_distance_on_rank_deficient_maps():
    # 4 positions, 16 channels: both covariances have rank <= 3. The
    # eigendecomposition of A Sigma A gave 3e-4 to 7e-4 of the distance
    # between different maps here (and -6e-3 at 2x2x512), and a gradient
    # at the style itself 1.5e-5 of the one between different maps; the
    # SVD of the whitened samples gives ~1e-7 for both.
    for seed in range(3):
        f = jnp.asarray(_relu_feats(seed, 2, 2, 16))
        g = jnp.asarray(_relu_feats(seed + 10, 2, 2, 16))
        tgt_f, tgt_g = w2.target(f, (2, 2)), w2.target(g, (2, 2))
        same, grad_same = jax.value_and_grad(w2.loss)(f, tgt_f)
        apart, grad_apart = jax.value_and_grad(w2.loss)(f, tgt_g)
        assert float(apart) > 0
        assert abs(float(same)) < 1e-4 * float(apart)
        assert np.all(np.isfinite(grad_same))
        assert (np.linalg.norm(grad_same)
                < 1e-5 * np.linalg.norm(grad_apart))


def test_self_distance_on_ill_conditioned_full_rank_map():
    # cond(Sigma) > 5e3: A Sigma A's small eigenvalues were float32 noise
    # (2e-4 lambda_max in the distance); the singular values of X are not.
    rng = np.random.RandomState(10)
    mix = rng.randn(6, 6)
    f = (rng.randn(1, 6, 5, 6) @ mix).astype(np.float32)
    lam = np.linalg.eigvalsh(np.cov(f.reshape(30, 6), rowvar=False))
    assert lam[-1] / lam[0] > 5e3
    same = float(w2.loss(jnp.asarray(f), w2.target(jnp.asarray(f), (6, 5))))
    apart = float(w2.loss(jnp.asarray(f), w2.target(_feats(11, c=6), (6, 5))))
    assert abs(same) < 1e-5 * apart


def test_rank_deficient_feats_give_finite_grad():
    # 2x2 positions, 8 channels: both covariances are singular.
    f, s = _feats(8, h=2, w=2, c=8), _feats(9, h=2, w=2, c=8)
    g = jax.grad(w2.loss)(jnp.asarray(f), w2.target(jnp.asarray(s), (2, 2)))
    assert np.all(np.isfinite(g))


def test_properties():
    f, s = _feats(10, c=6), _feats(11, c=6, shift=0.2)
    tgt_s = w2.target(jnp.asarray(s), (6, 5))
    apart = float(w2.loss(jnp.asarray(f), tgt_s))
    assert apart > 0
    perm = np.random.RandomState(12).permutation(30)
    shuffled = f.reshape(30, 6)[perm].reshape(1, 6, 5, 6)
    np.testing.assert_allclose(w2.loss(jnp.asarray(shuffled), tgt_s), apart,
                               rtol=1e-5)
    np.testing.assert_allclose(w2.loss(jnp.asarray(f), tgt_s, jnp.ones((6, 5))),
                               apart, rtol=1e-6)


def test_binary_mask_selects_positions_and_zero_mask_is_finite():
    f, s = _feats(13, c=4), _feats(14, c=4)
    tgt = w2.target(jnp.asarray(s), (6, 5))
    mask = np.zeros((6, 5), np.float32)
    mask[1:5, 1:4] = 1.0
    sub = f[:, 1:5, 1:4]
    np.testing.assert_allclose(w2.loss(jnp.asarray(f), tgt, jnp.asarray(mask)),
                               w2.loss(jnp.asarray(sub), tgt), rtol=1e-5)
    zero = jnp.zeros((6, 5))
    val, g = jax.value_and_grad(w2.loss)(jnp.asarray(f), tgt, zero)
    assert np.isfinite(val) and np.all(np.isfinite(g))
    # Zero moments: the distance to the style's Gaussian from a point mass
    # at 0, and no pull on any position.
    want = (np.sum(np.asarray(tgt["mean"]) ** 2) + float(tgt["cov_trace"])) / 4
    np.testing.assert_allclose(val, want, rtol=1e-5)
    np.testing.assert_array_equal(g, 0.0)


def test_jit_and_vmap():
    s = _feats(15, c=5)
    tgt = w2.target(jnp.asarray(s), (6, 5))
    batch = np.concatenate([_feats(16 + i, c=5)[None] for i in range(3)])
    want = np.array([w2.loss(jnp.asarray(b), tgt) for b in batch])
    np.testing.assert_allclose(jax.jit(w2.loss)(jnp.asarray(batch[0]), tgt),
                               want[0], rtol=1e-5)
    vloss = jax.jit(jax.vmap(w2.loss, in_axes=(0, None)))
    np.testing.assert_allclose(vloss(jnp.asarray(batch), tgt), want,
                               rtol=1e-5)
    g = jax.jit(jax.grad(lambda x: jnp.sum(vloss(x, tgt))))(
        jnp.asarray(batch))
    g0 = jax.grad(w2.loss)(jnp.asarray(batch[0]), tgt)
    np.testing.assert_allclose(g[0], g0, rtol=1e-4, atol=1e-6)
    wts = jnp.asarray(_weights(20))
    wv = jax.vmap(w2.loss, in_axes=(0, None, None))(jnp.asarray(batch), tgt,
                                                    wts)
    np.testing.assert_allclose(wv[1], w2.loss(jnp.asarray(batch[1]), tgt, wts),
                               rtol=1e-5)
