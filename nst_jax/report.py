"""What running a group of members reports: after every chunk
(:class:`ChunkInfo`, to callbacks) and at the end (:class:`GroupResult`).
Shared by the optimisation (``nst_jax.driver``) and the fast method
(``nst_jax.fast.group``), so run directories and progress serve both."""

from __future__ import annotations

from typing import Callable, NamedTuple


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
