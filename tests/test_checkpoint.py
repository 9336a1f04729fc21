"""Checkpoints keyed by tree path: the state round-trips by name, a changed
layout is refused naming its first differing field, and a damaged or
foreign checkpoint stops a resume with one line before any directory."""

import io
import json
import os
import shutil

import jax
import numpy as np
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import checkpoint, rundir, runner
from nst_jax.drive import report
from nst_jax.errors import UserError
from nst_jax.io import images
from nst_jax.optimize import loop
from tests.helpers import small_config



@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    yy, xx = np.mgrid[0:40, 0:48]
    img = np.stack([yy * 6, xx * 5, 255 - yy * 6], -1).astype(np.float32)
    paths = {"content": str(d / "content.png"), "style": str(d / "style.png")}
    images.save(paths["content"], img)
    images.save(paths["style"], img[::-1])
    return paths


def _config(files, **over):
    return small_config(files["content"], files["style"],
                        **{"checkpoint_every": 2, "save_every": 0, **over})


@pytest.fixture(scope="module")
def runs(tmp_path_factory, files, params):
    """Two finished runs with checkpoints: "a" and "b", whose configs
    differ in a traced weight (equal state layouts)."""
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name, weight in (("a", 1e-2), ("b", 1e-3)):
        c = _config(files, **{"loss.style_weight": weight})
        runner.execute(c, str(root / name), vgg_params=params,
                       out=io.StringIO())
        out[name] = (c, root / name)
    return out


def _resumed(c, run_dir):
    r = cfg.from_dict(cfg.to_dict(c))
    r.unlock()
    r.resume = str(run_dir)
    return cfg.lock(r)


def _arrays(path) -> dict:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _savez(path, arrays: dict) -> None:
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _adam_state(h=8, w=10):
    """A real loop.State (Adam) around a random image, one member."""
    c = small_config("c.png", "s.png")
    static = plan_lib.static(plan_lib.fields(c), 4)
    hp = plan_lib.hparams(plan_lib.fields(c), 1)
    image = np.random.RandomState(0).normal(size=(1, h, w, 3))
    return loop.init_state(static, np.float32(image), hp)


def test_state_round_trips_by_path(tmp_path, files):
    state = jax.tree_util.tree_map(np.asarray, _adam_state())
    flat = report.flatten_state(state)
    assert {"image", "opt_state/0/count", "opt_state/0/mu",
            "opt_state/0/nu", "step", "avg"} <= set(flat)
    d = rundir.RunDir(str(tmp_path / "run"), plan_lib.build(_config(files)), {})
    path = d.save_checkpoint(report.Checkpoint(
        0, 2, flat, [{"step": 2, "loss": 1.0}]))
    stored = _arrays(path)
    assert "state/opt_state/0/mu" in stored
    assert checkpoint._text(stored, "format") == checkpoint.CHECKPOINT_FORMAT
    loaded = checkpoint.load(str(tmp_path / "run"))
    assert (loaded.scale, loaded.step, loaded.metrics, loaded.source) == (
        0, 2, [{"step": 2, "loss": 1.0}], path)
    back = report.fill_state(jax.eval_shape(lambda: state), loaded.state,
                             loaded.source)
    assert jax.tree_util.tree_structure(back) == \
        jax.tree_util.tree_structure(state)
    for a, b in zip(jax.tree_util.tree_leaves(back),
                    jax.tree_util.tree_leaves(state)):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def _renamed(flat):
    flat["opt_state/0/moo"] = flat.pop("opt_state/0/mu")


def _missing(flat):
    del flat["opt_state/0/nu"]


def _misshaped(flat):  # The layout before the image's axis of 1 went.
    flat["opt_state/0/mu"] = flat["opt_state/0/mu"][None]


def _retyped(flat):
    flat["avg"] = flat["avg"].astype(np.float64)


def _extra(flat):
    flat["opt_state/3/new"] = np.zeros(3, np.float32)


@pytest.mark.parametrize("change, message", [
    (_renamed, "has no state field 'opt_state/0/mu' (it has "
               "'opt_state/0/moo', which this run does not have)"),
    (_missing, "has no state field 'opt_state/0/nu'"),
    (_misshaped, "state field 'opt_state/0/mu' has shape (1, 8, 10, 3), "
                 "this run expects (8, 10, 3)"),
    (_retyped, "state field 'avg' has dtype float64, this run expects "
               "float32"),
    (_extra, "it has state field 'opt_state/3/new', which this run does "
             "not have"),
])
def test_a_changed_state_field_is_refused_by_name(change, message):
    state = jax.tree_util.tree_map(np.asarray, _adam_state())
    flat = dict(report.flatten_state(state))
    change(flat)
    with pytest.raises(UserError) as e:
        report.fill_state(jax.eval_shape(lambda: state), flat, "RUN/x.npz")
    text = str(e.value)
    assert text.startswith("checkpoint RUN/x.npz does not match this run: ")
    assert message in text and "\n" not in text, text


def test_resume_refuses_a_misshaped_field_in_one_line(tmp_path, runs, params,
                                                      capsys):
    """What only the run's own state layout reveals is refused by the
    driver, as a UserError (exit 2, one line), and the directory it had
    made is removed."""
    c, a = runs["a"]
    cut = tmp_path / "cut"
    shutil.copytree(a, cut)
    path = cut / checkpoint.CHECKPOINT
    arrays = _arrays(path)
    arrays["state/opt_state/0/mu"] = arrays["state/opt_state/0/mu"][None]
    _savez(path, arrays)
    assert runner.main(_resumed(c, cut), str(tmp_path / "b"),
                       vgg_params=params) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert (f"checkpoint {path} does not match this run: state field "
            "'opt_state/0/mu' has shape (1, 27, 32, 3), this run "
            "expects (27, 32, 3)") in err, err
    assert not (tmp_path / "b").exists()


def _write(path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _truncated(path, other):
    with open(path, "rb") as f:
        data = f.read()
    _write(path, data[:len(data) // 2])


def _random_bytes(path, other):
    _write(path, np.random.RandomState(0).bytes(4096))


def _png(path, other):
    shutil.copy(other["png"], path)


def _empty(path, other):
    _write(path, b"")


def _plain_npz(path, other):
    _savez(path, {"weights": np.zeros(3)})


def _old_format(path, other):  # Leaves by position, as before.
    arrays = _arrays(path)
    new = {f"leaf_{i:04d}": a for i, a in enumerate(
        a for k, a in arrays.items() if k.startswith("state/"))}
    new.update(scale=arrays["scale"], step=arrays["step"],
               metrics_json=arrays["metrics_json"])
    _savez(path, new)


def _without(key):
    def change(path, other):
        arrays = _arrays(path)
        del arrays[key]
        _savez(path, arrays)
    return change


def _another_runs(path, other):
    shutil.copy(other["b"], path)


def _other_step(path, other):
    arrays = _arrays(path)
    arrays["step"] = np.int64(9)
    _savez(path, arrays)


@pytest.mark.parametrize("damage, message", [
    (_truncated, "is damaged or not a checkpoint (BadZipFile"),
    (_random_bytes, "is damaged or not a checkpoint: the file is not an "
                    ".npz archive"),
    (_png, "is damaged or not a checkpoint: the file is not an .npz "
           "archive"),
    (_empty, "is damaged or not a checkpoint: the file is empty"),
    (_plain_npz, "is damaged or not a checkpoint: it has no 'format' field"),
    (_old_format, "was written by an older nst_jax"),
    (_without("metrics_json"), "it has no 'metrics_json' field"),
    (_without("state/image"), "it has no state field 'image'"),
    (_another_runs, "does not match this run: it was written by another "
                    "run, whose config differs in ['loss.style_weight']"),
    (_other_step, "it is at step 9, outside scale 0's steps 1-4"),
])
def test_damaged_or_foreign_checkpoint_stops_before_any_directory(
        tmp_path, runs, files, params, capsys, damage, message):
    c, a = runs["a"]
    cut = tmp_path / "cut"
    shutil.copytree(a, cut)
    path = cut / checkpoint.CHECKPOINT
    damage(path, {"png": files["content"],
                  "b": runs["b"][1] / checkpoint.CHECKPOINT})
    wd = tmp_path / "resumed"
    assert runner.main(_resumed(c, cut), str(wd), vgg_params=params) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert err.startswith(f"error: checkpoint {path} "), err
    assert not wd.exists()
    # Untouched: the run directory itself gets nothing new.
    assert sorted(os.listdir(cut)) == sorted(os.listdir(a))


def test_checkpoint_records_its_run(runs):
    c, a = runs["a"]
    arrays = _arrays(a / checkpoint.CHECKPOINT)
    assert int(arrays["version"]) == checkpoint.CHECKPOINT_VERSION
    recorded = json.loads(checkpoint._text(arrays, "config_json"))
    assert recorded == json.loads((a / "config.json").read_text())
    assert not [k for k in arrays if k.startswith("leaf_")]
