"""The landmark file: hand-placed face points, read, checked and written,
and brought to the size their image is used at.

Selim et al. 2016 align the painting to the photo with a dense morph fitted
to facial landmarks (:mod:`nst_jax.portrait.landmark_warp`). A landmark
file is JSON::

    {"image": "mona_lisa.jpg", "size": [677, 1024],
     "points": [[273, 232], ...], "names": ["left_eye", ...]}

``size`` is (width, height) of the image the points were placed on and each
point is (x, y) in its pixels (x right, y down, pixel centres at integers;
"left" means image left). :func:`load` returns (y, x) rescaled to the size
the image is used at.
"""

from __future__ import annotations

import json
import math
import os
from typing import NamedTuple, Sequence, Union

import numpy as np

from nst_jax.errors import UserError
from nst_jax.portrait import tps

#: The standard points, in order, of the files in tests/data/landmarks.
NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right",
         "mouth_centre", "chin", "face_left", "face_right")
MIN_POINTS = 5
_KEYS = {"image", "size", "points", "names"}
_OPTIONAL_KEYS = {"note"}


class Landmarks(NamedTuple):
    """A validated landmark file, as recorded (x, y at ``size_wh``)."""
    path: str
    image: str
    size_wh: tuple[float, float]
    points_xy: np.ndarray
    names: tuple[str, ...]


def _fail(path: str, problem: str) -> UserError:
    return UserError(" ".join(f"landmarks {path}: {problem}".split()))


def _is_number(v) -> bool:
    # bool is an int in Python; true/false is never a coordinate.
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _parse(path: str, data) -> Landmarks:
    if not isinstance(data, dict):
        raise _fail(path, "must hold a JSON object with image, size, points "
                    "and names")
    missing, extra = _KEYS - set(data), set(data) - _KEYS - _OPTIONAL_KEYS
    if missing or extra:
        problems = [f"{what} keys {sorted(keys)}" for what, keys in
                    (("missing", missing), ("unknown", extra)) if keys]
        raise _fail(path, f"{', '.join(problems)}; expected "
                    f"{sorted(_KEYS)} (and optionally a note)")
    if not isinstance(data["image"], str):
        raise _fail(path, "image must be a file name (a string)")
    size, pts, names = data["size"], data["points"], data["names"]
    if (not isinstance(size, list) or len(size) != 2
            or not all(_is_number(v) for v in size)):
        raise _fail(path, f"size must be [width, height], got {size!r}")
    if not all(math.isfinite(v) and v > 0 for v in size):
        raise _fail(path, f"size must be positive and finite, got {size}")
    if not isinstance(pts, list) or not all(
            isinstance(p, list) and len(p) == 2
            and all(_is_number(v) for v in p) for p in pts):
        raise _fail(path, "points must be a list of [x, y] number pairs")
    if not isinstance(names, list) or not all(isinstance(n, str)
                                              for n in names):
        raise _fail(path, "names must be a list of strings")
    if len(names) != len(pts):
        raise _fail(path, f"{len(pts)} points but {len(names)} names")
    if len(set(names)) != len(names):
        raise _fail(path, f"repeated names in {names}")
    if len(pts) < MIN_POINTS:
        raise _fail(path, f"{len(pts)} points; at least {MIN_POINTS} are "
                    "needed to fit a warp")
    xy = np.asarray(pts, np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(xy)):
        raise _fail(path, "points hold NaN or infinite coordinates")
    w, h = float(size[0]), float(size[1])
    outside = [n for n, (x, y) in zip(names, xy)
               if not (-0.5 <= x <= w - 0.5 and -0.5 <= y <= h - 0.5)]
    if outside:
        raise _fail(path, f"points {outside} lie outside the {w:g}x{h:g} "
                    "image")
    try:
        tps.check_geometry(xy)
    except ValueError as e:
        raise _fail(path, str(e)) from None
    return Landmarks(path, data["image"], (w, h), xy, tuple(names))


def read(path: Union[str, os.PathLike]) -> Landmarks:
    """Reads and validates a landmark file (no image size needed).

    Raises:
      UserError: unreadable, not JSON, wrong structure, fewer than
        ``MIN_POINTS`` points, non-finite or out-of-image points, points
        that coincide or lie on one line; one line naming the file.
    """
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise _fail(path, f"cannot be read ({e.strerror or e})") from None
    except ValueError as e:  # JSONDecodeError and bad UTF-8
        raise _fail(path, f"is not valid JSON ({e})") from None
    return _parse(path, data)


def to_json(image: str, size_wh: Sequence[float], points_xy: np.ndarray,
            names: Sequence[str] = NAMES, note: str = "") -> str:
    """A landmark file's text (points clipped into the image), which
    :func:`read` accepts back."""
    w, h = float(size_wh[0]), float(size_wh[1])
    xy = np.clip(np.asarray(points_xy, np.float64), -0.5,
                 [w - 0.5, h - 0.5])
    data = {"image": image, "size": [size_wh[0], size_wh[1]],
            "points": np.round(xy, 1).tolist(), "names": list(names)}
    if note:
        data["note"] = note
    return json.dumps(data, indent=1) + "\n"


def load(path: Union[str, os.PathLike, Landmarks],
         image_hw: Sequence[int]) -> np.ndarray:
    """Landmarks as (N, 2) float32 (y, x) in an (H, W) copy of the image.

    ``path`` is a file, or what :func:`read` made of one. The file's
    ``size`` may differ from ``image_hw`` (the image is used resized) but
    must have its aspect ratio, up to one pixel of rounding.

    Raises:
      UserError: anything :func:`read` refuses, or an aspect mismatch.
    """
    lm = path if isinstance(path, Landmarks) else read(path)
    h, w = float(image_hw[0]), float(image_hw[1])
    (fw, fh), ratio = lm.size_wh, (h / w) / (lm.size_wh[1] / lm.size_wh[0])
    # Resizing rounds each side to whole pixels: allow that much.
    tol = max(0.01, 1.0 / min(h, w, fh, fw))
    if abs(ratio - 1.0) > tol:
        raise _fail(lm.path, f"recorded on a {fw:g}x{fh:g} image but the "
                    f"image is {w:g}x{h:g} (different aspect ratio); "
                    "landmarks must be placed on the same picture, uncropped")
    return to_frame(lm.points_xy[:, ::-1], (fh, fw), (h, w))


def check_pair(content, style) -> None:
    """Refuses a content/style pair that does not correspond point by point.

    Args:
      content, style: :class:`Landmarks` (counts and names compared) or
        (N, 2) arrays (counts compared).

    Raises:
      UserError: different counts or different name lists.
    """
    def describe(x, role):
        if isinstance(x, Landmarks):
            return f"{role} {x.path}", len(x.points_xy)
        return role, len(np.asarray(x))

    (c, nc), (s, ns) = describe(content, "content"), describe(style, "style")
    if nc != ns:
        raise UserError(f"landmarks: {c} has {nc} points, {s} has {ns}; "
                        "they must list the same points")
    if (isinstance(content, Landmarks) and isinstance(style, Landmarks)
            and content.names != style.names):
        raise UserError(f"landmarks: {c} names {list(content.names)} differ "
                        f"from {s} names {list(style.names)}; list the same "
                        "points in one order")


def to_frame(points_yx: np.ndarray, from_hw: Sequence[float],
             to_hw: Sequence[float]) -> np.ndarray:
    """(y, x) points of an image of ``from_hw`` in a resized ``to_hw`` copy.

    Each axis is scaled separately, pixel centres mapping to pixel centres
    (``(p + 0.5) * to / from - 0.5``, as ``alignment.resize_flow``).
    """
    scale = np.asarray(to_hw, np.float64) / np.asarray(from_hw, np.float64)
    pts = np.asarray(points_yx, np.float64)
    return ((pts + 0.5) * scale - 0.5).astype(np.float32)
