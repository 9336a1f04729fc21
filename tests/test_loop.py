"""The pure loop: compile once, every optimiser descends, EMA, schedules,
members (squeezed, vmapped, mapped)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.drive import sharding, targets
from nst_jax.optimize import loop, losses, optim



def _setup(params, name="adam", dtype="float32", **optim_fields):
    c = cfg.base()
    c.loss.content_layers = ("relu2_1",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    c.model.dtype = dtype
    c.optim.name = name
    c.optim.learning_rate = {"adam": 2.0, "sgd": 1e-3, "lbfgs": 1.0}[name]
    for k, v in optim_fields.items():
        c.optim[k] = v
    plan_lib.fields(c)
    rng = np.random.RandomState(0)
    content = rng.uniform(0, 255, (20, 24, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (22, 22, 3)).astype(np.float32)
    static = plan_lib.static(plan_lib.fields(c), 10)
    hp = jax.tree_util.tree_map(jnp.asarray, plan_lib.hparams(plan_lib.fields(c), 1))
    tgt = targets.compute(params, static.spec, content, [style])
    return c, static, hp, tgt, content


def _chunk(static, length):
    return jax.jit(functools.partial(loop.run_chunk, static, length),
                   donate_argnums=(0,))


def _start(static, hp, content, params, tgt):
    return loop.init_state(static, targets.init_image("content", 0, content),
                           hp, params, tgt)


@pytest.mark.parametrize("name", ["adam", "lbfgs", "sgd"])
def test_every_optimiser_reduces_the_loss(params, name):
    _, static, hp, tgt, content = _setup(params, name)
    state = _start(static, hp, content, params, tgt)
    state, losses_T, aux, image = _chunk(static, 5)(state, params, tgt, hp,
                                                    jnp.int32(5))
    assert int(state.step) == 5
    assert float(aux["loss"]) < float(losses_T[0])
    lo = -np.asarray([103.939, 116.779, 123.68])
    assert np.all(np.asarray(image) >= lo - 1e-4)
    assert np.all(np.asarray(image) <= lo + 255 + 1e-4)


def test_traced_once_across_weight_values_and_chunk_lengths(params,
                                                            monkeypatch):
    _, static, hp, tgt, content = _setup(params, "adam")
    traces = []
    real_step = loop.step
    monkeypatch.setattr(loop, "step",
                        lambda *a: traces.append(1) or real_step(*a))
    chunk = _chunk(static, 3)
    for sw, lr, n in [(1e-2, 2.0, 3), (5.0, 0.5, 3), (0.0, 1.0, 1)]:
        h = dict(hp, style_weight=jnp.float32(sw),
                 learning_rate=jnp.float32(lr))
        state = _start(static, h, content, params, tgt)
        state, _, _, _ = chunk(state, params, tgt, h, jnp.int32(n))
        assert int(state.step) == n
    # step() runs once per trace of the scan body (inside cond, so traced
    # once per trace); three calls with new values must not retrace.
    assert len(traces) == 1


def test_skipped_steps_leave_state_unchanged(params):
    _, static, hp, tgt, content = _setup(params, "adam")
    s = _start(static, hp, content, params, tgt)
    s, losses_T, _, _ = _chunk(static, 4)(s, params, tgt, hp, jnp.int32(2))
    assert int(s.step) == 2
    assert np.isnan(np.asarray(losses_T)[2:]).all()
    assert np.isfinite(np.asarray(losses_T)[:2]).all()


def test_ema_is_the_bias_corrected_weighted_mean_of_the_iterates(params):
    _, static, hp, tgt, content = _setup(params, "adam")
    d = 0.8
    h = dict(hp, ema_decay=jnp.float32(d))
    s = _start(static, h, content, params, tgt)
    one = _chunk(static, 1)
    iterates = []
    for _ in range(5):
        s, _, _, shown = one(s, params, tgt, h, jnp.int32(1))
        iterates.append(np.asarray(s.image, np.float64))
    # By hand: weights (1 - d) d^(n-k) for x_1..x_n, normalised to sum 1.
    n = len(iterates)
    w = np.array([(1 - d) * d ** (n - k) for k in range(1, n + 1)])
    expected = sum(wk * x for wk, x in zip(w, iterates)) / w.sum()
    np.testing.assert_allclose(np.asarray(shown), expected, rtol=0,
                               atol=2e-3)
    # ...and not simply the last iterate.
    assert np.abs(iterates[-1] - expected).max() > 0.1


def test_ema_off_shows_the_raw_image(params):
    _, static, hp, tgt, content = _setup(params, "adam")
    s = _start(static, hp, content, params, tgt)
    s, _, _, img = _chunk(static, 3)(s, params, tgt, hp, jnp.int32(3))
    np.testing.assert_array_equal(np.asarray(loop.clip_vgg(s.image)),
                                  np.asarray(img))


@pytest.mark.parametrize("kind", ["constant", "cosine", "exponential"])
def test_schedules_give_the_documented_rates(kind):
    lr, steps, rate = 2.0, 10, 0.1
    sched = optim.schedule(kind, lr, steps, rate)
    expected = {
        "constant": lambda t: lr,
        "cosine": lambda t: lr * 0.5 * (1 + np.cos(np.pi * t / steps)),
        "exponential": lambda t: lr * rate ** (t / steps),
    }[kind]
    for t in (0, 3, 10):
        got = sched(t) if callable(sched) else sched
        np.testing.assert_allclose(float(got), expected(t), rtol=1e-5)


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
@pytest.mark.parametrize("kind", ["cosine", "exponential"])
def test_a_decaying_schedule_changes_the_steps(params, name, kind):
    out = {}
    for schedule in ("constant", kind):
        _, static, hp, tgt, content = _setup(params, name,
                                             schedule=schedule)
        s = _start(static, hp, content, params, tgt)
        s, losses_T, aux, img = _chunk(static, 6)(s, params, tgt, hp,
                                                  jnp.int32(6))
        assert float(aux["loss"]) < float(losses_T[0])
        out[schedule] = np.asarray(img)
    assert np.abs(out["constant"] - out[kind]).max() > 1e-3


def test_one_bfloat16_optimisation_step(params):
    _, static, hp, tgt, content = _setup(params, "adam", dtype="bfloat16")
    s = _start(static, hp, content, params, tgt)
    s, losses_T, aux, img = _chunk(static, 2)(s, params, tgt, hp,
                                              jnp.int32(2))
    assert np.isfinite(np.asarray(img)).all()
    assert 0 < float(aux["loss"]) < float(losses_T[0])


def test_lbfgs_init_state_needs_the_loss(params):
    _, static, hp, tgt, content = _setup(params, "lbfgs")
    with pytest.raises(ValueError, match="vgg_params and targets"):
        loop.init_state(static, targets.init_image("content", 0, content),
                        hp)


@pytest.mark.parametrize("name", ["adam", "lbfgs"])
def test_member_programs_match_the_unbatched_computation(params, name):
    # One member is squeezed (the single-run program); two are vmapped
    # (Adam) or mapped (L-BFGS). Each must take the unbatched steps.
    _, static, hp, tgt, content = _setup(params, name)
    image0 = targets.init_image("content", 0, content)
    s1 = loop.init_state(static, image0, hp, params, tgt)
    s1, l1, a1, _ = loop.run_chunk(static, 4, s1, params, tgt, hp,
                                   jnp.int32(4))
    progs = loop.programs(static, 4, sharding.single_device_mesh())
    for n in (1, 2):
        hp_b = jax.tree_util.tree_map(lambda a: jnp.stack([a] * n), hp)
        sb = progs.init(jnp.stack([image0] * n), hp_b, params, tgt)
        sb, lb, ab, _ = progs.chunk(sb, params, tgt, hp_b, jnp.int32(4))
        assert lb.shape == (n, 4)
        np.testing.assert_allclose(lb[-1], l1, rtol=1e-4)
        assert int(ab["evals"][0]) == int(a1["evals"]) >= 4


def test_optax_state_leaves_own_their_buffers(params):
    # Donation needs every leaf to own its buffer (optax may share one).
    _, static, hp, tgt, content = _setup(params, "lbfgs")
    s = _start(static, hp, content, params, tgt)
    leaves = jax.tree_util.tree_leaves(s)
    ptrs = [x.unsafe_buffer_pointer() for x in leaves]
    assert len(set(ptrs)) == len(ptrs)
    assert optax.tree_utils.tree_get(s.opt_state, "value") is not None


@pytest.mark.parametrize("name", ["lbfgs", "adam"])
def test_chunk_reports_the_loss_terms_of_its_image(params, name):
    """L-BFGS takes them from its last step's evaluation (no forward pass)
    when that step evaluated the image; any other case (EMA on, Adam)
    computes them."""
    _, static, hp, tgt, content = _setup(params, name)
    chunk = _chunk(static, 2)
    terms = jax.jit(lambda i, h: losses.total_loss(i, params, tgt, h,
                                                   static.spec)[1])
    for ema in (0.0, 0.5) if name == "lbfgs" else (0.0,):
        h = dict(hp, ema_decay=jnp.float32(ema))
        s = _start(static, h, content, params, tgt)
        for _ in range(2):
            s, _, aux, image = chunk(s, params, tgt, h, jnp.int32(2))
            for k, v in terms(image, h).items():
                np.testing.assert_allclose(float(aux[k]), float(v),
                                           rtol=2e-5, err_msg=k)
