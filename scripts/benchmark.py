"""Step speed and memory: python scripts/benchmark.py [--sizes=256,512]

Prints a table and writes JSON (--out). Runs unchanged on CPU and GPU.
Sizes default to 256 and 512; add 1024 with --sizes=256,512,1024. Then the
fast network's forward pass at --fast_sizes (256, 512, 1024), next to
onnxruntime's int8 graph when `pip install -e '.[onnx]'` was run, and the
portrait's PatchMatch search at --match_sizes (256, 512).

Memory mode, each setting in a fresh process (peak host RSS; on GPU peak
device bytes; ms/step; nst_jax.memory's estimate beside them):

    python scripts/benchmark.py --memory --sizes=512,1024 \
        --optimisers=lbfgs --remats=none,blocks,tiles --steps=2 --chunk=1

Start-up mode: seconds from launching scripts/run.py (configs/default.py,
its init=fast included) to its first step, with an empty and then a filled
persistent compilation cache, --rounds times per size:

    python scripts/benchmark.py --startup --sizes=256,512 --rounds=2

and with --startup_pastiche=PATH (pastiche 1.6.0's executable) a pastiche
launch beside each warm one, in alternating order.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402

from nst_jax.app import cli  # noqa: E402
from nst_jax.bench import main as bench_main  # noqa: E402

# The flags live beside the code that reads them; adopted, --help lists
# them as this script's own.
flags.adopt_module_key_flags(bench_main)


if __name__ == "__main__":
    app.run(bench_main.main, flags_parser=cli.parse_flags)
