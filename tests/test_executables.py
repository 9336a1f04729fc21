"""Executables kept across launches: loaded without tracing, keyed by
everything that shapes them, a damaged entry recompiled."""

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import executables
from nst_jax.drive import driver
from tests.helpers import count_chunk_traces, plans, small_config
from tests import test_reliability

good = test_reliability.good  # The reliability tests' image pair.


@pytest.fixture
def store(tmp_path):
    executables.configure(str(tmp_path / "exe"))
    executables.forget()
    yield str(tmp_path / "exe")
    executables.configure(None)
    executables.forget()


def test_a_kept_program_loads_without_lowering(store, monkeypatch):
    f = jax.jit(lambda x, y: jnp.sin(x) * y + 1.0)
    x, y = np.linspace(0, 1, 6, dtype=np.float32), np.float32(3)
    exe, seconds = executables.compiled(f, ("sin", 1), x, y)
    assert seconds > 0 and len(glob.glob(store + "/*.exe")) == 1
    want = np.asarray(exe(x, y))
    executables.forget()  # A new launch: nothing in memory.

    def no_lowering(*a):
        raise AssertionError("lowered again")
    g = jax.jit(lambda x, y: jnp.sin(x) * y + 1.0)
    monkeypatch.setattr(g, "lower", no_lowering, raising=False)
    exe, seconds = executables.compiled(g, ("sin", 1), x, y)
    assert seconds == 0 and np.array_equal(np.asarray(exe(x, y)), want)
    # Another key, another shape: compiled anew, each its own entry.
    executables.compiled(f, ("sin", 2), x, y)
    executables.compiled(f, ("sin", 1), x[:3], y)
    assert len(glob.glob(store + "/*.exe")) == 3


def test_a_damaged_entry_is_compiled_again(store, caplog):
    f = jax.jit(lambda x: x * 2)
    x = np.ones(4, np.float32)
    executables.compiled(f, "twice", x)
    path, = glob.glob(store + "/*.exe")
    with open(path, "wb") as fh:
        fh.write(b"not an executable")
    executables.forget()
    exe, seconds = executables.compiled(f, "twice", x)
    assert seconds > 0 and np.array_equal(np.asarray(exe(x)), x * 2)
    assert "ignoring the kept executable" in caplog.text


def test_the_fingerprint_follows_the_environment(monkeypatch):
    executables.fingerprint.cache_clear()
    a = executables.fingerprint()
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    executables.fingerprint.cache_clear()
    b = executables.fingerprint()
    monkeypatch.delenv("XLA_FLAGS")
    executables.fingerprint.cache_clear()
    assert a != b and executables.fingerprint() == a


def test_a_second_launch_runs_the_kept_step_without_tracing(
        store, good, params, monkeypatch):
    c = small_config(good["content"], good["style"],
                     **{"optim.name": "lbfgs", "optim.learning_rate": 1.0,
                        "optim.steps": 4})
    first, _ = driver.stylize(plans([c])[0], params)
    traces = count_chunk_traces(monkeypatch)
    again, _ = driver.stylize(plans([c])[0], params)
    assert traces == [] and np.array_equal(first, again)
    assert len(os.listdir(store)) >= 2  # init and chunk.


_LAUNCH = """
import sys, numpy as np, jax, jax.numpy as jnp
from nst_jax.app import compile_cache
from nst_jax import executables
compile_cache.enable(sys.argv[1])
if sys.argv[2] == "jax":  # Fill JAX's own cache only.
    executables.configure(None)
f = jax.jit(lambda x, y: jnp.tanh(x / (y + 1.0)) @ x.T / jnp.sum(y))
x = np.ones((32, 32), np.float32)
exe, _ = executables.compiled(f, "tanh", x, x)
print(float(np.asarray(exe(x, x)).sum()))
"""


def test_a_program_jax_had_cached_is_kept_runnable(tmp_path):
    """JAX's persistent cache hands back executables that serialize to
    blobs that fail when run; the store must compile its own."""
    import subprocess
    import sys
    env = dict(os.environ)
    env.pop("NST_JAX_COMPILE_CACHE", None)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def launch(mode):
        out = subprocess.run(
            [sys.executable, "-c", _LAUNCH, str(tmp_path / "cc"), mode],
            capture_output=True, text=True, env=env, cwd=root, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout.split()[-1]
    want = launch("jax")  # JAX's cache has it; the store is off.
    assert launch("store") == want  # JAX's cache hit; the store fills.
    assert glob.glob(str(tmp_path / "cc" / "executables" / "*.exe"))
    assert launch("store") == want  # Loaded from the store and run.
