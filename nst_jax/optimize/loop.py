"""The optimisation as pure, jit-compiled functions of arrays.

The image is the only thing optimised. Its state (image, optimiser state,
step, iterate average) is a small NamedTuple threaded through ``lax.scan``
chunks of ``log_every`` steps; buffers are donated and nothing syncs with
the host inside a chunk. Static settings (:class:`Static`: layers,
optimiser kind, chunk length) are fixed before tracing; numeric
hyperparameters arrive as arrays (:func:`nst_jax.plan.hparams`), so a new
value never recompiles and sweep members can share one program.

Every compiled program takes a leading member axis (:func:`programs`): a
single run is a group of one, squeezed away inside the program, so it runs
the unbatched computation; larger groups are vmapped (Adam, SGD) or mapped
(L-BFGS) and, on several devices, sharded over a mesh.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax.io import images
from nst_jax.optimize import losses, optim

# Valid pixel range in VGG space (BGR minus the mean pixel).
_LO = -np.asarray(images.MEAN_BGR, np.float32)
_HI = 255.0 + _LO

#: Config fields that become traced hyperparameters (the arrays of
#: :func:`nst_jax.plan.hparams`): members of a sweep that differ only in
#: these share one compiled program.
TRACED_KEYS = ("loss.content_weight", "loss.style_weight", "loss.tv_weight",
               "loss.content_layer_weights", "loss.style_layer_weights",
               "style_blend", "optim.learning_rate", "optim.ema_decay",
               "seed", "fast.strength", "portrait.local_weight",
               "optim.rtol", "optim.rtol_window")


class State(NamedTuple):
    image: jax.Array  # (1, H, W, 3) VGG space; lbfgs keeps it unclipped.
    opt_state: Any
    step: jax.Array  # int32 steps taken at this scale.
    avg: jax.Array  # EMA accumulator of the image (bias not corrected).


class Static(NamedTuple):
    """Everything that shapes the compiled program (hashable)."""
    spec: losses.LossSpec
    optim_name: str
    schedule: str
    decay_rate: float
    memory_size: int
    steps: int  # Horizon of decaying learning-rate schedules.
    # Targets carry the member axis (members paint different photos).
    batched_targets: bool = False


def _tx_args(static: Static) -> dict:
    return dict(steps=static.steps, schedule_kind=static.schedule,
                decay_rate=static.decay_rate, memory_size=static.memory_size)


def _tx(static: Static, hp: dict) -> optax.GradientTransformationExtraArgs:
    return optim.make(static.optim_name, hp["learning_rate"],
                      **_tx_args(static))


def clip_vgg(x: jax.Array) -> jax.Array:
    """Clamps a VGG-space image to pixels 0..255."""
    return jnp.clip(x, _LO, _HI)


def _loss_fn(static: Static, vgg_params, targets, hp):
    def f(image):
        # L-BFGS optimises an unconstrained image and the loss sees it
        # clipped: the line search works on one consistent function, and
        # the loss it minimises is the loss of the image that is saved.
        # Pixels pushed past 0/255 get no gradient and stay there, yet this
        # rule gave the lowest final loss of the saved image on all three
        # presets, against clipping only at the end (Gatys,
        # jcjohnson/neural-style: the optimiser leans on out-of-range
        # values the final clip removes, and the style comes out fainter)
        # and a sigmoid reparametrisation. Figures: see
        # docs/performance.md, "How L-BFGS sees pixels outside 0..255".
        if optim.needs_value_fn(static.optim_name):
            image = clip_vgg(image)
        return losses.total_loss(image, vgg_params, targets, hp, static.spec)
    return f


def init_state(static: Static, image0: jax.Array, hp: dict,
               vgg_params=None, targets=None) -> State:
    """Fresh optimiser state around the starting image (VGG space).

    For L-BFGS, ``vgg_params`` and ``targets`` are required: the loss and
    gradient of the starting image are evaluated here and stored where the
    line search keeps those of each accepted point, so every step reuses
    them unconditionally. (optax's ``value_and_grad_from_state`` decides
    with a ``cond`` on the stored value; under ``vmap`` that predicate is
    batched, the ``cond`` becomes a ``select`` and every step paid for an
    extra evaluation.)
    """
    tx = _tx(static, hp)
    opt_state = tx.init(image0[0])
    if optim.needs_value_fn(static.optim_name):
        if vgg_params is None or targets is None:
            raise ValueError("L-BFGS init_state needs vgg_params and targets")
        loss_fn = _loss_fn(static, vgg_params, targets, hp)
        (value, _), grad = jax.value_and_grad(
            lambda x: loss_fn(x[None]), has_aux=True)(image0[0])
        opt_state = optax.tree_utils.tree_set(opt_state, value=value,
                                              grad=grad)
    state = State(image0, opt_state, jnp.zeros((), jnp.int32),
                  jnp.zeros_like(image0))
    # optax may put one buffer in several leaves; donation needs each leaf
    # to own its buffer.
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), state)


def step(static: Static, state: State, vgg_params, targets, hp
         ) -> tuple[State, jax.Array, jax.Array, dict]:
    """One optimiser step.

    Returns the new state, the loss before the step, and whether the aux
    of the new image is known (L-BFGS evaluated it: the line search took
    its first trial) with that aux (else zeros).
    """
    loss_fn = _loss_fn(static, vgg_params, targets, hp)
    # The optimiser sees the image without its batch axis of 1: with it,
    # XLA:CPU copied L-BFGS's whole (memory, 1, H, W, 3) history twice per
    # step (a layout change of the size-1 axis inside the loop). Figures:
    # see docs/performance.md, Memory.
    x = state.image[0]
    if optim.needs_value_fn(static.optim_name):
        # The line search (or init_state) already evaluated value and grad
        # at this point; reuse them rather than paying again.
        value = optax.tree_utils.tree_get(state.opt_state, "value")
        grad = optax.tree_utils.tree_get(state.opt_state, "grad")
        updates, opt_state, trial, (_, aux) = optim.lbfgs_update(
            optim.lbfgs_parts(hp["learning_rate"], **_tx_args(static)),
            grad, state.opt_state, x, value, lambda x: loss_fn(x[None]))
        new = optax.apply_updates(x, updates)
        known = optim.same(new, trial)
        image = new[None]
    else:
        (value, aux), grad = jax.value_and_grad(
            lambda x: loss_fn(x[None]), has_aux=True)(x)
        updates, opt_state = _tx(static, hp).update(grad, state.opt_state, x)
        image = clip_vgg(optax.apply_updates(x, updates))[None]
        known = jnp.zeros((), bool)  # aux is the old image's.
    d = hp["ema_decay"]
    avg = d * state.avg + (1 - d) * image
    known = known & (d == 0)  # Else the image shown is the average.
    aux = jax.tree.map(lambda a: jnp.where(known, a, jnp.zeros_like(a)), aux)
    return State(image, opt_state, state.step + 1, avg), value, known, aux


def current_image(state: State, hp: dict) -> jax.Array:
    """The image to show, clipped: the bias-corrected EMA if it is on.

    With decay d the accumulator after n steps is sum_k (1 - d) d^(n-k) x_k,
    whose weights sum to 1 - d^n; dividing by that makes it a weighted mean.
    """
    d = hp["ema_decay"]
    corrected = state.avg / (1 - d ** state.step.astype(jnp.float32))
    image = jnp.where(state.step > 0, corrected, state.image)
    return clip_vgg(image)


def run_chunk(static: Static, length: int, state: State, vgg_params,
              targets, hp, n_active
              ) -> tuple[State, jax.Array, dict, jax.Array]:
    """Up to ``length`` steps in one ``lax.scan``; steps >= n_active skip,
    and all of them where ``hp["live"]`` is 0 (a member that converged).

    ``n_active`` is traced, so the last, shorter chunk of a run reuses the
    same compiled program. Returns (state, per-step losses (length,) with NaN
    for skipped steps, aux of the current image after the chunk plus
    "evals", the loss-and-gradient evaluations the chunk's steps made (more
    than the step count for L-BFGS, whose line search may try several
    points), that image clipped, in VGG space: a fresh buffer that survives
    the next donation).
    """
    def active(s):
        new, value, known, aux = step(static, s, vgg_params, targets, hp)
        aux = {k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}
        return new, (value, optim.evaluations(static.optim_name,
                                              new.opt_state), known, aux)

    def skipped(s):
        return s, (jnp.full((), jnp.nan, jnp.float32),
                   jnp.zeros((), jnp.int32), jnp.zeros((), bool),
                   {k: jnp.zeros((), jnp.float32)
                    for k in losses.aux_keys(static.spec)})

    # A member that converged (hp["live"] 0) skips every step: its state
    # stays where it stopped while the rest of its group runs on. Mapped
    # members (L-BFGS) branch for real; vmapped ones (Adam, SGD) take the
    # step and keep the old state, since a per-member branch under vmap
    # becomes a select that broadcasts every operand, the VGG weights
    # included (docs/performance.md, Start-up: the rule's gate).
    live = hp.get("live", 1.0) > 0
    if optim.needs_value_fn(static.optim_name):
        def live_step(s):
            return jax.lax.cond(live, active, skipped, s)
    else:
        def live_step(s):
            return jax.tree.map(lambda a, b: jnp.where(live, a, b),
                                active(s), skipped(s))

    def body(st, i):
        return jax.lax.cond(i < n_active, live_step, skipped, st)
    state, (losses_T, evals_T, known_T, aux_T) = jax.lax.scan(
        body, state, jnp.arange(length))
    image = current_image(state, hp)
    # The loss terms of the image after the chunk: the last step's, when
    # it evaluated that image (L-BFGS, usually), else a forward pass.
    last = jnp.clip(n_active - 1, 0, length - 1)
    aux = jax.lax.cond(
        known_T[last], lambda: jax.tree.map(lambda a: a[last], aux_T),
        lambda: losses.total_loss(image, vgg_params, targets, hp,
                                  static.spec)[1])
    aux = dict(aux, evals=jnp.sum(evals_T))
    return state, losses_T, aux, image


def over_members(static: Static, fn: Callable,
                 in_axes: tuple[Optional[int], ...], vmap: bool = False
                 ) -> Callable:
    """``fn`` over a leading member axis of the arguments whose axis is 0.

    One member: the axis is squeezed away and ``fn`` runs unbatched (a
    single run's program). Several: ``jax.vmap`` for Adam and SGD (or when
    ``vmap`` is set), else a ``lax.map``, the members running one after
    another inside the same program: optax's zoom line search branches with
    ``lax.cond`` on per-member values, and under ``vmap`` each such cond
    becomes a select that runs both branches and broadcasts every operand
    across the batch, the VGG weights included, turning every convolution
    into a grouped one (timings: see docs/performance.md, "L-BFGS sweep
    members").
    """
    def call(*args):
        batched = [a for a, ax in zip(args, in_axes) if ax == 0]
        n = jax.tree_util.tree_leaves(batched)[0].shape[0]
        if n == 1:
            squeezed = [jax.tree_util.tree_map(lambda x: x[0], a)
                        if ax == 0 else a for a, ax in zip(args, in_axes)]
            return jax.tree_util.tree_map(lambda x: x[None], fn(*squeezed))
        if vmap or not optim.needs_value_fn(static.optim_name):
            return jax.vmap(fn, in_axes=in_axes)(*args)

        def one(member_args):
            it = iter(member_args)
            return fn(*[next(it) if ax == 0 else a
                        for a, ax in zip(args, in_axes)])
        return jax.lax.map(one, batched)
    return call


class Programs(NamedTuple):
    """The compiled functions of one static setting, over members.

    Arguments and results carry a leading member axis (B) where noted.
      init(image0_B, hp_B, vgg_params, targets) -> state_B
      chunk(state_B, vgg_params, targets, hp_B, n_active)
        -> (state_B, losses_BxT, aux_B, image_B); state_B is donated.
      image(state_B, hp_B) -> image_B (:func:`current_image`)
    """
    init: Callable
    chunk: Callable
    image: Callable


def _chunk_fn(static: Static, length: int) -> Callable:
    # run_chunk is looked up at trace time, so tests can count traces.
    return lambda *args: run_chunk(static, length, *args)


@functools.lru_cache(maxsize=32)
def programs(static: Static, length: int, mesh: Mesh) -> Programs:
    """jit-compiled :class:`Programs`, sharded over ``mesh`` if it has
    several devices (members split along its "batch" axis; VGG params,
    ``n_active`` and, unless ``static.batched_targets``, the targets
    replicated)."""
    t = 0 if static.batched_targets else None
    specs = {
        "init": ((0, 0, None, t), True,
                 lambda *a: init_state(static, *a)),
        "chunk": ((0, None, t, 0, None), False, _chunk_fn(static, length)),
        "image": ((0, 0), False, current_image),
    }
    out = {}
    for name, (axes, vmap, fn) in specs.items():
        f = over_members(static, fn, axes, vmap=vmap)
        donate = (0,) if name == "chunk" else ()
        if mesh.size == 1:
            out[name] = jax.jit(f, donate_argnums=donate)
            continue
        # check_vma off: optax's line search mixes per-member and shared
        # values in cond branches, which the varying-axes check rejects.
        f = jax.shard_map(f, mesh=mesh,
                          in_specs=tuple(P("batch") if a == 0 else P()
                                         for a in axes),
                          out_specs=P("batch"), check_vma=False)
        b, r = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
        out[name] = jax.jit(f, in_shardings=tuple(b if a == 0 else r
                                                  for a in axes),
                            out_shardings=b, donate_argnums=donate)
    return Programs(**out)
