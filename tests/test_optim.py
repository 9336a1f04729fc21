"""nst_jax.optimize.optim: the evaluation count the benchmark and metrics
report."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from nst_jax.optimize import optim


@pytest.mark.parametrize("name", ["lbfgs", "adam"])
def test_evaluations_counts_every_loss_and_gradient_call(name):
    calls = []

    def f(x):  # A curvature jump at 0.3: some line searches need 4-8 tries.
        jax.debug.callback(lambda: calls.append(1))
        return jnp.sum(x ** 2) + 1e3 * jnp.sum(jax.nn.relu(x - 0.3) ** 2)

    tx = optim.make(name, 1.0, steps=30)

    @jax.jit
    def step(x, st):  # The protocol of loop.init_state / loop.step.
        if optim.needs_value_fn(name):
            v = optax.tree_utils.tree_get(st, "value")
            g = optax.tree_utils.tree_get(st, "grad")
            u, st = tx.update(g, st, x, value=v, grad=g, value_fn=f)
        else:
            u, st = tx.update(jax.grad(f)(x), st, x)
        return optax.apply_updates(x, u), st, optim.evaluations(name, st)

    x = jnp.array([-3.6, 3.0, -1.5, 2.4])
    st = tx.init(x)
    if optim.needs_value_fn(name):
        v, g = jax.value_and_grad(f)(x)
        st = optax.tree_utils.tree_set(st, value=v, grad=g)
    jax.block_until_ready(st)
    counted = []
    for _ in range(12):
        before = len(calls)
        x, st, n = step(x, st)
        jax.block_until_ready(x)
        counted.append((int(n), len(calls) - before))
    assert all(n == real for n, real in counted), counted
    if name == "lbfgs":
        assert max(n for n, _ in counted) > 1  # Exercised the search.


def test_lbfgs_update_matches_the_chain_and_evaluates_each_trial_once():
    """The first trial is evaluated before the search and not again in it;
    the iterates are the chained optimiser's."""
    calls = []

    def f(x):
        jax.debug.callback(lambda: calls.append(1))
        return jnp.sum(x ** 2) + 1e3 * jnp.sum(jax.nn.relu(x - 0.3) ** 2)

    def f_aux(x):
        return f(x), {"sq": jnp.sum(x ** 2)}

    tx = optim.make("lbfgs", 1.0, steps=30)
    parts = optim.lbfgs_parts(1.0, steps=30)

    @jax.jit
    def chained(x, st):
        v = optax.tree_utils.tree_get(st, "value")
        g = optax.tree_utils.tree_get(st, "grad")
        u, st = tx.update(g, st, x, value=v, grad=g, value_fn=f)
        return optax.apply_updates(x, u), st

    @jax.jit
    def split(x, st):
        v = optax.tree_utils.tree_get(st, "value")
        g = optax.tree_utils.tree_get(st, "grad")
        u, st, trial, (_, aux) = optim.lbfgs_update(parts, g, st, x, v, f_aux)
        new = optax.apply_updates(x, u)
        return new, st, optim.same(new, trial), aux

    x0 = jnp.array([-3.6, 3.0, -1.5, 2.4])
    st0 = optax.tree_utils.tree_set(tx.init(x0), value=f(x0),
                                    grad=jax.grad(f)(x0))
    xa, sa, xb, sb = x0, st0, x0, st0
    seen = []
    for _ in range(12):
        xa, sa = chained(xa, sa)
        jax.block_until_ready(xa)
        before = len(calls)
        xb, sb, known, aux = split(xb, sb)
        jax.block_until_ready(xb)
        n = int(optim.evaluations("lbfgs", sb))
        assert len(calls) - before == n  # Not n + 1.
        np.testing.assert_allclose(np.asarray(xb), np.asarray(xa),
                                   rtol=1e-5, atol=1e-6)
        if bool(known):  # The aux is the new point's.
            np.testing.assert_allclose(float(aux["sq"]),
                                       float(jnp.sum(xb ** 2)), rtol=1e-6)
        seen.append((n, bool(known)))
    assert (1, True) in seen and any(n > 1 and not k for n, k in seen), seen


def test_same_allows_rounding_not_a_step():
    x = jnp.array([[100.0, -50.0], [0.25, 3.0]])
    assert bool(optim.same(x, x))
    assert bool(optim.same(jnp.nextafter(x, jnp.inf), x))
    assert not bool(optim.same(x.at[1, 0].add(1e-3), x))
