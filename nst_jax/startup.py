"""Start-up time: launch of ``scripts/run.py`` to its first step, cold and warm.

What a user waits for before anything happens: Python and JAX imports,
weights read from the cache, inputs, the fast network's painting (for
``init=fast``), the targets and compiling the step. Each launch is a fresh
process; "cold" starts with an empty persistent compilation cache (a new
directory given with ``--config.compile_cache``), "warm" reuses the one the
cold launch filled, as a second run of the same sizes does. The first step
is the first ``[nst_jax] step`` progress line, printed after one step
(``log_every=1``); ``wall_s`` is the whole launch (two steps, the run
directory written).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MARKER = "[nst_jax] step"


def launch(size: int, cache_dir: str, workdir: str,
           config_file: str = "configs/default.py",
           timeout_s: float = 900) -> dict:
    """One run.py launch: seconds to the first step line and in all."""
    cmd = [sys.executable, os.path.join(_ROOT, "scripts", "run.py"),
           f"--config={os.path.join(_ROOT, config_file)}",
           f"--config.size={size}", "--config.optim.steps=2",
           "--config.log_every=1", "--config.save_every=0",
           f"--config.compile_cache={cache_dir}", f"--workdir={workdir}"]
    env = dict(os.environ)
    env.pop("NST_JAX_COMPILE_CACHE", None)  # The flag decides.
    t0 = time.perf_counter()
    first = None
    with subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, env=env,
                          cwd=_ROOT) as proc:
        try:
            tail = []
            for line in proc.stderr:
                if first is None and MARKER in line:
                    first = time.perf_counter() - t0
                tail = (tail + [line])[-5:]
            proc.wait(timeout=timeout_s)
        finally:
            proc.kill()
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"run.py exited {proc.returncode}: "
                           f"{''.join(tail)[-300:]}")
    return {"first_step_s": round(first, 2), "wall_s": round(wall, 2)}


def run(sizes: Sequence[int] = (256, 512), rounds: int = 2,
        config_file: str = "configs/default.py",
        log: Optional[Callable[[dict], None]] = None) -> list[dict]:
    """``rounds`` x (cold, warm) launches per size; one row per launch."""
    rows = []
    for size in sizes:
        for r in range(rounds):
            tmp = tempfile.mkdtemp(prefix="nst_startup_")
            try:
                for kind in ("cold", "warm"):
                    row = dict(size=size, round=r, cache=kind,
                               **launch(size, os.path.join(tmp, "cache"),
                                        os.path.join(tmp, f"run_{kind}"),
                                        config_file))
                    rows.append(row)
                    if log:
                        log(row)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    """Median seconds to the first step per size, cold and warm."""
    lines = ["size | cold: first step s | warm: first step s | cold/warm | "
             "launches", "--- | --- | --- | --- | ---"]
    for size in sorted({r["size"] for r in rows}):
        med = {k: statistics.median(r["first_step_s"] for r in rows
                                    if r["size"] == size and r["cache"] == k)
               for k in ("cold", "warm")}
        n = sum(r["size"] == size for r in rows)
        lines.append(f"{size} | {med['cold']:.1f} | {med['warm']:.1f} | "
                     f"{med['cold'] / med['warm']:.2f} | {n}")
    return "\n".join(lines)
