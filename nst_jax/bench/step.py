"""Speed of the stylization step: what scripts/benchmark.py times first.

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

Memory mode is :mod:`nst_jax.bench.memory_use`, the PatchMatch timing
:mod:`nst_jax.bench.patchmatch`, what the script does with its flags
:mod:`nst_jax.bench.main`.
"""

from __future__ import annotations

import functools
import statistics
import time
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import config as cfg, plan
from nst_jax.drive import sharding, targets
from nst_jax import memory
from nst_jax.bench.process import peak_memory
from nst_jax.optimize import loop
from nst_jax.vgg import vgg19


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


def bench_config(size: int, optimiser: str) -> cfg.Config:
    """The base config at ``size`` with ``optimiser`` and its step size."""
    c = cfg.base()
    c.size = size
    c.optim.name = optimiser
    c.optim.learning_rate = 1.0 if optimiser == "lbfgs" else 2.0
    return c


#: Style layers per ``loss.style_loss`` where the base config's differ:
#: mrf matches patches at relu3_1 and relu4_1 (Li & Wand 2016).
STYLE_LAYERS = {"mrf": ("relu3_1", "relu4_1")}


def bench_step(size: int, optimiser: str, batch: int, steps: int = 20,
               chunk: int = 10, dtype: str = "float32", params=None,
               remat: str = "none", style_loss: str = "gram") -> dict:
    """Times the compiled chunk for one setting (square size x size image)."""
    c = bench_config(size, optimiser)
    c.model.dtype = dtype
    c.model.remat = remat
    c.loss.style_loss = style_loss
    if style_loss in STYLE_LAYERS:
        c.loss.style_layers = STYLE_LAYERS[style_loss]
    params = params if params is not None else vgg19.random_params(0)
    static = plan.static(plan.fields(c), steps)
    rng = np.random.RandomState(0)
    content = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (size, size, 3)).astype(np.float32)
    tgt = targets.compute(params, static.spec, content, [style])
    memory.release_freed()  # Where run.py's driver does.
    hp1 = plan.hparams(plan.fields(c), 1)
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
        "remat": remat, "style_loss": style_loss,
        "compile_s": round(compile_s, 3),
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


def run(sizes: Sequence[int] = (256, 512), optimisers=("adam", "lbfgs"),
        batches=(1, 8), steps: int = 20, chunk: int = 10,
        dtype: str = "float32", log=None,
        style_losses: Sequence[str] = ("gram",)) -> dict:
    """Every combination; returns {"device", "rows", "plain_conv", ...}.

    The plain-conv reference runs in the same dtype as the step, so a
    bfloat16 step is compared with bfloat16 convolutions (and uses the
    base config's layers whatever the style statistic).
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
                for stat in style_losses:
                    r = bench_step(size, opt, batch, steps, chunk, dtype,
                                   style_loss=stat)
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
    cols = ["size", "optimiser", "batch", "dtype", "style_loss", "compile_s",
            "ms_per_step",
            "evals_per_step", "achieved_gflops", "plain_conv_gflops",
            "ratio_to_plain_conv"]
    lines = [" | ".join(cols), " | ".join("---" for _ in cols)]
    for r in result["rows"]:
        lines.append(" | ".join(str(r[c]) for c in cols))
    return "\n".join(lines)
