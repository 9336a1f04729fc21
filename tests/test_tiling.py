"""remat="tiles": the tiled head gives the whole image's loss and gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import plan as plan_lib
from nst_jax.drive import targets
from nst_jax.optimize import losses
from nst_jax.vgg import tiling, vgg19



def _img(seed, h, w):
    return jax.random.uniform(jax.random.PRNGKey(seed), (1, h, w, 3),
                              minval=-100, maxval=100)


def test_halo_covers_the_head():
    # conv, conv (2 px), pool (1 at 1/2), conv, conv (3 at 1/2), pool
    # (2 at 1/4 = 8 px), four convs (6 at 1/4), pool (3 at 1/8 = 24 px).
    assert tiling.head(("relu5_1",))[-1] == tiling.HEAD_END == "pool3"
    assert tiling.halo(tiling.head(("relu5_1",))) == 24
    assert tiling.halo(tiling.head(("pool2",))) == 8
    assert tiling.head(("relu1_1",)) == ("conv1_1", "relu1_1")
    assert tiling.halo(("conv1_1", "relu1_1")) == 1


@pytest.mark.parametrize("h,w,tile", [(37, 50, 12), (24, 24, 64),
                                      (70, 90, 32)])
def test_head_reductions_and_tail_match_the_whole_image(params, h, w, tile):
    """Odd sizes, a tile size rounded up to the pooling (12 -> 16), several
    tiles and a tile larger than the image."""
    x = _img(0, h, w)
    layers = ("relu1_1", "relu2_1", "relu2_2", "relu3_1", "relu4_1")
    ref = vgg19.extract(params, x, layers)
    rng = np.random.RandomState(1)
    content = {"relu2_2": jnp.asarray(
        rng.normal(0, 1, ref["relu2_2"].shape), jnp.float32)}
    masks = {"relu1_1": jnp.asarray(rng.uniform(0, 1, (2, h, w)),
                                    jnp.float32)}
    feats, out = tiling.extract(params, x, layers, tile=tile,
                                grams=("relu1_1", "relu2_1"), masks=masks,
                                content=content, maps=("relu2_1",))
    assert set(feats) == {"relu4_1"}  # Past the head.
    np.testing.assert_allclose(feats["relu4_1"], ref["relu4_1"], rtol=1e-4,
                               atol=1e-3)
    np.testing.assert_allclose(out["map"]["relu2_1"], ref["relu2_1"],
                               atol=1e-3)
    for l in ("relu1_1", "relu2_1"):
        np.testing.assert_allclose(out["gram"][l], losses.gram(ref[l]),
                                   rtol=1e-5)
    np.testing.assert_allclose(
        out["sq"]["relu2_2"], losses.mse(ref["relu2_2"], content["relu2_2"]),
        rtol=1e-5)
    f = ref["relu1_1"].reshape(1, h * w, -1) * masks["relu1_1"].reshape(
        2, h * w, 1)
    np.testing.assert_allclose(out["masked"]["relu1_1"],
                               jnp.einsum("spc,spd->scd", f, f), rtol=1e-5)


def _hp(n_c, n_s, **kw):
    hp = {"content_weight": 1.0, "style_weight": 1e-2, "tv_weight": 1e-3,
          "content_layer_weights": jnp.ones(n_c),
          "style_layer_weights": jnp.ones(n_s),
          "style_blend": jnp.ones(2), "local_weight": 3e-2}
    hp.update(kw)
    return jax.tree_util.tree_map(jnp.asarray, hp)


@pytest.mark.parametrize("with_masks", [False, True])
def test_total_loss_and_gradient_equal_remat_none(params, with_masks):
    """Content in the head and past it, style Grams (or guided Grams) and
    portrait cells in the head: the same loss and image gradient."""
    h, w = 42, 38
    spec = losses.LossSpec(("relu2_2", "relu4_1"),
                           ("relu1_1", "relu2_1", "relu3_1"),
                           local_layers=("relu1_1", "relu3_1"), local_grid=3)
    content, style, style2 = _img(1, h, w), _img(2, 30, 34), _img(3, h, w)
    rgb = lambda x: np.asarray(x[0] + 120.0)  # Any values; a fixed map.
    m = None
    if with_masks:
        m = np.zeros((2, h, w), np.float32)
        m[0, :, :20], m[1, :, 20:] = 1.0, 1.0
    tg = targets.compute(params, spec, rgb(content), [rgb(style),
                                                      rgb(style2)], m)
    painting = vgg19.extract(params, _img(4, h, w), spec.local_layers)
    tg["local"] = {l: losses.cell_grams(painting[l], 3)[0]
                   for l in spec.local_layers}
    tiled = spec._replace(remat="tiles", tile_size=16)
    tg_t = targets.compute(params, tiled, rgb(content), [rgb(style),
                                                         rgb(style2)], m)
    for k in ("content", "style"):
        for l in tg[k]:
            np.testing.assert_allclose(tg_t[k][l], tg[k][l], rtol=2e-5,
                                       atol=1e-3)
    tg_t["local"] = tg["local"]
    hp = _hp(2, 3)
    x = _img(5, h, w)

    def f(s):
        return jax.jit(jax.value_and_grad(
            lambda im: losses.total_loss(im, params, tg, hp, s)[0]))(x)
    (a, ga), (b, gb) = f(spec), f(tiled)
    np.testing.assert_allclose(b, a, rtol=2e-5)
    np.testing.assert_allclose(gb, ga, rtol=1e-3,
                               atol=1e-4 * float(jnp.max(jnp.abs(ga))))
    assert float(jnp.max(jnp.abs(ga))) > 0


def test_weights_get_no_gradient(params):
    """The tiled head treats the weights as constants (documented)."""
    x = _img(0, 20, 20)

    def f(p):
        return tiling.run_head(p, x, ("relu1_1",), tile=8,
                               grams=("relu1_1",))["gram"]["relu1_1"].sum()
    g = jax.grad(f)(params)
    assert float(jnp.max(jnp.abs(g["conv1_1"]["kernel"]))) == 0.0


def test_vmapped_members_step_as_with_remat_none(params):
    """Adam members are vmapped (sweeps): the tiled head under vmap gives
    each member the same step as remat=none."""
    from nst_jax import config as cfg
    from nst_jax.optimize import loop
    from nst_jax.drive import sharding
    out = {}
    for remat in ("none", "tiles"):
        c = cfg.base()
        c.loss.content_layers, c.loss.style_layers = ("relu4_1",), (
            "relu1_1", "relu3_1")
        c.optim.name, c.optim.learning_rate = "adam", 2.0
        c.model.remat, c.model.tile_size = remat, 16
        static = plan_lib.static(plan_lib.fields(c), 2)
        rng = np.random.RandomState(0)
        content = rng.uniform(0, 255, (36, 44, 3)).astype(np.float32)
        tg = targets.compute(params, static.spec, content, [content[::-1]])
        hp = jax.tree_util.tree_map(
            lambda a: jnp.stack([a, a * 2]), plan_lib.hparams(plan_lib.fields(c), 1))
        image0 = jnp.stack([jnp.asarray(targets.init_image(
            "noise", s, content)) for s in (0, 1)])
        progs = loop.programs(static, 2, sharding.single_device_mesh())
        state = progs.init(image0, hp, params, tg)
        _, losses_bt, _, _ = progs.chunk(state, params, tg, hp, jnp.int32(2))
        out[remat] = np.asarray(losses_bt)
    assert out["none"].shape == (2, 2)
    np.testing.assert_allclose(out["tiles"], out["none"], rtol=1e-4)
