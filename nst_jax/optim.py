"""Optimisers chosen by name: config.optim -> optax.GradientTransformation.

The learning rate may be a traced array (a sweep member's value), so the
transformation is built inside the jitted step; its state layout does not
depend on the value, only on the name.
"""

from __future__ import annotations

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
        return optax.lbfgs(
            learning_rate=None if schedule_kind == "constant" else lr,
            memory_size=memory_size,
            linesearch=optax.scale_by_zoom_linesearch(
                max_linesearch_steps=15, initial_guess_strategy="one"))
    raise ValueError(f"unknown optimiser {name!r}; use adam, lbfgs or sgd")


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
