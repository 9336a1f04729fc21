"""What a plan compiles: the static settings of the program and the
traced hyperparameters (:data:`nst_jax.optimize.loop.TRACED_KEYS`) as
arrays, so sweep members that differ only in those share one program."""

from __future__ import annotations

import numpy as np

from nst_jax.optimize import loop, losses
from nst_jax.plan.types import Plan


def style_layers(plan: Plan, scale: int = -1) -> tuple[str, ...]:
    """The style layers at scale index ``scale``: multiscale.
    last_style_layers at the last of two or more scales when given,
    loss.style_layers otherwise."""
    n, last = len(plan.scales), plan.multiscale.last_style_layers
    if last and n > 1 and scale % n == n - 1:
        return tuple(last)
    return tuple(plan.loss.style_layers)


def spec(plan: Plan, scale: int = -1) -> losses.LossSpec:
    """The loss's static layout (layers, pooling, dtype, memory mode) at
    scale index ``scale`` (the last by default)."""
    P = plan.portrait
    return losses.LossSpec(tuple(plan.loss.content_layers),
                           style_layers(plan, scale),
                           plan.model.pooling, plan.model.dtype,
                           plan.model.remat,
                           tuple(P.local_layers) if P.enabled else (),
                           int(P.local_grid), int(plan.model.tile_size),
                           plan.loss.style_loss,
                           int(plan.loss.sliced_projections))


def static(plan: Plan, steps: int, scale: int = -1) -> loop.Static:
    """The program's static settings at scale index ``scale`` (the last by
    default) of ``steps`` steps."""
    o = plan.optim
    return loop.Static(spec(plan, scale), o.name, o.schedule,
                       float(o.decay_rate), int(o.memory_size), int(steps))


def hparams(plan: Plan, n_styles: int, scale: int = -1
            ) -> dict[str, np.ndarray]:
    """The traced hyperparameters as numpy arrays, at scale index
    ``scale`` (the last by default: only the style layers' weights
    depend on it)."""
    L = plan.loss
    weight = dict(zip(L.style_layers,
                      L.style_layer_weights or [1.0] * len(L.style_layers)))

    def vec(values, n):
        return np.asarray(values if values else [1.0] * n, np.float32)
    return {
        "content_weight": np.float32(L.content_weight),
        "style_weight": np.float32(L.style_weight),
        "tv_weight": np.float32(L.tv_weight),
        "content_layer_weights": vec(L.content_layer_weights,
                                     len(L.content_layers)),
        "style_layer_weights": np.asarray(
            [weight[l] for l in style_layers(plan, scale)], np.float32),
        "style_blend": vec(plan.style_blend, n_styles),
        "learning_rate": np.float32(plan.optim.learning_rate),
        "ema_decay": np.float32(plan.optim.ema_decay),
        "seed": np.int32(plan.seed),
        "local_weight": np.float32(plan.portrait.local_weight),
        "live": np.float32(1.0),  # 0 once the member converged.
    }
