"""Devices and processes: the member mesh, host <-> device transfers, and
agreement between the processes of a multi-host run.

One host with several devices needs nothing more than a mesh over them.
Several hosts (TPU pod slices, multi-node GPU) run one process each, all
with the same program, after ``jax.distributed.initialize``; every process
puts its share of each global array (:func:`put`) and sees the whole of
each result (:func:`gather`). Checks made before any work must end every
process the same way (:func:`agree`), or the processes that passed would
wait forever in the first collective for the ones that stopped.
"""

from __future__ import annotations

from typing import Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P


def make_mesh(devices: Optional[list] = None) -> Mesh:
    """A 1-D mesh with axis "batch" over ``devices`` (default: all)."""
    return Mesh(np.asarray(devices or jax.devices()), ("batch",))


def single_device_mesh() -> Mesh:
    """The mesh a group of one member runs on: this process's first device."""
    return make_mesh(jax.local_devices()[:1])


def put(tree, mesh: Mesh, batched: bool):
    """Host values -> arrays on ``mesh``, split along axis 0 if ``batched``
    (else replicated); works across processes as well."""
    sharding = NamedSharding(mesh, P("batch") if batched else P())
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding,
                                            lambda idx: x[idx])
    return jax.tree_util.tree_map(one, tree)


def abstract(shape: tuple, dtype, mesh: Mesh, batched: bool
             ) -> jax.ShapeDtypeStruct:
    """What :func:`put` of a ``shape`` array would give, without the data
    (to compile a program before its inputs exist)."""
    return jax.ShapeDtypeStruct(shape, dtype, sharding=NamedSharding(
        mesh, P("batch") if batched else P()))


def gather(x) -> np.ndarray:
    """A (possibly multi-host) sharded array, whole, as numpy."""
    if jax.process_count() > 1 and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def writes_files() -> bool:
    """Only process 0 writes run directories."""
    return jax.process_index() == 0


def agree(error: Optional[str]) -> Optional[str]:
    """Every process learns whether any process failed its checks.

    Args:
      error: this process's one-line error, or None.

    Returns:
      This process's own error if it had one, a line naming the processes
      that failed if another did, else None. A collective: every process
      must call it at the same point. One process: ``error`` itself.
    """
    if jax.process_count() == 1:
        return error
    flags = np.asarray(multihost_utils.process_allgather(
        np.int32(error is not None))).reshape(-1)
    if error is not None:
        return error
    failed = [int(i) for i in np.flatnonzero(flags)]
    if failed:
        return (f"process(es) {failed} refused the run before it started "
                "(their error line says why); every process stops")
    return None
