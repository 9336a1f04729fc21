"""loss.style_loss end to end: every statistic through the loss, the
optimisers, coarse to fine, several styles, masks, sweeps and resume; the
combinations it cannot do are refused before a run directory exists."""

import io
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import plan as plan_lib
from nst_jax.app import runner
from nst_jax.drive import driver, grouping
from nst_jax.errors import UserError
from nst_jax.io import images
from nst_jax.optimize import losses
from nst_jax.style import terms
from nst_jax.vgg import vgg19
from tests import test_reliability as reliability
from tests.helpers import plans
from tests.test_reliability import _bytes, _config, cut_and_resumed

good = reliability.good
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OTHERS = [n for n in terms.NAMES if n != "gram"]


def _targets(params, spec, content, style, seed=0):
    from nst_jax.drive import targets
    return targets.compute(params, spec, content, [style], seed=seed)


@pytest.mark.parametrize("name", OTHERS)
def test_each_statistic_is_zero_on_the_style_and_positive_off_it(
        params, name):
    rng = np.random.RandomState(0)
    style = rng.uniform(0, 255, (24, 28, 3)).astype(np.float32)
    photo = rng.uniform(0, 255, (24, 28, 3)).astype(np.float32)
    spec = losses.LossSpec(("relu2_1",), ("relu1_1", "relu2_1"),
                           style_loss=name)
    hp = plan_lib.hparams(plan_lib.fields(_base(name)), 1)
    hp = {k: jnp.asarray(v) for k, v in hp.items()}

    def style_term(rgb, tgt):
        x = images.to_vgg(jnp.asarray(rgb))[None]
        return losses.total_loss(x, params, tgt, hp, spec)[1]["style"]
    on = float(style_term(style, _targets(params, spec, style, style)))
    off = float(style_term(photo, _targets(params, spec, photo, style)))
    assert off > 0 and abs(on) < 1e-3 * off, (on, off)
    # The gradient w.r.t. the image is finite and not zero.
    g = jax.grad(lambda x: losses.total_loss(
        x, params, _targets(params, spec, photo, style), hp, spec)[0])(
        images.to_vgg(jnp.asarray(photo))[None])
    assert np.all(np.isfinite(g)) and float(jnp.abs(g).max()) > 0


def _base(name):
    from nst_jax import config as cfg
    c = cfg.base()
    c.loss.style_loss = name
    c.loss.content_layers = ("relu2_1",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    return c


@pytest.mark.parametrize("name", OTHERS)
@pytest.mark.parametrize("opt", ["adam", "lbfgs"])
def test_each_statistic_lowers_its_loss_coarse_to_fine(good, params, name,
                                                        opt):
    over = {"loss.style_loss": name, "multiscale.sizes": (24, 32),
            "multiscale.steps": (3, 3), "save_every": 0}
    if opt == "lbfgs":
        over.update({"optim.name": "lbfgs", "optim.learning_rate": 1.0})
    p, = plans([_config(good, **over)])
    image, metrics = driver.stylize(p, params)
    assert image.shape[:2] == (27, 32) and np.all(np.isfinite(image))
    first = [m for m in metrics if m["scale"] == 1]
    assert first[-1]["loss"] < first[-1]["loss_start"], first


@pytest.mark.parametrize("name", OTHERS)
def test_two_styles_blend_their_terms(good, params, name, tmp_path):
    other = str(tmp_path / "other.png")
    images.save(other, np.full((40, 48, 3), 90, np.float32))
    c = _config(good, **{"loss.style_loss": name, "save_every": 0})
    c.unlock()
    c.style = (good["style"], other)
    only_first = plans([_config(good, **{"loss.style_loss": name,
                                          "save_every": 0})])[0]
    blended = plan_lib.build(c.lock() or c)
    p0 = blended.replace(style_blend=(1.0, 0.0))
    img0, _ = driver.stylize(p0, params)
    img1, _ = driver.stylize(only_first, params)
    # A zero blend weight removes the second style's term exactly.
    np.testing.assert_allclose(img0, img1, rtol=0, atol=1e-3)
    img_half, _ = driver.stylize(blended, params)
    assert np.abs(img_half - img1).max() > 0.5


def test_gaussian_w2_takes_masks_and_the_others_refuse_them(good, tmp_path,
                                                             params):
    m = str(tmp_path / "m.png")
    images.save(m, np.full((40, 48, 3), 255, np.float32))
    c = _config(good, **{"loss.style_loss": "gaussian_w2", "save_every": 0})
    c.unlock()
    c.masks = (m,)
    p, = plans([c])
    image, _ = driver.stylize(p, params)
    assert np.all(np.isfinite(image))
    for name in ("sliced_w2", "mrf", "histogram"):
        c.loss.style_loss = name
        with pytest.raises(UserError, match="no guided"):
            plan_lib.fields(c)


@pytest.mark.parametrize("over,what", [
    ({"loss.style_loss": "wasserstein"}, "loss.style_loss"),
    ({"loss.style_loss": "sliced_w2", "model.remat": "tiles"},
     "whole feature maps"),
    ({"loss.sliced_projections": -1}, "loss.sliced_projections"),
    ({"loss.mrf_max_pairs": 0}, "loss.mrf_max_pairs")])
def test_bad_statistic_settings_are_refused(good, over, what):
    with pytest.raises(UserError, match=what):
        plan_lib.fields(_config(good, **over))


def test_mrf_over_its_patch_cap_exits_2_before_a_run_directory(tmp_path):
    """The cap is checked from the images' headers by the plan."""
    work = tmp_path / "runs"
    r = subprocess.run(
        [sys.executable, "scripts/run.py", "--config=configs/tiny.py",
         "--config.loss.style_loss=mrf", "--config.size=128",
         "--config.loss.mrf_max_pairs=100000", f"--workdir={work}"],
        cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 2, r.stderr[-2000:]
    last = [l for l in r.stderr.splitlines() if l.startswith("error:")]
    assert len(last) == 1 and "loss.mrf_max_pairs=100,000" in last[0], last
    assert "relu1_1" in last[0] and not work.exists()


def test_the_mrf_cap_counts_each_scale_s_own_layers(good):
    """With multiscale.last_style_layers the last scale is checked at its
    own layers only: a cap that relu1_1 breaks only at 32 px refuses the
    run unless the last scale leaves relu1_1 out."""
    from nst_jax.io import resizing
    from nst_jax.style import mrf
    over = {"loss.style_loss": "mrf", "multiscale.sizes": (24, 32),
            "multiscale.steps": (1, 1)}
    hws = plan_lib.build(_config(good, **over)).content_hw
    style_hw = images.header_hw(good["style"])

    def pairs(layer, si):
        s, (h, w) = vgg19.STRIDE[layer], hws[si]
        sh, sw = resizing.long_side_hw(*style_hw, over["multiscale.sizes"][si])
        return mrf.count(h // s, w // s) * mrf.count(sh // s, sw // s)
    cap = max(pairs("relu1_1", 0), pairs("relu2_1", 0), pairs("relu2_1", 1))
    assert pairs("relu1_1", 1) > cap
    over["loss.mrf_max_pairs"] = cap
    plan_lib.build(_config(good, **over,
                           **{"multiscale.last_style_layers": ("relu2_1",)}))
    with pytest.raises(UserError, match="relu1_1 at 32x27 px"):
        plan_lib.build(_config(good, **over))


def test_statistics_form_their_own_groups_and_seeds_split_sliced_targets(
        good):
    ps = plans([_config(good, **{"loss.style_loss": n}) for n in
                ("gram", "sliced_w2", "sliced_w2")])
    assert grouping.group(ps) == [[0], [1, 2]]
    seeds = plans([_config(good, **{"loss.style_loss": "sliced_w2",
                                    "seed": s}) for s in (0, 1)])
    assert grouping.group(seeds) == [[0, 1]]
    assert grouping.per_member_targets(seeds)
    assert not grouping.per_member_targets(plans(
        [_config(good, **{"loss.style_loss": "gaussian_w2", "seed": s})
         for s in (0, 1)]))


def test_sliced_members_with_their_own_seeds_match_their_solo_runs(
        good, params):
    members = plans([_config(good, **{"loss.style_loss": "sliced_w2",
                                      "seed": s, "save_every": 0})
                     for s in (0, 1)])
    res = driver.run_group(members, params)
    solo = [driver.stylize(p, params)[0] for p in members]
    for i in range(2):
        rel = (np.linalg.norm(res.images[i] - solo[i])
               / np.linalg.norm(solo[i]))
        assert rel <= 1e-4, (i, rel)
    # The seed draws the directions: the two members differ.
    assert np.abs(solo[0] - solo[1]).max() > 0.1


@pytest.mark.parametrize("name", ["sliced_w2", "mrf"])
def test_resume_is_byte_identical(tmp_path, good, params, monkeypatch, name):
    c = _config(good, **{"loss.style_loss": name, "optim.name": "lbfgs",
                         "optim.learning_rate": 1.0, "optim.steps": 6,
                         "checkpoint_every": 2})
    full = runner.execute(c, str(tmp_path / "full"), vgg_params=params,
                          out=io.StringIO())
    resumed = cut_and_resumed(c, tmp_path, params, monkeypatch, 4)
    assert _bytes(full) == _bytes(resumed)


def test_the_layer_maps_are_what_the_targets_expect(params):
    """Targets laid out for the image's map at each layer (sliced and
    histogram resample the style to it), odd sizes included."""
    rng = np.random.RandomState(1)
    photo = rng.uniform(0, 255, (27, 33, 3)).astype(np.float32)
    style = rng.uniform(0, 255, (40, 21, 3)).astype(np.float32)
    for name in ("sliced_w2", "histogram"):
        spec = losses.LossSpec(("relu2_1",), ("relu1_1", "relu2_1"),
                               style_loss=name)
        t = _targets(params, spec, photo, style)
        f = vgg19.features(params, photo, spec.style_layers)
        for l in spec.style_layers:
            assert t["style"][l][0]["sorted"].shape[0] == (
                f[l].shape[1] * f[l].shape[2])


def test_cross_scores_put_each_statistic_at_zero_on_the_style(params):
    from nst_jax.evals import style_scores
    rng = np.random.RandomState(2)
    style = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    photo = rng.uniform(0, 255, (40, 40, 3)).astype(np.float32)
    on = style_scores.cross_scores(params, style, photo, style)
    off = style_scores.cross_scores(params, photo, photo, style)
    assert set(on) == set(terms.NAMES) | {"structure"}
    for n in terms.NAMES:
        assert off[n] > 0 and abs(on[n]) < 1e-3 * off[n], (n, on, off)
    assert off["structure"] < 1e-6 * on["structure"]
    table = style_scores.table({"a": off, "b": on}, {"ref": off})
    lines = table.splitlines()
    assert len(lines) == 6 and lines[-2].startswith("| b | 0 |")
    # The reference is scaled like the rows but never the lowest.
    assert lines[-1] == lines[-3].replace("| a |", "| ref |")


@pytest.mark.slow
def test_the_example_sweep_and_its_cross_table(tmp_path):
    """configs/sweep_style_losses.py shrunk, real weights (cached), then
    scripts/style_eval.py on its directory."""
    wd = tmp_path / "sweep"
    proc = subprocess.run(
        [sys.executable, "scripts/sweep.py",
         "--config=configs/sweep_style_losses.py", f"--workdir={wd}",
         "--config.size=64", "--config.optim.steps=2",
         "--config.log_every=2"],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "5 members in 5 group(s)" in proc.stderr
    assert os.path.isfile(wd / "contact_sheet.png")
    ev = subprocess.run(
        [sys.executable, "scripts/style_eval.py", f"--sweep={wd}",
         f"--out={tmp_path / 'scores.json'}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert ev.returncode == 0, ev.stderr[-2000:]
    rows = [l for l in ev.stdout.splitlines() if l.startswith("| ")]
    assert [r.split("|")[1].strip() for r in rows[3:]] == list(
        terms.NAMES) + ["(the photo: the start)"]
    bad = subprocess.run(
        [sys.executable, "scripts/style_eval.py", f"--sweep={tmp_path}"],
        capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path} holds no member_* run directories (give a "
        "scripts/sweep.py --workdir)")
