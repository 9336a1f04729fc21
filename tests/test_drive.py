"""The driver's plumbing, tested directly: inputs (what a scale reads and at
which size), the run directory (what it writes, in which order) and the
grouping of members into programs."""

import json
import os

import numpy as np
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import rundir
from nst_jax.drive import grouping, inputs
from nst_jax.errors import UserError
from nst_jax.io import images
from tests.helpers import plans, small_config


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Images of different shapes: the content is 60x90 (h x w), a mask
    pair of the content's aspect at half its size, a square style, a tall
    init."""
    d = tmp_path_factory.mktemp("drive")
    rng = np.random.RandomState(0)

    def noise(h, w):
        return rng.uniform(0, 255, (h, w, 3)).astype(np.float32)
    left = np.zeros((30, 45, 3), np.float32)
    left[:, :20] = 255
    paths = {}
    for name, img in [("content", noise(60, 90)), ("style", noise(40, 40)),
                      ("style2", noise(50, 30)), ("init", noise(50, 20)),
                      ("left", left), ("right", 255 - left)]:
        paths[name] = str(d / f"{name}.png")
        images.save(paths[name], img)
    return paths


# ---------------------------------------------------------------- inputs

def test_prepare_sizes_every_image_to_the_scale_keeping_aspect(files):
    c = small_config(files["content"], files["style"], **{
        "style": (files["style"], files["style2"]),
        "masks": (files["left"], files["right"]),
        "init": "file", "init_path": files["init"], "style_scale": 0.5})
    inp = inputs.prepare(plan_lib.build(c), 24)
    # Long side 24, the 2:3 aspect kept.
    assert inp.content_rgb.shape == (16, 24, 3)
    np.testing.assert_array_equal(inp.original_rgb, inp.content_rgb)
    # Styles: long side 24 * style_scale, each its own aspect.
    assert [s.shape for s in inp.style_rgbs] == [(12, 12, 3), (12, 7, 3)]
    # Masks and the init image: exactly the content's frame.
    assert inp.masks.shape == (2, 16, 24)
    assert inp.masks.min() >= 0 and inp.masks.max() <= 1
    np.testing.assert_allclose(inp.masks.sum(0), 1.0, atol=1e-3)
    assert inp.masks[0, :, :8].min() > 0.9  # The left mask's white side.
    assert inp.masks[0, :, -8:].max() < 0.1
    assert inp.init_rgb.shape == (16, 24, 3)
    for a in (inp.content_rgb, *inp.style_rgbs, inp.init_rgb):
        assert a.dtype == np.float32
        assert a.min() >= -1 and a.max() <= 256  # RGB 0..255 (Lanczos).
    # Another scale of the same config: everything follows.
    big = inputs.prepare(plan_lib.build(c), 48)
    assert big.content_rgb.shape == (32, 48, 3)
    assert big.masks.shape == (2, 32, 48)
    assert [s.shape[:2] for s in big.style_rgbs] == [(24, 24), (24, 14)]


def test_prepare_luminance_greys_the_content_and_keeps_the_original(files):
    c = small_config(files["content"], files["style"],
                     **{"color.preserve": "luminance"})
    inp = inputs.prepare(plan_lib.build(c), 24)
    grey = inp.content_rgb
    assert np.abs(grey - grey.mean(-1, keepdims=True)).max() < 1e-3
    np.testing.assert_allclose(
        inp.original_rgb, images.load(files["content"], 24), atol=1e-4)
    assert np.abs(inp.original_rgb - grey).max() > 10
    assert inp.masks is None and inp.init_rgb is None


def test_input_paths_lists_every_file_a_run_reads_by_role(files):
    c = small_config(files["content"], files["style"], **{
        "style": (files["style"], files["style2"]),
        "masks": (files["left"], files["right"]),
        "init": "file", "init_path": files["init"]})
    assert plan_lib.input_paths(plan_lib.from_config(c)) == {
        "content": files["content"], "style0": files["style"],
        "style1": files["style2"], "mask0": files["left"],
        "mask1": files["right"], "init": files["init"]}
    # init_path is read only when init is "file".
    c = cfg.override(c, {"init": "content", "masks": ()})
    assert set(plan_lib.input_paths(plan_lib.from_config(c))) == {"content", "style0", "style1"}
    # Portrait face masks, only when that alignment is on.
    c = cfg.override(c, {"portrait.content_mask": files["left"],
                         "portrait.style_mask": files["right"],
                         "portrait.align": "masks"})
    assert "content_mask" not in plan_lib.input_paths(plan_lib.from_config(c))
    c = cfg.override(c, {"portrait.enabled": True})
    paths = plan_lib.input_paths(plan_lib.from_config(c))
    assert (paths["content_mask"], paths["style_mask"]) == (
        files["left"], files["right"])
    # No content or style given: the bundled defaults, which exist.
    c = cfg.override(cfg.base(), {"content": "", "style": ()})
    paths = plan_lib.input_paths(plan_lib.from_config(c))
    assert paths == {"content": plan_lib.DEFAULT_CONTENT,
                     "style0": plan_lib.DEFAULT_STYLE}
    assert all(os.path.isfile(p) for p in paths.values())


def test_check_names_the_role_of_a_missing_file(files, tmp_path):
    missing = str(tmp_path / "gone.png")
    c = small_config(files["content"], files["style"], **{
        "style": (files["style"], files["style2"]),
        "masks": (files["left"], missing)})
    with pytest.raises(UserError, match=r"^mask1 file .*gone\.png does not "
                                        "exist"):
        inputs.check(plan_lib.build(c))
    c = small_config(files["content"], files["style"],
                     **{"init": "file", "init_path": str(tmp_path)})
    with pytest.raises(UserError, match="^init path .* is a directory"):
        inputs.check(plan_lib.build(c))
    inputs.check(plan_lib.build(small_config(files["content"], files["style"])))


# ---------------------------------------------------------------- rundir

def test_run_dir_writes_config_then_manifest_running_then_done(
        files, tmp_path, monkeypatch):
    written = []
    real_write = rundir.write_json

    def record(path, obj):
        written.append((os.path.basename(path), obj.get("status")))
        real_write(path, obj)
    monkeypatch.setattr(rundir, "write_json", record)
    c = small_config(files["content"], files["style"])
    path = tmp_path / "run"
    carried = [{"step": 2, "loss": 5.0}]
    rd = rundir.RunDir(str(path), plan_lib.build(c), {"kind": "test"}, metrics=carried)
    assert written == [("config.json", None), ("manifest.json", "running")]
    with open(path / "config.json") as f:
        assert json.load(f) == cfg.to_dict(c)
    with open(path / "manifest.json") as f:
        man = json.load(f)
    assert man["status"] == "running" and man["kind"] == "test"
    assert "started" in man and "finished" not in man
    # Carried-over metrics are in metrics.jsonl from the start.
    assert [json.loads(l) for l in (path / "metrics.jsonl").read_text()
            .splitlines()] == carried
    # A directory that holds a run is never reused.
    with pytest.raises(UserError, match="already holds a run"):
        rundir.RunDir(str(path), plan_lib.build(c), {})

    image = np.full((8, 12, 3), 128, np.float32)
    out = rd.finish("done", image, seconds=1.5)
    assert out == str(path / "final.png")
    assert written[-1] == ("manifest.json", "done")
    with open(path / "manifest.json") as f:
        man = json.load(f)
    assert man["status"] == "done" and man["seconds"] == 1.5
    assert man["kind"] == "test" and "finished" in man
    np.testing.assert_array_equal(images.load(out), image)
    assert (path / "loss_curve.png").exists()  # The metrics have a loss.


def test_run_dir_names_the_image_by_status(files, tmp_path):
    c = small_config(files["content"], files["style"])
    rd = rundir.RunDir(str(tmp_path / "run"), plan_lib.build(c), {})
    out = rd.finish("interrupted", np.zeros((4, 4, 3), np.float32))
    assert os.path.basename(out) == "interrupted.png"
    # (log.txt only where the process logs to its first run directory.)
    assert sorted(set(os.listdir(tmp_path / "run")) - {rundir.LOG}) == [
        "config.json", "interrupted.png", "manifest.json", "metrics.jsonl"]
    with open(tmp_path / "run" / "manifest.json") as f:
        assert json.load(f)["status"] == "interrupted"


# ---------------------------------------------------------------- groups

def test_group_joins_members_that_differ_only_in_traced_fields(files):
    base = small_config(files["content"], files["style"])
    traced = [base] + [cfg.override(base, {k: v}) for k, v in [
        ("loss.content_weight", 2.0), ("loss.style_weight", 0.5),
        ("loss.tv_weight", 1e-2), ("loss.style_layer_weights", (1.0, 2.0)),
        ("optim.learning_rate", 1.0), ("optim.ema_decay", 0.5),
        ("seed", 7)]]
    assert grouping.group(plans(traced)) == [list(range(len(traced)))]
    # Any field the program depends on sets a member apart.
    apart = [cfg.override(base, {k: v}) for k, v in [
        ("size", 24), ("optim.steps", 6), ("optim.name", "sgd"),
        ("loss.style_layers", ("relu1_1",)), ("model.pooling", "avg")]]
    n = len(traced)
    assert grouping.group(plans(traced + apart)) == (
        [list(range(n))] + [[n + i] for i in range(len(apart))])
    # Groups come in order of first appearance, members in their order.
    mixed = [apart[0], base, cfg.override(apart[0], {"seed": 3}),
             traced[-1]]
    assert grouping.group(plans(mixed)) == [[0, 2], [1, 3]]
