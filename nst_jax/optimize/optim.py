"""Optimisers chosen by name: config.optim -> optax.GradientTransformation.

The learning rate may be a traced array (a sweep member's value), so the
transformation is built inside the jitted step; its state layout does not
depend on the value, only on the name.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def schedule(kind: str, learning_rate, steps: int, decay_rate: float = 0.1):
    """The learning rate: a constant, or an optax schedule of the step count.

    Args:
      kind: "constant", "cosine" (``optax.cosine_decay_schedule``, to 0 at
        ``steps``) or "exponential" (``optax.exponential_decay``:
        multiplied by ``decay_rate`` over ``steps``, smoothly).
      learning_rate: peak value; a Python float or a traced scalar.
      steps: steps in the run (the horizon of the decaying schedules).
      decay_rate: final multiplier of the exponential schedule.
    """
    if kind == "constant":
        return learning_rate
    if kind == "cosine":
        return optax.cosine_decay_schedule(learning_rate, max(steps, 1))
    if kind == "exponential":
        return optax.exponential_decay(learning_rate, max(steps, 1),
                                       decay_rate)
    raise ValueError(f"unknown schedule {kind!r}")


def make(name: str, learning_rate, *, steps: int, schedule_kind: str =
         "constant", decay_rate: float = 0.1, memory_size: int = 10
         ) -> optax.GradientTransformationExtraArgs:
    """Builds the optimiser.

    Args:
      name: "adam", "sgd" or "lbfgs". L-BFGS (Gatys et al.'s choice) uses
        optax's zoom line search, which picks the step length; its updates
        need ``value``, ``grad`` and ``value_fn`` (see ``loop.step``). With
        the constant schedule L-BFGS takes no learning rate (config
        validation refuses one); a decaying schedule scales its search
        direction.
      learning_rate: float or traced scalar.
      steps, schedule_kind, decay_rate: the learning-rate schedule.
      memory_size: L-BFGS history length.
    """
    lr = schedule(schedule_kind, learning_rate, steps, decay_rate)
    if name == "adam":
        return optax.adam(lr)
    if name == "sgd":
        return optax.sgd(lr)
    if name == "lbfgs":
        return optax.chain(*lbfgs_parts(
            learning_rate, steps=steps, schedule_kind=schedule_kind,
            decay_rate=decay_rate, memory_size=memory_size))
    raise ValueError(f"unknown optimiser {name!r}; use adam, lbfgs or sgd")


def lbfgs_parts(learning_rate, *, steps: int, schedule_kind: str =
                "constant", decay_rate: float = 0.1, memory_size: int = 10
                ) -> tuple:
    """L-BFGS's transformations in chain order: direction, scale, search.

    Arguments as :func:`make`'s. ``make`` chains them; :func:`lbfgs_update`
    runs them one by one (the state layout is the chain's either way).
    """
    return (_lbfgs_direction(memory_size),
            optax.scale(-1.0) if schedule_kind == "constant"
            else optax.scale_by_learning_rate(
                schedule(schedule_kind, learning_rate, steps, decay_rate)),
            optax.scale_by_zoom_linesearch(
                max_linesearch_steps=15, initial_guess_strategy="one"))


def lbfgs_update(parts: tuple, grad, state: tuple, params, value,
                 loss_aux_fn: Callable) -> tuple:
    """One L-BFGS update whose first line-search trial is evaluated here.

    The zoom search (``initial_guess_strategy="one"``) first tries step
    length 1, ``params + updates``. That point's loss, aux and gradient
    are computed before the search, which is handed a ``value_fn`` that
    returns them when asked for exactly that point (and evaluates any
    other): the search's decisions and cost are as with ``make``'s chain,
    and when it accepts its first trial (most steps) the aux of the new
    point comes for free (no forward pass to report the loss terms).

    Args:
      parts: :func:`lbfgs_parts`.
      grad, value: the loss's gradient and value at ``params``.
      state: the chained state (``make(...).init(params)``).
      loss_aux_fn: params -> (scalar loss, aux).

    Returns:
      (updates, new state, trial point, (trial loss, trial aux)).
    """
    direction, scale, search = parts
    u, s0 = direction.update(grad, state[0], params)
    u, s1 = scale.update(u, state[1], params)
    trial = optax.tree.add_scale(params, jnp.asarray(1.0), u)
    # One traced program for both evaluations (here and in the search).
    value_and_grad = jax.jit(jax.value_and_grad(loss_aux_fn, has_aux=True))
    (v_t, aux_t), g_t = value_and_grad(trial)
    value_fn = _known_at(trial, v_t, g_t, value_and_grad)
    u, s2 = search.update(u, state[2], params, value=value, grad=grad,
                          value_fn=value_fn)
    return u, (s0, s1, s2), trial, (v_t, aux_t)


def same(a, b) -> jax.Array:
    """Whether pytrees ``a`` and ``b`` are one point up to float rounding.

    Every element within 4 eps of ``b``'s largest magnitude (on VGG's
    0..255 scale: 7e-5). XLA computes ``x + t * u`` with or without a fused
    multiply-add depending on how it fuses the program, so the search's
    trial point and the one computed here may differ in the last bit.
    """
    def close(x, y):
        tol = 4 * jnp.finfo(y.dtype).eps * jnp.max(jnp.abs(y))
        return jnp.all(jnp.abs(x - y) <= tol)
    return jnp.all(jnp.asarray([close(x, y) for x, y in zip(
        jax.tree.leaves(a), jax.tree.leaves(b))]))


def _known_at(point, value, grad, value_aux_and_grad: Callable) -> Callable:
    """A loss whose value and gradient at ``point`` are given, not computed.

    ``value_aux_and_grad``: p -> ((value, aux), grad) of the loss.
    Differentiable (reverse mode); any other input evaluates the loss (a
    ``lax.cond``, so only the taken branch runs).
    """
    def evaluate(p):
        (v, _), g = value_aux_and_grad(p)
        return v, g

    @jax.custom_vjp
    def f(p):
        return jax.lax.cond(same(p, point), lambda p: value,
                            lambda p: evaluate(p)[0], p)

    def f_fwd(p):
        return jax.lax.cond(same(p, point), lambda p: (value, grad),
                            evaluate, p)

    def f_bwd(g, ct):
        return (jax.tree.map(lambda a: ct * a, g),)

    f.defvjp(f_fwd, f_bwd)
    return f


#: RMS change per pixel value (VGG space, 0..255 scale) of L-BFGS's first
#: trial step. optax's first direction is the gradient scaled to norm 1,
#: which moves a 256 px image by 0.002 per value: the zoom search then
#: doubled it for 8-9 evaluations before the first step was taken. Measured
#: with configs/default.py at 256 px, 60 steps (init fast / noise): the first
#: step took 1 evaluation instead of 8 / 9, and the loss after 60 steps was
#: 1.201e6 / 1.804e6 against 1.195e6 / 1.861e6 before.
FIRST_STEP_RMS = 1.0


def _lbfgs_direction(memory_size: int) -> optax.GradientTransformation:
    """optax.scale_by_lbfgs with a first direction of RMS ``FIRST_STEP_RMS``.

    The state is scale_by_lbfgs's own, so checkpoints keep their layout.
    """
    inner = optax.scale_by_lbfgs(memory_size=memory_size)

    def update(updates, state, params=None):
        out, new_state = inner.update(updates, state, params)
        size = sum(x.size for x in jax.tree.leaves(out))
        # Step 0's direction has norm min(1, |g|): a gradient shorter than 1
        # gives a shorter first trial, which the search lengthens.
        first = jnp.where(state.count == 0, FIRST_STEP_RMS * size ** 0.5, 1.0)
        return jax.tree.map(lambda u: u * first.astype(u.dtype), out), new_state

    return optax.GradientTransformation(inner.init, update)


def needs_value_fn(name: str) -> bool:
    """True for optimisers whose update needs value, grad and value_fn."""
    return name == "lbfgs"


def evaluations(name: str, opt_state) -> jax.Array:
    """Loss-and-gradient evaluations the step that produced ``opt_state`` made.

    Adam and SGD: 1. L-BFGS: one per line-search trial (the starting point's
    evaluation is made once, in ``loop.init_state``).
    """
    if not needs_value_fn(name):
        return jnp.ones((), jnp.int32)
    trials = optax.tree_utils.tree_get(opt_state, "num_linesearch_steps")
    return jnp.asarray(trials, jnp.int32)
