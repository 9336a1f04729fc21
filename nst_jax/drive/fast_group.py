"""A group of ``method=fast`` members: each painted in one forward pass.

What ``nst_jax.drive.driver.run_group`` runs for the fast method, with the same
callback and result, so run directories, sweeps, folders of
photos, progress and exit codes are shared. Members of a group share the
style images and everything but traced fields and the content photo; the
style embeddings are computed once per content (colour preservation
recolours the styles per photo), and all members whose photos have one
size are painted in one batched call, compiled once per size.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import numpy as np

from nst_jax.drive import inputs, targets
from nst_jax.drive.report import ChunkInfo, GroupResult
from nst_jax.fast import transfer


def run_group(plans: list, fast_params,
              callback: Optional[Callable[[ChunkInfo], None]] = None
              ) -> GroupResult:
    """Paints every member; see ``nst_jax.drive.driver.run_group``.

    Each member's metrics are one record: its share of the painting time
    and the group's images per second.
    """
    n, t0 = len(plans), time.perf_counter()
    prepared, embeds = {}, {}
    for c in plans:  # Inputs and embeddings once per distinct photo.
        key = c.content
        if key not in prepared:
            inp = inputs.prepare(c, c.size)
            prepared[key] = inp
            embeds[key] = transfer.embeddings(
                fast_params, inp.style_rgbs + [inp.content_rgb],
                c.fast.style_size)
    buckets: dict[tuple, list[int]] = {}
    for i, c in enumerate(plans):
        hw = prepared[c.content].content_rgb.shape[:2]
        buckets.setdefault(hw, []).append(i)
    out, raw = [None] * n, [None] * n
    metrics: list = [[] for _ in range(n)]
    callback_s, done = 0.0, 0
    for idx in buckets.values():
        t = time.perf_counter()
        inps = [prepared[plans[i].content] for i in idx]
        embs = [transfer.member_embedding(
            embeds[plans[i].content], plans[i].style_blend,
            plans[i].fast.strength)
            for i in idx]
        painted = transfer.paint(fast_params,
                                 np.stack([p.content_rgb for p in inps]),
                                 np.stack(embs))
        seconds = time.perf_counter() - t
        done += len(idx)
        records = []
        for j, (i, inp) in enumerate(zip(idx, inps)):
            raw[i] = painted[j]
            out[i] = targets.output_rgb(plans[i], inp, painted[j])
            rec = {"step": 1, "seconds": seconds / len(idx),
                   "images_per_s": len(idx) / max(seconds, 1e-9),
                   "size": list(inp.content_rgb.shape[:2])}
            metrics[i].append(rec)
            records.append(rec)
        if callback is not None:
            t = time.perf_counter()
            callback(ChunkInfo(
                0, done, n, done, n, _spread(records, idx, n), list(out),
                list(raw), [""] * n, lambda: [[] for _ in range(n)]))
            callback_s += time.perf_counter() - t
    run_s = time.perf_counter() - t0 - callback_s
    return GroupResult(out, metrics, ["done"] * n, [""] * n, 0.0,
                              run_s)


def _spread(records: list, idx: list, n: int) -> list:
    """Records of the members in ``idx``, placed at their indices."""
    full: list = [None] * n
    for i, r in zip(idx, records):
        full[i] = r
    return full
