"""The optimisation loop: compile once, every optimiser descends, EMA."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import config as cfg
from nst_jax import stylize, vgg19


@pytest.fixture(scope="module")
def params():
    return vgg19.random_params(0)


def _setup(params, name="adam", **loss):
    c = cfg.base()
    c.loss.content_layers = ("relu2_1",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    c.optim.name = name
    c.optim.learning_rate = {"adam": 2.0, "sgd": 1e-3, "lbfgs": 1.0}[name]
    for k, v in loss.items():
        c.loss[k] = v
    rng = np.random.RandomState(0)
    content = rng.uniform(0, 255, (20, 24, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (22, 22, 3)).astype(np.float32)
    static = stylize.static_from_config(c, 10)
    hp = jax.tree_util.tree_map(jnp.asarray,
                                stylize.hparams_from_config(c, 1))
    targets = stylize.compute_targets(params, static.spec, content, [style])
    return c, static, hp, targets, content


@pytest.mark.parametrize("name", ["adam", "lbfgs", "sgd"])
def test_every_optimiser_reduces_the_loss(params, name):
    _, static, hp, targets, content = _setup(params, name)
    state = stylize.init_state(
        static, stylize.init_image("content", hp, content), hp, params,
        targets)
    chunk = stylize.compiled_chunk(static, 5)
    state, losses_T, aux, image = chunk(state, params, targets, hp,
                                        jnp.int32(5))
    assert int(state.step) == 5
    assert float(aux["loss"]) < float(losses_T[0])
    lo = -np.asarray([103.939, 116.779, 123.68])
    assert np.all(np.asarray(image) >= lo - 1e-4)
    assert np.all(np.asarray(image) <= lo + 255 + 1e-4)


def test_traced_once_across_weight_values_and_chunk_lengths(params,
                                                            monkeypatch):
    _, static, hp, targets, content = _setup(params, "adam")
    traces = []
    real_step = stylize.step
    monkeypatch.setattr(stylize, "step",
                        lambda *a: traces.append(1) or real_step(*a))
    stylize.compiled_chunk.cache_clear()
    chunk = stylize.compiled_chunk(static, 3)
    for sw, lr, n in [(1e-2, 2.0, 3), (5.0, 0.5, 3), (0.0, 1.0, 1)]:
        h = dict(hp, style_weight=jnp.float32(sw),
                 learning_rate=jnp.float32(lr))
        state = stylize.init_state(
            static, stylize.init_image("content", h, content), h)
        state, _, _, _ = chunk(state, params, targets, h, jnp.int32(n))
        assert int(state.step) == n
    # step() runs once per trace of the scan body (inside cond, so traced
    # once per trace); three calls with new values must not retrace.
    assert len(traces) == 1


def test_skipped_steps_leave_state_unchanged(params):
    _, static, hp, targets, content = _setup(params, "adam")
    chunk = stylize.compiled_chunk(static, 4)
    s = stylize.init_state(static, stylize.init_image("content", hp,
                                                      content), hp)
    s, losses_T, _, _ = chunk(s, params, targets, hp, jnp.int32(2))
    assert int(s.step) == 2
    assert np.isnan(np.asarray(losses_T)[2:]).all()
    assert np.isfinite(np.asarray(losses_T)[:2]).all()


def test_ema_off_shows_raw_image_on_shows_average(params):
    _, static, hp, targets, content = _setup(params, "adam")
    chunk = stylize.compiled_chunk(static, 4)
    out = {}
    for d in (0.0, 0.9):
        h = dict(hp, ema_decay=jnp.float32(d))
        s = stylize.init_state(static, stylize.init_image("content", h,
                                                          content), h)
        s, _, _, img = chunk(s, params, targets, h, jnp.int32(4))
        out[d] = (np.asarray(stylize.clip_vgg(s.image)), np.asarray(img))
    np.testing.assert_array_equal(out[0.0][0], out[0.0][1])
    assert np.abs(out[0.9][0] - out[0.9][1]).max() > 1e-3


def test_noise_init_is_seeded():
    content = np.zeros((8, 9, 3), np.float32)
    a = stylize.init_image("noise", {"seed": jnp.int32(1)}, content)
    b = stylize.init_image("noise", {"seed": jnp.int32(1)}, content)
    c = stylize.init_image("noise", {"seed": jnp.int32(2)}, content)
    np.testing.assert_array_equal(a, b)
    assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1
    assert a.shape == (1, 8, 9, 3)


def test_lbfgs_init_state_needs_the_loss(params):
    _, static, hp, targets, content = _setup(params, "lbfgs")
    with pytest.raises(ValueError, match="vgg_params and targets"):
        stylize.init_state(static, stylize.init_image("content", hp,
                                                      content), hp)


def test_vmapped_lbfgs_matches_unbatched(params):
    # The batched program (sweeps, the benchmark) must take the same steps
    # and report the same evaluation count as a single run.
    _, static, hp, targets, content = _setup(params, "lbfgs")
    image0 = stylize.init_image("content", hp, content)
    s1 = stylize.init_state(static, image0, hp, params, targets)
    s1, l1, a1, _ = stylize.run_chunk(static, 4, s1, params, targets, hp,
                                      jnp.int32(4))
    hp_b = jax.tree_util.tree_map(lambda a: jnp.stack([a, a]), hp)
    sb = jax.vmap(lambda h: stylize.init_state(static, image0, h, params,
                                               targets))(hp_b)
    sb, lb, ab, _ = jax.vmap(
        lambda s, h: stylize.run_chunk(static, 4, s, params, targets, h,
                                       jnp.int32(4)))(sb, hp_b)
    np.testing.assert_allclose(lb[1], l1, rtol=1e-4)
    assert int(ab["evals"][0]) == int(a1["evals"]) >= 4
