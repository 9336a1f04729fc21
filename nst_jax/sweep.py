"""Hyperparameter sweeps: one compiled, vmapped, sharded program per group.

A sweep file holds ``get_config()`` and ``sweep(add)``; ``add`` is called
once per member with dotted overrides (big_vision style)::

    def sweep(add):
        for w in (1e-4, 1e-3):
            for seed in (0, 1):
                add(**{"loss.style_weight": w, "seed": seed})

Members whose configs differ only in :data:`TRACED_KEYS` share a program:
their hyperparameters are stacked along a leading batch axis and the chunk
function of ``stylize`` runs under ``jax.vmap`` (VGG params and targets
broadcast), one ``lax.scan`` chunk of ``log_every`` steps per call; L-BFGS
members run under ``lax.map`` inside a ``shard_map`` instead (see
``stylize.over_members``). Each other
difference (size, layers, optimiser, ...) starts a new group and a new
program. Multiscale groups run their scales in sequence with the whole batch,
resizing each member's image between scales, as ``stylize.stylize`` does.

The batch axis is sharded over a ``jax.sharding.Mesh`` of all devices (axis
"batch"); VGG params and targets are replicated. The batch is padded to a
multiple of the device count by repeating the last member; padded results
are dropped. One host with several GPUs needs nothing more: the process
sees them all. Several hosts (TPU pod slice, multi-node GPU): start one
process per host, all with the same command plus ``--distributed``, which
calls ``jax.distributed.initialize()`` before anything touches a device; it
finds the coordinator, process count and index itself on Cloud TPU, SLURM,
Open MPI (``mpirun``) and Kubernetes. On a TPU pod slice::

    gcloud compute tpus tpu-vm ssh NAME --worker=all --command \\
      "cd nst_jax && python scripts/sweep.py --distributed \\
         --config=configs/sweep_style_weight.py --workdir=/shared/sweep1"

and on GPU nodes under SLURM, ``srun --ntasks-per-node=1 python
scripts/sweep.py --distributed ...``. Every process runs the same program on
its own shard of the batch; results are gathered to every process and only
process 0 writes files, so ``--workdir`` only needs to be writable there;
every host needs the input images and weights. Give an explicit
``--workdir``: the default holds a timestamp that may differ between hosts.
"""

from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from nst_jax import config as cfg
from nst_jax import images, inputs, stylize
from nst_jax.errors import UserError

# Config fields that become traced hparams (stylize.hparams_from_config):
# members differing only in these share one compiled program.
TRACED_KEYS = ("loss.content_weight", "loss.style_weight", "loss.tv_weight",
               "loss.content_layer_weights", "loss.style_layer_weights",
               "style_blend", "optim.learning_rate", "optim.ema_decay",
               "seed")
RESULT_TERMS = ("loss", "content", "style", "tv")


def load_sweep_fn(config_file: str) -> Callable:
    """The ``sweep(add)`` function of a config file (``path[:arg]``)."""
    import importlib.util
    path = config_file.split(":", 1)[0]  # As config_flags splits it.
    try:
        spec = importlib.util.spec_from_file_location("nst_sweep_file", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (OSError, AttributeError) as e:
        raise UserError(f"cannot load sweep file {path}: {e}") from None
    fn = getattr(module, "sweep", None)
    if not callable(fn):
        raise UserError(f"{path} defines no sweep(add) function; a sweep "
                        "file needs get_config() and sweep(add)")
    return fn


def collect(sweep_fn: Callable) -> list[dict[str, Any]]:
    """Calls ``sweep_fn(add)`` and returns one override dict per member."""
    members = []
    sweep_fn(lambda **kw: members.append(dict(kw)))
    if not members:
        raise UserError("the sweep function added no members; call "
                        "add(**{'loss.style_weight': v}) at least once")
    return members


def expand(config: ml_collections.ConfigDict, sweep_fn: Callable
           ) -> list[ml_collections.ConfigDict]:
    """One locked, validated config per member of ``sweep_fn``.

    Raises:
      UserError: an unknown key, a wrong type or an invalid value.
    """
    members = []
    for i, over in enumerate(collect(sweep_fn)):
        c = cfg.override(config, over)
        try:
            cfg.validate(c)
        except UserError as e:
            raise UserError(f"sweep member {i} ({over}): {e}") from None
        members.append(c)
    return members


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {dotted key: leaf} (vit ``common.flatten``)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def group_key(config: ml_collections.ConfigDict) -> str:
    """The config without its traced fields: equal keys, one program."""
    flat = flatten(cfg.to_dict(config))
    return json.dumps({k: v for k, v in flat.items() if k not in TRACED_KEYS},
                      sort_keys=True)


def group(configs: list) -> list[list[int]]:
    """Member indices per group, groups in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(configs):
        groups.setdefault(group_key(c), []).append(i)
    return list(groups.values())


def varying_keys(configs: list) -> list[str]:
    """Dotted config keys whose value is not the same for every member."""
    flats = [flatten(cfg.to_dict(c)) for c in configs]
    return sorted(k for k in flats[0] if any(f[k] != flats[0][k]
                                             for f in flats))


def make_mesh(devices: Optional[list] = None) -> Mesh:
    """A 1-D mesh with axis "batch" over ``devices`` (default: all)."""
    return Mesh(np.asarray(devices or jax.devices()), ("batch",))


@functools.lru_cache(maxsize=32)
def batched_chunk(static: stylize.Static, length: int, mesh: Mesh
                  ) -> Callable:
    """run_chunk over the members, sharded over ``mesh``; state donated.

    Each device runs its shard of the members with
    ``stylize.over_members``: vmapped, or one after another for L-BFGS.
    """
    axes = (0, None, None, 0, None)
    fn = stylize.over_members(
        static, functools.partial(_run_chunk, static, length), axes)
    # check_vma off: optax's line search mixes per-member and shared values
    # in cond branches, which the varying-axes check rejects.
    fn = jax.shard_map(fn, mesh=mesh,
                       in_specs=tuple(P("batch") if a == 0 else P()
                                      for a in axes),
                       out_specs=P("batch"), check_vma=False)
    b, r = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    return jax.jit(fn, in_shardings=(b, r, r, b, r), out_shardings=b,
                   donate_argnums=(0,))


def _run_chunk(*args):
    # Looked up at trace time, so tests can count traces by patching it.
    return stylize.run_chunk(*args)


@functools.lru_cache(maxsize=32)
def batched_init(static: stylize.Static, mesh: Mesh) -> Callable:
    """init_state over (image0, hp) batched along the members, sharded."""
    b = NamedSharding(mesh, P("batch"))
    r = NamedSharding(mesh, P())
    return jax.jit(jax.vmap(functools.partial(stylize.init_state, static),
                            in_axes=(0, 0, None, None)),
                   in_shardings=(b, b, r, r), out_shardings=b)


def _put(tree, sharding: NamedSharding):
    """Host values -> global arrays; works across processes as well."""
    def one(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding,
                                            lambda idx: x[idx])
    return jax.tree_util.tree_map(one, tree)


def _host(x) -> np.ndarray:
    """A (possibly multi-host) sharded array, whole, as numpy."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _stack(items: list, size: int):
    """Stacks pytrees on a new axis 0, padded by repeating the last one."""
    items = list(items) + [items[-1]] * (size - len(items))
    return jax.tree_util.tree_map(lambda *xs: np.stack(
        [np.asarray(x) for x in xs]), *items)


def _setup_scale(configs: list, vgg_params, size: int, steps: int,
                 rgbs: Optional[list]) -> tuple:
    """Inputs, static, per-member hparams, targets, starting images."""
    c0 = configs[0]
    inp = inputs.prepare(c0, size)
    static = stylize.static_from_config(c0, steps)
    hps = [stylize.hparams_from_config(c, len(inp.style_rgbs))
           for c in configs]
    targets = stylize.compute_targets(
        vgg_params, static.spec, inp.content_rgb, inp.style_rgbs, inp.masks,
        stylize.portrait_targets(c0, vgg_params, inp, static.spec))
    if rgbs is None:  # Same starting images as stylize.stylize.
        image0 = [stylize.init_image(
            c0.init, jax.tree_util.tree_map(jnp.asarray, hp),
            inp.content_rgb, inp.init_rgb) for hp in hps]
    else:  # Coarse-to-fine: each member from its own previous output.
        hw = inp.content_rgb.shape[:2]
        image0 = [images.to_vgg(images.resize(r, hw))[None] for r in rgbs]
    return inp, static, hps, targets, image0


class BatchInfo(NamedTuple):
    """What a group callback sees after each chunk (one entry per member)."""
    scale: int
    step: int  # Steps done at this scale.
    steps: int
    global_step: int
    total_steps: int
    records: list  # Metric dict per member; None once a member diverged.
    images: list  # Current RGB 0..255 (H, W, 3) per member.


class GroupResult(NamedTuple):
    images: list  # Final (or last good) RGB per member.
    metrics: list  # Metric records per member.
    status: list  # "done" or "diverged" per member.
    compile_s: float  # Lowering + XLA compile of the group's programs.
    # Everything else (targets, init, steps, host transfers), callbacks
    # excluded so file writing does not count as compute.
    run_s: float


def run_group(configs: list, vgg_params, mesh: Optional[Mesh] = None,
              callback: Optional[Callable[[BatchInfo], None]] = None
              ) -> GroupResult:
    """Runs members that differ only in traced fields as one vmapped batch.

    Args:
      configs: member configs with equal :func:`group_key`.
      vgg_params: VGG19 params (replicated over the mesh).
      mesh: from :func:`make_mesh`; default all devices.
      callback: called after every chunk on every process.
    """
    c0, n = configs[0], len(configs)
    if len({group_key(c) for c in configs}) != 1:
        raise ValueError("run_group needs configs that differ only in "
                         f"traced fields {TRACED_KEYS}")
    mesh = mesh or make_mesh()
    size_b = -(-n // mesh.size) * mesh.size
    repl = NamedSharding(mesh, P())
    batch = NamedSharding(mesh, P("batch"))
    params = _put(vgg_params, repl)
    plan = cfg.scales(c0)
    total = sum(s for _, s in plan)
    metrics, status = [[] for _ in range(n)], ["done"] * n
    rgbs, compile_s, callback_s, done = None, 0.0, 0.0, 0
    t_start = time.perf_counter()
    for si, (size, steps) in enumerate(plan):
        inp, static, hps, targets, image0 = _setup_scale(
            configs, vgg_params, size, steps, rgbs)
        targets = _put(targets, repl)
        hp_b = _put(_stack(hps, size_b), batch)
        image0_b = _put(_stack(image0, size_b), batch)
        t = time.perf_counter()
        init = batched_init(static, mesh).lower(image0_b, hp_b, params,
                                                 targets).compile()
        compile_s += time.perf_counter() - t
        state = init(image0_b, hp_b, params, targets)
        length = min(c0.log_every, steps)
        t = time.perf_counter()
        chunk = batched_chunk(static, length, mesh).lower(
            state, params, targets, hp_b, _put(np.int32(length), repl)
        ).compile()
        compile_s += time.perf_counter() - t
        # The last good image of each member, should it diverge at once.
        last = [stylize.output_rgb(configs[i], inp, stylize.clip_vgg(x))
                for i, x in enumerate(image0)]
        k = 0
        while k < steps:
            m = min(length, steps - k)
            state, losses_bt, aux_b, image_b = chunk(
                state, params, targets, hp_b, _put(np.int32(m), repl))
            losses_bt = _host(losses_bt)[:n, :m]
            aux_b = {key: _host(v)[:n] for key, v in aux_b.items()}
            image_b = _host(image_b)[:n]
            k += m
            records = []
            for i in range(n):
                rec = {key: float(v[i]) for key, v in aux_b.items()}
                if status[i] == "done" and not (
                        np.all(np.isfinite(losses_bt[i]))
                        and np.isfinite(rec["loss"])):
                    status[i] = "diverged"
                if status[i] != "done":
                    records.append(None)
                    continue
                rec.update(step=done + k, scale=si, size=size,
                           loss_start=float(losses_bt[i, 0]),
                           loss_min=float(losses_bt[i].min()))
                metrics[i].append(rec)
                records.append(rec)
                last[i] = stylize.output_rgb(configs[i], inp, image_b[i])
            if callback is not None:
                t = time.perf_counter()
                callback(BatchInfo(si, k, steps, done + k, total, records,
                                   last))
                callback_s += time.perf_counter() - t
        rgbs, done = last, done + steps
    run_s = time.perf_counter() - t_start - compile_s - callback_s
    return GroupResult(rgbs, metrics, status, compile_s, run_s)
