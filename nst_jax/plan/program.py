"""What a plan compiles: the static settings of the program and the
traced hyperparameters (:data:`nst_jax.optimize.loop.TRACED_KEYS`) as
arrays, so sweep members that differ only in those share one program."""

from __future__ import annotations

import numpy as np

from nst_jax.optimize import loop, losses
from nst_jax.plan.types import Plan


def spec(plan: Plan) -> losses.LossSpec:
    """The loss's static layout (layers, pooling, dtype, memory mode)."""
    P = plan.portrait
    return losses.LossSpec(tuple(plan.loss.content_layers),
                           tuple(plan.loss.style_layers),
                           plan.model.pooling, plan.model.dtype,
                           plan.model.remat,
                           tuple(P.local_layers) if P.enabled else (),
                           int(P.local_grid), int(plan.model.tile_size),
                           plan.loss.style_loss,
                           int(plan.loss.sliced_projections))


def static(plan: Plan, steps: int) -> loop.Static:
    """The program's static settings at a scale of ``steps`` steps."""
    o = plan.optim
    return loop.Static(spec(plan), o.name, o.schedule, float(o.decay_rate),
                       int(o.memory_size), int(steps))


def hparams(plan: Plan, n_styles: int) -> dict[str, np.ndarray]:
    """The traced hyperparameters as numpy arrays."""
    L = plan.loss

    def vec(values, n):
        return np.asarray(values if values else [1.0] * n, np.float32)
    return {
        "content_weight": np.float32(L.content_weight),
        "style_weight": np.float32(L.style_weight),
        "tv_weight": np.float32(L.tv_weight),
        "content_layer_weights": vec(L.content_layer_weights,
                                     len(L.content_layers)),
        "style_layer_weights": vec(L.style_layer_weights,
                                   len(L.style_layers)),
        "style_blend": vec(plan.style_blend, n_styles),
        "learning_rate": np.float32(plan.optim.learning_rate),
        "ema_decay": np.float32(plan.optim.ema_decay),
        "seed": np.int32(plan.seed),
        "local_weight": np.float32(plan.portrait.local_weight),
        "live": np.float32(1.0),  # 0 once the member converged.
    }
