"""What running a group of members reports: after every chunk
(:class:`ChunkInfo`, to callbacks) and at the end (:class:`GroupResult`).
Shared by the optimisation (``nst_jax.drive.driver``) and the fast method
(``nst_jax.drive.fast_group``), so run directories and progress serve both;
and what a resumed group starts from (:class:`Checkpoint`), with the
naming of a member's state by tree path that checkpoints are stored and
restored by (:func:`flatten_state`, :func:`fill_state`)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Optional

import jax
import numpy as np

from nst_jax.errors import UserError


class ChunkInfo(NamedTuple):
    """What the callback sees after every chunk (lists: one per member)."""
    scale: int  # Index into config.multiscale.sizes.
    step: int  # Steps done at this scale.
    steps: int  # Steps of this scale.
    global_step: int  # Steps done over all scales.
    total_steps: int
    records: list  # The metrics line per member; None once it diverged.
    images: list  # Output RGB 0..255 (H, W, 3) per member (last good).
    raw_images: list  # The optimised image itself (before recolouring).
    errors: list  # "" or the member's divergence message.
    # Host copies of each member's State leaves, {tree path: array} per
    # member (:func:`flatten_state`); read before returning (the next chunk
    # donates the state's buffers).
    state_leaves: Callable[[], list]


class GroupResult(NamedTuple):
    images: list  # Final (or last good) output RGB per member.
    metrics: list  # Metric records per member.
    status: list  # "done" or "diverged" per member.
    errors: list  # "" or the divergence message per member.
    compile_s: float  # Lowering + XLA compile of the group's programs.
    # Everything else (targets, init, steps, host transfers), callbacks
    # excluded so file writing does not count as compute.
    run_s: float
    # Per member, per scale run: where it stopped and why
    # (:func:`nst_jax.optimize.converge.stop_record`).
    stops: list = []


class Checkpoint(NamedTuple):
    """One member's saved progress, as ``nst_jax.app.rundir`` reads it."""
    scale: int  # Scale index the state belongs to.
    step: int  # Steps done over all scales when it was taken.
    # Host arrays of the member's loop.State (no member axis), keyed by
    # tree path (:func:`flatten_state`): a resumed run fills the state it
    # expects by name, so a changed layout is refused, never reshaped.
    state: dict
    metrics: list  # Records written so far.
    error: str = ""  # The divergence message, if it had diverged.
    last_good: Optional[np.ndarray] = None  # Its last finite output then.
    source: str = ""  # The file it was read from, for messages.


def _key_name(key: Any) -> str:
    """One step of a tree path as a name: a field, index or dict key."""
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return str(key.idx)
    if isinstance(key, (jax.tree_util.DictKey,
                        jax.tree_util.FlattenedIndexKey)):
        return str(key.key)
    return str(key)


def state_path(path: tuple) -> str:
    """A tree path as a "/"-joined name, e.g. ``opt_state/0/mu``: the
    NamedTuple fields and tuple indices of ``loop.State`` and optax's
    states, stable across versions that keep the layout."""
    return "/".join(_key_name(k) for k in path)


def flatten_state(tree: Any) -> dict[str, Any]:
    """{:func:`state_path`: leaf} of a pytree, in tree order."""
    flat = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = state_path(path)
        if name in flat:  # A layout whose names collide cannot be stored.
            raise ValueError(f"two leaves of the state are named {name!r}")
        flat[name] = leaf
    return flat


def _shape(shape: tuple) -> str:
    return str(tuple(int(d) for d in shape))


def fill_state(expected: Any, stored: dict, source: str = "") -> Any:
    """``expected``'s tree filled with ``stored``'s arrays, by path.

    Args:
      expected: the state this run starts from, as shapes (e.g. from
        ``jax.eval_shape``): anything with ``.shape`` and ``.dtype``.
      stored: {path: host array}, as :func:`flatten_state` names them.
      source: the checkpoint file, named in the message.

    Raises:
      UserError: the first field (in tree order) that is missing or whose
        shape or dtype differs, or else the first stored field this run
        does not have (one line).
    """
    want = flatten_state(expected)
    where = f"checkpoint {source or '(unnamed)'} does not match this run"
    extra = [k for k in stored if k not in want]
    for name, spec in want.items():
        if name not in stored:
            instead = (f" (it has {extra[0]!r}, which this run does not "
                       "have)" if extra else "")
            raise UserError(f"{where}: it has no state field {name!r}"
                            f"{instead}; resume needs a checkpoint written "
                            "by this version for this config")
        a = np.asarray(stored[name])
        if tuple(a.shape) != tuple(spec.shape):
            raise UserError(
                f"{where}: state field {name!r} has shape {_shape(a.shape)}"
                f", this run expects {_shape(spec.shape)}")
        if a.dtype != np.dtype(spec.dtype):
            raise UserError(
                f"{where}: state field {name!r} has dtype {a.dtype}, this "
                f"run expects {np.dtype(spec.dtype)}")
    if extra:
        raise UserError(f"{where}: it has state field {extra[0]!r}, which "
                        "this run does not have")
    leaves = [np.asarray(stored[name]) for name in want]
    return jax.tree_util.tree_unflatten(
        jax.tree_util.tree_structure(expected), leaves)
