"""scripts/gallery.py's engine: every entry runs at a tiny size, and the
JPEGs it keeps stay under the README's size limit."""

import io
import os

import numpy as np
import pytest
from PIL import Image

from nst_jax.app import config_file
from nst_jax.errors import UserError
from nst_jax.evals import gallery
from nst_jax.io import images
from nst_jax.vgg import vgg19


@pytest.mark.slow
def test_every_entry_runs_at_a_tiny_size(tmp_path):
    second = tmp_path / "second.png"
    stripes = np.zeros((40, 40, 3), np.float32)
    stripes[..., 0] = 255.0 * ((np.arange(40)[None, :] // 4) % 2)
    images.save(str(second), stripes)
    log = io.StringIO()
    done = gallery.build(str(tmp_path / "docs"), size=48, steps=2,
                         second_style=str(second),
                         vgg_params=vgg19.random_params(0), out=log)
    assert list(done) == [e.name for e in gallery.ENTRIES]
    for name, d in done.items():
        assert d["path"] == str(tmp_path / "docs" / f"{name}.jpg")
        assert 0 < os.path.getsize(d["path"]) == d["bytes"] < gallery.MAX_BYTES
        with Image.open(d["path"]) as im:
            assert im.format == "JPEG"
            if name != "sweep":
                assert max(im.size) == 48, name
    # The sweep's sheet: one row per style weight, one column per TV weight.
    sw = config_file.load_module(
        os.path.join(gallery.ROOT, "configs", "sweep_style_weight.py"))
    with Image.open(done["sweep"]["path"]) as im:
        w, h = im.size
    rows, cols = len(sw.STYLE_WEIGHTS), len(sw.TV_WEIGHTS)
    assert (w > h) == (cols > rows) and abs(w / h - cols / rows) < 0.5
    assert "[gallery] portrait" in log.getvalue()


def test_jpegs_are_squeezed_under_the_limit(tmp_path):
    noise = np.random.RandomState(0).uniform(0, 255, (400, 400, 3))
    path = str(tmp_path / "n.jpg")
    n = gallery.save_jpeg(noise, path, max_bytes=30_000)
    assert n == os.path.getsize(path) <= 30_000
    with Image.open(path) as im:
        assert max(im.size) < 400  # Quality alone could not get there.
    smooth = np.zeros((400, 400, 3)) + np.linspace(0, 255, 400)[None, :, None]
    gallery.save_jpeg(smooth, path, max_bytes=30_000)
    with Image.open(path) as im:
        assert im.size == (400, 400)  # Fits at full size.


def test_at_size_keeps_a_coarse_to_fine_shape():
    c = config_file.get_config(os.path.join(gallery.ROOT, "configs",
                                            "portrait.py"))
    small = gallery.at_size(c, 64)
    assert small.size == 64
    assert tuple(small.multiscale.sizes) == (32, 64)
    assert tuple(small.multiscale.steps) == tuple(c.multiscale.steps)
    assert gallery.with_steps(small, 3).multiscale.steps == (3, 3)


def test_bad_requests_are_refused_before_any_run(tmp_path):
    with pytest.raises(UserError, match="unknown gallery entries"):
        gallery.build(str(tmp_path), only=["nope"])
    with pytest.raises(UserError, match="second painting"):
        gallery.build(str(tmp_path), only=["blend"],
                      second_style=str(tmp_path / "missing.jpg"))
    assert not os.listdir(tmp_path)
