"""The optimisation: jitted, scan-chunked steps on the image.

The image is the only thing optimised. Its state (image, optimiser state,
step, iterate average) is a small NamedTuple threaded through ``lax.scan``
chunks of ``log_every`` steps; buffers are donated, and nothing syncs with
the host inside a chunk. Static settings (layers, optimiser kind, chunk
length) are fixed before tracing; numeric hyperparameters arrive as arrays in
``hparams``, so a new value never recompiles and sweeps can ``vmap`` them.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from nst_jax import images, losses, optim, vgg19

# Valid pixel range in VGG space (BGR minus the mean pixel).
_LO = -np.asarray(images.MEAN_BGR, np.float32)
_HI = 255.0 + _LO


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


def static_from_config(config: ml_collections.ConfigDict,
                       steps: int) -> Static:
    spec = losses.LossSpec(tuple(config.loss.content_layers),
                           tuple(config.loss.style_layers),
                           config.model.pooling, config.model.dtype)
    o = config.optim
    return Static(spec, o.name, o.schedule, float(o.decay_rate),
                  int(o.memory_size), int(steps))


def hparams_from_config(config: ml_collections.ConfigDict,
                        n_styles: int) -> dict[str, np.ndarray]:
    """The traced hyperparameters as float32 arrays (int32 seed)."""
    L = config.loss

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
        "style_blend": vec(config.style_blend, n_styles),
        "learning_rate": np.float32(config.optim.learning_rate),
        "ema_decay": np.float32(config.optim.ema_decay),
        "seed": np.int32(config.seed),
    }


def _tx(static: Static, hp: dict) -> optax.GradientTransformationExtraArgs:
    return optim.make(static.optim_name, hp["learning_rate"],
                      steps=static.steps, schedule_kind=static.schedule,
                      decay_rate=static.decay_rate,
                      memory_size=static.memory_size)


def clip_vgg(x: jax.Array) -> jax.Array:
    """Clamps a VGG-space image to pixels 0..255."""
    return jnp.clip(x, _LO, _HI)


def _loss_fn(static: Static, vgg_params, targets, hp):
    def f(image):
        # L-BFGS optimises an unconstrained image and the loss sees it
        # clipped, so the line search works on one consistent function.
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
    extra evaluation: 775 ms per 256 px step for a vmapped batch of one,
    530 ms without it.)
    """
    tx = _tx(static, hp)
    opt_state = tx.init(image0)
    if optim.needs_value_fn(static.optim_name):
        if vgg_params is None or targets is None:
            raise ValueError("L-BFGS init_state needs vgg_params and targets")
        loss_fn = _loss_fn(static, vgg_params, targets, hp)
        (value, _), grad = jax.value_and_grad(loss_fn, has_aux=True)(image0)
        opt_state = optax.tree_utils.tree_set(opt_state, value=value,
                                              grad=grad)
    state = State(image0, opt_state, jnp.zeros((), jnp.int32),
                  jnp.zeros_like(image0))
    # optax may put one buffer in several leaves; donation needs each leaf
    # to own its buffer.
    return jax.tree_util.tree_map(lambda a: jnp.array(a, copy=True), state)


def step(static: Static, state: State, vgg_params, targets, hp
         ) -> tuple[State, jax.Array]:
    """One optimiser step; returns the new state and the loss before it."""
    tx = _tx(static, hp)
    loss_fn = _loss_fn(static, vgg_params, targets, hp)
    if optim.needs_value_fn(static.optim_name):
        value_fn = lambda x: loss_fn(x)[0]
        # The line search (or init_state) already evaluated value and grad
        # at this point; reuse them rather than paying again.
        value = optax.tree_utils.tree_get(state.opt_state, "value")
        grad = optax.tree_utils.tree_get(state.opt_state, "grad")
        updates, opt_state = tx.update(grad, state.opt_state, state.image,
                                       value=value, grad=grad,
                                       value_fn=value_fn)
        image = optax.apply_updates(state.image, updates)
    else:
        (value, _), grad = jax.value_and_grad(loss_fn, has_aux=True)(
            state.image)
        updates, opt_state = tx.update(grad, state.opt_state, state.image)
        image = clip_vgg(optax.apply_updates(state.image, updates))
    d = hp["ema_decay"]
    avg = d * state.avg + (1 - d) * image
    return State(image, opt_state, state.step + 1, avg), value


def current_image(state: State, hp: dict) -> jax.Array:
    """The image to show: the bias-corrected average if EMA is on."""
    d = hp["ema_decay"]
    corrected = state.avg / (1 - d ** state.step.astype(jnp.float32))
    image = jnp.where(state.step > 0, corrected, state.image)
    return clip_vgg(image)


def run_chunk(static: Static, length: int, state: State, vgg_params,
              targets, hp, n_active
              ) -> tuple[State, jax.Array, dict, jax.Array]:
    """Up to ``length`` steps in one ``lax.scan``; steps >= n_active skip.

    ``n_active`` is traced, so the last, shorter chunk of a run reuses the
    same compiled program. Returns (state, per-step losses (length,) with NaN
    for skipped steps, aux of the current image after the chunk plus
    "evals", the loss-and-gradient evaluations the chunk's steps made (more
    than the step count for L-BFGS, whose line search may try several
    points), that image clipped, in VGG space: a fresh buffer that survives
    the next donation).
    """
    def active(s):
        new, value = step(static, s, vgg_params, targets, hp)
        return new, (value, optim.evaluations(static.optim_name,
                                              new.opt_state))

    def body(st, i):
        return jax.lax.cond(
            i < n_active, active,
            lambda s: (s, (jnp.full((), jnp.nan, jnp.float32),
                           jnp.zeros((), jnp.int32))),
            st)
    state, (losses_T, evals_T) = jax.lax.scan(body, state,
                                              jnp.arange(length))
    image = current_image(state, hp)
    _, aux = losses.total_loss(image, vgg_params, targets, hp, static.spec)
    aux = dict(aux, evals=jnp.sum(evals_T))
    return state, losses_T, aux, image


@functools.lru_cache(maxsize=32)
def compiled_chunk(static: Static, length: int) -> Callable:
    """jit(run_chunk) for one static setting; the state buffers are donated."""
    return jax.jit(functools.partial(run_chunk, static, length),
                   donate_argnums=(0,))


def over_members(static: Static, fn: Callable,
                 in_axes: tuple[Optional[int], ...]) -> Callable:
    """``fn`` over a leading member axis of the arguments whose axis is 0.

    ``jax.vmap`` for Adam and SGD. For L-BFGS a ``lax.map``: the members run
    one after another inside the same compiled program. optax's zoom line
    search branches with ``lax.cond`` on per-member values; under ``vmap``
    each such cond becomes a select that runs both branches and broadcasts
    every operand across the batch, the VGG weights included, turning every
    convolution into a grouped one (64 px: 354 ms per step for 2 members
    against 46 ms for one).
    """
    if not optim.needs_value_fn(static.optim_name):
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        def one(member_args):
            it = iter(member_args)
            return fn(*[next(it) if ax == 0 else a
                        for a, ax in zip(args, in_axes)])
        return jax.lax.map(one, [a for a, ax in zip(args, in_axes)
                                 if ax == 0])
    return mapped


@functools.lru_cache(maxsize=32)
def compiled_init(static: Static) -> Callable:
    """jit(init_state) for one static setting (L-BFGS evaluates there)."""
    return jax.jit(functools.partial(init_state, static))


@functools.lru_cache(maxsize=8)
def _features_fn(layers: tuple[str, ...], pooling: str, dtype: str):
    return jax.jit(lambda p, x: vgg19.extract(p, x, layers, pooling,
                                              jnp.dtype(dtype)))


def features(vgg_params, rgb_HxWx3, layers, pooling="max",
             dtype="float32") -> dict[str, jax.Array]:
    """VGG19 activations of an RGB 0..255 image (jitted per layer set)."""
    x = jnp.asarray(images.to_vgg(np.asarray(rgb_HxWx3, np.float32)))[None]
    return _features_fn(tuple(layers), pooling, dtype)(vgg_params, x)


def compute_targets(vgg_params, spec: losses.LossSpec,
                    content_rgb: np.ndarray, style_rgbs: list,
                    masks_SxHxW: Optional[np.ndarray] = None,
                    content_overrides: Optional[dict] = None) -> dict:
    """Content features and per-style Grams, computed once per scale.

    Args:
      vgg_params: VGG19 conv params.
      spec: layers, pooling, dtype.
      content_rgb: (H, W, 3) 0..255.
      style_rgbs: list of (h, w, 3) 0..255 (sizes may differ).
      masks_SxHxW: optional masks over the content frame, one per style.
      content_overrides: {layer: target} replacing plain content features
        (the portrait gain-map targets).
    """
    feats = features(vgg_params, content_rgb, spec.layers, spec.pooling,
                     spec.dtype)
    content = {l: feats[l] for l in spec.content_layers}
    content.update(content_overrides or {})
    grams = [
        {l: losses.gram(f[l])[0] for l in spec.style_layers}
        for f in (features(vgg_params, s, spec.style_layers, spec.pooling,
                           spec.dtype) for s in style_rgbs)]
    targets = {"content": content,
               "style": {l: jnp.stack([g[l] for g in grams])
                         for l in spec.style_layers}}
    if masks_SxHxW is not None:
        m = jnp.asarray(masks_SxHxW, jnp.float32)
        targets["masks"] = {
            l: jax.image.resize(m, (m.shape[0],) + feats[l].shape[1:3],
                                "linear", antialias=True)
            for l in spec.style_layers}
    return targets


def init_image(kind: str, hp: dict, content_rgb, other_rgb=None
               ) -> jax.Array:
    """Starting image in VGG space, (1, H, W, 3).

    kind: "content"; "noise" (uniform 0..255, seeded by hp["seed"], so it
    vmaps over seeds); "style" / "file" (``other_rgb`` resized to the
    content frame by the caller).
    """
    h, w = content_rgb.shape[:2]
    if kind == "noise":
        key = jax.random.PRNGKey(hp["seed"])
        rgb = jax.random.uniform(key, (h, w, 3), jnp.float32, 0.0, 255.0)
    elif kind == "content":
        rgb = jnp.asarray(content_rgb, jnp.float32)
    else:
        if other_rgb is None:
            raise ValueError(f"init {kind!r} needs an image")
        rgb = jnp.asarray(other_rgb, jnp.float32)
    return images.to_vgg(rgb)[None]


class ChunkInfo(NamedTuple):
    """What a driver callback sees after each chunk."""
    scale: int  # Index into config.multiscale.sizes.
    step: int  # Steps done at this scale.
    steps: int  # Steps of this scale.
    global_step: int  # Steps done over all scales.
    total_steps: int
    record: dict  # The metrics line for this chunk.
    image: np.ndarray  # Current output, RGB 0..255 float32 (H, W, 3).
    state: State  # For checkpoints (read it before the next chunk runs).


class NonFiniteLoss(RuntimeError):
    """The loss went NaN/inf; carries the last good image."""

    def __init__(self, message: str, last_good: np.ndarray, step: int):
        super().__init__(message)
        self.last_good = last_good
        self.step = step


def _to_host(aux: dict) -> dict:
    return {k: float(v) for k, v in jax.device_get(aux).items()}


def portrait_targets(config, vgg_params, inp, spec) -> Optional[dict]:
    """Selim et al. 2016 gain-modulated content targets, or None."""
    P = config.portrait
    if not P.enabled:
        return None
    from nst_jax import portrait  # Only portrait runs pay for the import.
    h, w = inp.content_rgb.shape[:2]
    style = images.resize(inp.style_rgbs[0], (h, w))
    if P.align == "features":
        def feats(rgb, layers):
            return features(vgg_params, rgb, layers, spec.pooling, spec.dtype)
        style, _ = portrait.align_style(style, inp.content_rgb, feats,
                                        layer=P.align_layer)
    elif P.align == "masks":
        style = portrait.align_with_masks(
            style, inp.content_rgb, images.load_mask(P.style_mask, (h, w)),
            images.load_mask(P.content_mask, (h, w)))
    elif P.align == "flow":
        style = portrait.align_with_flow(style, P.flow, (h, w))
    layers = tuple(P.layers)
    fc = features(vgg_params, inp.content_rgb, layers, spec.pooling,
                  spec.dtype)
    fs = features(vgg_params, style, layers, spec.pooling, spec.dtype)
    return portrait.gain_targets(fc, fs, layers, P.g_min, P.g_max)


def output_rgb(config, inp, image_vgg) -> np.ndarray:
    """(1, H, W, 3) VGG-space image -> RGB float32 0..255 as saved.

    With luminance-only colour preservation the photo's chroma is put back.
    """
    rgb = np.asarray(images.from_vgg(jax.device_get(image_vgg)[0]),
                     np.float32)
    if config.color.preserve == "luminance":
        from nst_jax import color
        rgb = color.recombine_luminance(rgb, inp.original_rgb)
    return rgb


def stylize(config: ml_collections.ConfigDict, *, vgg_params=None,
            callback: Optional[Callable[[ChunkInfo], None]] = None,
            resume: Optional[dict] = None
            ) -> tuple[np.ndarray, list[dict]]:
    """Runs a whole style transfer described by ``config``; writes no files.

    Args:
      config: a config built on ``nst_jax.config.base()``.
      vgg_params: VGG19 params; loaded from ``config.model.weights`` if None.
      callback: called after every chunk (progress, snapshots, checkpoints).
      resume: {"scale": i, "leaves": [arrays], "metrics": [...]} from a
        checkpoint: scales before i are skipped and scale i continues from
        the saved state.

    Returns:
      (final RGB image (H, W, 3) float32 0..255, list of metric records).

    Raises:
      UserError: bad input. NonFiniteLoss: the loss diverged.
    """
    from nst_jax import config as cfg, inputs
    cfg.validate(config)
    if vgg_params is None:
        from nst_jax import weights
        vgg_params = weights.load_vgg19_params(config.model.weights or None)
    plan = cfg.scales(config)
    total = sum(n for _, n in plan)
    metrics = list(resume["metrics"]) if resume else []
    first = resume["scale"] if resume else 0
    done = sum(n for _, n in plan[:first])
    rgb = None
    for si, (size, steps) in enumerate(plan):
        if si < first:
            continue
        inp = inputs.prepare(config, size)
        h, w = inp.content_rgb.shape[:2]
        static = static_from_config(config, steps)
        hp = jax.tree_util.tree_map(jnp.asarray, hparams_from_config(
            config, len(inp.style_rgbs)))
        targets = compute_targets(
            vgg_params, static.spec, inp.content_rgb, inp.style_rgbs,
            inp.masks, portrait_targets(config, vgg_params, inp,
                                         static.spec))
        if rgb is None:
            image0 = init_image(config.init, hp, inp.content_rgb,
                                inp.init_rgb)
        else:  # Coarse-to-fine: start from the previous scale, upsampled.
            image0 = images.to_vgg(jnp.asarray(images.resize(rgb, (h, w))))[
                None]
        init = compiled_init(static)
        if resume and si == first:  # Only the structure: skip L-BFGS's eval.
            treedef = jax.tree_util.tree_structure(jax.eval_shape(
                init, image0, hp, vgg_params, targets))
            state = jax.tree_util.tree_unflatten(
                treedef, [jnp.asarray(a) for a in resume["leaves"]])
        else:
            state = init(image0, hp, vgg_params, targets)
        length = min(config.log_every, steps)
        chunk = compiled_chunk(static, length)
        k = int(state.step)
        last_good = output_rgb(config, inp, current_image(state, hp))
        while k < steps:
            n = min(length, steps - k)
            state, losses_T, aux, image = chunk(state, vgg_params, targets,
                                                hp, jnp.int32(n))
            rec = _to_host(aux)
            losses_T = np.asarray(losses_T)[:n]
            if not np.all(np.isfinite(losses_T)) or not np.isfinite(
                    rec["loss"]):
                raise NonFiniteLoss(
                    f"loss became NaN/inf between steps {done + k} and "
                    f"{done + k + n} (scale {si}, size {size}); lower the "
                    "learning rate or the loss weights", last_good, done + k)
            k += n
            # loss_start: the loss before this chunk's first step (at step 0
            # of a run, the starting image's loss).
            rec.update(step=done + k, scale=si, size=size,
                       loss_start=float(losses_T[0]),
                       loss_min=float(losses_T.min()))
            metrics.append(rec)
            last_good = output_rgb(config, inp, image)
            if callback is not None:
                callback(ChunkInfo(si, k, steps, done + k, total, rec,
                                   last_good, state))
        rgb = last_good
        done += steps
    return rgb, metrics
