"""scripts/benchmark.py's flags and what it does with them.

One mode per launch: the step speed (:mod:`nst_jax.bench.step`,
then the fast network, :mod:`nst_jax.bench.fast`, and the portrait's
PatchMatch, :mod:`nst_jax.bench.patchmatch`), ``--memory``
(:mod:`nst_jax.bench.memory_use`) or ``--startup``
(:mod:`nst_jax.bench.startup`). Tables go to stdout, one JSON line per row
to stderr as it is measured, the whole result as JSON to ``--out``. The
script adopts these flags (``flags.adopt_module_key_flags``), so its
``--help`` lists them.
"""

from __future__ import annotations

import json
import sys

from absl import flags

from nst_jax.app import cli
from nst_jax.bench import fast, memory_use, patchmatch, startup, step

_SIZES = flags.DEFINE_list("sizes", ["256", "512"], "Image long sides.")
_OPTS = flags.DEFINE_list("optimisers", ["adam", "lbfgs"], "Optimisers.")
_BATCHES = flags.DEFINE_list("batches", ["1", "8"],
                             "Batch sizes (above 1: as a sweep runs them).")
_STEPS = flags.DEFINE_integer("steps", 20, "Timed steps after warm-up.")
_CHUNK = flags.DEFINE_integer("chunk", 10, "Steps per compiled chunk.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"],
                           "Compute dtype (bfloat16 for accelerators).")
_FAST = flags.DEFINE_list(
    "fast_sizes", ["256", "512", "1024"],
    "Sizes for the fast network's forward pass (empty: skip); onnxruntime's "
    "int8 graph beside it when the onnx extra is installed.")
_MATCH = flags.DEFINE_list(
    "match_sizes", ["256", "512"],
    "Sizes at which to time the portrait's PatchMatch (empty: skip).")
_STYLE = flags.DEFINE_list(
    "style_losses", ["gram"], "loss.style_loss values to time (step mode; "
    "mrf at relu3_1,relu4_1).")
_OUT = flags.DEFINE_string("out", None, "Write the JSON result here.")
_MEMORY = flags.DEFINE_bool(
    "memory", False, "Memory mode: peak RSS / device bytes and ms/step per "
    "(size, optimiser, remat), each in a fresh process; uses the first of "
    "--batches.")
_STARTUP = flags.DEFINE_bool(
    "startup", False, "Start-up mode: launch to first step of run.py, "
    "cold and warm compilation cache, at --sizes.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Launch pairs per size "
                               "(start-up mode).")
_PASTICHE = flags.DEFINE_string(
    "startup_pastiche", None, "Start-up mode: pastiche's executable, "
    "launched beside each warm nst_jax launch on the same images.")
_REMATS = flags.DEFINE_list("remats", ["none", "blocks", "tiles"],
                            "model.remat settings (memory mode).")


def main(argv):
    """The script's ``main`` (pass to ``app.run``): runs the mode the
    parsed flags ask for."""
    cli.no_arguments(argv)
    log = lambda r: print(json.dumps(r), file=sys.stderr, flush=True)
    if _STARTUP.value:
        rows = startup.run([int(s) for s in _SIZES.value], _ROUNDS.value,
                           log=log, pastiche=_PASTICHE.value)
        print(startup.table(rows))
        if _OUT.value:
            with open(_OUT.value, "w") as f:
                json.dump({"rows": rows}, f, indent=2)
        return
    if _MEMORY.value:
        result = memory_use.run_memory(
            [int(s) for s in _SIZES.value], _OPTS.value, _REMATS.value,
            _STEPS.value, _CHUNK.value, _DTYPE.value,
            int(_BATCHES.value[0]), log=log)
        print(memory_use.memory_table(result))
        if _OUT.value:
            with open(_OUT.value, "w") as f:
                json.dump(result, f, indent=2)
        return
    result = step.run(
        [int(s) for s in _SIZES.value], _OPTS.value,
        [int(b) for b in _BATCHES.value], _STEPS.value, _CHUNK.value,
        _DTYPE.value, log=log, style_losses=_STYLE.value)
    print(step.table(result))
    if _FAST.value:
        result["fast"] = fast.run([int(s) for s in _FAST.value], log=log)
        print(fast.table(result["fast"]))
    if _MATCH.value:
        result["patchmatch"] = patchmatch.match_rows(
            [int(s) for s in _MATCH.value], log=log)
        print(patchmatch.match_table(result["patchmatch"]))
    print(json.dumps(result["memory"]))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)
