"""Bad input, divergence, interrupt and resume: nothing lost, nothing left."""

import io
import json
import os
import signal
import sys

import numpy as np
import pytest

from nst_jax import config as cfg
from nst_jax.app import rundir, runner, sweep
from nst_jax.errors import UserError
from nst_jax.io import images
from tests.helpers import interrupt_when, small_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



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
    ("style_directory", lambda t, g: {"style": (str(t),)},
     "is a directory"),
    ("photo_folder_without_photos", lambda t, g: {"content": (
        os.makedirs(t / "empty_folder"), str(t / "empty_folder"))[1]},
     "holds no image files"),
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


def _stop_after(monkeypatch, step):
    """Makes the run stop (Ctrl-C) right after the checkpoint at ``step``."""
    real_save = rundir.RunDir.save_checkpoint

    def save_then_stop(self, checkpoint):
        path = real_save(self, checkpoint)
        if checkpoint.metrics[-1]["step"] == step:
            raise KeyboardInterrupt
        return path
    monkeypatch.setattr(rundir.RunDir, "save_checkpoint", save_then_stop)


def _resumed(c, run_dir):
    r = cfg.from_dict(cfg.to_dict(c))
    r.unlock()
    r.resume = str(run_dir)
    return cfg.lock(r)


def _bytes(path):
    with open(path, "rb") as f:
        return f.read()


def cut_and_resumed(c, tmp_path, params, monkeypatch, stop):
    """Runs ``c`` into tmp_path/cut, stopped (Ctrl-C) right after the
    checkpoint at ``stop``, then resumes it into tmp_path/resumed; the
    resumed run's final image."""
    with monkeypatch.context() as m:
        _stop_after(m, stop)
        with pytest.raises(KeyboardInterrupt):
            runner.execute(c, str(tmp_path / "cut"), vgg_params=params,
                           out=io.StringIO())
    return runner.execute(_resumed(c, tmp_path / "cut"),
                          str(tmp_path / "resumed"), vgg_params=params,
                          out=io.StringIO())


RESUME_CASES = {
    # name: (overrides, step to stop after, steps recorded after resuming)
    "adam": ({"optim.steps": 6, "init": "noise"}, 4, [2, 4, 6]),
    "lbfgs": ({"optim.name": "lbfgs", "optim.learning_rate": 1.0,
               "optim.steps": 6}, 4, [2, 4, 6]),
    # Stopped in the middle of the second scale...
    "lbfgs_multiscale_mid": ({"optim.name": "lbfgs",
                              "optim.learning_rate": 1.0,
                              "multiscale.sizes": (24, 32),
                              "multiscale.steps": (4, 4)}, 6, [2, 4, 6, 8]),
    # ...and at the boundary: the next scale starts from the checkpoint.
    "lbfgs_multiscale_boundary": ({"optim.name": "lbfgs",
                                   "optim.learning_rate": 1.0,
                                   "multiscale.sizes": (24, 32),
                                   "multiscale.steps": (4, 4)}, 4,
                                  [2, 4, 6, 8]),
}


@pytest.mark.parametrize("case", list(RESUME_CASES))
def test_interrupt_then_resume_matches_uninterrupted(tmp_path, good, params,
                                                     monkeypatch, case):
    over, stop, recorded = RESUME_CASES[case]
    c = _config(good, **{"checkpoint_every": 2, **over})
    full = runner.execute(c, str(tmp_path / "full"), vgg_params=params,
                          out=io.StringIO())
    resumed = cut_and_resumed(c, tmp_path, params, monkeypatch, stop)
    man = json.loads((tmp_path / "cut" / "manifest.json").read_text())
    assert man["status"] == "interrupted"
    assert (tmp_path / "cut" / "interrupted.png").exists()
    assert _bytes(full) == _bytes(resumed)
    steps = [json.loads(l)["step"] for l in
             (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps == recorded


def _sweep_members(add):
    add(**{"loss.style_weight": 1e-3, "seed": 0})
    add(**{"loss.style_weight": 1e-2, "seed": 1})
    add(**{"loss.style_weight": 1e38, "seed": 2})  # Diverges at once.
    add(**{"size": 24, "seed": 3})  # A second group.


def test_sweep_interrupt_then_resume_matches_uninterrupted(tmp_path, good,
                                                           params,
                                                           monkeypatch):
    c = _config(good, **{"optim.steps": 6, "checkpoint_every": 2,
                         "init": "noise", "optim.name": "lbfgs",
                         "optim.learning_rate": 1.0, "save_every": 0})
    out = io.StringIO()
    sweep.run_sweep(c, _sweep_members, str(tmp_path / "full"),
                    vgg_params=params, out=out)
    with monkeypatch.context() as m:
        # Group 1 (members 0-2) finishes; group 2 stops after step 2.
        real_save = rundir.RunDir.save_checkpoint

        def stop_in_group_2(self, checkpoint):
            path = real_save(self, checkpoint)
            if self.path.endswith("member_003") and \
                    checkpoint.metrics[-1]["step"] == 2:
                raise KeyboardInterrupt
            return path
        m.setattr(rundir.RunDir, "save_checkpoint", stop_in_group_2)
        with pytest.raises(KeyboardInterrupt):
            sweep.run_sweep(c, _sweep_members, str(tmp_path / "cut"),
                            vgg_params=params, out=out)
    cut = tmp_path / "cut"
    status = [json.loads((cut / f"member_{i:03d}" / "manifest.json")
                         .read_text())["status"] for i in range(4)]
    assert status == ["done", "done", "diverged", "interrupted"]
    assert (cut / "member_003" / "interrupted.png").exists()
    rows = json.loads((cut / "results.json").read_text())
    assert [r["status"] for r in rows] == status
    sweep.run_sweep(_resumed(c, cut), _sweep_members,
                    str(tmp_path / "resumed"), vgg_params=params, out=out)
    for i in range(4):
        name = "diverged.png" if i == 2 else "final.png"
        a = tmp_path / "full" / f"member_{i:03d}" / name
        b = tmp_path / "resumed" / f"member_{i:03d}" / name
        assert _bytes(a) == _bytes(b), i
    rows = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert [r["status"] for r in rows] == ["done", "done", "diverged",
                                           "done"]


def test_sweep_resume_of_another_sweep_is_refused(tmp_path, good, params):
    c = _config(good, **{"checkpoint_every": 2, "init": "noise"})
    sweep.run_sweep(c, _sweep_members, str(tmp_path / "a"),
                    vgg_params=params, out=io.StringIO())
    with pytest.raises(UserError, match="differ from those recorded"):
        sweep.run_sweep(_resumed(c, tmp_path / "a"),
                        lambda add: add(seed=5), str(tmp_path / "b"),
                        vgg_params=params, out=io.StringIO())
    assert not (tmp_path / "b").exists()


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


def test_resume_ignores_display_fields_and_fields_added_later(
        tmp_path, good, params):
    c = _config(good, checkpoint_every=2)
    runner.execute(c, str(tmp_path / "a"), vgg_params=params,
                   out=io.StringIO())
    # As written by a version without compile_cache (its default keeps the
    # old behaviour); and plot_layers changes only the picture.
    path = tmp_path / "a" / "config.json"
    old = json.loads(path.read_text())
    del old["compile_cache"]
    path.write_text(json.dumps(old))
    c.plot_layers = True
    c.resume = str(tmp_path / "a")
    assert runner.main(c, str(tmp_path / "b"), vgg_params=params) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_real_signal_saves_image_and_marks_manifest(tmp_path, sig):
    wd = tmp_path / "run"
    code, rest = interrupt_when(
        [sys.executable, os.path.join(ROOT, "scripts", "run.py"),
         "--config=" + os.path.join(ROOT, "configs", "tiny.py"),
         f"--workdir={wd}", "--config.optim.steps=100000",
         "--config.save_every=0"], "[nst_jax] step", sig, ROOT)
    assert code == 130, rest[-2000:]
    man = json.loads((wd / "manifest.json").read_text())
    assert man["status"] == "interrupted"
    assert (wd / "interrupted.png").exists()
    assert (wd / "metrics.jsonl").read_text().strip()
