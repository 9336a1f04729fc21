"""nst_jax.optim: the evaluation count the benchmark and metrics report."""

import jax
import jax.numpy as jnp
import optax
import pytest

from nst_jax import optim


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
