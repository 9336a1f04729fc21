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

The checkpoint format is owned here: an ``.npz`` (no pickle) holding
``format`` (the text :data:`CHECKPOINT_FORMAT`) and ``version``
(:data:`CHECKPOINT_VERSION`); ``state/<path>``, one array per leaf of the
member's ``loop.State`` named by its tree path (``state/image``,
``state/opt_state/0/mu``, ...; :func:`nst_jax.drive.report.flatten_state`);
``scale`` and ``step`` (where it stopped); ``metrics_json`` (the records
so far) and ``config_json`` (the config of the run that wrote it, so a
checkpoint copied from another run is recognised); and, for a member that
had diverged, ``error`` (its message) and ``last_good`` (its last finite
image). Text is stored as UTF-8 bytes (uint8). A resumed run fills the
state it expects by path and refuses any other layout by name
(:func:`nst_jax.drive.report.fill_state`).
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
from nst_jax.errors import UserError, one_line
from nst_jax.io import atomic, images, plot
from nst_jax.optimize import loop

CHECKPOINT = "checkpoint.npz"
#: What a checkpoint's ``format`` field says: marks the file as ours.
CHECKPOINT_FORMAT = "nst_jax checkpoint"
#: Its layout: 2 stores the state by tree path (1, before it had a
#: ``format`` field, stored the leaves in tree order as ``leaf_NNNN``).
CHECKPOINT_VERSION = 2
_STATE = "state/"
# How an .npz (a zip archive) starts: a member, or the end of an empty one.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
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


def _text(z: dict, key: str) -> str:
    """A text field of a checkpoint (stored as UTF-8 bytes)."""
    return z[key].tobytes().decode()


def _read_checkpoint(path: str) -> tuple[Checkpoint, dict]:
    """A checkpoint file and the config recorded in it, checked for form.

    Raises:
      UserError: unreadable (truncated, not an .npz), not a checkpoint, of
        another format version, or missing or malformed fields (one line).
    """
    bad = f"checkpoint {path} is damaged or not a checkpoint"
    try:
        # Opened here, not by numpy, so a file numpy fails on is closed.
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: "
                        f"{e.strerror or one_line(e)}") from None
    again = "resume from an intact copy, or start afresh"
    with f:
        magic = f.read(4)
        if not magic:
            raise UserError(f"{bad}: the file is empty; {again}")
        if magic not in _ZIP_MAGIC:  # Not an .npz (zip) archive at all.
            raise UserError(f"{bad}: the file is not an .npz archive; "
                            f"{again}")
        f.seek(0)
        try:
            with np.load(f, allow_pickle=False) as loaded:
                # Every member is read now: damage shows here.
                z = {k: loaded[k] for k in loaded.files}
        except Exception as e:  # Untrusted bytes: whatever numpy raises.
            raise UserError(f"{bad} ({type(e).__name__}: {one_line(e)}); "
                            f"it may be truncated: {again}") from None
    if "format" not in z:
        if any(k.startswith("leaf_") for k in z):
            raise UserError(
                f"checkpoint {path} was written by an older nst_jax (its "
                "optimiser state is stored by position, not by name) and "
                "cannot be resumed by this version; start the run afresh")
        raise UserError(f"{bad}: it has no 'format' field")
    try:
        fmt = _text(z, "format")
        version = int(z["version"]) if "version" in z else None
    except (ValueError, TypeError, UnicodeDecodeError):
        fmt, version = None, None
    if fmt != CHECKPOINT_FORMAT:
        raise UserError(f"{bad}: its 'format' field is not "
                        f"{CHECKPOINT_FORMAT!r}")
    if version != CHECKPOINT_VERSION:
        raise UserError(
            f"checkpoint {path} has format version {version}; this nst_jax "
            f"reads version {CHECKPOINT_VERSION}: resume with the version "
            "that wrote it, or start afresh")
    missing = [k for k in ("scale", "step", "metrics_json", "config_json")
               if k not in z]
    if missing:
        raise UserError(f"{bad}: it has no {missing[0]!r} field")
    state = {k[len(_STATE):]: a for k, a in z.items() if k.startswith(_STATE)}
    for field in loop.State._fields:
        if not any(k == field or k.startswith(field + "/") for k in state):
            raise UserError(f"{bad}: it has no state field {field!r}")
    try:
        scalars = [z[k] for k in ("scale", "step")]
        if any(a.shape != () or a.dtype.kind not in "iu" for a in scalars):
            raise ValueError("'scale' and 'step' must be integers")
        scale, step = (int(a) for a in scalars)
        metrics = json.loads(_text(z, "metrics_json"))
        recorded = json.loads(_text(z, "config_json"))
        if not (isinstance(metrics, list)
                and all(isinstance(r, dict) for r in metrics)):
            raise ValueError("'metrics_json' is not a list of records")
        if not isinstance(recorded, dict):
            raise ValueError("'config_json' is not a config")
        error = _text(z, "error") if "error" in z else ""
        last_good = z.get("last_good")
        if error and (last_good is None or last_good.ndim != 3):
            raise ValueError("a diverged member's 'last_good' image is "
                             "missing")
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        raise UserError(f"{bad}: {one_line(e)}") from None
    return Checkpoint(scale, step, state, metrics, error,
                      last_good if error else None, path), recorded


def load_checkpoint(run_dir: str) -> Checkpoint:
    """The checkpoint of a run directory, checked for form (not yet
    against a run: :func:`check_resume`).

    Raises:
      UserError: none there, unreadable, not a checkpoint, of another
        format version, or missing fields (one line).
    """
    return _read_checkpoint(_checkpoint_path(run_dir))[0]


def _checkpoint_path(run_dir: str) -> str:
    """``run_dir``'s checkpoint file; UserError if it has none."""
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint in {run_dir}: resume needs a run "
                        "made with --config.checkpoint_every > 0")
    return path


def _config_diff(old: dict, config: ml_collections.ConfigDict) -> list:
    """Fields of a recorded config (nested dict) that change what
    ``config`` computes: all but :data:`nst_jax.config.NOT_COMPUTED`; a
    field the recorded config lacks was added by a later version, with a
    default that keeps the old behaviour."""
    new, old = (traverse_util.flatten_dict(d, sep=".")
                for d in (cfg.to_dict(config), old))
    defaults = traverse_util.flatten_dict(cfg.to_dict(cfg.base()), sep=".")
    return sorted(k for k in set(old) | set(new)
                  if k not in cfg.NOT_COMPUTED
                  and old.get(k, defaults.get(k)) != new.get(k))


def _check_belongs(checkpoint: Checkpoint, recorded: dict,
                   config: ml_collections.ConfigDict) -> None:
    """Refuses a checkpoint written by another run than ``config``'s, or
    stopped at a point this config's scales do not have."""
    where = f"checkpoint {checkpoint.source} does not match this run"
    diff = _config_diff(recorded, config)
    if diff:
        raise UserError(f"{where}: it was written by another run, whose "
                        f"config differs in {diff}")
    plan = cfg.scales(config)
    if not 0 <= checkpoint.scale < len(plan):
        raise UserError(f"{where}: it is at scale {checkpoint.scale}, this "
                        f"run has {len(plan)}")
    done = sum(s for _, s in plan[:checkpoint.scale])
    steps = plan[checkpoint.scale][1]
    if not done < checkpoint.step <= done + steps:
        raise UserError(f"{where}: it is at step {checkpoint.step}, outside "
                        f"scale {checkpoint.scale}'s steps {done + 1}-"
                        f"{done + steps}")
    k = np.asarray(checkpoint.state.get("step"))
    if k.shape != () or k.dtype.kind not in "iu" or int(k) != (
            checkpoint.step - done):
        raise UserError(f"{where}: its state field 'step' is not the "
                        f"{checkpoint.step - done} steps of scale "
                        f"{checkpoint.scale} that it records")


def check_resume(config: ml_collections.ConfigDict, run_dir: str
                 ) -> Checkpoint:
    """A resumed run must continue the same computation; its checkpoint.

    Everything about the checkpoint that can be known without the run's
    inputs is checked here, before any directory is written; the state's
    fields are matched by name, shape and dtype when the run lays out its
    state (:func:`nst_jax.drive.report.fill_state`).

    Raises:
      UserError: no checkpoint, a damaged one or one of another run; or
        the recorded config differs (other than in
        :data:`nst_jax.config.NOT_COMPUTED`).
    """
    checkpoint, recorded = _read_checkpoint(_checkpoint_path(run_dir))
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            old = json.load(f)
        if not isinstance(old, dict):
            raise ValueError("not a config")
    except (OSError, ValueError):
        raise UserError(f"cannot read {path}; resume needs the run "
                        "directory of an earlier run") from None
    diff = _config_diff(old, config)
    if diff:
        raise UserError(
            f"config differs from {path} in {diff}; resume with "
            f"--config=configs/replay.py:{run_dir} "
            f"--config.resume={config.resume or run_dir}")
    _check_belongs(checkpoint, recorded, config)
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
        """Writes ``checkpoint.npz`` atomically (the format is in the
        module docstring), recording this directory's config; returns its
        path."""
        def text(t: str) -> np.ndarray:
            return np.frombuffer(t.encode(), np.uint8)
        arrays = {_STATE + k: np.asarray(a)
                  for k, a in checkpoint.state.items()}
        arrays["format"] = text(CHECKPOINT_FORMAT)
        arrays["version"] = np.int64(CHECKPOINT_VERSION)
        arrays["scale"] = np.int64(checkpoint.scale)
        arrays["step"] = np.int64(checkpoint.step)
        arrays["metrics_json"] = text(json.dumps(checkpoint.metrics))
        arrays["config_json"] = text(json.dumps(cfg.to_dict(self.config),
                                                sort_keys=True))
        if checkpoint.error:
            arrays["error"] = text(checkpoint.error)
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
