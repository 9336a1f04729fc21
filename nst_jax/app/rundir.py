"""The run directory: one type for single runs and sweep members alike.

A run directory is created once and never overwritten. It holds
``config.json`` (written first: the resolved config, replayable),
``manifest.json`` (versions, devices, hashes, status), ``metrics.jsonl``
(one line per chunk), ``snapshot_*.png`` and ``checkpoint.npz`` at their
cadences, and at the end ``final.png`` (or ``interrupted.png`` /
``diverged.png``) and ``loss_curve.png``. Every file is written
atomically, so a crash leaves the old file or the new one, never half.
Under the scripts, the first directory made also gets ``log.txt``: the
Python/absl log of the whole process (JAX, XLA, absl), kept off the
console (:class:`LogFile`).

Checkpoints are read, written and checked by :mod:`nst_jax.app.checkpoint`.
"""

from __future__ import annotations

import collections
import datetime
import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from importlib import metadata
from typing import Any, Optional

import jax
import numpy as np
from absl import logging as absl_logging

from nst_jax.app import checkpoint
from nst_jax.drive.report import Checkpoint
from nst_jax.errors import UserError
from nst_jax.figures import plot
from nst_jax.io import atomic, images
from nst_jax.plan import Plan

LOG = "log.txt"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def write_json(path: str, obj: Any) -> None:
    atomic.write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True)
                              + "\n").encode())


def default_workdir(name: str, root: str = "runs") -> str:
    """runs/<UTC timestamp>-<config name>."""
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime(
        "%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "run")
    return os.path.join(root, f"{stamp}-{safe}")


def check_workdir(workdir: str) -> None:
    """Refuses a workdir that exists and is not empty, or cannot be made.

    Nothing is created here, so a run that fails its input checks leaves no
    directory behind.
    """
    if os.path.exists(workdir):
        if not os.path.isdir(workdir):
            raise UserError(f"workdir {workdir} exists and is a file; "
                            "choose another --workdir")
        if os.listdir(workdir):
            raise UserError(f"workdir {workdir} already holds a run; runs "
                            "are never overwritten: choose a new --workdir")
    parent = os.path.dirname(os.path.abspath(workdir))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.access(parent, os.W_OK | os.X_OK) or not os.path.isdir(parent):
        raise UserError(f"cannot create workdir {workdir}: {parent} is not "
                        "writable; choose another --workdir")


class LogFile(logging.Handler):
    """A log handler that holds records until the process's first run
    directory exists, then writes them, and all later ones, to its
    ``log.txt`` (absl's line format).

    Installed on the root logger by the scripts (``cli.quiet_console``);
    :func:`make_dir` opens it. A process that never makes a directory (a
    refused run, a multi-host process other than 0) keeps only the last
    ``keep`` records, in memory.
    """

    def __init__(self, keep: int = 10_000):
        super().__init__(logging.INFO)
        self.setFormatter(absl_logging.PythonFormatter())
        self.held: collections.deque = collections.deque(maxlen=keep)
        self.path: Optional[str] = None
        self.stream = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.stream is None:
            self.held.append(record)
            return
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # Logging must never end the run.
            self.handleError(record)

    def open_in(self, directory: str) -> None:
        """Starts writing to ``directory/log.txt`` (once; later calls do
        nothing), beginning with the records held so far."""
        self.acquire()
        try:
            if self.stream is not None:
                return
            path = os.path.join(directory, LOG)
            try:
                self.stream = open(path, "a", encoding="utf-8")
            except OSError:  # Only a log: the run goes on without it.
                return
            self.path = path
            while self.held:
                self.emit(self.held.popleft())
        finally:
            self.release()

    def close(self) -> None:
        self.acquire()
        try:
            if self.stream is not None:
                self.stream.close()
                self.stream = None
        finally:
            self.release()
        super().close()


def _open_logs(directory: str) -> None:
    """Points every LogFile on the root logger at ``directory``."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, LogFile):
            handler.open_in(directory)


def make_dir(workdir: str) -> str:
    """Creates a checked workdir (refusing one that holds a run); the
    first one a process makes receives its log (:class:`LogFile`)."""
    check_workdir(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create workdir {workdir}: {e.strerror}; "
                        "choose another --workdir") from None
    _open_logs(workdir)
    return workdir


def git_commit(path: Optional[str] = None) -> Optional[str]:
    """The commit of the checkout holding nst_jax (None outside git)."""
    path = path or os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(["git", "-C", path, "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", path, "status", "--porcelain",
                                "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict[str, Any]:
    """Versions, devices and XLA flags, for the manifest."""
    versions = {"python": platform.python_version()}
    for pkg in ("nst_jax", "jax", "jaxlib", "flax", "optax", "numpy",
                "pillow", "ml_collections", "absl-py"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "processes": jax.process_count(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "argv": list(sys.argv),
        "git_commit": git_commit(),
    }


def _due(every: int, global_step: int, log_every: int, end: bool) -> bool:
    """True at the chunk that crosses a multiple of ``every`` or ends a
    scale (``every`` 0: never)."""
    return bool(every) and (global_step % every < log_every or end)


class RunDir:
    """One run's directory: created at construction, filled as it runs.

    Args:
      path: the directory; created now (an existing non-empty one is
        refused with UserError).
      plan: the member's plan (its config is written as config.json).
      manifest: what the run records about itself; ``status``
        ("running") and ``started`` are added.
      metrics: records carried over from a resumed run.
    """

    def __init__(self, path: str, plan: Plan, manifest: dict,
                 metrics: Optional[list] = None):
        self.path, self.plan = path, plan
        self.manifest = dict(manifest, status="running", started=now())
        make_dir(path)
        write_json(self._file("config.json"), plan.config)
        write_json(self._file("manifest.json"), self.manifest)
        self.metrics = list(metrics or [])
        # metrics.jsonl exists from the start, so a run that fails in its
        # first chunk still has the file (maybe empty) by its manifest.
        with open(self._file("metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n"
                         for r in self.metrics)
        self.image: Optional[np.ndarray] = None
        self.chunks = 0  # Chunks recorded by this process.

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def discard_if_empty(self) -> bool:
        """Removes the directory if no chunk was recorded in it yet (it
        holds only the files this object wrote at its start); returns
        whether it did. For a run refused after its directory was made."""
        if self.chunks:
            return False
        shutil.rmtree(self.path, ignore_errors=True)
        return True

    def chunk(self, info, i: int) -> None:
        """Records member ``i`` of a report.ChunkInfo: its metrics line,
        its snapshot and checkpoint at their cadences."""
        self.chunks += 1
        c, g = self.plan, info.global_step
        end = info.step == info.steps
        record, self.image = info.records[i], info.images[i]
        optimised = c.method == "gatys"  # The fast method has one step.
        if record is not None:
            self.metrics.append(record)
            with open(self._file("metrics.jsonl"), "a") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
            if optimised and _due(c.save_every, g, c.log_every, end):
                images.save(self._file(f"snapshot_{g:06d}.png"), self.image)
        if optimised and _due(c.checkpoint_every, g, c.log_every, end):
            error = info.errors[i]
            self.save_checkpoint(Checkpoint(
                info.scale, g, info.state_leaves()[i], self.metrics, error,
                self.image if error else None))

    def save_checkpoint(self, ck: Checkpoint) -> str:
        """Writes ``checkpoint.npz`` atomically, recording this
        directory's config; returns its path."""
        path = self._file(checkpoint.CHECKPOINT)
        atomic.write_bytes(path, checkpoint.encode(ck, self.plan))
        return path

    def finish(self, status: str, image: Optional[np.ndarray] = None,
               **extra) -> str:
        """Saves the image as final.png (or <status>.png), the loss curve
        and the manifest's status; returns the image's path."""
        image = self.image if image is None else image
        name = "final.png" if status == "done" else f"{status}.png"
        if image is not None:
            images.save(self._file(name), image)
        if any("loss" in r for r in self.metrics):
            plot.loss_curve(self.metrics, self._file("loss_curve.png"),
                            layers=self.plan.plot_layers)
        self.manifest.update(status=status, finished=now(), **extra)
        write_json(self._file("manifest.json"), self.manifest)
        return os.path.abspath(self._file(name))
