"""Speed and memory measured: the step, the fast network, PatchMatch,
peak memory and start-up (``scripts/benchmark.py``; docs/performance.md)."""
