"""JAX's persistent compilation cache, on by default for the scripts.

Compiling the VGG step programs takes most of a short run's start-up;
with the cache a second run of the same shapes reads the compiled
programs from disk instead. The cache lives next to the decoded weights,
in ``<weight cache>/jax_compilation_cache`` (``$NST_JAX_CACHE``, else
``$XDG_CACHE_HOME/nst_jax``, else ``~/.cache/nst_jax``). JAX keys each
entry by the program, the jax/jaxlib versions, the compile options and the
devices, so one directory serves every size, backend and version. In a
multi-host run only process 0 writes entries (JAX's rule).

The config field ``compile_cache`` chooses: "auto" (that directory), ""
(off) or a directory. ``NST_JAX_COMPILE_CACHE`` set to "0", "off" or ""
turns it off whatever the config says (the test suite does this); set to
a directory it replaces "auto".
"""

from __future__ import annotations

import logging
import os
from typing import Optional

import jax

from nst_jax import executables
from nst_jax.weights import cache as weight_cache

log = logging.getLogger(__name__)

ENV = "NST_JAX_COMPILE_CACHE"
SUBDIR = "jax_compilation_cache"
EXECUTABLES = "executables"  # Inside it: nst_jax.executables' store.
_OFF = ("", "0", "off", "false", "no", "none")
# Every program is worth keeping: the step programs take seconds to
# compile, and even the small ones add up at start-up (JAX's default, 1 s,
# skips those).
MIN_COMPILE_SECS = 0.0
# The options this module sets; older jax versions may lack some.
_OPTIONS = ("jax_compilation_cache_dir",
            "jax_persistent_cache_min_compile_time_secs")


def resolve(setting: str = "auto") -> Optional[str]:
    """The cache directory for a config's ``compile_cache``, or None (off).

    Args:
      setting: "auto", "" or a directory.

    Returns:
      An absolute path, or None where the setting or ``$NST_JAX_COMPILE_
      CACHE`` turns the cache off.
    """
    env = os.environ.get(ENV)
    if env is not None and env.strip().lower() in _OFF:
        return None
    setting = (setting or "").strip()
    if setting.lower() in _OFF:
        return None
    if setting == "auto":
        setting = env or os.path.join(weight_cache.cache_dir(), SUBDIR)
    return os.path.abspath(os.path.expanduser(setting))


def enable(setting: str = "auto") -> Optional[str]:
    """Points JAX's persistent compilation cache at :func:`resolve`'s path.

    Call before the first jit of the process: JAX opens its cache once, at
    the first compilation. A directory that cannot be made, or a jax that
    lacks the options, leaves the cache off with a warning: it only saves
    time.

    Args:
      setting: the config's ``compile_cache`` ("auto", "" or a path).

    Returns:
      The directory in use, or None.
    """
    path = resolve(setting)
    if path is None:
        return None
    missing = [o for o in _OPTIONS if o not in jax.config.values]
    if missing:
        log.warning("nst_jax: this jax (%s) lacks %s; compiling without a "
                    "persistent cache", jax.__version__, ", ".join(missing))
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        log.warning("nst_jax: cannot create the compilation cache %s (%s); "
                    "compiling without it", path, e.strerror)
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    # Executables kept whole, so a warm launch skips tracing as well.
    executables.configure(os.path.join(path, EXECUTABLES))
    jax.config.update("jax_persistent_cache_min_compile_time_secs",
                      MIN_COMPILE_SECS)
    log.info("persistent compilation cache: %s", path)
    return path
