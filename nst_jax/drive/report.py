"""What running a group of members reports: after every chunk
(:class:`ChunkInfo`, to callbacks) and at the end (:class:`GroupResult`).
Shared by the optimisation (``nst_jax.drive.driver``) and the fast method
(``nst_jax.drive.fast_group``), so run directories and progress serve both;
and what a resumed group starts from (:class:`Checkpoint`)."""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import numpy as np


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
    # Host copies of each member's State leaves; read before returning
    # (the next chunk donates the state's buffers).
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


class Checkpoint(NamedTuple):
    """One member's saved progress, as :func:`load_checkpoint` reads it."""
    scale: int  # Scale index the state belongs to.
    step: int  # Steps done over all scales when it was taken.
    leaves: list  # Host arrays of the member's loop.State, tree order.
    metrics: list  # Records written so far.
    error: str = ""  # The divergence message, if it had diverged.
    last_good: Optional[np.ndarray] = None  # Its last finite output then.
