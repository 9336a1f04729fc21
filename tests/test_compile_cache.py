"""The persistent compilation cache: where it goes, how it is turned off,
that a second run reads it, and the quiet console of the scripts that
turn it on (their log goes to the run directory's log.txt)."""

import logging
import os
import re
import subprocess
import sys

import pytest

from nst_jax.app import compile_cache, rundir
from nst_jax.vgg import vgg19
from nst_jax.weights import vgg as vgg_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# An absl log line on the console: "I1126 02:51:20.104317 1404 file.py:8]".
ABSL_LINE = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d", re.M)


def test_the_suite_runs_with_the_cache_off():
    # conftest.py turns it off, so no test writes into the user's cache.
    assert os.environ.get(compile_cache.ENV) == "0"
    assert compile_cache.resolve("auto") is None
    assert compile_cache.enable("auto") is None


def test_where_the_cache_goes(monkeypatch, tmp_path):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    monkeypatch.setenv("NST_JAX_CACHE", str(tmp_path / "c"))
    assert compile_cache.resolve("auto") == str(
        tmp_path / "c" / "jax_compilation_cache")
    assert compile_cache.resolve("") is None
    assert compile_cache.resolve(str(tmp_path / "mine")) == str(
        tmp_path / "mine")
    # A directory in the variable replaces "auto", not an explicit path.
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "env"))
    assert compile_cache.resolve("auto") == str(tmp_path / "env")
    assert compile_cache.resolve(str(tmp_path / "mine")) == str(
        tmp_path / "mine")
    for off in ("0", "", "off", "OFF"):
        monkeypatch.setenv(compile_cache.ENV, off)
        assert compile_cache.resolve(str(tmp_path / "mine")) is None


def test_an_unusable_directory_leaves_it_off(monkeypatch, tmp_path,
                                             caplog):
    monkeypatch.delenv(compile_cache.ENV, raising=False)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with caplog.at_level(logging.WARNING, "nst_jax"):
        assert compile_cache.enable(str(blocker / "cache")) is None
    assert "compiling without it" in caplog.text


def test_log_file_holds_records_until_the_run_directory_exists(tmp_path):
    handler = rundir.LogFile(keep=2)
    log = logging.getLogger("test_compile_cache.held")
    log.propagate, log.level = False, logging.INFO
    log.addHandler(handler)
    root = logging.getLogger()
    root.addHandler(handler)  # So that make_dir finds it.
    try:
        for i in range(3):
            log.info("early %d", i)
        log.debug("not kept")
        rundir.make_dir(str(tmp_path / "run"))
        log.warning("late")
        rundir.make_dir(str(tmp_path / "second"))  # Only the first.
        log.info("later")
    finally:
        root.removeHandler(handler)
        log.removeHandler(handler)
        handler.close()
    text = (tmp_path / "run" / rundir.LOG).read_text()
    assert [line.split("] ", 1)[1] for line in text.splitlines()] == [
        "early 1", "early 2", "late", "later"]
    assert not (tmp_path / "second" / rundir.LOG).exists()


def _run(tmp_path, name, cache, npz):
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_LOG_COMPILES="1",
               JAX_EXPLAIN_CACHE_MISSES="1")
    env[compile_cache.ENV] = str(cache)
    wd = tmp_path / name
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run.py"),
         "--config=" + os.path.join(ROOT, "configs", "tiny.py"),
         f"--workdir={wd}", "--config.optim.steps=2", "--config.save_every=0",
         f"--config.model.weights={npz}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc, (wd / rundir.LOG).read_text(), (wd / "final.png")


@pytest.mark.slow
def test_a_second_run_compiles_nothing_and_the_console_stays_quiet(
        tmp_path):
    npz = tmp_path / "vgg19_random.npz"
    vgg_weights.save_npz(vgg19.random_params(0), str(npz))
    cache = tmp_path / "cache"
    first, log1, final1 = _run(tmp_path, "first", cache, npz)
    entries = sorted(os.listdir(cache))
    assert entries and "PERSISTENT COMPILATION CACHE MISS" in log1
    second, log2, final2 = _run(tmp_path, "second", cache, npz)
    assert "PERSISTENT COMPILATION CACHE MISS" not in log2
    assert "Persistent compilation cache hit" in log2
    assert sorted(os.listdir(cache)) == entries
    assert final1.read_bytes() == final2.read_bytes()
    for proc, log in ((first, log1), (second, log2)):
        # JAX's log lines (absl format) are in log.txt, not on the console.
        assert ABSL_LINE.search(log), log[:500]
        assert f"persistent compilation cache: {cache}" in log
        assert not ABSL_LINE.search(proc.stderr), proc.stderr[-2000:]
        assert "[nst_jax] step" in proc.stderr
        assert proc.stdout.strip().splitlines()[-1].endswith("final.png")


@pytest.mark.slow
def test_an_empty_variable_turns_it_off_for_the_scripts(tmp_path):
    npz = tmp_path / "vgg19_random.npz"
    vgg_weights.save_npz(vgg19.random_params(0), str(npz))
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               NST_JAX_CACHE=str(tmp_path / "user_cache"))
    env[compile_cache.ENV] = ""
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run.py"),
         "--config=" + os.path.join(ROOT, "configs", "tiny.py"),
         f"--workdir={tmp_path / 'run'}", "--config.optim.steps=2",
         f"--config.model.weights={npz}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (tmp_path / "user_cache").exists()
