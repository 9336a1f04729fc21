"""Peak memory of the stylization step: ``scripts/benchmark.py --memory``.

Each (size, optimiser, remat) runs in a fresh Python process
(:func:`run_memory`), since a process's peak never goes down; it reports
that process's peak host RSS (``ru_maxrss``, Linux's VmHWM), on
accelerators the device's ``peak_bytes_in_use``, ms/step
(:func:`nst_jax.bench.step.bench_step`), and beside them
:func:`nst_jax.memory.estimate` for the same run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Callable, Optional, Sequence

import jax

from nst_jax import plan
from nst_jax import memory
from nst_jax.bench import step
from nst_jax.bench.process import peak_memory, status_mib
from nst_jax.vgg import vgg19

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def memory_row(size: int, optimiser: str, remat: str = "none",
               steps: int = 2, chunk: int = 1, dtype: str = "float32",
               batch: int = 1) -> dict:
    """:func:`~nst_jax.bench.step.bench_step` plus this process's
    memory peaks.

    Run it in a fresh process (:func:`run_memory` does): the peaks cover
    everything the process did before. ``host_start_rss_mib`` is the RSS
    once JAX is up and the random weights exist, before any image work.
    """
    params = jax.block_until_ready(vgg19.random_params(0))
    start = status_mib("VmRSS")
    row = step.bench_step(size, optimiser, batch, steps, chunk, dtype,
                               params, remat=remat)
    row.update(host_start_rss_mib=start, **peak_memory())
    hwm = status_mib("VmHWM")
    if hwm is not None:
        row["host_peak_rss_mib"] = max(row["host_peak_rss_mib"], hwm)
    return row


_CHILD = ("import json, sys; from nst_jax.bench import memory_use; "
          "print(json.dumps(memory_use.memory_row("
          "**json.loads(sys.argv[1]))))")


def _estimate_mib(size: int, optimiser: str, remat: str, dtype: str,
                  batch: int, platform: str) -> float:
    c = step.bench_config(size, optimiser)
    c.model.remat, c.model.dtype = remat, dtype
    e = memory.estimate(plan.fields(c), members=batch, hw=(size, size), platform=platform)
    return round(e.total / 2**20, 1)


def run_memory(sizes: Sequence[int] = (512, 1024),
               optimisers: Sequence[str] = ("lbfgs",),
               remats: Sequence[str] = ("none", "blocks", "tiles"),
               steps: int = 2,
               chunk: int = 1, dtype: str = "float32", batch: int = 1,
               log: Optional[Callable[[dict], None]] = None,
               timeout_s: Optional[float] = None) -> dict:
    """Every combination, each in a fresh process; {"rows", "device", ...}.

    A child that fails (killed for memory, say) gives a row with "error".
    Each row carries the estimate (``estimate_mib``) and its error against
    the measured peak (host RSS on CPU, device peak elsewhere).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    platform = jax.default_backend()
    rows = []
    for size in sizes:
        for opt in optimisers:
            for remat in remats:
                kw = {"size": size, "optimiser": opt, "remat": remat,
                      "steps": steps, "chunk": chunk, "dtype": dtype,
                      "batch": batch}
                try:
                    proc = subprocess.run(
                        [sys.executable, "-c", _CHILD, json.dumps(kw)],
                        capture_output=True, text=True, env=env,
                        timeout=timeout_s)
                    lines = proc.stdout.strip().splitlines()
                    row = (json.loads(lines[-1]) if proc.returncode == 0
                           else dict(kw, error=(proc.stderr.strip()
                                                .splitlines() or [
                                                    f"exit {proc.returncode}"]
                                                )[-1]))
                except subprocess.TimeoutExpired:
                    row = dict(kw, error=f"timed out after {timeout_s} s")
                row["estimate_mib"] = _estimate_mib(size, opt, remat, dtype,
                                                    batch, platform)
                measured = row.get("device_peak_mib" if platform != "cpu"
                                   else "host_peak_rss_mib")
                if measured:
                    row["estimate_error"] = round(
                        row["estimate_mib"] / measured - 1, 3)
                rows.append(row)
                if log:
                    log(row)
    return {"device": str(jax.devices()[0]), "backend": platform,
            "jax": jax.__version__, "dtype": dtype, "rows": rows}


def memory_table(result: dict) -> str:
    """Markdown table of :func:`run_memory`'s rows."""
    cols = ["size", "optimiser", "remat", "batch", "ms_per_step",
            "host_peak_rss_mib", "device_peak_mib", "program_mib",
            "estimate_mib",
            "estimate_error"]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in result["rows"]:
        cells = [str(r.get(c, "")) for c in cols]
        if "error" in r:
            cells[4] = "error: " + r["error"][:60]
        lines.append(" | ".join(cells))
    return "\n".join(lines)
