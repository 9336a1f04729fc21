"""Sweeps: expansion, grouping, batched == alone, sharded == unsharded,
one compile per group, and the sweep directory's artefacts."""

import csv
import io
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import runner, sweep
from nst_jax.drive import driver, grouping
from nst_jax.errors import UserError
from tests.helpers import count_chunk_traces, interrupt_when, plans
from tests.test_config import load_preset

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))



def _tiny(**over):
    """configs/tiny.py with 4 steps in 2 chunks, no snapshots."""
    base = {"optim.steps": 4, "log_every": 2, "save_every": 0}
    if over.get("optim.name") == "lbfgs":  # Its line search picks steps.
        base["optim.learning_rate"] = 1.0
    return cfg.override(load_preset("tiny"), {**base, **over})


def _sweep3(add):
    """Three members differing only in traced fields: one group."""
    add(**{"loss.style_weight": 1e-3, "seed": 0})
    add(**{"loss.style_weight": 1e-2, "seed": 1})
    add(**{"loss.style_weight": 3e-2, "seed": 2, "optim.ema_decay": 0.5,
           "loss.style_layer_weights": [2.0, 0.5]})


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_expand_and_group():
    base = _tiny()

    def sw(add):
        _sweep3(add)
        add(**{"size": 48})  # Another image size: another program.
        add(**{"optim.name": "sgd"})  # Another optimiser: another program.
        add(**{"loss.style_layers": ["relu1_1"]})  # Lists become tuples.
        add(**{"seed": 5, "size": 48})  # Joins the size-48 group.
    members = sweep.expand(base, sw)
    assert len(members) == 7
    assert members[1].loss.style_weight == 1e-2 and members[1].seed == 1
    assert members[5].loss.style_layers == ("relu1_1",)
    assert base.loss.style_weight == load_preset("tiny").loss.style_weight
    with pytest.raises(AttributeError):  # Members are locked.
        members[0].loss.styel_weight = 1.0
    assert grouping.group(plans(members)) == [[0, 1, 2], [3, 6], [4], [5]]
    assert sweep.varying_keys(members[:3]) == [
        "loss.style_layer_weights", "loss.style_weight", "optim.ema_decay",
        "seed"]


@pytest.mark.parametrize("over", [{"loss.styel_weight": 1.0},
                                  {"lossx.style_weight": 1.0},
                                  {"loss": 1.0},
                                  {"size": "big"},
                                  {"optim.name": "rmsprop"}])
def test_bad_overrides_raise_user_error(over):
    with pytest.raises(UserError):
        sweep.expand(_tiny(), lambda add: add(**over))


def test_empty_sweep_raises():
    with pytest.raises(UserError, match="no members"):
        sweep.expand(_tiny(), lambda add: None)


@pytest.mark.parametrize("opt", ["adam", "lbfgs"])  # vmapped / mapped.
def test_batched_members_equal_runs_alone(params, opt):
    members = sweep.expand(_tiny(init="noise", **{"optim.name": opt}),
                           _sweep3)
    res = driver.run_group(plans(members), params)
    assert res.status == ["done"] * 3
    for i, c in enumerate(members):
        alone, metrics = driver.stylize(plan_lib.build(c), params)
        assert _rel(res.images[i], alone) <= 1e-4
        assert [m["step"] for m in res.metrics[i]] == [2, 4]
        np.testing.assert_allclose(res.metrics[i][-1]["loss"],
                                   metrics[-1]["loss"], rtol=1e-4)
    # Different seeds and weights really give different members.
    assert _rel(res.images[0], res.images[1]) > 1e-2


_SHARDED = """
import json, jax
from nst_jax.app import sweep
from nst_jax.drive import driver, sharding
from nst_jax.vgg import vgg19
from tests.helpers import plans
from tests.test_sweep import _sweep3, _tiny, _rel
members = plans(sweep.expand(_tiny(init="noise", **{"optim.name": "%s"}),
                             _sweep3))
params = vgg19.random_params(0)
mesh = sharding.make_mesh()
a = driver.run_group(members, params, mesh=mesh)  # 3 members padded to 4.
b = driver.run_group(members, params,
                     mesh=sharding.make_mesh(jax.devices()[:1]))
print(json.dumps({"devices": mesh.size, "status": a.status,
                  "rel": [_rel(x, y) for x, y in zip(a.images, b.images)]}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("opt", ["adam", "lbfgs"])
def test_sharded_over_four_devices_equals_unsharded(opt):
    # The device count is fixed when jax starts: use a fresh process.
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT,
               XLA_FLAGS="--xla_force_host_platform_device_count=4")
    proc = subprocess.run([sys.executable, "-c", _SHARDED % opt], cwd=ROOT,
                          env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == 4
    assert out["status"] == ["done"] * 3
    assert max(out["rel"]) <= 1e-4


def test_one_compile_per_static_group(params, monkeypatch):
    traces = count_chunk_traces(monkeypatch)  # Counted from zero.

    def sw(add):
        _sweep3(add)
        add(**{"optim.name": "sgd", "seed": 3})
        add(**{"optim.name": "sgd", "seed": 4})
    members = sweep.expand(_tiny(init="noise", **{"optim.steps": 6}), sw)
    groups = grouping.group(plans(members))
    assert groups == [[0, 1, 2], [3, 4]]
    for idx in groups:  # 3 chunks each: later chunks must not retrace.
        driver.run_group(plans([members[i] for i in idx]), params)
    assert len(traces) == 2


def test_run_sweep_writes_everything(tmp_path, params):
    def sw(add):
        _sweep3(add)
        add(**{"loss.style_weight": 1e38})  # Same batch; its loss is inf.
        add(**{"size": 48})
    wd = str(tmp_path / "sweep")
    out = io.StringIO()
    summary = sweep.run_sweep(_tiny(init="noise"), sw, wd, vgg_params=params,
                              out=out)
    assert summary["groups"] == 2
    status = ["done"] * 3 + ["diverged", "done"]
    for i in range(5):
        d = os.path.join(wd, f"member_{i:03d}")
        files = set(os.listdir(d))
        assert {"config.json", "manifest.json", "metrics.jsonl"} <= files
        with open(os.path.join(d, "manifest.json")) as f:
            man = json.load(f)
        assert man["status"] == status[i]
        assert man["group"]["index"] == (0 if i < 4 else 1)
        assert man["sweep"]["member"] == f"member_{i:03d}"
        if status[i] == "done":
            assert {"final.png", "loss_curve.png"} <= files
            with open(os.path.join(d, "metrics.jsonl")) as f:
                assert len(f.readlines()) == 2
        else:  # The batch carried on; the starting image is kept.
            assert "diverged.png" in files and "final.png" not in files
    with open(os.path.join(wd, "results.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["member"] for r in rows] == [f"member_{i:03d}"
                                           for i in range(5)]
    assert {"group", "loss.style_weight", "seed", "size", "status", "loss",
            "content", "style", "tv", "wall_s", "group_compile_s"} <= set(
                rows[0])
    assert float(rows[1]["loss.style_weight"]) == 1e-2
    with open(os.path.join(wd, "results.json")) as f:
        data = json.load(f)
    assert len(data) == 5 and data[4]["size"] == 48
    assert [r["status"] for r in data] == status
    assert all(np.isfinite(r["loss"]) and r["wall_s"] > 0 for r in data
               if r["status"] == "done")
    with Image.open(os.path.join(wd, "contact_sheet.png")) as im:
        assert im.width >= 3 * 160 and im.height >= 2 * 160
    assert "[sweep]" in out.getvalue()
    with pytest.raises(UserError, match="already holds"):
        sweep.run_sweep(_tiny(init="noise"), sw, wd, vgg_params=params,
                        out=out)


@pytest.mark.slow
def test_sweep_file_and_script_errors(tmp_path):
    path = os.path.join(ROOT, "configs", "sweep_style_weight.py")
    members = sweep.expand(load_preset("sweep_style_weight"),
                           sweep.load_sweep_fn(path + ":unused"))
    assert len(members) == 8 and len(grouping.group(plans(members))) == 1
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"),
         "--config=" + os.path.join(ROOT, "configs", "tiny.py"),
         f"--workdir={tmp_path / 'x'}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "defines no sweep" in proc.stderr
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.slow
def test_sweep_py_cli_runs_the_example_sweep(tmp_path):
    """The real script and sweep file, shrunk; real weights (cached)."""
    wd = tmp_path / "cli"
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"),
         "--config=" + os.path.join(ROOT, "configs",
                                    "sweep_style_weight.py"),
         f"--workdir={wd}", "--config.size=32", "--config.optim.steps=2",
         "--config.log_every=2"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == str(wd)
    assert "[sweep] group 1/1" in proc.stderr
    with open(wd / "results.json") as f:
        assert len(json.load(f)) == 8
    assert os.path.isfile(wd / "member_007" / "final.png")


@pytest.mark.parametrize("over,sweep_key,message", [
    ({"optim.name": "lbfgs"}, "optim.learning_rate", "line search"),
    ({}, "seed", "init=noise"),
    ({"optim.name": "adam"}, "optim.memory_size", "only L-BFGS"),
])
def test_a_sweep_over_a_field_with_no_effect_is_refused(
        tmp_path, params, capsys, over, sweep_key, message):
    values = {"optim.learning_rate": (0.5, 2.0), "seed": (0, 1),
              "optim.memory_size": (5, 20)}[sweep_key]
    base = _tiny(**{"optim.learning_rate": 1.0, **over})

    def sw(add):
        for v in values:
            add(**{sweep_key: v})
    wd = tmp_path / "s"
    assert sweep.main(base, sw, str(wd), vgg_params=params) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert sweep_key in err and message in err, err
    assert not wd.exists()


def test_lbfgs_learning_rate_is_refused_unless_a_schedule_uses_it():
    with pytest.raises(UserError, match="no effect"):
        plan_lib.fields(_tiny(**{"optim.name": "lbfgs",
                              "optim.learning_rate": 0.5}))
    plan_lib.fields(_tiny(**{"optim.name": "lbfgs", "optim.learning_rate": 0.5,
                          "optim.schedule": "cosine"}))


@pytest.mark.slow
@pytest.mark.parametrize("script", ["run.py", "sweep.py"])
def test_a_misspelled_config_path_is_one_line_and_exit_2(tmp_path, script):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", script),
         "--config=configs/defualt.py", f"--workdir={tmp_path / 'x'}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "configs/defualt.py" in lines[0], lines
    assert not os.path.exists(tmp_path / "x")


@pytest.mark.slow
def test_ctrl_c_stops_a_sweep_saving_every_member(tmp_path):
    wd = tmp_path / "sweep"
    code, rest = interrupt_when(
        [sys.executable, os.path.join(ROOT, "scripts", "sweep.py"),
         "--config=" + os.path.join(ROOT, "configs", "sweep_style_weight.py"),
         f"--workdir={wd}", "--config.size=32",
         "--config.optim.steps=100000", "--config.log_every=2",
         "--config.checkpoint_every=2"],
        "[sweep] group 1/1 step", signal.SIGINT, ROOT)
    assert code == 130, rest[-2000:]
    assert "--config.resume=" in rest
    for i in range(8):
        d = wd / f"member_{i:03d}"
        with open(d / "manifest.json") as f:
            assert json.load(f)["status"] == "interrupted"
        assert (d / "interrupted.png").exists()
        assert (d / "checkpoint.npz").exists()


def test_contact_sheet_rows_vary_only_the_innermost_key():
    grid = [{"a": a, "b": b} for a in (1, 2, 3) for b in (0.1, 0.2)]
    assert sweep.sheet_columns(grid, 6) == 2
    assert sweep.sheet_columns([{"a": a} for a in range(5)], 5) is None
    assert sweep.sheet_columns(grid, 5) is None  # A member failed to start.
    both = [{"a": i, "b": i} for i in range(4)]
    assert sweep.sheet_columns(both, 4) is None


@pytest.mark.parametrize("opt", ["adam", "lbfgs"])
def test_photos_of_one_size_share_one_program(tmp_path, params, opt,
                                              monkeypatch):
    """A folder: photos that load to one size are one group whose targets
    carry the member axis; each equals the photo run alone."""
    rng = np.random.RandomState(0)
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, shape in (("a.png", (24, 32)), ("b.png", (48, 64)),
                        ("c.png", (32, 32))):
        Image.fromarray(rng.randint(0, 255, shape + (3,), np.uint8)).save(
            folder / name)
    base = _tiny(**{"optim.name": opt, "size": 32})
    photos = [cfg.override(base, {"content": str(folder / n)})
              for n in ("a.png", "b.png", "c.png")]
    # a (24x32) and b (48x64) load to 24x32 at size 32; c is square.
    assert grouping.group(plans(photos)) == [[0, 1], [2]]
    assert grouping.group_key(plan_lib.build(photos[0]), with_content=True) != \
        grouping.group_key(plan_lib.build(photos[1]), with_content=True)
    traces = count_chunk_traces(monkeypatch)
    res = driver.run_group(plans(photos[:2]), params)
    assert len(traces) == 1 and traces[0].batched_targets
    assert res.status == ["done", "done"]
    for i in range(2):
        alone, metrics = driver.stylize(plan_lib.build(photos[i]), params)
        assert _rel(res.images[i], alone) <= 1e-4
        np.testing.assert_allclose(res.metrics[i][-1]["loss"],
                                   metrics[-1]["loss"], rtol=1e-4)
    assert _rel(res.images[0], res.images[1]) > 1e-2
    if opt == "adam":  # The runner: one directory per photo, one program.
        log = io.StringIO()
        wd = tmp_path / "run"
        runner.execute(cfg.override(base, {"content": str(folder)}),
                       str(wd), vgg_params=params, out=log)
        assert sorted(os.listdir(wd)) == ["a.png", "b.png", "c.png"]
        assert "(x2 members)" in log.getvalue()
        assert "2 photos at 32x24 px in one program" in log.getvalue()
