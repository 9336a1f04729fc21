"""Properties of the pure loss functions (random VGG params, tiny images)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.optimize import losses
from nst_jax.vgg import gram, vgg19

SPEC = losses.LossSpec(("relu2_1",), ("relu1_1", "relu2_1"))


def _hp(n_styles=1, **kw):
    hp = {"content_weight": 1.0, "style_weight": 1e-2, "tv_weight": 1e-3,
          "content_layer_weights": jnp.ones(1),
          "style_layer_weights": jnp.ones(2),
          "style_blend": jnp.ones(n_styles)}
    hp.update(kw)
    return jax.tree_util.tree_map(jnp.asarray, hp)



def _img(seed, h=20, w=24):
    return jax.random.uniform(jax.random.PRNGKey(seed), (1, h, w, 3),
                              minval=-100, maxval=100)


def _targets(params, content, styles):
    f = vgg19.extract(params, content, SPEC.layers)
    grams = [vgg19.extract(params, s, SPEC.style_layers) for s in styles]
    return {"content": {l: f[l] for l in SPEC.content_layers},
            "style": {l: jnp.concatenate([losses.gram(g[l]) for g in grams])
                      for l in SPEC.style_layers}}


def test_gram_matches_definition():
    f = np.random.RandomState(0).randn(1, 5, 7, 4).astype(np.float32)
    flat = f.reshape(35, 4)
    np.testing.assert_allclose(losses.gram(f)[0], flat.T @ flat / 35,
                               rtol=1e-5)


def test_gram_and_style_loss_invariant_to_spatial_permutation(params):
    x = _img(1)
    feats = vgg19.extract(params, x, ("relu1_1",))["relu1_1"]
    perm = np.random.RandomState(0).permutation(20 * 24)
    shuffled = feats.reshape(1, -1, 64)[:, perm].reshape(feats.shape)
    np.testing.assert_allclose(losses.gram(shuffled), losses.gram(feats),
                               rtol=1e-5, atol=1e-3)
    target = {"relu1_1": losses.gram(vgg19.extract(
        params, _img(2), ("relu1_1",))["relu1_1"])}
    a = losses.style_loss({"relu1_1": feats}, target, ("relu1_1",),
                          jnp.ones(1), jnp.ones(1))[0]
    b = losses.style_loss({"relu1_1": shuffled}, target, ("relu1_1",),
                          jnp.ones(1), jnp.ones(1))[0]
    assert a > 0
    np.testing.assert_allclose(a, b, rtol=1e-4)


def test_content_gradient_zero_at_content_image(params):
    content = _img(3)
    t = _targets(params, content, [_img(4)])
    hp = _hp(style_weight=0.0, tv_weight=0.0)
    g = jax.grad(lambda x: losses.total_loss(x, params, t, hp, SPEC)[0])
    assert float(jnp.max(jnp.abs(g(content)))) == 0.0
    # ...and not zero elsewhere, so the assertion above can fail.
    assert float(jnp.max(jnp.abs(g(_img(5))))) > 0.0


def test_total_is_weighted_sum_and_reports_layers(params):
    t = _targets(params, _img(3), [_img(4), _img(6)])
    hp = _hp(n_styles=2)
    loss, aux = losses.total_loss(_img(7), params, t, hp, SPEC)
    expected = aux["content"] + 1e-2 * aux["style"] + 1e-3 * aux["tv"]
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    np.testing.assert_allclose(aux["style"], aux["style/relu1_1"]
                               + aux["style/relu2_1"], rtol=1e-5)
    assert set(aux) >= {"content/relu2_1", "style/relu1_1"}


def test_style_blend_selects_style(params):
    s1, s2 = _img(4), _img(6)
    t = _targets(params, _img(3), [s1, s2])
    only_first = _hp(n_styles=2, style_blend=jnp.array([1.0, 0.0]))
    feats = vgg19.extract(params, s1, SPEC.layers)
    _, per = losses.style_loss(feats, t["style"], SPEC.style_layers,
                               jnp.ones(2), only_first["style_blend"])
    np.testing.assert_allclose(per, 0.0, atol=1e-6)


def test_masked_gram_with_full_mask_is_gram():
    f = jnp.asarray(np.random.RandomState(1).rand(1, 6, 5, 3), jnp.float32)
    np.testing.assert_allclose(losses.masked_gram(f, jnp.ones((2, 6, 5))),
                               jnp.concatenate([losses.gram(f)] * 2),
                               rtol=1e-5)


def test_tv_zero_on_constant_positive_on_edges():
    assert float(losses.tv_loss(jnp.full((1, 8, 8, 3), 7.0))) == 0.0
    x = jnp.zeros((1, 8, 8, 3)).at[:, :, 4:].set(10.0)
    assert float(losses.tv_loss(x)) > 0


def test_jit_matches_eager(params):
    t = _targets(params, _img(3), [_img(4)])
    hp = _hp()
    f = lambda x: losses.total_loss(x, params, t, hp, SPEC)[0]
    np.testing.assert_allclose(jax.jit(f)(_img(8)), f(_img(8)), rtol=1e-5)


def test_gram_gradient_equals_autodiff_of_the_einsum():
    f = jax.random.normal(jax.random.PRNGKey(3), (2, 6, 5, 7))
    w = jax.random.normal(jax.random.PRNGKey(4), (2, 7, 7))  # Asymmetric.
    plain = lambda x: jnp.sum(w * jnp.sin(gram._gram(x)))
    custom = lambda x: jnp.sum(w * jnp.sin(losses.gram(x)))
    np.testing.assert_allclose(jax.grad(custom)(f), jax.grad(plain)(f),
                               rtol=1e-5, atol=1e-6)
    # Also under vmap (sweeps batch the whole loss).
    one = lambda x, wi: jnp.sum(wi * jnp.sin(losses.gram(x[None])))
    vg = jax.vmap(jax.grad(one))(f, w)
    np.testing.assert_allclose(vg, jax.grad(plain)(f), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hw,grid,cells", [((7, 10), 3, 9), ((2, 5), 3, 6),
                                           ((6, 6), 1, 1)])
def test_cell_grams_are_the_grams_of_each_cell(hw, grid, cells):
    h, w = hw
    f = np.random.RandomState(2).rand(1, h, w, 4).astype(np.float32)
    got = np.asarray(losses.cell_grams(jnp.asarray(f), grid))
    assert got.shape == (1, cells, 4, 4)
    ey = np.linspace(0, h, min(grid, h) + 1).round().astype(int)
    ex = np.linspace(0, w, min(grid, w) + 1).round().astype(int)
    want = [losses.gram(jnp.asarray(f[:, y0:y1, x0:x1]))[0]
            for y0, y1 in zip(ey, ey[1:]) for x0, x1 in zip(ex, ex[1:])]
    np.testing.assert_allclose(got[0], np.stack(want), rtol=1e-5)


def test_local_style_term_is_zero_only_at_the_painting_layout(params):
    spec = SPEC._replace(local_layers=("relu1_1", "relu2_1"), local_grid=2)
    # Loud noise on the left half, quiet on the right.
    painting = _img(4) * jnp.where(jnp.arange(24) < 12, 1.0, 0.1)[:, None]
    feats = vgg19.extract(params, painting, spec.local_layers)
    local = {l: losses.cell_grams(feats[l], 2)[0] for l in spec.local_layers}
    t = dict(_targets(params, _img(3), [painting]), local=local)
    hp = _hp(local_weight=2.0)
    loss, aux = losses.total_loss(painting, params, t, hp, spec)
    np.testing.assert_allclose(aux["local"], 0.0, atol=1e-6)
    # Swapping the painting's left and right halves keeps its whole-image
    # Gram (up to border effects) but moves every cell's texture.
    mirrored = jnp.roll(painting, painting.shape[2] // 2, axis=2)
    loss2, aux2 = losses.total_loss(mirrored, params, t, hp, spec)
    assert float(aux2["local"]) > 10 * float(aux2["style"]) > 0
    np.testing.assert_allclose(loss2, aux2["content"] + 1e-2 * aux2["style"]
                               + 1e-3 * aux2["tv"] + 2.0 * aux2["local"],
                               rtol=1e-5)
