"""Checkpoints: one member's saved progress in a run directory.

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

import io
import json
import os

import numpy as np
from flax import traverse_util

from nst_jax import config as cfg
from nst_jax.drive.report import Checkpoint
from nst_jax.errors import UserError, one_line
from nst_jax.optimize import loop
from nst_jax.plan import Plan

CHECKPOINT = "checkpoint.npz"
#: What a checkpoint's ``format`` field says: marks the file as ours.
CHECKPOINT_FORMAT = "nst_jax checkpoint"
#: Its layout: 2 stores the state by tree path (1, before it had a
#: ``format`` field, stored the leaves in tree order as ``leaf_NNNN``).
CHECKPOINT_VERSION = 2
_STATE = "state/"
# How an .npz (a zip archive) starts: a member, or the end of an empty one.
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def encode(checkpoint: Checkpoint, plan: Plan) -> bytes:
    """The ``.npz`` bytes of ``checkpoint`` (the format above), recording
    ``plan``'s config as the run that wrote it."""
    def text(t: str) -> np.ndarray:
        return np.frombuffer(t.encode(), np.uint8)
    arrays = {_STATE + k: np.asarray(a)
              for k, a in checkpoint.state.items()}
    arrays["format"] = text(CHECKPOINT_FORMAT)
    arrays["version"] = np.int64(CHECKPOINT_VERSION)
    arrays["scale"] = np.int64(checkpoint.scale)
    arrays["step"] = np.int64(checkpoint.step)
    arrays["metrics_json"] = text(json.dumps(checkpoint.metrics))
    arrays["config_json"] = text(json.dumps(plan.config, sort_keys=True))
    if checkpoint.error:
        arrays["error"] = text(checkpoint.error)
        arrays["last_good"] = np.asarray(checkpoint.last_good,
                                         np.float32)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _text(z: dict, key: str) -> str:
    """A text field of a checkpoint (stored as UTF-8 bytes)."""
    return z[key].tobytes().decode()


def _read(path: str) -> tuple[Checkpoint, dict]:
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


def load(run_dir: str) -> Checkpoint:
    """The checkpoint of a run directory, checked for form (not yet
    against a run: :func:`check_resume`).

    Raises:
      UserError: none there, unreadable, not a checkpoint, of another
        format version, or missing fields (one line).
    """
    return _read(_path(run_dir))[0]


def _path(run_dir: str) -> str:
    """``run_dir``'s checkpoint file; UserError if it has none."""
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint in {run_dir}: resume needs a run "
                        "made with --config.checkpoint_every > 0")
    return path


def _config_diff(old: dict, plan: Plan) -> list:
    """Fields of a recorded config (nested dict) that change what
    ``plan`` computes: all but :data:`nst_jax.config.NOT_COMPUTED`; a
    field the recorded config lacks was added by a later version, with a
    default that keeps the old behaviour."""
    new, old = (traverse_util.flatten_dict(d, sep=".")
                for d in (plan.config, old))
    defaults = traverse_util.flatten_dict(cfg.defaults(), sep=".")
    return sorted(k for k in set(old) | set(new)
                  if k not in cfg.NOT_COMPUTED
                  and old.get(k, defaults.get(k)) != new.get(k))


def _check_belongs(checkpoint: Checkpoint, recorded: dict,
                   plan: Plan) -> None:
    """Refuses a checkpoint written by another run than ``plan``'s, or
    stopped at a point this plan's scales do not have."""
    where = f"checkpoint {checkpoint.source} does not match this run"
    diff = _config_diff(recorded, plan)
    if diff:
        raise UserError(f"{where}: it was written by another run, whose "
                        f"config differs in {diff}")
    scales = plan.scales
    if not 0 <= checkpoint.scale < len(scales):
        raise UserError(f"{where}: it is at scale {checkpoint.scale}, this "
                        f"run has {len(scales)}")
    done = sum(s for _, s in scales[:checkpoint.scale])
    steps = scales[checkpoint.scale][1]
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


def check_resume(plan: Plan, run_dir: str) -> Checkpoint:
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
    checkpoint, recorded = _read(_path(run_dir))
    path = os.path.join(run_dir, "config.json")
    try:
        with open(path) as f:
            old = json.load(f)
        if not isinstance(old, dict):
            raise ValueError("not a config")
    except (OSError, ValueError):
        raise UserError(f"cannot read {path}; resume needs the run "
                        "directory of an earlier run") from None
    diff = _config_diff(old, plan)
    if diff:
        raise UserError(
            f"config differs from {path} in {diff}; resume with "
            f"--config=configs/replay.py:{run_dir} "
            f"--config.resume={plan.resume or run_dir}")
    _check_belongs(checkpoint, recorded, plan)
    return checkpoint
