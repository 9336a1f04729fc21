"""Two processes on this machine, as on two hosts: checks agree."""

import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(args, n=2):
    """``n`` sweep.py processes with a localhost coordinator, 2 CPU devices
    each; returns [(returncode, stderr)] and the seconds they took."""
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS="--xla_force_host_platform_device_count=2")
    port = _free_port()
    t0 = time.time()
    procs = [subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"),
         "--distributed", f"--coordinator=localhost:{port}",
         f"--num_processes={n}", f"--process_id={i}", *args],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(n)]
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=180)
            out.append((p.returncode, err))
    finally:
        for p in procs:
            p.kill()
    return out, time.time() - t0


def test_a_refused_workdir_on_process_0_ends_every_process(tmp_path):
    wd = tmp_path / "taken"
    wd.mkdir()
    (wd / "keep.txt").write_text("mine")
    results, seconds = _launch([
        "--config=" + os.path.join(ROOT, "configs", "sweep_style_weight.py"),
        f"--workdir={wd}", "--config.size=32", "--config.optim.steps=2"])
    (rc0, err0), (rc1, err1) = results
    assert (rc0, rc1) == (2, 2), (err0[-1500:], err1[-1500:])
    last0 = err0.strip().splitlines()[-1]
    last1 = err1.strip().splitlines()[-1]
    assert last0.startswith("error: ") and "never overwritten" in last0
    assert last1.startswith("error: ") and "process(es) [0]" in last1
    assert os.listdir(wd) == ["keep.txt"]
    assert seconds < 150
