"""method=fast and init=fast through the runner: run directories, folders
of photos, strength and blend, sweeps, colour, bad input."""

import io
import json
import os

import numpy as np
import pytest

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import runner, sweep
from nst_jax.drive import driver
from nst_jax.errors import UserError
from nst_jax.fast import transfer
from nst_jax.io import images
from nst_jax.optimize import color
from nst_jax.vgg import vgg19
from nst_jax.weights import fast as fast_weights
from tests.test_config import load_preset


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Three photos (two of one size) and two small paintings."""
    d = tmp_path_factory.mktemp("photos")
    yy, xx = np.mgrid[0:48, 0:64]
    base = np.stack([yy * 5, xx * 4, 255 - yy * 5], -1).astype(np.float32)
    folder = d / "folder"
    folder.mkdir()
    images.save(str(folder / "a.png"), base)
    images.save(str(folder / "b.png"), base[::-1])
    images.save(str(folder / "c.png"), base[:, :48])  # Another shape.
    (folder / "notes.txt").write_text("not a photo")
    stripes = np.zeros((64, 64, 3), np.float32)
    stripes[..., 2] = 255.0 * ((np.arange(64)[None, :] // 4) % 2)
    dots = np.full((64, 64, 3), 240, np.float32)
    dots[::8, ::8] = [200, 30, 30]
    for name, img in (("stripes", stripes), ("dots", dots)):
        images.save(str(d / f"{name}.png"), img)
    return {"folder": str(folder), "a": str(folder / "a.png"),
            "stripes": str(d / "stripes.png"), "dots": str(d / "dots.png")}


def _fast(**over):
    return cfg.override(load_preset("fast"), {"size": 64, **over})


def _json(path):
    with open(path) as f:
        return json.load(f)


def test_fast_run_writes_a_run_directory(tmp_path, photos):
    wd = tmp_path / "run"
    final = runner.execute(_fast(content=photos["a"],
                                 style=(photos["stripes"],)), str(wd),
                           out=io.StringIO())
    assert final == str(wd / "final.png")
    assert {"config.json", "manifest.json", "metrics.jsonl",
            "final.png"} <= set(os.listdir(wd))
    man = _json(wd / "manifest.json")
    assert man["status"] == "done" and "weights" not in man  # No VGG19.
    assert man["fast_weights"]["sha256"] == fast_weights.weights_sha256()
    out = images.load(final)
    assert out.shape == (48, 64, 3)
    photo = images.load(photos["a"], 64)
    assert np.abs(out - photo).mean() > 10  # It was painted.


def test_a_folder_is_painted_per_photo_in_size_batches(tmp_path, photos):
    wd = tmp_path / "batch"
    log = io.StringIO()
    path = runner.execute(_fast(content=photos["folder"],
                                style=(photos["dots"],)), str(wd), out=log)
    assert path == str(wd)
    assert sorted(os.listdir(wd)) == ["a.png", "b.png", "c.png"]
    rec = {n: _json(wd / n / "manifest.json") for n in os.listdir(wd)}
    assert all(m["status"] == "done" for m in rec.values())
    lines = [_json(wd / n / "metrics.jsonl") for n in ("a.png", "b.png",
                                                         "c.png")]
    # a and b (48x64) were one batch of two; c (square) a batch of one.
    assert lines[0]["size"] == lines[1]["size"] == [48, 64]
    assert lines[0]["images_per_s"] == lines[1]["images_per_s"]
    assert lines[2]["size"] == [64, 64]
    assert "images/s" in log.getvalue()


def test_listed_files_are_painted_per_photo(tmp_path, photos):
    """Files separated by commas run as a folder would, in the listed
    order; clashing names get their position as a prefix."""
    other = tmp_path / "other"
    other.mkdir()
    images.save(str(other / "a.png"), images.load(photos["a"])[::-1])
    wd = tmp_path / "listed"
    listed = f"{photos['a']}, {other / 'a.png'}"
    path = runner.execute(_fast(content=listed, style=(photos["dots"],)),
                          str(wd), out=io.StringIO())
    assert path == str(wd)
    assert sorted(os.listdir(wd)) == ["000_a.png", "001_a.png"]
    outs = [images.load(str(wd / n / "final.png"))
            for n in ("000_a.png", "001_a.png")]
    assert np.abs(outs[0] - outs[1]).mean() > 5  # Two different photos.
    with pytest.raises(UserError, match="missing.png does not exist"):
        runner.execute(_fast(content=f"{photos['a']},{tmp_path}/missing.png",
                             style=(photos["dots"],)),
                       str(tmp_path / "bad"), out=io.StringIO())
    assert not (tmp_path / "bad").exists()


def test_strength_and_blend_move_the_embedding(photos):
    params = fast_weights.load_params()
    rgbs = [images.load(photos[n], 64) for n in ("stripes", "dots", "a")]
    emb = transfer.embeddings(params, rgbs, 64)
    assert np.abs(emb[0] - emb[1]).mean() > 0.05
    one = transfer.mix(emb[:2], emb[2], (1.0, 0.0), 1.0)
    np.testing.assert_allclose(one, emb[0], rtol=1e-6)
    own = transfer.mix(emb[:2], emb[2], (1.0, 1.0), 0.0)
    np.testing.assert_allclose(own, emb[2], rtol=1e-6)
    half = transfer.mix(emb[:2], emb[2], (3.0, 1.0), 0.5)
    np.testing.assert_allclose(
        half, 0.5 * (0.75 * emb[0] + 0.25 * emb[1]) + 0.5 * emb[2],
        rtol=1e-5, atol=1e-6)


def test_a_sweep_over_strength_and_blend_is_one_batch(tmp_path, photos):
    def sw(add):
        for strength in (0.0, 1.0):
            for blend in ((1.0, 0.0), (0.0, 1.0)):
                add(**{"fast.strength": strength, "style_blend": blend})
    base = _fast(content=photos["a"],
                 style=(photos["stripes"], photos["dots"]))
    summary = sweep.run_sweep(base, sw, str(tmp_path / "s"),
                              out=io.StringIO())
    assert summary["groups"] == 1
    finals = [images.load(str(tmp_path / "s" / f"member_{i:03d}" /
                               "final.png")) for i in range(4)]
    # Strength 0 ignores the blend; strength 1 follows it.
    assert np.abs(finals[0] - finals[1]).max() <= 1
    assert np.abs(finals[2] - finals[3]).mean() > 5
    assert np.abs(finals[0] - finals[2]).mean() > 5


def test_luminance_preservation_keeps_the_photo_colours(tmp_path, photos):
    final = runner.execute(_fast(content=photos["a"],
                                 style=(photos["dots"],),
                                 **{"color.preserve": "luminance"}),
                           str(tmp_path / "l"), out=io.StringIO())
    out, photo = images.load(final), images.load(photos["a"], 64)
    inside = np.all((out > 2) & (out < 253), axis=-1)
    iq = np.abs(color.rgb_to_yiq(out)[..., 1:] -
                color.rgb_to_yiq(photo)[..., 1:])
    assert inside.mean() > 0.5 and iq[inside].max() < 1.5


def test_init_fast_starts_the_optimisation_from_the_painting(photos):
    c = cfg.override(load_preset("tiny"), {
        "content": photos["a"], "style": (photos["dots"],), "size": 64,
        "init": "fast", "optim.steps": 1, "log_every": 1,
        "optim.learning_rate": 1e-6})
    start, _ = driver.stylize(plan_lib.build(c), vgg19.random_params(0),
                              fast_weights.load_params())
    fast, _ = driver.stylize(plan_lib.build(_fast(content=photos["a"],
                                   style=(photos["dots"],))))
    assert np.abs(start - fast).max() < 1.0


@pytest.mark.parametrize("over,message", [
    ({"style": ("NOTE",)}, "not a readable image"),
    ({"content": "EMPTY"}, "empty"),
    ({"fast.weights": "BIN"}, "unknown fast weights format"),
    ({"fast.weights": "WHEEL"}, "refusing it"),
    ({"fast.strength": 1.5}, "fast.strength"),
])
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, photos, capsys,
                                                  over, message):
    files = {"NOTE": tmp_path / "note.jpg", "EMPTY": tmp_path / "empty.png",
             "BIN": tmp_path / "weights.bin",
             "WHEEL": tmp_path / fast_weights.WHEEL.filename}
    files["NOTE"].write_text("not an image")
    files["EMPTY"].write_bytes(b"")
    files["BIN"].write_bytes(b"\x00" * 16)
    files["WHEEL"].write_bytes(b"PK\x03\x04 tampered")
    over = {k: tuple(str(files.get(x, x)) for x in v)
            if isinstance(v, tuple) else str(files[v]) if v in files else v
            for k, v in over.items()}
    c = _fast(**{"content": photos["a"], "style": (photos["dots"],),
                 **over})
    wd = tmp_path / "run"
    assert runner.main(c, str(wd)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not wd.exists()
