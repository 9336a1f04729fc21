"""This process's memory, as the benchmarks report it: peak host RSS
(``ru_maxrss``; Linux's VmHWM), on accelerators the device's
``peak_bytes_in_use``, and single fields of ``/proc/self/status``."""

from __future__ import annotations

import resource
from typing import Optional

import jax


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


def status_mib(field: str) -> Optional[float]:
    """A size field of /proc/self/status (VmRSS, VmHWM) in MiB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None
