"""Reading image files: checked, decoded once, resized.

Everything a user can get wrong about an input image (a missing file, a
truncated download, a 16-bit PNG, a phone photo stored sideways) is handled
here, so the rest of the package only ever sees float32 RGB arrays in 0..255
and every bad file becomes one ``UserError`` line that names the path.

Writing (:mod:`nst_jax.io.saving`), resizing (:mod:`nst_jax.io.resizing`)
and the VGG pre/post-processing (:mod:`nst_jax.io.vgg_pixels`) live in
modules of their own; their names are here too, so ``images.save``,
``images.resize`` and ``images.to_vgg`` stay where callers look for them.
"""

from __future__ import annotations

import collections
import os
import struct
import warnings
import zlib
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps

from nst_jax.errors import UserError
from nst_jax.io.resizing import long_side_hw, resize, resize_long_side
from nst_jax.io.saving import PathLike, save, to_uint8
from nst_jax.io.vgg_pixels import MEAN_BGR, from_vgg, to_vgg

__all__ = ["DECODED_BYTES", "DEFAULT_MAX_PIXELS", "MEAN_BGR", "PathLike",
           "forget_decoded", "from_vgg", "header_hw", "load", "load_mask",
           "resize", "resize_long_side", "save", "to_uint8", "to_vgg",
           "working_hw"]

# Same as Pillow's own warning threshold, so by default we refuse exactly what
# Pillow would warn about, but as a clean UserError before any decoding.
DEFAULT_MAX_PIXELS = 89_478_485
# What Pillow and its codecs raise on corrupt or truncated data.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error,
                  zlib.error, IndexError, KeyError)
_WHITE, _BLACK = 255.0, 0.0


def _fail(path: str, problem: str, advice: str) -> UserError:
    # Pillow's messages are folded in; keep the whole thing on one line.
    return UserError(f"image {path}: {' '.join(problem.split())}; {advice}")


def _check_file(path: str, allow_empty: bool = False) -> None:
    """Turns the common "wrong path" mistakes into clear messages."""
    if not os.path.exists(path):
        raise _fail(path, "file not found", "check the path and spelling")
    if os.path.isdir(path):
        raise _fail(path, "is a directory, not a file",
                    "give the path of an image file inside it")
    if not allow_empty and os.path.getsize(path) == 0:
        raise _fail(path, "file is empty (0 bytes)",
                    "re-download or re-export the image")


def header_hw(path: PathLike) -> tuple[int, int]:
    """(h, w) as :func:`load` will see it, from the header alone (EXIF
    orientations that turn the image by 90 degrees swap the two)."""
    p = os.fspath(path)
    _check_file(p)
    try:
        with Image.open(p) as im:
            w, h = im.size
            try:
                turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            except _DECODE_ERRORS:  # A damaged file: load() says how.
                turned = False
    except _DECODE_ERRORS:
        raise _fail(p, "not a readable image (unknown or corrupt format)",
                    "use a PNG, JPEG, WebP, TIFF, BMP or GIF file") from None
    return (w, h) if turned else (h, w)


def working_hw(path: PathLike, size: int) -> tuple[int, int]:
    """(h, w) of the image loaded at long side ``size``."""
    return long_side_hw(*header_hw(path), size)


def _as_float_rgb(im: Image.Image, background: float) -> np.ndarray:
    """Decoded image of any mode -> float32 (H, W, 3) RGB in 0..255."""
    mode = im.mode
    if mode.startswith("I;16") or mode == "I":
        # 16-bit greyscale (PNG/TIFF): scale the full range, do not clip it.
        # Pillow also uses "I" for such files, so "I" is read the same way.
        g = np.asarray(im).astype(np.float32)
        g = np.clip(g, 0, 65535) * np.float32(255.0 / 65535.0)
        return np.repeat(g[..., None], 3, axis=-1)
    if mode == "F":
        # Float TIFFs come either as 0..1 or 0..255; 0..1 is recognisable.
        g = np.nan_to_num(np.asarray(im, np.float32))
        if g.size and g.max() <= 1.0:
            g = g * 255.0
        return np.repeat(np.clip(g, 0, 255)[..., None], 3, axis=-1)
    has_alpha = mode in ("RGBA", "RGBa", "LA", "La", "PA") or (
        "transparency" in im.info and mode in ("P", "L", "RGB"))
    if has_alpha:
        # Composite in float so half-transparent edges blend smoothly.
        rgba = np.asarray(im.convert("RGBA"), np.float32)
        alpha = rgba[..., 3:] / 255.0
        return rgba[..., :3] * alpha + background * (1.0 - alpha)
    return np.asarray(im.convert("RGB"), np.float32)


def _read(path: PathLike, max_pixels: Optional[int], background: float,
          min_side: Optional[int] = None) -> np.ndarray:
    """Opens, validates and fully decodes one image file (first frame)."""
    p = os.fspath(path)
    _check_file(p)
    try:
        # Our own pixel check below replaces Pillow's bomb warning; Pillow
        # still raises DecompressionBombError past twice its limit.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except Image.DecompressionBombError as e:
        raise _fail(p, f"too many pixels to open safely ({e})",
                    "downscale the image first") from None
    except PermissionError:
        raise _fail(p, "permission denied", "make the file readable") from None
    except _DECODE_ERRORS:
        raise _fail(p, "not a readable image (unknown or corrupt format)",
                    "use a PNG, JPEG, WebP, TIFF, BMP or GIF file") from None
    with im:
        # The header gives the size without decoding: refuse bombs here.
        w, h = im.size
        if max_pixels is not None and w * h > max_pixels:
            raise _fail(p, f"{w}x{h} = {w * h} pixels is more than the "
                        f"limit of {max_pixels}",
                        "downscale it or raise the max_pixels setting")
        if min_side is not None and min(w, h) < min_side:
            raise _fail(p, f"{w}x{h} px is smaller than the {min_side} px "
                        "the network needs on each side",
                        "use a larger image")
        # Image.open is lazy: force a full decode now, with truncated files
        # treated as errors, so a half-downloaded file cannot slip through.
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            im.load()
            oriented = ImageOps.exif_transpose(im)
            return _as_float_rgb(oriented, background)
        except _DECODE_ERRORS as e:
            raise _fail(p, f"corrupt or truncated image data ({e})",
                        "re-download or re-export the file") from None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved


#: Decoded images kept, newest last, and the bytes they may hold: a run
#: reads its photo at every scale and in several checks, so each file is
#: decoded once and resized in memory (the resize is the same either way).
_DECODED: "collections.OrderedDict[tuple, np.ndarray]" = (
    collections.OrderedDict())
DECODED_BYTES = 1 << 29


def _decoded(path: PathLike, max_pixels: Optional[int], background: float,
             min_side: Optional[int] = None) -> np.ndarray:
    """:func:`_read`, once per file version: read-only, shared."""
    _check_file(os.fspath(path))
    p = os.path.abspath(os.fspath(path))
    st = os.stat(p)
    key = (p, st.st_size, st.st_mtime_ns, max_pixels, background)
    rgb = _DECODED.get(key)
    if rgb is not None and min_side is not None and (
            min(rgb.shape[:2]) < min_side):
        rgb = None  # _read says why, as for a first read.
    if rgb is None:
        rgb = _read(path, max_pixels, background, min_side)
        rgb.setflags(write=False)
        _DECODED[key] = rgb
        while sum(a.nbytes for a in _DECODED.values()) > DECODED_BYTES and (
                len(_DECODED) > 1):
            _DECODED.popitem(last=False)
    _DECODED.move_to_end(key)
    return rgb


def forget_decoded() -> None:
    """Drops every decoded image kept by :func:`load` and :func:`load_mask`
    (they are read again from their files next time)."""
    _DECODED.clear()


def load(path: PathLike, size: Optional[int] = None,
         max_pixels: Optional[int] = DEFAULT_MAX_PIXELS,
         min_side: Optional[int] = None) -> np.ndarray:
    """Reads an image file as float32 RGB, EXIF-oriented, 0..255.

    Greyscale, palette, 16-bit, CMYK and transparent images are all turned
    into plain RGB; transparency is composited on white; animated images give
    their first frame.

    Args:
        path: Image file.
        size: Target long side in pixels (aspect kept, Lanczos); None keeps
            the file's size.
        max_pixels: Refuse files with more pixels than this (checked from the
            header, before decoding); None for no limit of ours.
        min_side: If given, refuse images whose short side (in the file, and
            after resizing to ``size``) is below this.

    Returns:
        float32 array (H, W, 3), values in 0..255.

    Raises:
        UserError: The file is missing, unreadable, corrupt, too large or
            too small; the message names the path.
    """
    if size is not None and (int(size) != size or size < 1):
        raise UserError(f"image size must be a positive integer, got {size}")
    rgb = _decoded(path, max_pixels, _WHITE, min_side)
    if size is not None:
        rgb = np.clip(resize_long_side(rgb, int(size)), 0.0, 255.0)
    else:
        rgb = rgb.copy()
    if min_side is not None and min(rgb.shape[:2]) < min_side:
        h, w = rgb.shape[:2]
        raise _fail(os.fspath(path), f"at long side {size} px it becomes "
                    f"{w}x{h}, smaller than the {min_side} px the network "
                    "needs", "use a larger size or a less elongated image")
    return rgb


def load_mask(path: PathLike, shape_hw: Sequence[int],
              max_pixels: Optional[int] = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Reads a greyscale mask resized (bilinear) to ``shape_hw``, in 0..1.

    Transparent pixels count as black (no style there): a mask painted in
    white on a transparent layer then means what it looks like.
    """
    rgb = _decoded(path, max_pixels, _BLACK)
    # ITU-R 601 luma, the same weights Pillow uses for RGB -> L.
    grey = rgb @ np.asarray([0.299, 0.587, 0.114], np.float32) / 255.0
    out = resize(grey[..., None], tuple(shape_hw), Image.BILINEAR)[..., 0]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
