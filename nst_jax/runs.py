"""Run directories: config.json, manifest.json, metrics.jsonl, checkpoints.

A run directory is created once and never overwritten. Every file is written
atomically (temporary file in the same directory, then ``os.replace``), so a
crash leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import re
import subprocess
import sys
from typing import Any, Optional

import numpy as np

from nst_jax import atomic
from nst_jax.errors import UserError

CHECKPOINT = "checkpoint.npz"


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


def create(workdir: str) -> str:
    check_workdir(workdir)
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create workdir {workdir}: {e.strerror}; "
                        "choose another --workdir") from None
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
    import importlib.metadata as md
    import jax
    versions = {"python": platform.python_version()}
    for pkg in ("nst_jax", "jax", "jaxlib", "flax", "optax", "numpy",
                "pillow", "ml_collections", "absl-py"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "platform": platform.platform(),
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "argv": list(sys.argv),
        "git_commit": git_commit(),
    }


class MetricsWriter:
    """Appends one JSON object per line and flushes, so a crash loses none."""

    def __init__(self, path: str):
        self.path = path
        # Exists from the start, so a run that fails in its first chunk
        # still has the file (empty) beside its manifest.
        open(path, "a").close()

    def write(self, record: dict) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
            f.flush()


def read_metrics(path: str) -> list[dict]:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_checkpoint(workdir: str, scale: int, leaves: list,
                    metrics: list[dict]) -> str:
    """Image + optimiser state leaves + step as one .npz (no pickle)."""
    import io
    arrays = {f"leaf_{i:04d}": np.asarray(a) for i, a in enumerate(leaves)}
    arrays["scale"] = np.int64(scale)
    arrays["metrics_json"] = np.frombuffer(json.dumps(metrics).encode(),
                                           np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path = os.path.join(workdir, CHECKPOINT)
    atomic.write_bytes(path, buf.getvalue())
    return path


def load_checkpoint(run_dir: str) -> dict:
    """{"scale", "leaves", "metrics"} from a run directory's checkpoint."""
    path = os.path.join(run_dir, CHECKPOINT)
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint in {run_dir}: resume needs a run "
                        "made with --config.checkpoint_every > 0")
    try:
        with np.load(path, allow_pickle=False) as z:
            n = len([k for k in z.files if k.startswith("leaf_")])
            leaves = [z[f"leaf_{i:04d}"] for i in range(n)]
            scale = int(z["scale"])
            metrics = json.loads(z["metrics_json"].tobytes().decode())
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"checkpoint {path} is unreadable ({e}); it may be "
                        "truncated") from None
    return {"scale": scale, "leaves": leaves, "metrics": metrics}
