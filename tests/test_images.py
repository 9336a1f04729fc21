"""Tests for nst_jax.io.images: every edge case is built here with Pillow."""


import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageFile

from nst_jax import plan as plan_lib
from nst_jax.errors import UserError
from nst_jax.io import images

RED = (255, 0, 0)


def _noise(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), np.uint8)


def _is_red(px):
    return px[0] > 200 and px[1] < 60 and px[2] < 60


# ---------------------------------------------------------------- orientation

@pytest.mark.parametrize("orientation, shape, marker", [
    (1, (20, 40), (5, 5)),      # as stored: marker top-left
    (3, (20, 40), (15, 35)),    # rotated 180: bottom-right
    (6, (40, 20), (5, 15)),     # rotated 90 CW: top-right
    (8, (40, 20), (35, 5)),     # rotated 90 CCW: bottom-left
])
def test_exif_orientation(tmp_path, orientation, shape, marker):
    im = Image.new("RGB", (40, 20), (0, 0, 0))
    im.paste(RED, (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / f"o{orientation}.jpg"
    im.save(path, quality=95, exif=exif.tobytes())
    rgb = images.load(path)
    assert rgb.shape == shape + (3,) and rgb.dtype == np.float32
    assert _is_red(rgb[marker])
    # The opposite corner stays black.
    assert rgb[shape[0] - 1 - marker[0], shape[1] - 1 - marker[1]].max() < 60


# ---------------------------------------------------------------- colour modes

def test_greyscale_l(tmp_path):
    a = np.array([[0, 100, 255]], np.uint8)
    Image.fromarray(a).save(tmp_path / "g.png")
    rgb = images.load(tmp_path / "g.png")
    assert rgb.shape == (1, 3, 3)
    np.testing.assert_array_equal(rgb[..., 0], a)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    a = np.array([[0, 32768, 65535]], np.uint16)
    im = Image.fromarray(a)
    assert im.mode == "I;16"
    im.save(tmp_path / "g16.png")
    rgb = images.load(tmp_path / "g16.png")
    assert rgb.shape == (1, 3, 3)
    np.testing.assert_allclose(rgb[0, :, 1], [0.0, 127.5, 255.0], atol=0.01)


def _palette_image():
    im = Image.new("P", (2, 1))
    im.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    im.putpixel((0, 0), 0)
    im.putpixel((1, 0), 1)
    return im


def test_palette_without_transparency(tmp_path):
    _palette_image().save(tmp_path / "p.png")
    rgb = images.load(tmp_path / "p.png")
    np.testing.assert_array_equal(rgb[0], [[255, 0, 0], [0, 0, 255]])


def test_palette_with_transparency_goes_white(tmp_path):
    _palette_image().save(tmp_path / "pt.png", transparency=1)
    rgb = images.load(tmp_path / "pt.png")
    np.testing.assert_array_equal(rgb[0], [[255, 0, 0], [255, 255, 255]])


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in (RED, (0, 0, 255))]
    frames[0].save(tmp_path / "a.gif", save_all=True,
                   append_images=frames[1:], duration=100, loop=0)
    rgb = images.load(tmp_path / "a.gif")
    assert rgb.shape == (8, 8, 3)
    np.testing.assert_array_equal(rgb[4, 4], RED)


def test_rgba_composited_on_white(tmp_path):
    a = np.array([[[0, 0, 0, 0], [0, 0, 0, 255], [0, 0, 0, 128]]], np.uint8)
    Image.fromarray(a).save(tmp_path / "rgba.png")
    rgb = images.load(tmp_path / "rgba.png")
    np.testing.assert_allclose(rgb[0, 0], [255, 255, 255])
    np.testing.assert_allclose(rgb[0, 1], [0, 0, 0])
    np.testing.assert_allclose(rgb[0, 2], [127] * 3, atol=0.01)


def test_la_composited_on_white(tmp_path):
    im = Image.new("LA", (2, 1))
    im.putpixel((0, 0), (0, 0))
    im.putpixel((1, 0), (50, 255))
    im.save(tmp_path / "la.png")
    rgb = images.load(tmp_path / "la.png")
    np.testing.assert_allclose(rgb[0], [[255] * 3, [50] * 3])


def test_cmyk_jpeg_to_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "c.jpg",
                                                      quality=95)
    rgb = images.load(tmp_path / "c.jpg")
    assert rgb.shape == (16, 16, 3)
    np.testing.assert_allclose(rgb.mean(axis=(0, 1)), RED, atol=8)


# ---------------------------------------------------------------- resizing

@pytest.mark.parametrize("hw, size, expected", [
    ((30, 60), 20, (10, 20)),     # landscape
    ((61, 20), 30, (30, 10)),     # portrait, short side rounded
    ((1, 100), 10, (1, 10)),      # short side never below 1
    ((8, 8), 32, (32, 32)),       # upscaling
])
def test_resize_long_side_dims(tmp_path, hw, size, expected):
    x = _noise(*hw).astype(np.float32)
    assert images.resize_long_side(x, size).shape == expected + (3,)
    Image.fromarray(_noise(*hw)).save(tmp_path / "r.png")
    rgb = images.load(tmp_path / "r.png", size)
    assert rgb.shape == expected + (3,)
    assert rgb.min() >= 0 and rgb.max() <= 255


def test_resize_keeps_float_precision():
    x = np.full((4, 6, 2), 0.25, np.float32)
    x[..., 1] = -3.5
    y = images.resize(x, (9, 5))
    assert y.shape == (9, 5, 2) and y.dtype == np.float32
    np.testing.assert_allclose(y[..., 0], 0.25, atol=1e-5)
    np.testing.assert_allclose(y[..., 1], -3.5, atol=1e-5)
    assert images.resize(x[..., 0], (2, 3)).shape == (2, 3)


# ---------------------------------------------------------------- VGG space

def test_vgg_round_trip_and_channel_order():
    x = np.random.default_rng(1).uniform(0, 255, (2, 4, 5, 3)).astype(
        np.float32)
    v = images.to_vgg(x)
    assert v.shape == x.shape and v.dtype == np.float32
    np.testing.assert_allclose(images.from_vgg(v), x, atol=1e-4)
    red = images.to_vgg(np.array([[[255.0, 0.0, 0.0]]], np.float32))
    np.testing.assert_allclose(red[0, 0], [-103.939, -116.779, 255 - 123.68],
                               rtol=1e-6)


def test_to_vgg_under_jit():
    x = np.random.default_rng(2).uniform(0, 255, (3, 4, 3)).astype(np.float32)
    v = jax.jit(images.to_vgg)(jnp.asarray(x))
    assert isinstance(v, jax.Array) and v.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(v), images.to_vgg(x), atol=1e-5)
    back = jax.jit(images.from_vgg)(v)
    np.testing.assert_allclose(np.asarray(back), x, atol=1e-4)


def test_to_uint8_clips_and_rounds_half_even():
    x = np.array([-5, 0.5, 1.5, 2.5, 254.6, 300, np.nan], np.float32)
    np.testing.assert_array_equal(images.to_uint8(x),
                                  [0, 0, 2, 2, 255, 255, 0])
    assert images.to_uint8(x).dtype == np.uint8


# ---------------------------------------------------------------- saving

def test_png_round_trip_exact(tmp_path):
    x = _noise(7, 9).astype(np.float32)
    path = tmp_path / "new" / "dir" / "out.png"
    images.save(path, x[None])
    np.testing.assert_array_equal(images.load(path), x)


@pytest.mark.parametrize("ext", [".jpg", ".jpeg", ".webp", ".tif", ".tiff",
                                 ".bmp", ".PNG"])
def test_save_other_formats(tmp_path, ext):
    x = _noise(6, 10).astype(np.float32)
    images.save(tmp_path / f"out{ext}", x)
    assert images.load(tmp_path / f"out{ext}").shape == (6, 10, 3)


def test_png_bytes_deterministic(tmp_path):
    x = _noise(16, 16).astype(np.float32) + 0.25
    images.save(tmp_path / "a.png", x)
    images.save(tmp_path / "b.png", x)
    a, b = (tmp_path / "a.png").read_bytes(), (tmp_path / "b.png").read_bytes()
    assert a == b


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    images.save(tmp_path / "out.png", np.zeros((4, 4, 3), np.float32))
    images.save(tmp_path / "out.png", np.ones((4, 4, 3), np.float32))
    assert os.listdir(tmp_path) == ["out.png"]
    np.testing.assert_array_equal(images.load(tmp_path / "out.png"), 1.0)


def test_failed_save_leaves_existing_file(tmp_path, monkeypatch):
    target = tmp_path / "out.png"
    target.write_bytes(b"old")

    def boom(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(UserError, match="out.png"):
        images.save(target, np.zeros((4, 4, 3), np.float32))
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["out.png"]


def test_save_unknown_extension_or_bad_parent(tmp_path):
    (tmp_path / "out.xyz").write_bytes(b"old")
    with pytest.raises(UserError, match="unknown extension"):
        images.save(tmp_path / "out.xyz", np.zeros((2, 2, 3)))
    assert (tmp_path / "out.xyz").read_bytes() == b"old"
    (tmp_path / "afile").write_bytes(b"")
    with pytest.raises(UserError, match="afile"):
        images.save(tmp_path / "afile" / "x.png", np.zeros((2, 2, 3)))
    with pytest.raises(UserError, match="shape"):
        images.save(tmp_path / "x.png", np.zeros((2, 2)))


# ---------------------------------------------------------------- bad inputs

def _truncated(tmp_path, fmt):
    path = tmp_path / f"cut.{fmt}"
    Image.fromarray(_noise(64, 64)).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _written(path, data):
    path.write_bytes(data)
    return path


BAD_INPUTS = {
    "missing": lambda d: d / "nope.png",
    "directory": lambda d: d,
    "zero_bytes": lambda d: _written(d / "empty.png", b""),
    "text_as_png": lambda d: _written(d / "t.png", b"hello, not an image"),
    "truncated_jpeg": lambda d: _truncated(d, "jpg"),
    "truncated_png": lambda d: _truncated(d, "png"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_inputs_raise_user_error(tmp_path, case):
    path = BAD_INPUTS[case](tmp_path)
    for call in (images.load, lambda p: images.load_mask(p, (4, 4))):
        with pytest.raises(UserError) as err:
            call(path)
        msg = str(err.value)
        assert str(path) in msg and "\n" not in msg


def test_truncation_caught_even_if_pillow_told_to_allow_it(tmp_path,
                                                           monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    with pytest.raises(UserError, match="truncated"):
        images.load(_truncated(tmp_path, "jpg"))
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored afterwards


def test_too_many_pixels(tmp_path):
    path = tmp_path / "big.png"
    Image.fromarray(_noise(20, 20)).save(path)
    with pytest.raises(UserError, match="max_pixels") as err:
        images.load(path, max_pixels=100)
    assert str(path) in str(err.value)
    assert images.load(path, max_pixels=400).shape == (20, 20, 3)


def test_pillow_bomb_error_becomes_user_error(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.fromarray(_noise(20, 20)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50)
    with pytest.raises(UserError, match="too many pixels") as err:
        images.load(path, max_pixels=None)
    assert str(path) in str(err.value)


def test_min_side(tmp_path):
    path = tmp_path / "small.png"
    Image.fromarray(_noise(10, 100)).save(path)
    with pytest.raises(UserError, match="smaller than") as err:
        images.load(path, min_side=16)
    assert str(path) in str(err.value)
    # Big enough in the file, too thin once resized to the long side.
    with pytest.raises(UserError, match="becomes 50x5"):
        images.load(path, 50, min_side=8)
    assert images.load(path, 200, min_side=8).shape == (20, 200, 3)


def test_bad_size_argument(tmp_path):
    path = tmp_path / "ok.png"
    Image.fromarray(_noise(4, 4)).save(path)
    with pytest.raises(UserError, match="positive integer"):
        images.load(path, 0)


# ---------------------------------------------------------------- masks, hash

def test_load_mask(tmp_path):
    a = np.zeros((4, 4), np.uint8)
    a[:, :2] = 255
    Image.fromarray(a).save(tmp_path / "m.png")
    m = images.load_mask(tmp_path / "m.png", (8, 16))
    assert m.shape == (8, 16) and m.dtype == np.float32
    assert m.min() >= 0 and m.max() <= 1
    np.testing.assert_allclose(m[:, 0], 1.0)
    np.testing.assert_allclose(m[:, -1], 0.0)


def test_mask_transparent_counts_as_black(tmp_path):
    Image.new("RGBA", (4, 4), (255, 255, 255, 0)).save(tmp_path / "t.png")
    np.testing.assert_allclose(images.load_mask(tmp_path / "t.png", (4, 4)),
                               0.0)


@pytest.mark.slow
def test_a_run_decodes_each_input_once(real_params, tmp_path, monkeypatch):
    # The portrait preset reads the photo at two scales, in its checks,
    # for the face search and for the alignment: one decode per file.
    from nst_jax.app import runner
    from nst_jax.app.config_file import get_config
    from nst_jax import config as cfg
    import collections
    import io as stdio
    import pathlib
    calls = collections.Counter()
    real = images._read

    def counted(path, *args, **kwargs):
        calls[os.path.abspath(os.fspath(path))] += 1
        return real(path, *args, **kwargs)
    monkeypatch.setattr(images, "_read", counted)
    images.forget_decoded()
    root = pathlib.Path(__file__).resolve().parent.parent
    c = cfg.override(get_config(str(root / "configs" / "portrait.py")), {
        "multiscale.sizes": (32, 48), "multiscale.steps": (2, 2),
        "size": 48, "log_every": 2, "save_every": 0,
        "portrait.match_size": 48, "portrait.local_layers": ("relu2_1",)})
    runner.execute(c, str(tmp_path / "run"), vgg_params=real_params,
                   out=stdio.StringIO())
    content = os.path.abspath(plan_lib.DEFAULT_CONTENT)
    assert calls[content] == 1, calls
    assert calls[os.path.abspath(plan_lib.DEFAULT_STYLE)] == 1, calls
