"""Coarse-to-fine PatchMatch: exact on identity and shifts, close on a
smooth non-rigid warp, low confidence where content has no match, compiled
once per shape, deterministic for a seed."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.portrait import alignment, nnf_search, patchmatch
from nst_jax.vgg import vgg19

_LAYERS = ("relu4_1", "relu3_1", "relu2_1")


def _grid(h, w):
    return np.stack(np.mgrid[:h, :w], axis=-1)


def _pool2(feat):
    h, w = feat.shape[0] // 2, feat.shape[1] // 2
    return feat[:2 * h, :2 * w].reshape(h, 2, w, 2, -1).mean(axis=(1, 3))


def _pyramid(feat, levels=3):
    """Feature maps coarse to fine, each 2x2-average pooled from the next."""
    maps = [np.asarray(feat, np.float32)]
    for _ in range(levels - 1):
        maps.append(_pool2(maps[-1]))
    return maps[::-1]


def _texture(n, seed, cell=5.0):
    """(n, n, 3) smooth random colour texture in 0..255."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(int(n / cell) + 4,) * 2 + (3,))
    yx = _grid(n, n) / cell + 1.0
    img = alignment.warp(coarse, yx)
    return (img - img.min()) / (img.max() - img.min()) * 255.0


@pytest.fixture(scope="module")
def features_fn():
    # He-initialised like vgg19.random_params, but drawn by NumPy and only
    # up to relu4_1: random_params draws all 20M weights with jax.random,
    # which takes longer on a CPU than the rest of this file.
    rng = np.random.default_rng(0)
    params = {}
    for name, (c_in, c_out) in vgg19.CONV_CHANNELS.items():
        std = (2.0 / (9 * c_in)) ** 0.5
        params[name] = {
            "kernel": (std * rng.standard_normal((3, 3, c_in, c_out))
                       ).astype(np.float32),
            "bias": np.zeros(c_out, np.float32)}
        if name == "conv4_1":
            break
    return lambda rgb, layers: vgg19.features(params, rgb, layers)


# Tests on plain feature maps share one shape, (32, 24, 8) pooled twice,
# so each level is compiled once for all of them.

def test_self_match_is_identity():
    feats = _pyramid(np.random.default_rng(0).normal(size=(32, 24, 8)))
    for seed in (0, 1):
        field = np.asarray(patchmatch.nnf(feats, feats, seed=seed))
        np.testing.assert_array_equal(field, _grid(32, 24))


def test_shifted_crop_is_recovered_exactly_in_the_interior():
    big = np.random.default_rng(1).normal(size=(48, 48, 8))
    # Offsets that are multiples of 4 keep every pooled level a crop too.
    off = np.array([8, -4])
    src, dst = big[:32, 8:32], big[8:40, 4:28]
    field = np.asarray(patchmatch.nnf(_pyramid(src), _pyramid(dst)))
    disp = field - _grid(32, 24)
    # Cells whose source lies inside src; the outer ring sees edge padding
    # in one map but real neighbours in the other.
    np.testing.assert_array_equal(disp[1:23, 5:23],
                                  np.broadcast_to(off, (22, 18, 2)))


def test_smooth_warp_is_recovered_better_than_coarse_exhaustive_nn(
        features_fn):
    n, amp, period = 128, 5.0, 64.0
    src = _texture(n, seed=2)
    yx = _grid(n, n).astype(np.float32)
    # dst pixel p shows src pixel p + u(p): a sinusoidal non-rigid warp.
    u = amp * np.stack([np.sin(2 * np.pi * yx[..., 1] / period),
                        np.sin(2 * np.pi * yx[..., 0] / period)], axis=-1)
    dst = alignment.warp(src, yx + u)
    f_src, f_dst = features_fn(src, _LAYERS), features_fn(dst, _LAYERS)
    field = np.asarray(patchmatch.nnf([f_src[l] for l in _LAYERS],
                                      [f_dst[l] for l in _LAYERS]))
    # relu2_1 cell c is centred on pixel 2c + 0.5: its true source cell.
    cells = _grid(n // 2, n // 2)
    centres = (2 * cells + 0.5).astype(np.float32)
    truth = (centres + alignment.warp(u, centres) - 0.5) / 2
    inner = (slice(4, -4), slice(4, -4))
    err = np.abs(field - truth).max(axis=-1)[inner]
    # The baseline: exhaustive NN at the coarsest layer, scaled to relu2_1.
    coarse = alignment.nn_field(f_src["relu4_1"], f_dst["relu4_1"], 3)
    base = coarse[cells[..., 0] // 4, cells[..., 1] // 4] * 4 + cells % 4
    base_err = np.abs(base - truth).max(axis=-1)[inner]
    # Measured: 99.6% within a cell (mean error 0.41) against 4.6% (2.1).
    assert (err <= 1.0).mean() > 0.9
    assert (err <= 1.0).mean() > (base_err <= 1.0).mean() + 0.5
    assert err.mean() < 0.5 * base_err.mean()


def test_unmatched_region_gets_low_confidence(features_fn):
    style = _texture(128, seed=3)
    content = style.copy()
    # A patch of unrelated texture: present in the content only.
    content[40:88, 48:96] = _texture(48, seed=4, cell=3.0)
    flow, conf = patchmatch.correspondence(style, content, features_fn,
                                           layers=_LAYERS, size=None)
    assert flow.shape == (128, 128, 2) and conf.shape == (128, 128)
    assert flow.dtype == conf.dtype == np.float32
    assert conf.min() >= 0.0 and conf.max() <= 1.0
    pasted = conf[48:80, 56:88].mean()
    away = np.ones_like(conf, bool)
    away[24:104, 32:112] = False
    assert pasted < 0.3, pasted
    assert conf[away].mean() > 0.8, conf[away].mean()
    # Where it matches, the flow is the identity it should be.
    near = np.abs(flow - _grid(128, 128)).max(axis=-1)
    assert np.median(near[away]) < 1.0


def test_upsampled_starts_keep_a_shift_and_interpolate_a_ramp():
    """The five starting fields of a finer level (one bilinear, four
    nearest coarse cells), read with the portrait's shared sampler."""
    hc, wc = 6, 5
    grid = _grid(hc, wc)
    shift = (grid + [2, 1]).astype(np.int32)
    starts = np.asarray(nnf_search.upsample_field(
        jnp.asarray(shift), (12, 10), (20, 16), (2, 2, 2, 2)))
    assert starts.shape == (5, 12, 10, 2) and starts.dtype == np.int32
    want = np.clip(_grid(12, 10) + [4, 2], 0, [19, 15])
    for s in starts:
        np.testing.assert_array_equal(s, want)
    # A displacement growing one cell per coarse column: the bilinear
    # start follows the ramp between coarse cells (fine cell x sits at
    # coarse x / 2 - 0.25) where the nearest ones step.
    ramp = grid.copy()
    ramp[..., 0] += grid[..., 1]
    starts = np.asarray(nnf_search.upsample_field(
        jnp.asarray(ramp.astype(np.int32)), (12, 10), (40, 40), (2, 2, 2, 2)))
    fine = _grid(12, 10)
    at = np.clip((fine[..., 1] + 0.5) / 2 - 0.5, 0, wc - 1)
    np.testing.assert_array_equal(
        starts[0][..., 0], np.clip(np.round(fine[..., 0] + 2 * at), 0, 39))
    np.testing.assert_array_equal(starts[0][..., 1], fine[..., 1])
    assert (starts[0] != starts[1]).any()


def test_same_shapes_are_not_traced_again(monkeypatch):
    traces = []
    real = nnf_search.patch_distance
    monkeypatch.setattr(nnf_search, "patch_distance",
                        lambda *a: traces.append(1) or real(*a))
    rng = np.random.default_rng(5)
    # Shapes no other test uses, so the first call must trace.
    counts = []
    for _ in range(3):
        src = _pyramid(rng.normal(size=(20, 28, 4)))
        dst = _pyramid(rng.normal(size=(24, 20, 4)))
        jax.block_until_ready(patchmatch.nnf(src, dst, iterations=2))
        counts.append(len(traces))
    assert counts[0] > 0
    assert counts[1] == counts[2] == counts[0]


def test_anchored_search_stays_near_the_identity():
    rng = np.random.default_rng(7)
    big = rng.normal(size=(40, 32, 8))
    # A 4-cell shift (1 cell at the coarsest level) is found from the
    # identity start; unrelated maps move no match further than the
    # windows allow (FINE_WINDOW per level, doubling down the levels).
    src, dst = big[:32, 4:28], big[4:36, 4:28]
    field = np.asarray(patchmatch.nnf(_pyramid(src), _pyramid(dst),
                                      anchored=True))
    disp = field - _grid(32, 24)
    np.testing.assert_array_equal(disp[2:26, 2:22],
                                  np.broadcast_to([4, 0], (24, 20, 2)))
    other = _pyramid(rng.normal(size=(32, 24, 8)))
    field = np.asarray(patchmatch.nnf(other, _pyramid(dst), anchored=True))
    reach = patchmatch.FINE_WINDOW * (4 + 2 + 1) + 3
    assert np.abs(field - _grid(32, 24)).max() <= reach


def test_deterministic_for_a_seed_and_seed_dependent():
    rng = np.random.default_rng(6)
    # Unrelated maps: no exact matches, so the random choices show.
    src = _pyramid(rng.normal(size=(32, 24, 8)))
    dst = _pyramid(rng.normal(size=(32, 24, 8)))
    a = np.asarray(patchmatch.nnf(src, dst, seed=3))
    b = np.asarray(patchmatch.nnf(src, dst, seed=3))
    c = np.asarray(patchmatch.nnf(src, dst, seed=4))
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()


def test_rejects_bad_arguments():
    feats = _pyramid(np.zeros((8, 8, 2)), levels=2)
    with pytest.raises(ValueError, match="odd"):
        patchmatch.nnf(feats, feats, patch=2)
    with pytest.raises(ValueError, match="one per level"):
        patchmatch.nnf(feats, feats, patch=(3,))
    with pytest.raises(ValueError, match="number of source"):
        patchmatch.nnf(feats, feats[:1])
    with pytest.raises(ValueError, match="channel"):
        patchmatch.nnf(feats, [f[..., :1] for f in feats])
