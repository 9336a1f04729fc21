"""The port against independent computations with the real weights."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax.vgg import layers, vgg19

DATA = os.path.join(os.path.dirname(__file__), "data",
                    "vgg19_astronaut_64x64.npz")
RELUS = [l for l in vgg19.LAYERS if l.startswith("relu")]


def _numpy_vgg(params, x_HxWx3, upto, pooling="max"):
    """Plain float64 numpy VGG19: im2col 3x3 conv (zero padding 1, as a
    cross-correlation), ReLU, 2x2 stride-2 pooling that drops an odd last
    row/column. Shares nothing with nst_jax but the weights."""
    x = np.asarray(x_HxWx3, np.float64)
    out = {}
    for name in vgg19.LAYERS[:vgg19.LAYERS.index(upto) + 1]:
        if name.startswith("conv"):
            h, w, _ = x.shape
            p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            # Columns ordered (dy, dx, c_in), matching HWIO's flattening.
            cols = np.concatenate([p[dy:dy + h, dx:dx + w] for dy in range(3)
                                   for dx in range(3)], axis=-1)
            k = np.asarray(params[name]["kernel"], np.float64)
            # One 2-D matmul: numpy's stacked (3-D) matmul is ~10x slower.
            x = (cols.reshape(h * w, -1) @ k.reshape(-1, k.shape[-1])
                 + np.asarray(params[name]["bias"], np.float64)
                 ).reshape(h, w, -1)
        elif name.startswith("relu"):
            x = np.maximum(x, 0)
        else:
            h, w, c = x.shape
            x = x[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c)
            x = x.max(axis=(1, 3)) if pooling == "max" else x.mean((1, 3))
        out[name] = x
    return out


def _rel_err(got, ref):
    return np.abs(np.asarray(got, np.float64) - ref).max() / np.abs(ref).max()


def test_every_relu_matches_numpy_on_odd_sized_image(real_params):
    # 45x37: odd sizes at every pooling stage (45->22->11->5->2).
    x = np.random.RandomState(0).uniform(-120, 130, (45, 37, 3))
    ref = _numpy_vgg(real_params, x, "relu5_4")
    got = vgg19.extract(real_params, jnp.asarray(x[None], jnp.float32),
                        RELUS)
    assert set(got) == set(RELUS)
    for l in RELUS:
        assert got[l].shape[1:] == ref[l].shape, l
        assert np.abs(ref[l]).max() > 0, l  # Not a vacuous comparison.
        assert _rel_err(got[l][0], ref[l]) <= 1e-4, l


def test_matches_shared_reference_activations(real_params):
    ref = np.load(DATA)
    layers = [k for k in ref.files if k.startswith("relu")]
    assert set(layers) == {"relu1_1", "relu1_2", "relu2_1", "relu3_1",
                           "relu4_1", "relu4_2", "relu5_1"}
    got = vgg19.extract(real_params, jnp.asarray(ref["input_bgr"]), layers)
    for l in layers:
        assert got[l].shape == ref[l].shape, l
        assert _rel_err(got[l], ref[l]) <= 1e-4, l


def test_avg_pooling_matches_numpy(real_params):
    x = np.random.RandomState(2).uniform(-120, 130, (19, 23, 3))
    ref = _numpy_vgg(real_params, x, "relu3_1", pooling="avg")
    got = vgg19.extract(real_params, jnp.asarray(x[None], jnp.float32),
                        ["pool1", "relu3_1"], pooling="avg")
    assert got["pool1"].shape == (1, 9, 11, 64)
    for l in ("pool1", "relu3_1"):
        assert _rel_err(got[l][0], ref[l]) <= 1e-4, l
    maxed = vgg19.extract(real_params, jnp.asarray(x[None], jnp.float32),
                          ["pool1"])["pool1"]
    assert not np.allclose(maxed, got["pool1"])


def test_truncated_network_matches_full(real_params):
    x = jnp.asarray(np.random.RandomState(1).randn(1, 32, 40, 3) * 50,
                    jnp.float32)
    short = vgg19.extract(real_params, x, ["relu3_1"])
    full = vgg19.extract(real_params, x, ["relu3_1", "relu5_4"])
    assert set(short) == {"relu3_1"}
    np.testing.assert_array_equal(short["relu3_1"], full["relu3_1"])


def test_unknown_layer_and_pooling_rejected():
    p = {}  # Both are refused before any parameter is touched.
    x = jnp.ones((1, 9, 11, 3))
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        vgg19.extract(p, x, ["relu9_1"])
    with pytest.raises(ValueError, match="pooling"):
        vgg19.extract(p, x, ["pool1"], pooling="median")


def test_custom_conv_gradient_equals_autodiff():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 11, 5))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5, 7))
    ref = lambda x, k: jnp.sum(jnp.sin(layers._conv(x, k)))
    new = lambda x, k: jnp.sum(jnp.sin(vgg19.conv3x3(x, k)))
    for arg in (0, 1):
        np.testing.assert_allclose(jax.grad(new, arg)(x, k),
                                   jax.grad(ref, arg)(x, k), rtol=1e-5,
                                   atol=1e-5)


def test_module_parameter_tree_is_param_shapes():
    # The Flax module's tree (names, shapes) is the one weights load into.
    x = jax.ShapeDtypeStruct((1, 32, 32, 3), jnp.float32)
    tree = jax.eval_shape(vgg19.VGG19(layers=("pool5",)).init,
                          jax.random.PRNGKey(0), x)["params"]
    shapes = jax.tree_util.tree_map(lambda a: a.shape, tree)
    assert shapes == vgg19.param_shapes()
    assert list(tree) == list(vgg19.CONV_LAYERS)


def test_reference_file_is_the_float64_numpy_vgg_of_its_input(real_params):
    # tests/data/REFERENCE.md says how the file was made; hold it to that.
    ref = np.load(DATA)
    ours = _numpy_vgg(real_params, ref["input_bgr"][0], "relu5_1")
    for l in (k for k in ref.files if k.startswith("relu")):
        assert _rel_err(ref[l][0], ours[l]) <= 1e-6, l
