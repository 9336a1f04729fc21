"""The memory estimate, the refusal of runs that cannot fit, and remat."""

import logging
import os
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import sweep
from nst_jax.memory import fit as memory
from nst_jax.errors import UserError
from nst_jax.optimize import losses
from nst_jax.vgg import vgg19

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**overrides):
    return cfg.override(cfg.base(), overrides)


def _total(config, side, platform="cpu", members=1):
    return memory.estimate(plan_lib.fields(config), members, (side, side), platform).total


def test_estimate_grows_with_the_pixel_count():
    c = _config()
    fixed = _total(c, 1)
    grow = [_total(c, s) - fixed for s in (256, 512, 1024)]
    assert grow[0] > 0
    # Everything above the fixed part is per pixel: 4x the pixels, 4x it.
    assert grow[1] / grow[0] == pytest.approx(4, rel=1e-3)
    assert grow[2] / grow[1] == pytest.approx(4, rel=1e-3)
    # Deeper layers, a longer L-BFGS history and more members cost more.
    shallow = _config(**{"loss.content_layers": ("relu2_1",),
                         "loss.style_layers": ("relu1_1", "relu2_1")})
    assert _total(shallow, 512) < _total(c, 512)
    longer = _config(**{"optim.memory_size": 50})
    assert _total(longer, 512) > _total(c, 512)
    adam = _config(**{"optim.name": "adam", "optim.learning_rate": 2.0})
    assert _total(adam, 512, members=4) > 3 * (
        _total(adam, 512) - _total(adam, 1))


def test_remat_and_bfloat16_lower_the_estimate():
    for name in ("lbfgs", "adam"):
        c = _config(**{"optim.name": name, "optim.learning_rate": 1.0})
        blocks = cfg.override(c, {"model.remat": "blocks"})
        tiles = cfg.override(c, {"model.remat": "tiles"})
        half = cfg.override(c, {"model.dtype": "bfloat16"})
        for platform in ("cpu", "gpu"):
            none = _total(c, 1024, platform)
            assert _total(blocks, 1024, platform) < 0.85 * none
            assert _total(tiles, 1024, platform) < 0.8 * _total(
                blocks, 1024, platform)
            assert _total(half, 1024, platform) < none
        # The tiles' own buffers do not grow with the image; bigger tiles
        # hold more.
        grow = [_total(tiles, s) for s in (1024, 2048, 4096)]
        assert grow[2] - grow[1] == pytest.approx(4 * (grow[1] - grow[0]),
                                                  rel=1e-3)
        bigger = cfg.override(tiles, {"model.tile_size": 512})
        assert _total(bigger, 1024) > _total(tiles, 1024)
    e = memory.estimate(plan_lib.fields(c), hw=(64, 64), platform="gpu")
    assert e.where == "device" and "runtime" not in e.parts


def test_output_hw_reads_only_the_header(tmp_path):
    path = tmp_path / "wide.png"
    Image.new("RGB", (300, 200)).save(path)
    assert memory.output_hw(plan_lib.build(_config(
        content=str(path), size=600))) == (400, 600)
    # The largest scale counts, whatever its place in the list.
    c = _config(**{"content": str(path), "multiscale.sizes": (900, 300)})
    assert memory.output_hw(plan_lib.build(c)) == (600, 900)
    # A plan that read no header (plan.fields): the square bound.
    assert memory.output_hw(plan_lib.fields(_config(
        content=str(tmp_path / "no.png"), size=128))) == (128, 128)


def test_a_run_that_cannot_fit_is_refused_in_one_line(monkeypatch, caplog):
    monkeypatch.setattr(memory, "host_available",
                        lambda: (2 * 2 ** 30, "test limit"))
    monkeypatch.setattr(memory.jax, "default_backend", lambda: "cpu")
    monkeypatch.delenv(memory.ENV, raising=False)
    big = _config(size=4096)
    with pytest.raises(UserError) as e:
        memory.check(plan_lib.build(big))
    msg = str(e.value)
    assert "\n" not in msg and "2.0 GiB is available (test limit)" in msg
    assert "--config.model.remat=tiles" in msg and memory.ENV in msg
    fit = int(msg.split("to about ")[1].split(" px")[0])
    assert 16 <= fit < 4096
    assert _total(_config(size=fit), fit) <= 2 * 2 ** 30
    assert memory.check(plan_lib.build(_config(size=64))).total < 2 * 2 ** 30
    assert memory.check(plan_lib.build(_config(method="fast", size=4096))) is None
    monkeypatch.setenv(memory.ENV, "warn")
    with caplog.at_level(logging.WARNING, logger="nst_jax.memory.fit"):
        assert memory.check(plan_lib.build(big)) is not None
    assert "GiB is available" in caplog.text
    monkeypatch.setenv(memory.ENV, "off")
    assert memory.check(plan_lib.build(big)) is None
    monkeypatch.setenv(memory.ENV, "maybe")
    with pytest.raises(UserError, match=memory.ENV):
        memory.check(plan_lib.build(big))


def test_available_memory_is_read():
    available, source = memory.host_available()
    if os.path.exists("/proc/meminfo"):
        assert available > 0 and source
    assert memory.device_available(jax.devices("cpu")[0]) == (None, "")


@pytest.mark.slow
def test_run_py_refuses_a_huge_size_at_once_with_exit_2(tmp_path):
    env = dict(os.environ)
    env.pop(memory.ENV, None)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "run.py"),
         "--config=configs/default.py", "--config.size=100000",
         f"--workdir={tmp_path / 'x'}"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env)
    elapsed = time.perf_counter() - t
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: a "), lines
    assert "GiB" in lines[0] and "model.remat" in lines[0]
    assert not os.path.exists(tmp_path / "x")
    assert elapsed < 60  # Start-up only: nothing is decoded or compiled.


def test_a_sweep_that_cannot_fit_is_refused_before_any_work(
        tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(memory.ENV, raising=False)

    def add_members(add):
        for w in (1e-3, 1e-2):
            add(**{"loss.style_weight": w})
    wd = tmp_path / "sweep"
    assert sweep.main(_config(size=100000), add_members, str(wd)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "2 members at" in err[0], err
    assert not wd.exists()


def _loss_and_grad(spec, image, params, targets, hp):
    return jax.jit(jax.value_and_grad(
        lambda x: losses.total_loss(x, params, targets, hp, spec)[0]))(image)


@pytest.mark.parametrize("pooling", ["max", "avg"])
def test_remat_gives_the_same_loss_and_gradient(pooling):
    params = vgg19.random_params(0)
    rng = np.random.RandomState(0)
    # Odd sides: every floor in the pooling is exercised.
    image = jnp.asarray(rng.uniform(-100, 100, (1, 37, 45, 3)), jnp.float32)
    # Two whole blocks and part of a third (the last block stops early).
    spec = losses.LossSpec(("relu3_1",), ("relu1_1", "relu2_1", "relu3_1"),
                           pooling)
    feats = vgg19.extract(params, image * 0.5, spec.layers, pooling)
    targets = {"content": {"relu3_1": feats["relu3_1"]},
               "style": {l: losses.gram(feats[l]) for l in spec.style_layers}}
    hp = {"content_weight": 1.0, "style_weight": 1e-3, "tv_weight": 1e-3,
          "content_layer_weights": jnp.ones(1),
          "style_layer_weights": jnp.ones(3), "style_blend": jnp.ones(1)}
    value, grad = _loss_and_grad(spec, image, params, targets, hp)
    value_r, grad_r = _loss_and_grad(spec._replace(remat="blocks"), image,
                                     params, targets, hp)
    assert float(jnp.abs(grad).max()) > 0
    np.testing.assert_allclose(value_r, value, rtol=1e-6)
    np.testing.assert_allclose(grad_r, grad, rtol=1e-5,
                               atol=1e-6 * float(jnp.abs(grad).max()))
    plain = vgg19.extract(params, image, spec.layers, pooling)
    rematted = vgg19.extract(params, image, spec.layers, pooling,
                             remat="blocks")
    for l in spec.layers:
        np.testing.assert_array_equal(rematted[l], plain[l])


def test_remat_setting_is_checked():
    with pytest.raises(ValueError, match="remat"):
        vgg19.extract(vgg19.random_params(0), jnp.zeros((1, 8, 8, 3)),
                      ("relu1_1",), remat="all")
    with pytest.raises(UserError, match="model.remat"):
        plan_lib.fields(_config(**{"model.remat": "all"}))
