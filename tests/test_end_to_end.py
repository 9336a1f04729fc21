"""End to end through the library function behind scripts/run.py."""

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_jax import config as cfg
from nst_jax.app import runner
from tests.test_config import load_preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def _tiny(**over):
    return cfg.override(load_preset("tiny"), over)


def _run(tmp_path, name, params, config=None):
    wd = str(tmp_path / name)
    path = runner.execute(config or _tiny(), wd, vgg_params=params,
                          out=io.StringIO())
    return wd, path


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_three_step_run_writes_every_artefact(tmp_path, params):
    wd, final = _run(tmp_path, "run", params)
    assert final == os.path.join(os.path.abspath(wd), "final.png")
    files = set(os.listdir(wd))
    assert {"config.json", "manifest.json", "metrics.jsonl", "final.png",
            "loss_curve.png"} <= files
    assert any(f.startswith("snapshot_") for f in files)
    man = _json(os.path.join(wd, "manifest.json"))
    assert man["status"] == "done"
    assert len(man["inputs"]["content"]["sha256"]) == 64
    assert man["versions"]["jax"]
    with open(os.path.join(wd, "metrics.jsonl")) as f:
        lines = [json.loads(l) for l in f]
    assert [l["step"] for l in lines] == [2, 3]
    assert all(np.isfinite(l["loss"]) for l in lines)
    with Image.open(final) as im:
        img = np.asarray(im)
    assert img.shape == (32, 32, 3)
    # The content default is 512x512 -> 32x32; the result is not the content.
    assert not np.all(img == img[0, 0])


def test_same_seed_same_bytes_and_replay(tmp_path, params):
    c = _tiny(init="noise", seed=7)
    wd1, f1 = _run(tmp_path, "a", params, c)
    wd2, f2 = _run(tmp_path, "b", params, c)
    assert _bytes(f1) == _bytes(f2)
    replayed = load_preset("replay", wd1)
    assert replayed.to_dict() == c.to_dict()
    wd3, f3 = _run(tmp_path, "c", params, replayed)
    assert _bytes(f1) == _bytes(f3)
    other = _tiny(init="noise", seed=8)
    _, f4 = _run(tmp_path, "d", params, other)
    assert _bytes(f1) != _bytes(f4)


def test_existing_workdir_is_refused_and_untouched(tmp_path, params):
    wd, final = _run(tmp_path, "run", params)
    before = _bytes(final)
    assert runner.main(_tiny(), wd, vgg_params=params) == 2
    assert _bytes(final) == before


@pytest.mark.slow
def test_run_py_cli_prints_final_path_last(tmp_path):
    """The real script, real weights (cached by the weights tests)."""
    wd = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run.py"),
         "--config=" + os.path.join(ROOT, "configs", "tiny.py"),
         f"--workdir={wd}", "--config.optim.steps=2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == str(wd / "final.png")
    assert os.path.isfile(last)
    assert "it/s" in proc.stderr and "ETA" in proc.stderr
    assert "nan" not in proc.stderr  # No rate yet shows "?", not NaN.
    man = _json(wd / "manifest.json")
    assert man["overrides"] == {"optim.steps": 2}
