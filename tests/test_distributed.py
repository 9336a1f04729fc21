"""Two processes on this machine, as on two hosts: checks agree, and a
sweep split over both equals the same sweep run by one process."""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from nst_jax.vgg import vgg19
from nst_jax.weights import vgg as vgg_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "sweep.py")
# Each test starts several processes: out of the quick loop (-m "not slow").
pytestmark = pytest.mark.slow
# CPU, 2 devices per process: 2 processes make a 4-device mesh.
ENV = dict(os.environ, JAX_PLATFORMS="cpu",
           XLA_FLAGS="--xla_force_host_platform_device_count=2")

# Three members that share one program (3 rows padded to 4 over the 4
# devices) and one of another size (a group of one, on each process's
# first device). Random VGG19 weights: nothing is downloaded.
SWEEP_FILE = """
from nst_jax import config as cfg

def get_config():
    c = cfg.base()
    c.name = "two_hosts"
    c.size = 32
    c.init = "noise"  # So that each member's seed matters.
    c.model.weights = {weights!r}
    c.loss.content_layers = ("relu2_1",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    c.optim.name = "adam"
    c.optim.learning_rate = 4.0
    c.optim.steps = 4
    c.log_every = 2
    c.save_every = 0
    return cfg.lock(c)

def sweep(add):
    for i, w in enumerate((1e-4, 1e-3, 1e-2)):
        add(**{{"loss.style_weight": w, "seed": i}})
    add(**{{"size": 24}})
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _launch(args, n=2, extra=None, timeout=180):
    """``n`` sweep.py processes with a localhost coordinator, 2 CPU devices
    each (``extra[i]``: more flags for process i only); returns
    [(returncode, stderr)] and the seconds they took."""
    port = _free_port()
    t0 = time.time()
    procs = [subprocess.Popen(
        [sys.executable, SCRIPT, "--distributed",
         f"--coordinator=localhost:{port}", f"--num_processes={n}",
         f"--process_id={i}", *args, *(extra or {}).get(i, [])],
        cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True) for i in range(n)]
    out = []
    try:
        for p in procs:
            _, err = p.communicate(timeout=timeout)
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


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    """The two-group sweep file, with random VGG19 weights beside it."""
    d = tmp_path_factory.mktemp("two_hosts")
    npz = str(d / "vgg19_random.npz")
    vgg_weights.save_npz(vgg19.random_params(0), npz)
    path = d / "sweep_two_hosts.py"
    path.write_text(SWEEP_FILE.format(weights=npz))
    return str(path)


def _results(wd):
    """results.json rows and each member's final image, by member."""
    with open(wd / "results.json") as f:
        rows = {r["member"]: r for r in json.load(f)}
    images = {m: np.asarray(Image.open(wd / m / "final.png"))
              for m in rows}
    return rows, images


def test_a_sweep_over_two_processes_equals_one_process(tmp_path,
                                                       sweep_file):
    wd2, wd1 = tmp_path / "two", tmp_path / "one"
    results, seconds = _launch([f"--config={sweep_file}",
                                f"--workdir={wd2}"])
    for rc, err in results:
        assert rc == 0, err[-2000:]
    with open(wd2 / "sweep.json") as f:
        recorded = json.load(f)
    assert recorded["processes"] == 2 and len(recorded["devices"]) == 4
    assert sorted(os.listdir(tmp_path)) == ["two"]  # Process 0 writes.
    # The same sweep, one process with the same 4-device mesh.
    one = subprocess.run(
        [sys.executable, SCRIPT, f"--config={sweep_file}",
         f"--workdir={wd1}"], cwd=ROOT, capture_output=True, text=True,
        timeout=180, env=dict(
            ENV, XLA_FLAGS="--xla_force_host_platform_device_count=4"))
    assert one.returncode == 0, one.stderr[-2000:]
    rows2, images2 = _results(wd2)
    rows1, images1 = _results(wd1)
    assert sorted(rows2) == sorted(rows1) == [f"member_{i:03d}"
                                              for i in range(4)]
    for m in rows1:
        assert rows2[m]["status"] == rows1[m]["status"] == "done"
        # Mostly bit for bit; a loss term of the group of one has been
        # seen to differ in its last bit (1e-7) between two runs.
        for term in ("loss", "content", "style", "tv"):
            assert rows2[m][term] == pytest.approx(rows1[m][term],
                                                   rel=1e-6), (m, term)
        np.testing.assert_array_equal(images2[m], images1[m], err_msg=m)
    assert seconds < 120


def test_a_bad_input_on_process_1_only_ends_every_process(tmp_path,
                                                           sweep_file):
    wd = tmp_path / "sweep"
    missing = str(tmp_path / "not_here.jpg")
    results, seconds = _launch(
        [f"--config={sweep_file}", f"--workdir={wd}"],
        extra={1: [f"--config.content={missing}"]}, timeout=60)
    (rc0, err0), (rc1, err1) = results
    assert (rc0, rc1) == (2, 2), (err0[-1500:], err1[-1500:])
    last0 = err0.strip().splitlines()[-1]
    last1 = err1.strip().splitlines()[-1]
    assert last0.startswith("error: ") and "process(es) [1]" in last0
    assert last1.startswith("error: ") and "not_here.jpg" in last1
    assert not wd.exists()
    assert seconds < 60
