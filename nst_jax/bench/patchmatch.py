"""Speed of the portrait's PatchMatch search: what ``scripts/benchmark.py
--match_sizes`` times, seconds of the first call (compilation included)
and the median of later ones, at each size."""

from __future__ import annotations

import statistics
import time
from typing import Callable, Optional, Sequence

from nst_jax import plan
from nst_jax.io import images
from nst_jax.portrait import patchmatch
from nst_jax.vgg import vgg19


def match_rows(sizes: Sequence[int] = (256, 512), runs: int = 3,
               params=None, log: Optional[Callable] = None) -> list[dict]:
    """The portrait's PatchMatch (``patchmatch.correspondence``, both
    directions, default layers, VGG features included) searching at each
    size, on the embedded pair: seconds of the first call (compilation
    included) and the median of ``runs`` more."""
    params = params if params is not None else vgg19.random_params(0)
    content, style = (images.load(p) for p in (plan.DEFAULT_CONTENT,
                                               plan.DEFAULT_STYLE))

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
