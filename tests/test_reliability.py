"""Bad input, divergence, interrupt and resume: nothing lost, nothing left."""

import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from nst_jax import config as cfg
from nst_jax import images, runner, runs, vgg19
from tests.helpers import small_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def params():
    return vgg19.random_params(0)


@pytest.fixture()
def good(tmp_path):
    yy, xx = np.mgrid[0:40, 0:48]
    img = np.stack([yy * 6, xx * 5, 255 - yy * 6], -1).astype(np.float32)
    paths = {"content": str(tmp_path / "content.png"),
             "style": str(tmp_path / "style.png")}
    images.save(paths["content"], img)
    images.save(paths["style"], img[::-1])
    return paths


def _config(good, **over):
    return small_config(good["content"], good["style"],
                        **{"save_every": 2, **over})


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    return str(path)


def _png_bytes(good):
    with open(good["content"], "rb") as f:
        return f.read()


def _jpeg(tmp_path):
    p = str(tmp_path / "x.jpg")
    images.save(p, np.random.RandomState(0).uniform(0, 255, (64, 64, 3)))
    with open(p, "rb") as f:
        return f.read()


# (name, how to break the config, expected message fragment)
CASES = [
    ("missing", lambda t, g: {"content": str(t / "nope.jpg")},
     "does not exist"),
    ("directory", lambda t, g: {"content": str(t)}, "is a directory"),
    ("not_image", lambda t, g: {"content": _write(t / "a.png",
                                                  b"hello world")},
     "not"),
    ("zero_bytes", lambda t, g: {"content": _write(t / "z.png", b"")},
     "empty"),
    ("truncated_png", lambda t, g: {"content": _write(
        t / "t.png", _png_bytes(g)[:len(_png_bytes(g)) // 2])}, "truncated"),
    ("truncated_jpeg", lambda t, g: {"style": (_write(
        t / "t.jpg", _jpeg(t)[:len(_jpeg(t)) // 2]),)}, "truncated"),
    ("too_many_pixels", lambda t, g: {"max_pixels": 100}, "pixels"),
    ("too_small", lambda t, g: {"content": (images.save(
        str(t / "one.png"), np.zeros((1, 1, 3))), str(t / "one.png"))[1]},
     "small"),
    ("unknown_layer", lambda t, g: {"loss.style_layers": ("relu6_1",)},
     "unknown VGG19 layer"),
    ("duplicate_layers", lambda t, g: {"loss.style_layers": ("relu1_1",
                                                             "relu1_1")},
     "more than once"),
    ("negative_weight", lambda t, g: {"loss.style_weight": -1.0}, ">= 0"),
    ("nan_weight", lambda t, g: {"loss.tv_weight": float("nan")}, ">= 0"),
    ("unknown_optimiser", lambda t, g: {"optim.name": "adamw"},
     "optim.name"),
    ("mask_mismatch", lambda t, g: {"masks": ((images.save(
        str(t / "m.png"), np.zeros((10, 40, 3)) + 255),
        str(t / "m.png"))[1],)}, "shape"),
]


@pytest.mark.parametrize("name,breaker,message", CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_left(tmp_path, good, params,
                                                capsys, name, breaker,
                                                message):
    c = _config(good, **breaker(tmp_path, good))
    wd = tmp_path / "run"
    before = set(os.listdir(tmp_path))
    assert runner.main(c, str(wd), vgg_params=params,
                       out=io.StringIO()) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and message in err, err
    assert not wd.exists()
    assert set(os.listdir(tmp_path)) == before


def test_existing_and_unwritable_workdir(tmp_path, good, params, capsys,
                                        monkeypatch):
    wd = tmp_path / "taken"
    wd.mkdir()
    (wd / "keep.txt").write_text("mine")
    assert runner.main(_config(good), str(wd), vgg_params=params) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert os.listdir(wd) == ["keep.txt"]
    ro = tmp_path / "ro"
    ro.mkdir()
    # CI may run as root, who can write anywhere: make the permission
    # check itself report "not writable" for this directory.
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m: False if str(p) == str(
        ro) else real_access(p, m))
    assert runner.main(_config(good), str(ro / "run"),
                       vgg_params=params) == 2
    assert "not writable" in capsys.readouterr().err
    assert os.listdir(ro) == []


def test_readonly_parent_detected_even_as_root(tmp_path, good, params,
                                               capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert runner.main(_config(good), str(blocker / "run"),
                       vgg_params=params) == 2
    assert "cannot create workdir" in capsys.readouterr().err


def test_nonfinite_loss_names_the_window_keeps_last_image(tmp_path, good,
                                                          params, capsys):
    c = _config(good, **{"loss.style_weight": 3e38, "optim.steps": 6})
    wd = tmp_path / "run"
    assert runner.main(c, str(wd), vgg_params=params) == 3
    err = capsys.readouterr().err
    assert "between steps 0 and 2" in err
    man = json.loads((wd / "manifest.json").read_text())
    assert man["status"] == "diverged"
    assert (wd / "diverged.png").exists()


def test_interrupt_then_resume_matches_uninterrupted(tmp_path, good, params,
                                                     monkeypatch):
    c = _config(good, **{"optim.steps": 6, "checkpoint_every": 2,
                         "init": "noise"})
    full = runner.execute(c, str(tmp_path / "full"), vgg_params=params,
                          out=io.StringIO())
    real_save = runs.save_checkpoint

    def save_then_stop(workdir, scale, leaves, metrics):
        real_save(workdir, scale, leaves, metrics)
        if metrics[-1]["step"] == 4:
            raise KeyboardInterrupt
    monkeypatch.setattr(runs, "save_checkpoint", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        runner.execute(c, str(tmp_path / "cut"), vgg_params=params,
                       out=io.StringIO())
    monkeypatch.setattr(runs, "save_checkpoint", real_save)
    man = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert man["status"] == "interrupted"
    assert (tmp_path / "cut" / "interrupted.png").exists()
    r = cfg.from_dict(cfg.to_dict(c))
    r.unlock()
    r.resume = str(tmp_path / "cut")
    resumed = runner.execute(r, str(tmp_path / "resumed"), vgg_params=params,
                             out=io.StringIO())
    with open(full, "rb") as a, open(resumed, "rb") as b:
        assert a.read() == b.read()
    steps = [json.loads(l)["step"] for l in
             (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [2, 4, 6]


def test_resume_with_a_different_config_is_refused(tmp_path, good, params,
                                                   capsys):
    c = _config(good, checkpoint_every=2)
    runner.execute(c, str(tmp_path / "a"), vgg_params=params,
                   out=io.StringIO())
    c.loss.style_weight = 0.5
    c.resume = str(tmp_path / "a")
    assert runner.main(c, str(tmp_path / "b"), vgg_params=params) == 2
    assert "config differs" in capsys.readouterr().err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_real_signal_saves_image_and_marks_manifest(tmp_path, sig):
    wd = tmp_path / "run"
    with subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "scripts", "run.py"),
             "--config=" + os.path.join(ROOT, "configs", "tiny.py"),
             f"--workdir={wd}", "--config.optim.steps=100000",
             "--config.save_every=0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            cwd=ROOT) as proc:
        try:
            deadline = time.time() + 240
            for line in proc.stderr:  # Wait until steps are running.
                if "[nst_jax] step" in line or time.time() > deadline:
                    break
            proc.send_signal(sig)
            proc.stderr.read()
            proc.wait(timeout=120)
        finally:
            proc.kill()
    assert proc.returncode == 130
    man = json.loads((wd / "manifest.json").read_text())
    assert man["status"] == "interrupted"
    assert (wd / "interrupted.png").exists()
    assert (wd / "metrics.jsonl").read_text().strip()
