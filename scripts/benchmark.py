"""Step speed and memory: python scripts/benchmark.py [--sizes=256,512]

Prints a table and writes JSON (--out). Runs unchanged on CPU and GPU.
Sizes default to 256 and 512; add 1024 with --sizes=256,512,1024. Then the
fast network's forward pass at --fast_sizes (256, 512, 1024), next to
onnxruntime's int8 graph when `pip install -e '.[onnx]'` was run, and the
portrait's PatchMatch search at --match_sizes (256, 512).

Memory mode, each setting in a fresh process (peak host RSS; on GPU peak
device bytes; ms/step; nst_jax.drive.memory's estimate beside them):

    python scripts/benchmark.py --memory --sizes=512,1024 \
        --optimisers=lbfgs --remats=none,blocks,tiles --steps=2 --chunk=1

Start-up mode: seconds from launching scripts/run.py (configs/default.py,
its init=fast included) to its first step, with an empty and then a filled
persistent compilation cache, --rounds times per size:

    python scripts/benchmark.py --startup --sizes=256,512 --rounds=2

and with --startup_pastiche=PATH (pastiche 1.6.0's executable) a pastiche
launch beside each warm one, in alternating order.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402

from nst_jax.app import cli  # noqa: E402
from nst_jax.evals import benchmark, fast_speed as speed, startup  # noqa: E402

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
        result = benchmark.run_memory(
            [int(s) for s in _SIZES.value], _OPTS.value, _REMATS.value,
            _STEPS.value, _CHUNK.value, _DTYPE.value,
            int(_BATCHES.value[0]), log=log)
        print(benchmark.memory_table(result))
        if _OUT.value:
            with open(_OUT.value, "w") as f:
                json.dump(result, f, indent=2)
        return
    result = benchmark.run(
        [int(s) for s in _SIZES.value], _OPTS.value,
        [int(b) for b in _BATCHES.value], _STEPS.value, _CHUNK.value,
        _DTYPE.value, log=lambda r: print(json.dumps(r), file=sys.stderr,
                                          flush=True))
    print(benchmark.table(result))
    if _FAST.value:
        result["fast"] = speed.run(
            [int(s) for s in _FAST.value],
            log=lambda r: print(json.dumps(r), file=sys.stderr, flush=True))
        print(speed.table(result["fast"]))
    if _MATCH.value:
        result["patchmatch"] = benchmark.match_rows(
            [int(s) for s in _MATCH.value], log=log)
        print(benchmark.match_table(result["patchmatch"]))
    print(json.dumps(result["memory"]))
    if _OUT.value:
        with open(_OUT.value, "w") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
