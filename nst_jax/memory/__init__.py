"""A run's peak memory: estimated from its plan (:mod:`.peak`) and
checked against what the machine has before any work (:mod:`.fit`)."""

from nst_jax.memory.fit import (
    ENV,
    check,
    device_available,
    host_available,
    refusal,
    release_freed)
from nst_jax.memory.peak import Estimate, estimate, output_hw

__all__ = ["ENV", "Estimate", "check", "device_available", "estimate",
           "host_available", "output_hw", "refusal", "release_freed"]
