"""The Python API (nst_jax.stylize, nst_jax.load_config and the pure
pieces), and the README's example run as written."""

import os
import pathlib
import re

import numpy as np
import pytest

import nst_jax
from nst_jax.errors import UserError
from nst_jax.io import images

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_load_config_takes_names_paths_and_dotted_overrides():
    c = nst_jax.load_config("portrait", size=96, optim__steps=7,
                            **{"loss.style_weight": 2e-4})
    assert (c.size, c.optim.steps, c.loss.style_weight) == (96, 7, 2e-4)
    assert c.portrait.align == "auto"
    same = nst_jax.load_config(str(ROOT / "configs" / "portrait.py"))
    assert same.name == "portrait"
    with pytest.raises(UserError, match="no config 'nope'.*portrait"):
        nst_jax.load_config("nope")
    with pytest.raises(UserError, match="not a config field"):
        nst_jax.load_config("default", optim__stepz=3)
    with pytest.raises(UserError):
        nst_jax.load_config("default", size=-5)  # Validated.


def test_stylize_takes_arrays_and_returns_the_picture(real_params, tmp_path):
    rng = np.random.default_rng(0)
    photo = rng.uniform(0, 255, (40, 48, 3))
    painting = rng.uniform(0, 255, (32, 32, 3)).astype(np.uint8)
    small = dict(size=32, optim__steps=3, init="content", log_every=3,
                 **{"loss.content_layers": ("relu2_1",),
                    "loss.style_layers": ("relu1_1", "relu2_1")})
    out = nst_jax.stylize(photo, painting, vgg_params=real_params, **small)
    assert out.shape == (27, 32, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 255
    # The same run into a run directory gives the same picture.
    again = nst_jax.stylize(photo, painting, vgg_params=real_params,
                            workdir=str(tmp_path / "run"), **small)
    assert (tmp_path / "run" / "manifest.json").exists()
    np.testing.assert_array_equal(images.to_uint8(out), again.astype(
        np.uint8))
    with pytest.raises(UserError, match="shape"):
        nst_jax.stylize(photo[..., 0], painting, vgg_params=real_params)


def test_pure_pieces_compose(real_params):
    spec = nst_jax.LossSpec(("relu2_1",), ("relu1_1",))
    rgb = np.full((16, 16, 3), 120.0, np.float32)
    feats = nst_jax.features(real_params, rgb, ("relu2_1",))
    assert feats["relu2_1"].shape == (1, 8, 8, 128)
    targets = nst_jax.compute_targets(real_params, spec, rgb, [rgb])
    assert set(targets) >= {"content", "style"}
    assert "VGG19" in dir(nst_jax) and callable(nst_jax.total_loss)
    with pytest.raises(AttributeError):
        nst_jax.no_such_thing  # noqa: B018


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(_readme_example(), "README.md", "exec"), {})
    made = [p for p in os.listdir(tmp_path) if p.endswith(".png")]
    assert made, "the example saved no picture"
    out = images.load(tmp_path / made[0])
    assert out.ndim == 3 and out.std() > 5
