"""Speed and memory of the stylization step: what scripts/benchmark.py runs.

For each (size, optimiser, batch): compile time, median milliseconds per step
over timed chunks after a warm-up chunk, achieved GFLOP/s from the analytic
conv FLOPs of one forward plus one input-gradient pass, and, measured in the
same process, the plain 3x3-conv GFLOP/s of the same layer shapes run alone.
Their ratio says how close the whole step (ReLU, pooling, Grams, optimiser,
scan) comes to the machine's conv throughput. FLOPs count the loss-and-
gradient evaluations actually made (``loop.run_chunk`` reports them):
one per Adam step, one per line-search trial for L-BFGS. The metrics
evaluation at the end of each chunk is timed but not counted, so the figure
is a slight underestimate. Random weights: speed does not depend on values.

Memory mode (:func:`run_memory`): each (size, optimiser, remat) runs in a
fresh Python process, since a process's peak never goes down; it reports
that process's peak host RSS (``ru_maxrss``, Linux's VmHWM), on
accelerators the device's ``peak_bytes_in_use``, ms/step, and beside them
:func:`nst_jax.drive.memory.estimate` for the same run.
"""

from __future__ import annotations

import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import config as cfg
from nst_jax.drive import inputs, memory, sharding, targets
from nst_jax.io import images
from nst_jax.optimize import loop
from nst_jax.portrait import patchmatch
from nst_jax.vgg import vgg19

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def conv_shapes(h: int, w: int, deepest: str) -> list[tuple[int, int, int,
                                                            int]]:
    """(H, W, C_in, C_out) of every conv up to ``deepest`` for an HxW input."""
    shapes = []
    for name in vgg19.LAYERS[:vgg19.LAYERS.index(deepest) + 1]:
        if name.startswith("pool"):
            h, w = h // 2, w // 2
        elif name.startswith("conv"):
            shapes.append((h, w) + vgg19.CONV_CHANNELS[name])
    return shapes


def step_flops(h: int, w: int, deepest: str) -> float:
    """Conv FLOPs of one loss evaluation plus its gradient w.r.t. the image.

    Forward 2*H*W*9*Cin*Cout per conv; the input gradient is a transposed
    conv of the same size. No weight gradients are taken.
    """
    fwd = sum(2.0 * a * b * 9 * ci * co for a, b, ci, co in
              conv_shapes(h, w, deepest))
    return 2.0 * fwd


def _median_seconds(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # Compile and warm up.
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def plain_conv_gflops(h: int, w: int, deepest: str, batch: int = 1,
                      repeats: int = 5, dtype=jnp.float32) -> float:
    """Throughput of each layer's 3x3 conv run alone, pooled over layers."""
    total_flops = total_s = 0.0
    key = jax.random.PRNGKey(0)
    seen = {}
    for a, b, ci, co in conv_shapes(h, w, deepest):
        if (a, b, ci, co) not in seen:
            x = jax.random.normal(key, (batch, a, b, ci), dtype)
            k = jax.random.normal(key, (3, 3, ci, co), dtype)
            conv = jax.jit(functools.partial(
                jax.lax.conv_general_dilated, window_strides=(1, 1),
                padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")))
            seen[(a, b, ci, co)] = _median_seconds(conv, x, k,
                                                   repeats=repeats)
        total_s += seen[(a, b, ci, co)]
        total_flops += 2.0 * batch * a * b * 9 * ci * co
    return total_flops / total_s / 1e9


def _config(size: int, optimiser: str) -> "cfg.ml_collections.ConfigDict":
    c = cfg.base()
    c.size = size
    c.optim.name = optimiser
    c.optim.learning_rate = 1.0 if optimiser == "lbfgs" else 2.0
    return c


def bench_step(size: int, optimiser: str, batch: int, steps: int = 20,
               chunk: int = 10, dtype: str = "float32", params=None,
               remat: str = "none") -> dict:
    """Times the compiled chunk for one setting (square size x size image)."""
    c = _config(size, optimiser)
    c.model.dtype = dtype
    c.model.remat = remat
    params = params if params is not None else vgg19.random_params(0)
    static = loop.static_from_config(c, steps)
    rng = np.random.RandomState(0)
    content = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    tgt = targets.compute(params, static.spec, content, [style])
    memory.release_freed()  # Where run.py's driver does.
    hp1 = loop.hparams_from_config(c, 1)
    image0 = np.asarray(targets.init_image("content", 0, content))
    # Batch 1 is the program run.py runs (a group of one, squeezed inside
    # the program); above 1, the one a sweep of that many members runs on
    # one device.
    progs = loop.programs(static, chunk, sharding.single_device_mesh())
    hp = jax.tree_util.tree_map(lambda a: jnp.stack([a] * batch), hp1)
    state = progs.init(jnp.stack([image0] * batch), hp, params, tgt)
    run = progs.chunk
    n = jnp.int32(chunk)
    t = time.perf_counter()
    compiled = run.lower(state, params, tgt, hp, n).compile()
    compile_s = time.perf_counter() - t
    memory.release_freed()
    program_mib = _program_mib(compiled)
    state, *_ = compiled(state, params, tgt, hp, n)  # Warm-up chunk.
    jax.block_until_ready(state)
    deepest = vgg19.deepest(static.spec.layers)
    flops_eval = step_flops(size, size, deepest)
    per_step, rates, evals = [], [], 0
    for _ in range(max(1, -(-steps // chunk))):
        t = time.perf_counter()
        state, losses_T, aux, _ = compiled(state, params, tgt, hp, n)
        jax.block_until_ready(losses_T)
        dt = time.perf_counter() - t
        e = int(np.sum(jax.device_get(aux["evals"])))  # Over the batch.
        per_step.append(dt / chunk)
        rates.append(e * flops_eval / dt)
        evals += e
    ms = 1e3 * statistics.median(per_step)
    timed = len(per_step) * chunk
    return {
        "size": size, "optimiser": optimiser, "batch": batch, "dtype": dtype,
        "remat": remat, "compile_s": round(compile_s, 3),
        "ms_per_step": round(ms, 2), "steps_timed": timed,
        "evals_per_step": round(evals / (timed * batch), 2),
        "gflop_per_eval": round(flops_eval / 1e9, 2),
        "achieved_gflops": round(statistics.median(rates) / 1e9, 2),
        **({"program_mib": program_mib} if program_mib is not None else {}),
    }


def _program_mib(compiled) -> Optional[float]:
    """XLA's own account of the compiled chunk's buffers (MiB), or None.

    Arguments + outputs + temporaries, less what outputs alias. On GPUs the
    allocator's ``peak_bytes_in_use`` also counts the scratch the conv
    autotuner tries at compile time, which can dwarf the program itself.
    """
    try:
        m = compiled.memory_analysis()
        total = (m.argument_size_in_bytes + m.output_size_in_bytes
                 + m.temp_size_in_bytes - m.alias_size_in_bytes)
    except Exception:  # Not every backend reports it.
        return None
    return round(total / 2**20, 1)


def peak_memory() -> dict:
    """Peak host RSS (MiB) and, on accelerators, device peak bytes."""
    out = {"host_peak_rss_mib": round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    try:
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak_mib"] = round(stats["peak_bytes_in_use"] / 2**20,
                                           1)
    except Exception:  # CPU backends have no memory_stats.
        pass
    return out


def _status_mib(field: str) -> Optional[float]:
    """A size field of /proc/self/status (VmRSS, VmHWM) in MiB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def memory_row(size: int, optimiser: str, remat: str = "none",
               steps: int = 2, chunk: int = 1, dtype: str = "float32",
               batch: int = 1) -> dict:
    """:func:`bench_step` plus this process's memory peaks.

    Run it in a fresh process (:func:`run_memory` does): the peaks cover
    everything the process did before. ``host_start_rss_mib`` is the RSS
    once JAX is up and the random weights exist, before any image work.
    """
    params = jax.block_until_ready(vgg19.random_params(0))
    start = _status_mib("VmRSS")
    row = bench_step(size, optimiser, batch, steps, chunk, dtype, params,
                     remat=remat)
    row.update(host_start_rss_mib=start, **peak_memory())
    hwm = _status_mib("VmHWM")
    if hwm is not None:
        row["host_peak_rss_mib"] = max(row["host_peak_rss_mib"], hwm)
    return row


_CHILD = ("import json, sys; from nst_jax.evals import benchmark; "
          "print(json.dumps(benchmark.memory_row(**json.loads(sys.argv[1]))))")


def _estimate_mib(size: int, optimiser: str, remat: str, dtype: str,
                  batch: int, platform: str) -> float:
    c = _config(size, optimiser)
    c.model.remat, c.model.dtype = remat, dtype
    e = memory.estimate(c, members=batch, hw=(size, size), platform=platform)
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


def run(sizes: Sequence[int] = (256, 512), optimisers=("adam", "lbfgs"),
        batches=(1, 8), steps: int = 20, chunk: int = 10,
        dtype: str = "float32", log=None) -> dict:
    """Every combination; returns {"device", "rows", "plain_conv", ...}.

    The plain-conv reference runs in the same dtype as the step, so a
    bfloat16 step is compared with bfloat16 convolutions.
    """
    rows, plain = [], {}
    deepest = vgg19.deepest(cfg.base().loss.style_layers
                            + cfg.base().loss.content_layers)
    for size in sizes:
        for batch in batches:
            key = f"{size}x{batch}"
            plain[key] = round(plain_conv_gflops(
                size, size, deepest, batch, dtype=jnp.dtype(dtype)), 2)
            for opt in optimisers:
                r = bench_step(size, opt, batch, steps, chunk, dtype)
                r["plain_conv_gflops"] = plain[key]
                r["ratio_to_plain_conv"] = round(
                    r["achieved_gflops"] / plain[key], 3)
                rows.append(r)
                if log:
                    log(r)
    return {"device": str(jax.devices()[0]), "backend": jax.default_backend(),
            "jax": jax.__version__, "dtype": dtype, "rows": rows,
            "plain_conv": plain, "memory": peak_memory()}


def table(result: dict) -> str:
    cols = ["size", "optimiser", "batch", "dtype", "compile_s", "ms_per_step",
            "evals_per_step", "achieved_gflops", "plain_conv_gflops",
            "ratio_to_plain_conv"]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in result["rows"]:
        lines.append(" | ".join(str(r[c]) for c in cols))
    return "\n".join(lines)


def match_rows(sizes: Sequence[int] = (256, 512), runs: int = 3,
               params=None, log: Optional[Callable] = None) -> list[dict]:
    """The portrait's PatchMatch (``patchmatch.correspondence``, both
    directions, default layers, VGG features included) searching at each
    size, on the embedded pair: seconds of the first call (compilation
    included) and the median of ``runs`` more."""
    params = params if params is not None else vgg19.random_params(0)
    content, style = (images.load(p) for p in (inputs.DEFAULT_CONTENT,
                                               inputs.DEFAULT_STYLE))

    def feats(rgb, layers):
        return vgg19.features(params, rgb, layers)
    rows = []
    for size in sizes:
        times = []
        for _ in range(runs + 1):
            t = time.perf_counter()
            patchmatch.correspondence(style, content, feats, size=size)
            times.append(time.perf_counter() - t)
        rows.append({"size": size, "first_s": round(times[0], 2),
                     "s": round(statistics.median(times[1:]), 2)})
        if log:
            log(rows[-1])
    return rows


def match_table(rows: list[dict]) -> str:
    lines = ["PatchMatch size | first call s (compiles) | s (median)",
             "--- | --- | ---"]
    lines += [f"{r['size']} | {r['first_s']} | {r['s']}" for r in rows]
    return "\n".join(lines)
