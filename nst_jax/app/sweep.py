"""Hyperparameter sweeps: expand a sweep file, run it, tabulate it.

A sweep file holds ``get_config()`` and ``sweep(add)``; ``add`` is called
once per member with dotted overrides (big_vision style)::

    def sweep(add):
        for w in (1e-4, 1e-3):
            for seed in (0, 1):
                add(**{"loss.style_weight": w, "seed": seed})

Members run through the same driver and run directories as single runs
(``nst_jax.app.runner``): members whose configs differ only in traced fields
(``nst_jax.optimize.loop.TRACED_KEYS``) share one compiled program, vmapped
(Adam, SGD) or mapped (L-BFGS) along a member axis that is sharded over all
devices; any other difference starts a new group. Each member gets a run
directory with checkpoints at ``checkpoint_every``; the sweep directory adds
``sweep.json``, ``results.csv``, ``results.json`` and ``contact_sheet.png``.
``--config.resume=SWEEP_DIR`` continues an interrupted sweep into a new
directory: members with a checkpoint continue from it, members whose group
never started start afresh.

Several hosts (TPU pod slice, multi-node GPU): start one process per host,
all with the same command plus ``--distributed`` (scripts/sweep.py), which
calls ``jax.distributed.initialize()`` before anything touches a device; it
finds the coordinator, process count and index itself on Cloud TPU, SLURM,
Open MPI and Kubernetes (elsewhere pass ``--coordinator``,
``--num_processes`` and ``--process_id``). On a TPU pod slice::

    gcloud compute tpus tpu-vm ssh NAME --worker=all --command \\
      "cd nst_jax && python scripts/sweep.py --distributed \\
         --config=configs/sweep_style_weight.py --workdir=/shared/sweep1"

and on GPU nodes under SLURM, ``srun --ntasks-per-node=1 python
scripts/sweep.py --distributed ...``. Every process runs the same program on
its own shard of the members; results are gathered to every process and
only process 0 writes files, so ``--workdir`` only needs to be writable
there; every host needs the input images and weights. A check that fails on
any process ends every process with exit status 2. Give an explicit
``--workdir``: the default holds a timestamp that may differ between hosts.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import time
from typing import Any, Callable, Optional, TextIO

import ml_collections
from flax import traverse_util
from jax.sharding import Mesh

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import (
    checkpoint, config_file as config_file_lib, exits, rundir, runner)
from nst_jax.drive import sharding
from nst_jax.errors import UserError
from nst_jax.figures import plot
from nst_jax.io import atomic

RESULT_TERMS = ("loss", "content", "style", "tv")


def load_sweep_fn(config_file: str) -> Callable:
    """The ``sweep(add)`` function of a config file (``path[:arg]``)."""
    path = config_file.split(":", 1)[0]
    module = config_file_lib.load_module(path, "sweep file")
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
        try:
            c = cfg.override(config, over)
            plan_lib.fields(c)
        except UserError as e:
            raise UserError(f"sweep member {i} ({over}): {e}") from None
        members.append(c)
    return members


def _flat(config: ml_collections.ConfigDict) -> dict[str, Any]:
    return traverse_util.flatten_dict(cfg.to_dict(config), sep=".")


def varying_keys(configs: list) -> list[str]:
    """Dotted config keys whose value is not the same for every member."""
    flats = [_flat(c) for c in configs]
    return sorted(k for k in flats[0] if any(f[k] != flats[0][k]
                                             for f in flats))


def check_effective(configs: list) -> None:
    """Refuses a sweep that varies a field no member's run reads.

    Raises:
      UserError: naming the field and why it has no effect.
    """
    inert = [plan_lib.inert_fields(plan_lib.from_config(c))
             for c in configs]
    for key in varying_keys(configs):
        reasons = [fields.get(key) for fields in inert]
        if all(reasons):
            raise UserError(f"the sweep varies {key}, which has no effect "
                            f"here ({reasons[0]}): its members would be "
                            "identical")


def sheet_columns(overrides: list[dict], n: int) -> Optional[int]:
    """Contact-sheet columns: one per value of the key that changes
    fastest in ``sweep(add)``'s order (so each row varies only that key),
    or None (a square-ish grid) where that does not tile the members."""
    if len(overrides) < 2 or n != len(overrides):
        return None
    inner = [k for k in overrides[1] if overrides[1][k] != overrides[0].get(k)]
    if len(inner) != 1:
        return None
    cols = len({repr(o.get(inner[0])) for o in overrides})
    return cols if 1 < cols < n and n % cols == 0 else None


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def _write_results(workdir: str, rows: list[dict]) -> None:
    rundir.write_json(os.path.join(workdir, "results.json"), rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                    for k, v in r.items()})
    atomic.write_bytes(os.path.join(workdir, "results.csv"),
                       buf.getvalue().encode())


def _rows(names: list, configs: list, varying: list, groups: list,
          results: list) -> list[dict]:
    group_of = {i: gi for gi, idx in enumerate(groups) for i in idx}
    rows = []
    for i, res in enumerate(results):
        if res is None:  # Its group never started.
            continue
        last = res.metrics[-1] if res.metrics else {}
        flat = _flat(configs[i])
        rows.append({"member": names[i], "group": group_of[i],
                     **{k: flat[k] for k in varying}, "status": res.status,
                     **{t: last.get(t) for t in RESULT_TERMS},
                     "wall_s": res.wall_s, "group_compile_s": res.compile_s,
                     "group_size": len(groups[group_of[i]])})
    return rows


def _check_resume(old: str, overrides: list, names: list) -> None:
    """The sweep at ``old`` must be this sweep, with a checkpoint."""
    try:
        with open(os.path.join(old, "sweep.json")) as f:
            recorded = json.load(f)["overrides"]
    except (OSError, ValueError, KeyError):
        raise UserError(f"{old} is not a sweep directory (no readable "
                        "sweep.json); --config.resume needs one") from None
    if recorded != json.loads(json.dumps(overrides)):
        raise UserError(f"the sweep's members differ from those recorded in "
                        f"{old}/sweep.json; resume the same sweep file")
    if not any(os.path.isfile(os.path.join(old, n, checkpoint.CHECKPOINT))
               for n in names):
        raise UserError(f"no member of {old} has a checkpoint: resume needs "
                        "a sweep made with --config.checkpoint_every > 0")


def run_sweep(config: ml_collections.ConfigDict, sweep_fn: Callable,
              workdir: str, vgg_params=None, out: TextIO = sys.stderr, *,
              mesh: Optional[Mesh] = None,
              config_file: Optional[str] = None) -> dict:
    """Runs every member of a sweep into ``workdir``; returns a summary.

    Writes ``member_NNN/`` run directories, results.csv, results.json,
    sweep.json and contact_sheet.png. A member whose loss goes NaN/inf is
    marked "diverged" (its last good image saved as diverged.png) while
    the rest of its group carries on. Only process 0 writes files.

    Returns:
      {"workdir", "rows" (as in results.json), "groups", "wall_s",
      "contact_sheet"}.

    Raises:
      UserError: bad sweep, config, inputs or checkpoints, on any process
        (nothing is written).
      runner.Interrupted: Ctrl-C / SIGTERM; finished members' rows and
        the interrupted members' images are saved.
    """
    overrides = collect(sweep_fn)
    configs = expand(config, lambda add: [add(**o) for o in overrides])
    names = [f"member_{i:03d}" for i in range(len(configs))]
    varying, groups = varying_keys(configs), []
    writes = sharding.writes_files()

    def checks() -> None:
        check_effective(configs)
        if writes:
            rundir.check_workdir(workdir)
        if config.resume:
            _check_resume(config.resume, overrides, names)
    devices = (mesh or sharding.make_mesh()).size

    def on_start(member_groups: list) -> None:
        groups.extend(member_groups)
        if writes:
            rundir.make_dir(workdir)
            rundir.write_json(os.path.join(workdir, "sweep.json"), {
                "config_file": config_file, "base_config": cfg.to_dict(config),
                "overrides": overrides, "varying": varying,
                "devices": devices,
                "groups": [[names[i] for i in g] for g in groups],
                **rundir.environment()})
        print(f"[sweep] {len(configs)} members in {len(groups)} group(s) on "
              f"{devices} device(s); varying "
              f"{', '.join(varying) or 'nothing'}", file=out, flush=True)

    # Resuming: a member continues from its run directory in the old sweep
    # if that holds a checkpoint; members of groups that never ran start
    # afresh.
    members = [runner.Member(
        c, os.path.join(workdir, n), overrides[i],
        os.path.join(config.resume, n) if config.resume else None,
        {"sweep": {"member": n, "devices": devices}}, resume_if_there=True)
        for i, (c, n) in enumerate(zip(configs, names))]
    t0 = time.perf_counter()
    try:
        results = runner.run_members(
            members, vgg_params=vgg_params, mesh=mesh, out=out,
            config_file=config_file, prefix="[sweep]", checks=checks,
            on_start=on_start)
    except runner.Interrupted as e:
        rows = _rows(names, configs, varying, groups, e.results)
        if writes and rows:  # Keep the table of what finished.
            _write_results(workdir, rows)
        raise
    rows = _rows(names, configs, varying, groups, results)
    sheet = os.path.join(os.path.abspath(workdir), "contact_sheet.png")
    if writes:
        _write_results(workdir, rows)
        plot.contact_sheet([r.image for r in results], [[r["member"] + (
            "" if r["status"] == "done" else f" ({r['status']})")] + [
            f"{k.split('.')[-1]}={_fmt(r[k])}" for k in varying]
            for r in rows], sheet, cols=sheet_columns(overrides, len(rows)))
    wall_s = time.perf_counter() - t0
    print(f"[sweep] done: {len(configs)} members in {wall_s:.1f}s; results "
          f"in {os.path.join(workdir, 'results.csv')}", file=out, flush=True)
    return {"workdir": os.path.abspath(workdir), "rows": rows,
            "groups": len(groups), "wall_s": wall_s, "contact_sheet": sheet}


def main(config: ml_collections.ConfigDict, sweep_fn: Callable,
         workdir: Optional[str] = None, **kwargs) -> int:
    """run_sweep() with exit codes: 0 done, 2 bad input, 130 interrupted.

    Prints the sweep directory as the last stdout line on success; a member
    that diverged is a result (status in results.csv), not a failure.
    """
    workdir = workdir or rundir.default_workdir(f"sweep-{config.name}")
    return exits.call(
        lambda: run_sweep(config, sweep_fn, workdir, **kwargs),
        done=lambda summary: print(summary["workdir"]),
        interrupted="interrupted: finished members and the current images "
        "are saved; resume with --config.resume=" + workdir)
