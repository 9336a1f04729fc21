"""Speed of the fast network's forward pass, next to onnxruntime's.

The Flax transformer (what ``method=fast`` runs per photo) is timed warm,
median of ``runs`` calls after compiling, on random weights and images
(speed does not depend on values), on every core XLA is given. When the
optional ``onnx`` extra is installed, the int8 ONNX graph it was ported
from is timed the same way by onnxruntime on one thread (its sizes made
symbolic first: the shipped graph takes 384x384 only).
"""

from __future__ import annotations

import statistics
import time

import jax
import numpy as np

from nst_jax.errors import WeightsError
from nst_jax.fast import model
from nst_jax.weights import fast as fast_weights


def _median_ms(fn, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return round(1e3 * statistics.median(times), 2)


def flax_row(size: int, runs: int = 5, params=None) -> dict:
    """Compile seconds and warm ms of the transformer at size x size."""
    params = params if params is not None else model.random_params(0)
    rng = np.random.RandomState(0)
    content = rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32)
    emb = rng.normal(0, 1, (1, model.EMBEDDING_DIM)).astype(np.float32)
    t = time.perf_counter()
    compiled = model.stylize.lower(params, content, emb).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(compiled(params, content, emb))  # Warm-up.
    return {"size": size, "compile_s": round(compile_s, 3),
            "ms": _median_ms(lambda: compiled(params, content, emb), runs)}


def onnxruntime_ms(transform_onnx: bytes, size: int, runs: int = 5
                   ) -> float:
    """Warm ms of the int8 ONNX transformer on one thread (needs the
    ``onnx`` extra: onnx and onnxruntime)."""
    import onnx  # Optional dependencies: only this measurement needs them.
    import onnxruntime as ort
    graph = onnx.load_from_string(transform_onnx)
    for value in (graph.graph.input[0], graph.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "H", "W"
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    rng = np.random.RandomState(0)
    feed = {session.get_inputs()[0].name:
            rng.uniform(0, 1, (1, size, size, 3)).astype(np.float32),
            session.get_inputs()[1].name:
            rng.normal(0, 1, (1, 1, 1, model.EMBEDDING_DIM)).astype(
                np.float32)}
    session.run(None, feed)  # Warm-up.
    return _median_ms(lambda: session.run(None, feed), runs)


def run(sizes=(256, 512, 1024), runs: int = 5, log=None) -> list[dict]:
    """One row per size; ``onnxruntime_ms`` is None without the extra or
    without the original graphs (offline, nothing cached)."""
    try:
        import onnx  # noqa: F401  (probe for the optional extra)
        import onnxruntime  # noqa: F401
        transform = fast_weights.onnx_bytes()[1]
    except (ImportError, WeightsError) as e:
        transform = None
        if log and isinstance(e, WeightsError):
            log({"onnxruntime": f"skipped: {str(e).splitlines()[0][:120]}"})
    rows = []
    for size in sizes:
        row = flax_row(size, runs)
        row["onnxruntime_ms"] = (onnxruntime_ms(transform, size, runs)
                                 if transform is not None else None)
        rows.append(row)
        if log:
            log(row)
    return rows


def table(rows: list[dict]) -> str:
    lines = ["size | flax compile_s | flax ms | onnxruntime int8 ms (1 "
             "thread)", "--- | --- | --- | ---"]
    lines += [f"{r['size']} | {r['compile_s']} | {r['ms']} | "
              f"{r['onnxruntime_ms'] if r['onnxruntime_ms'] else '-'}"
              for r in rows]
    return "\n".join(lines)
