"""One progress line per chunk on stderr, for runs and sweeps alike."""

from __future__ import annotations

import time
from typing import TextIO

import numpy as np


class Progress:
    """step, loss, it/s and ETA, one line per chunk.

    Args:
      out: the stream (stderr in the scripts).
      prefix: the line's tag, e.g. "[nst_jax]" or "[sweep] group 1/2".
      members: members in the group; above one the line shows the spread
        of their losses and how many are still finite.
    """

    def __init__(self, out: TextIO, prefix: str = "[nst_jax]",
                 members: int = 1):
        self.out, self.prefix, self.members = out, prefix, members
        self.t0 = self.s0 = self.scale = None

    def __call__(self, info) -> None:
        """Prints the line for a report.ChunkInfo."""
        now = time.perf_counter()
        if info.scale != self.scale:
            # The first chunk of each scale includes compilation; time from
            # its end so it/s and ETA describe the steady state.
            self.t0, self.s0, self.scale = now, info.global_step, info.scale
            rate = 0.0
        else:
            rate = (info.global_step - self.s0) / max(now - self.t0, 1e-9)
        left = info.total_steps - info.global_step
        eta = f"{left / rate:6.0f}s" if rate > 0 else "   ?  "
        speed = f"{rate:6.2f}" if rate > 0 else "   ?  "
        live = [r for r in info.records if r is not None]
        if live and "images_per_s" in live[0]:  # The fast method.
            print(f"{self.prefix} painted {info.global_step}/"
                  f"{info.total_steps} at {live[0]['size'][1]}x"
                  f"{live[0]['size'][0]} px: {live[0]['images_per_s']:.2f} "
                  "images/s", file=self.out, flush=True)
            return
        if self.members == 1 and live:
            r = live[0]
            what = (f"loss {r['loss']:.4e} (content {r['content']:.3e} "
                    f"style {r['style']:.3e} tv {r['tv']:.3e})")
        elif live:
            losses = [r["loss"] for r in live]
            what = (f"loss median {np.median(losses):.3e} (min "
                    f"{min(losses):.3e} max {max(losses):.3e}) "
                    f"{len(live)}/{self.members} live")
        else:
            what = "diverged"
        done = [r for r in live if r.get("converged")]
        if done:
            what += (" converged: scale stops" if self.members == 1 else
                     f"; {len(done)} converged")
        batch = f" (x{self.members} members)" if self.members > 1 else ""
        print(f"{self.prefix} step {info.global_step:5d}/{info.total_steps} "
              f"scale {info.scale} {what} {speed} it/s{batch} ETA {eta}",
              file=self.out, flush=True)
