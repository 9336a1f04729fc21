"""Compiled programs kept in memory and, optionally, across launches.

JAX's persistent compilation cache (``nst_jax.app.compile_cache``) saves
the compile, but each launch still traces and lowers every program to find
its cache key: for the step programs that is most of a warm launch's wait.
This module keys a program by what determines it instead (a name, the
static settings its closure holds, the arguments' shapes, dtypes and
shardings, and a fingerprint of nst_jax's own source, jax and the devices)
and stores the serialized executable under that key, so a warm launch
loads it without tracing anything. Any change to nst_jax's code, jax or
the machine changes the fingerprint and so every key.

The disk store is off until :func:`configure` names a directory (the
scripts do, inside the compilation cache); it serves single-process,
single-device programs (sharded ones compile as before). A store that
cannot be read or written only costs the time it would have saved.
"""

from __future__ import annotations

import collections
import functools
import hashlib
import logging
import os
import pickle
import platform
import time
from typing import Any, Callable, Hashable, Optional

import jax

from nst_jax.io import atomic

log = logging.getLogger(__name__)

_DIR: Optional[str] = None
_MEMORY: collections.OrderedDict = collections.OrderedDict()
_MEMORY_SIZE = 64
#: Environment variables that can change what XLA makes of a program.
_ENV_PREFIXES = ("XLA_", "JAX_", "TF_XLA", "NST_JAX_XLA")


def configure(directory: Optional[str]) -> None:
    """Keeps executables in ``directory`` (made if missing), or in memory
    only when None."""
    global _DIR
    _DIR = directory
    if directory:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as e:
            log.warning("nst_jax: cannot create %s (%s); executables are "
                        "not kept across launches", directory, e.strerror)
            _DIR = None


def forget() -> None:
    """Drops the in-memory executables (tests use it to reach the disk)."""
    _MEMORY.clear()


@functools.lru_cache(maxsize=1)
def fingerprint() -> str:
    """sha256 of nst_jax's source files, jax/jaxlib versions, the
    backend's devices and the XLA-related environment."""
    h = hashlib.sha256()
    root = os.path.dirname(os.path.abspath(__file__))
    for dirpath, dirnames, files in sorted(os.walk(root)):
        dirnames.sort()
        for name in sorted(f for f in files if f.endswith(".py")):
            path = os.path.join(dirpath, name)
            h.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
    import jaxlib
    devices = [(d.platform, d.device_kind) for d in jax.devices()]
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith(_ENV_PREFIXES))
    h.update(repr((jax.__version__, jaxlib.__version__, devices, env,
                   platform.machine(), jax.config.jax_enable_x64,
                   jax.config.jax_default_matmul_precision)).encode())
    return h.hexdigest()


def _avals(args) -> tuple:
    leaves, tree = jax.tree_util.tree_flatten(args)
    return tree, tuple((tuple(x.shape), str(x.dtype),
                        bool(getattr(x, "weak_type", False)),
                        getattr(x, "sharding", None)) for x in leaves)


def compiled(fn: Callable, key: Hashable, *args: Any, keep: bool = True
             ) -> tuple[Callable, float]:
    """``fn`` (a jitted function) compiled for ``args`` (arrays or
    ShapeDtypeStructs) and the seconds spent lowering and compiling (0 when
    it was kept).

    ``key`` must name everything ``fn`` closes over that shapes the program
    (a name and its static settings): two functions with one key and equal
    argument shapes are taken to be the same program. ``keep=False``: a
    program that cannot be serialized (one with host callbacks) is kept
    in memory only.
    """
    if any(isinstance(x, jax.core.Tracer)
           for x in jax.tree_util.tree_leaves(args)):
        return fn, 0.0  # Inside another trace: just call it.
    tree, avals = _avals(args)
    mem_key = (key, tree, avals)
    if mem_key in _MEMORY:
        _MEMORY.move_to_end(mem_key)
        return _MEMORY[mem_key], 0.0
    path = _path(key, tree, avals) if keep else None
    exe = _load(path) if path else None
    seconds = 0.0
    if exe is None:
        t = time.perf_counter()
        exe, keep = _compile(fn, args, fresh=path is not None)
        seconds = time.perf_counter() - t
        if keep:
            _store(path, exe)
    _MEMORY[mem_key] = exe
    while len(_MEMORY) > _MEMORY_SIZE:
        _MEMORY.popitem(last=False)
    return exe, seconds


def _compile(fn: Callable, args: tuple, fresh: bool):
    """(``fn`` lowered and compiled, whether it may be kept).

    ``fresh``: compiled past JAX's persistent cache, for an executable
    that will be serialized: one that JAX loaded from its own cache
    serializes to a blob that fails when run ("Function ... not found").
    JAX's cache is neither read nor written for this one compile (its copy
    could never serve a kept program: a hit is what breaks); a jax without
    those hooks compiles as usual and the program is not kept. Turning
    ``jax_enable_compilation_cache`` off instead would not do: JAX reads
    that setting once per process.
    """
    if not fresh:
        return fn.lower(*args).compile(), False
    from jax._src import compiler
    hooks = {name: getattr(compiler, name, None)
             for name in ("_cache_read", "_cache_write")}
    if None in hooks.values():
        return fn.lower(*args).compile(), False
    compiler._cache_read = lambda *a, **k: (None, None)
    compiler._cache_write = lambda *a, **k: None
    try:
        return fn.lower(*args).compile(), True
    finally:
        for name, hook in hooks.items():
            setattr(compiler, name, hook)


def _path(key: Hashable, tree, avals: tuple) -> Optional[str]:
    """The file of this program in the store, or None (no store, or a
    program the store does not serve)."""
    if _DIR is None or jax.process_count() > 1:
        return None
    shardings = {a[3] for a in avals if a[3] is not None}
    if any(len(s.device_set) > 1 for s in shardings):
        return None
    text = repr((fingerprint(), key, str(tree),
                 [(a[0], a[1], a[2], repr(a[3])) for a in avals]))
    return os.path.join(_DIR, hashlib.sha256(text.encode()).hexdigest()
                        + ".exe")


def _load(path: str):
    from jax.experimental import serialize_executable
    try:
        with open(path, "rb") as f:
            payload, in_tree, out_tree = pickle.load(f)
        return serialize_executable.deserialize_and_load(
            payload, in_tree, out_tree)
    except FileNotFoundError:
        return None
    except Exception as e:  # A damaged or foreign entry: compile anew.
        log.warning("nst_jax: ignoring the kept executable %s (%s)", path,
                    type(e).__name__)
        return None


def _store(path: str, exe) -> None:
    from jax.experimental import serialize_executable
    try:
        blob = pickle.dumps(serialize_executable.serialize(exe))
        atomic.write_bytes(path, blob)
    except Exception as e:  # Only costs the next launch the time.
        log.warning("nst_jax: cannot keep the executable %s (%s)", path,
                    type(e).__name__)
