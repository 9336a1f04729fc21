"""sha256 of files and of parameter trees."""

import hashlib
import os

import numpy as np
import pytest

from nst_jax.errors import UserError
from nst_jax.io import hashing
from nst_jax.vgg import vgg19


def test_sha256_file(tmp_path):
    (tmp_path / "e").write_bytes(b"")
    assert hashing.sha256_file(tmp_path / "e") == hashlib.sha256().hexdigest()
    data = os.urandom(3 << 20)  # Several read blocks.
    (tmp_path / "d").write_bytes(data)
    assert hashing.sha256_file(tmp_path / "d") == hashlib.sha256(
        data).hexdigest()
    with pytest.raises(UserError, match="nope"):
        hashing.sha256_file(tmp_path / "nope")


def test_params_sha256_sees_values_and_names():
    a = {"conv1_1": {"kernel": np.zeros((2, 2), np.float32),
                     "bias": np.ones(2, np.float32)}}
    same = {"conv1_1": {"bias": np.ones(2, np.float32),
                        "kernel": np.zeros((2, 2), np.float32)}}
    assert hashing.params_sha256(a) == hashing.params_sha256(same)
    changed = {"conv1_1": dict(a["conv1_1"],
                               bias=np.asarray([1, 1.5], np.float32))}
    renamed = {"conv1_2": a["conv1_1"]}
    digests = {hashing.params_sha256(x) for x in (a, changed, renamed)}
    assert len(digests) == 3
    assert len(hashing.params_sha256(vgg19.random_params(0))) == 64
