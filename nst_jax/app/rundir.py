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

The checkpoint format is owned here: an ``.npz`` (no pickle) of the
member's optimiser-state leaves in tree order, its scale index, its
metrics so far and, for a member that had diverged, its message and last
good image.
"""

from __future__ import annotations

import collections
import datetime
import io
import json
import logging
import os
import platform
import re
import subprocess
import sys
from importlib import metadata
from typing import Any, Optional

import jax
import ml_collections
import numpy as np
from absl import logging as absl_logging
from flax import traverse_util

from nst_jax import config as cfg
from nst_jax.drive.report import Checkpoint
from nst_jax.errors import UserError
from nst_jax.io import atomic, images, plot

CHECKPOINT = "checkpoint.npz"
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


def load_checkpoint(run_dir: str) -> Checkpoint:
    """The checkpoint of a run directory.

    Raises:
      UserError: none there, or unreadable (one line).
    """
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint in {run_dir}: resume needs a run "
                        "made with --config.checkpoint_every > 0")
    try:
        with np.load(path, allow_pickle=False) as z:
            n = len([k for k in z.files if k.startswith("leaf_")])
            leaves = [z[f"leaf_{i:04d}"] for i in range(n)]
            scale, step = int(z["scale"]), int(z["step"])
            metrics = json.loads(z["metrics_json"].tobytes().decode())
            error = (z["error"].tobytes().decode() if "error" in z.files
                     else "")
            last_good = z["last_good"] if "last_good" in z.files else None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise UserError(f"checkpoint {path} is unreadable ({e}); it may be "
                        "truncated") from None
    return Checkpoint(scale, step, leaves, metrics, error, last_good)


def check_resume(config: ml_collections.ConfigDict, run_dir: str
                 ) -> Checkpoint:
    """A resumed run must continue the same computation; its checkpoint.

    Raises:
      UserError: no checkpoint, or the recorded config differs (other than
        in :data:`nst_jax.config.NOT_COMPUTED`).
    """
    checkpoint = load_checkpoint(run_dir)
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        raise UserError(f"cannot read {path}; resume needs the run "
                        "directory of an earlier run") from None
    new, old = (traverse_util.flatten_dict(d, sep=".")
                for d in (cfg.to_dict(config), old))
    # A field the recorded config lacks was added by a later version, with
    # a default that keeps the old behaviour.
    defaults = traverse_util.flatten_dict(cfg.to_dict(cfg.base()), sep=".")
    diff = sorted(k for k in set(old) | set(new)
                  if k not in cfg.NOT_COMPUTED
                  and old.get(k, defaults.get(k)) != new.get(k))
    if diff:
        raise UserError(
            f"config differs from {path} in {diff}; resume with "
            f"--config=configs/replay.py:{run_dir} "
            f"--config.resume={config.resume or run_dir}")
    return checkpoint


def _due(every: int, global_step: int, log_every: int, end: bool) -> bool:
    """True at the chunk that crosses a multiple of ``every`` or ends a
    scale (``every`` 0: never)."""
    return bool(every) and (global_step % every < log_every or end)


class RunDir:
    """One run's directory: created at construction, filled as it runs.

    Args:
      path: the directory; created now (an existing non-empty one is
        refused with UserError).
      config: the member's resolved config (written as config.json).
      manifest: what the run records about itself; ``status``
        ("running") and ``started`` are added.
      metrics: records carried over from a resumed run.
    """

    def __init__(self, path: str, config: ml_collections.ConfigDict,
                 manifest: dict, metrics: Optional[list] = None):
        self.path, self.config = path, config
        self.manifest = dict(manifest, status="running", started=now())
        make_dir(path)
        write_json(self._file("config.json"), cfg.to_dict(config))
        write_json(self._file("manifest.json"), self.manifest)
        self.metrics = list(metrics or [])
        # metrics.jsonl exists from the start, so a run that fails in its
        # first chunk still has the file (maybe empty) by its manifest.
        with open(self._file("metrics.jsonl"), "w") as f:
            f.writelines(json.dumps(r, sort_keys=True) + "\n"
                         for r in self.metrics)
        self.image: Optional[np.ndarray] = None

    def _file(self, name: str) -> str:
        return os.path.join(self.path, name)

    def chunk(self, info, i: int) -> None:
        """Records member ``i`` of a report.ChunkInfo: its metrics line,
        its snapshot and checkpoint at their cadences."""
        c, g = self.config, info.global_step
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

    def save_checkpoint(self, checkpoint: Checkpoint) -> str:
        """Writes ``checkpoint.npz`` atomically; returns its path."""
        arrays = {f"leaf_{i:04d}": np.asarray(a)
                  for i, a in enumerate(checkpoint.leaves)}
        arrays["scale"] = np.int64(checkpoint.scale)
        arrays["step"] = np.int64(checkpoint.step)
        arrays["metrics_json"] = np.frombuffer(
            json.dumps(checkpoint.metrics).encode(), np.uint8)
        if checkpoint.error:
            arrays["error"] = np.frombuffer(checkpoint.error.encode(),
                                            np.uint8)
            arrays["last_good"] = np.asarray(checkpoint.last_good,
                                             np.float32)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        path = self._file(CHECKPOINT)
        atomic.write_bytes(path, buf.getvalue())
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
                            layers=self.config.plot_layers)
        self.manifest.update(status=status, finished=now(), **extra)
        write_json(self._file("manifest.json"), self.manifest)
        return os.path.abspath(self._file(name))
