"""Image files in and out, and the VGG pre/post-processing.

Everything a user can get wrong about an input image (a missing file, a
truncated download, a 16-bit PNG, a phone photo stored sideways) is handled
here, so the rest of the package only ever sees float32 RGB arrays in 0..255
and every bad file becomes one ``UserError`` line that names the path.
"""

from __future__ import annotations

import collections
import os
import struct
import warnings
import zlib
from typing import Any, Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageFile, ImageOps

from nst_jax.errors import UserError
from nst_jax.io import atomic

PathLike = Union[str, "os.PathLike[str]"]

# The VGG19 weights were trained on BGR, 0-255, minus this mean pixel (B, G, R).
MEAN_BGR = (103.939, 116.779, 123.68)
# Same as Pillow's own warning threshold, so by default we refuse exactly what
# Pillow would warn about, but as a clean UserError before any decoding.
DEFAULT_MAX_PIXELS = 89_478_485

_MEAN_BGR = np.asarray(MEAN_BGR, np.float32)
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
            ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}
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


def _long_side_hw(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) with the long side equal to ``size`` and the aspect kept."""
    if h >= w:
        return size, max(1, int(round(w * size / h)))
    return max(1, int(round(h * size / w))), size


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
    return _long_side_hw(*header_hw(path), size)


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


def resize(rgb: Any, hw: Sequence[int],
           resample: int = Image.LANCZOS) -> np.ndarray:
    """Resizes an (H, W, C) or (H, W) float array to ``hw`` without quantising.

    Each channel goes through Pillow as a 32-bit float image, so values keep
    full precision and are not clipped (Lanczos may overshoot slightly).
    """
    x = np.asarray(rgb, np.float32)
    h, w = int(hw[0]), int(hw[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize target must be positive, got {tuple(hw)}")
    if x.shape[:2] == (h, w):
        return x.copy()
    if x.ndim == 2:
        return resize(x[..., None], hw, resample)[..., 0]
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(x[..., c]))
                        .resize((w, h), resample), np.float32)
             for c in range(x.shape[-1])]
    return np.stack(chans, axis=-1)


def resize_long_side(rgb: Any, size: int) -> np.ndarray:
    """Resizes so the long side is ``size`` px, keeping the aspect ratio."""
    x = np.asarray(rgb, np.float32)
    return resize(x, _long_side_hw(x.shape[0], x.shape[1], int(size)))


def to_vgg(rgb: Any) -> Any:
    """RGB 0..255 -> VGG input: BGR minus the mean pixel.

    Works on (..., 3) numpy or jax arrays (slicing and arithmetic only, so it
    traces under ``jax.jit``) and returns the same kind of array.
    """
    return rgb[..., ::-1] - _MEAN_BGR


def from_vgg(x: Any) -> Any:
    """Exact inverse of ``to_vgg``: RGB 0..255, not clipped."""
    return (x + _MEAN_BGR)[..., ::-1]


def to_uint8(rgb: Any) -> np.ndarray:
    """Clips to 0..255 and rounds half-to-even; NaN becomes 0."""
    x = np.nan_to_num(np.asarray(rgb, np.float32), nan=0.0, posinf=255.0,
                      neginf=0.0)
    return np.rint(np.clip(x, 0.0, 255.0)).astype(np.uint8)


def save(path: PathLike, rgb: Any) -> None:
    """Atomically writes an RGB image; the format comes from the extension.

    Args:
        path: Output file (.png, .jpg/.jpeg at quality 95, .webp, .tif/.tiff,
            .bmp). Parent folders are created.
        rgb: float (H, W, 3) or (1, H, W, 3) in 0..255 (clipped and rounded).

    Raises:
        UserError: Unknown extension, bad array shape, or the file cannot be
            written. An existing file at ``path`` is then left untouched.
    """
    p = os.fspath(path)
    fmt = _FORMATS.get(os.path.splitext(p)[1].lower())
    if fmt is None:
        raise UserError(f"cannot save image {p}: unknown extension; use one "
                        f"of {', '.join(sorted(_FORMATS))}")
    x = np.asarray(rgb)
    if x.ndim == 4 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 3 or x.shape[-1] != 3:
        raise UserError(f"cannot save image {p}: expected an (H, W, 3) array, "
                        f"got shape {x.shape}")
    im = Image.fromarray(to_uint8(x))
    # PNG gets no metadata and fixed settings, so equal pixels give equal bytes.
    opts = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95},
            "PNG": {"compress_level": 6, "optimize": False}}.get(fmt, {})
    try:
        atomic.write(p, lambda f: im.save(f, format=fmt, **opts))
    except OSError as e:
        raise UserError(f"cannot save image {p}: {e.strerror or e}; check "
                        "that the folder exists, is writable and has "
                        "space") from None
