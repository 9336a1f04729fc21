"""config -> Plan: typed, frozen, checked once; inputs checked before any
other code reads them."""

import ast
import dataclasses
import os
import pathlib

import numpy as np
import pytest
from PIL import Image

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import runner, sweep
from nst_jax.drive import inputs
from nst_jax.errors import UserError
from tests.helpers import small_config

PACKAGE = pathlib.Path(__file__).resolve().parent.parent / "nst_jax"


@pytest.fixture
def files(tmp_path):
    out = {}
    for name, size in (("content", (60, 40)), ("style", (50, 50))):
        rgb = np.random.default_rng(len(name)).integers(
            0, 256, (size[1], size[0], 3), np.uint8)
        out[name] = str(tmp_path / f"{name}.png")
        Image.fromarray(rgb).save(out[name])
    return out


def test_plan_mirrors_the_config_resolved_and_frozen(files):
    c = small_config(files["content"], files["style"],
                     **{"multiscale.sizes": (24, 48),
                        "multiscale.steps": (3, 5)})
    p = plan_lib.build(c)
    assert p.loss.style_weight == c.loss.style_weight
    assert p.loss.style_layers == ("relu1_1", "relu2_1")
    assert p.scales == ((24, 3), (48, 5))
    # One header read: a 60x40 (w x h) content, long side per scale.
    assert p.content_hw == ((16, 24), (32, 48))
    assert p.config == cfg.to_dict(c)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.size = 64
    tiles = p.replace(**{"model.remat": "tiles", "seed": 3})
    assert (tiles.model.remat, tiles.seed, p.model.remat) == (
        "tiles", 3, "none")
    # Empty inputs are the embedded images.
    d = plan_lib.fields(cfg.base())
    assert (d.content, d.style) == (plan_lib.DEFAULT_CONTENT,
                                    (plan_lib.DEFAULT_STYLE,))


def test_build_checks_fields_and_input_paths_before_reading(files, tmp_path):
    with pytest.raises(UserError, match="loss.style_weight"):
        plan_lib.build(small_config(files["content"], files["style"],
                                    **{"loss.style_weight": -1.0}))
    with pytest.raises(UserError, match="style0 file .* does not exist"):
        plan_lib.build(small_config(files["content"],
                                    str(tmp_path / "missing.png")))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="not a readable image"):
        plan_lib.build(small_config(str(bad), files["style"]))


def test_a_bad_image_in_a_sweep_is_one_line_before_grouping(files, tmp_path,
                                                             capsys):
    """Grouping needs each photo's size; a content file that is not an
    image must be refused as bad input, not fail inside the grouping."""
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"\xff\xd8\xff garbage")
    c = small_config(str(bad), files["style"])

    def two(add):
        add(**{"loss.style_weight": 1e-3})
        add(**{"loss.style_weight": 1e-2})
    status = sweep.main(c, two, str(tmp_path / "sw"))
    err = capsys.readouterr().err.strip().splitlines()
    assert status == runner.EXIT_USER_ERROR
    assert len(err) == 1 and "bad.jpg" in err[0], err
    assert not os.path.exists(tmp_path / "sw")


def test_a_flow_file_is_read_once(tmp_path, monkeypatch):
    path = str(tmp_path / "flow.npy")
    np.save(path, np.zeros((8, 6, 2), np.float32))
    calls = []
    real = np.load
    monkeypatch.setattr(inputs.np, "load",
                        lambda *a, **k: calls.append(a) or real(*a, **k))
    a = inputs.load_flow(path, (16, 12))
    b = inputs.load_flow(path, (32, 24))
    assert len(calls) == 1 and np.array_equal(a, b)
    np.save(path, np.ones((8, 6, 2), np.float32))  # A new version: re-read.
    os.utime(path, ns=(1, 1))
    assert inputs.load_flow(path, (16, 12)).max() == 1 and len(calls) == 2


def _imports_ml_collections(path: pathlib.Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text())):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""]
                 if isinstance(node, ast.ImportFrom) else [])
        if any(n.split(".")[0] == "ml_collections" for n in names):
            return True
    return False


def test_only_the_entry_points_see_ml_collections():
    users = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                   if _imports_ml_collections(p))
    assert users == ["app/cli.py", "app/runner.py", "app/sweep.py",
                     "config.py", "evals/gallery.py"], users
    # Nothing the plan feeds reads a config: no drive/optimize/portrait
    # module names ``config.`` as a variable.
    for unit in ("drive", "optimize", "portrait", "vgg", "fast", "faces"):
        for p in (PACKAGE / unit).rglob("*.py"):
            tree = ast.parse(p.read_text())
            args = {a.arg for f in ast.walk(tree)
                    if isinstance(f, ast.FunctionDef)
                    for a in f.args.args + f.args.kwonlyargs}
            assert not args & {"config", "configs"}, (p, args)


def test_inputs_of_one_photo_only(files, tmp_path):
    with pytest.raises(UserError, match="several photos"):
        plan_lib.build(small_config(str(tmp_path), files["style"]))
    assert plan_lib.content_files(f"{files['content']},{files['style']}") \
        == [files["content"], files["style"]]
