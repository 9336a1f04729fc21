"""Whether a run's estimated peak memory fits what the machine has.

:func:`check` runs with the other preflight checks (``nst_jax.app.runner``),
before any image is decoded or run directory made, and refuses with one
line (exit status 2) a run whose estimate exceeds the memory this process
can get: on CPU the least of MemAvailable (plus what the process already
holds), the cgroup's limit and RLIMIT_AS; on an accelerator the device's
``bytes_limit`` less what is in use. ``NST_JAX_MEMORY_CHECK=warn`` turns
the refusal into a warning and runs anyway; ``=off`` skips the check.

The estimate itself is :mod:`nst_jax.memory.peak`; its :class:`Estimate`,
:func:`estimate` and :func:`output_hw` are importable from here too.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
import resource
from typing import Optional

import jax

from nst_jax.memory.peak import Estimate, estimate, output_hw
from nst_jax.errors import UserError
from nst_jax.plan import Plan

__all__ = ["ENV", "Estimate", "check", "device_available", "estimate",
           "host_available", "output_hw", "refusal", "release_freed"]

log = logging.getLogger(__name__)

ENV = "NST_JAX_MEMORY_CHECK"
_MODES = ("on", "warn", "off")
_GIB = 2.0 ** 30


def release_freed() -> None:
    """Hands memory the process has freed back to the system (glibc's
    ``malloc_trim``; nothing elsewhere).

    XLA's compilers and finished programs free many blocks that glibc
    keeps in its arenas, and the steps' peak came on top of them (how
    much: see docs/performance.md, "What lowered the peak").
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # Not glibc.
        pass


def _read_int(path: str) -> Optional[int]:
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # "max": no limit.


def _status_bytes(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _meminfo_available() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def host_available() -> tuple[Optional[int], str]:
    """Bytes this process could hold in all, and which limit says so.

    The least of: MemAvailable, the cgroup's limit less its usage (v2,
    else v1), RLIMIT_AS less the address space in use; each plus the
    process's own RSS. (None, "") where none of them can be read.
    """
    rss = _status_bytes("VmRSS") or 0
    found = []
    free = _meminfo_available()
    if free is not None:
        found.append((rss + free, "MemAvailable"))
    for limit, usage, name in (
            ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current",
             "cgroup memory.max"),
            ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
             "/sys/fs/cgroup/memory/memory.usage_in_bytes",
             "cgroup memory.limit_in_bytes")):
        lim, used = _read_int(limit), _read_int(usage)
        if lim is not None and lim < 2 ** 60:
            found.append((rss + lim - (used or 0), name))
            break
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    vm = _status_bytes("VmSize")
    if soft != resource.RLIM_INFINITY and vm is not None:
        found.append((rss + soft - vm, "RLIMIT_AS"))
    if not found:
        return None, ""
    return min(found)


def device_available(device=None) -> tuple[Optional[int], str]:
    """The accelerator's bytes_limit less bytes_in_use, or (None, "")."""
    device = device or jax.local_devices()[0]
    try:
        stats = device.memory_stats() or {}
    except Exception:  # Backends without memory statistics.
        return None, ""
    if "bytes_limit" not in stats:
        return None, ""
    return (stats["bytes_limit"] - stats.get("bytes_in_use", 0),
            f"{device.device_kind} bytes_limit")


def _fitting_size(plan: Plan, est: Estimate,
                  available: int, platform: str) -> int:
    """The largest long side whose estimate fits ``available`` bytes."""
    h, w = est.hw
    fixed = estimate(plan, est.members, (1, 1), platform).total
    per_px = (est.total - fixed) / max(h * w - 1, 1)
    if available <= fixed or per_px <= 0:
        return 0
    scale = math.sqrt((available - fixed) / per_px / (h * w))
    return int(max(h, w) * scale) // 8 * 8


def refusal(plan: Plan, est: Estimate,
            available: int, source: str, platform: str) -> str:
    """The one-line message of a run that does not fit."""
    h, w = est.hw
    fit = _fitting_size(plan, est, available, platform)
    advice = [f"lower the output size (--config.size, or the largest "
              f"multiscale.sizes) to about {fit} px" if fit >= 16 else
              "no output size fits here"]
    if plan.model.remat != "tiles":
        tiles = estimate(plan.replace(**{"model.remat": "tiles"}),
                         est.members, est.hw, platform).total
        advice.append(f"set --config.model.remat=tiles (about "
                      f"{tiles / _GIB:.1f} GiB)")
    advice.append("run on a device with more memory")
    what = (f"{est.members} members at {w}x{h} px" if est.members > 1
            else f"a {w}x{h} px run")
    return (f"{what} needs about {est.total / _GIB:.1f} GiB of "
            f"{est.where} memory but {available / _GIB:.1f} GiB is available "
            f"({source}): {'; or '.join(advice)}; or set {ENV}=warn to try "
            "anyway")


def check(plan: Plan, members: int = 1
          ) -> Optional[Estimate]:
    """Refuses a run (or group of ``members``) that cannot fit in memory.

    Returns:
      The estimate (also where no limit could be read), or None where
      nothing was estimated (method=fast, or the check turned off).

    Raises:
      UserError: one line with the estimate, the memory available and
        what to change; a warning instead with NST_JAX_MEMORY_CHECK=warn.
    """
    mode = os.environ.get(ENV, "on").strip().lower() or "on"
    if mode not in _MODES:
        raise UserError(f"{ENV}={mode!r}; use one of {', '.join(_MODES)}")
    if mode == "off" or plan.method != "gatys":
        return None
    platform = jax.default_backend()
    # Members are split over every device; a CPU host's devices share its
    # memory, so there a host's share counts.
    share = jax.process_count() if platform == "cpu" else jax.device_count()
    est = estimate(plan, -(-members // share), platform=platform)
    available, source = (host_available() if platform == "cpu"
                         else device_available())
    if available is None or est.total <= available:
        return est
    message = refusal(plan, est, available, source, platform)
    if mode == "warn":
        log.warning("%s", message)
        return est
    raise UserError(message)
