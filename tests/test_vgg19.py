"""The port against independent computations with the real weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nst_jax import vgg19

DATA = __file__.rsplit("/", 1)[0] + "/data/vgg19_astronaut_64x64.npz"


def _numpy_vgg(params, x_HxWx3, upto):
    """Plain float64 numpy VGG19: im2col 3x3 conv, ReLU, 2x2 max pool."""
    x = x_HxWx3.astype(np.float64)
    out = {}
    for name in vgg19.LAYERS[:vgg19.LAYERS.index(upto) + 1]:
        if name.startswith("conv"):
            h, w, _ = x.shape
            p = np.pad(x, ((1, 1), (1, 1), (0, 0)))
            cols = np.concatenate([p[dy:dy + h, dx:dx + w] for dy in range(3)
                                   for dx in range(3)], axis=-1)
            k = np.asarray(params[name]["kernel"], np.float64)
            x = cols @ k.reshape(-1, k.shape[-1]) + np.asarray(
                params[name]["bias"], np.float64)
        elif name.startswith("relu"):
            x = np.maximum(x, 0)
        else:
            h, w, c = x.shape
            x = x[:h // 2 * 2, :w // 2 * 2].reshape(
                h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
        out[name] = x
    return out


RELUS = [l for l in vgg19.LAYERS if l.startswith("relu")]


def test_every_relu_matches_numpy_on_odd_sized_image(real_params):
    x = np.random.RandomState(0).uniform(-120, 130, (45, 37, 3))
    ref = _numpy_vgg(real_params, x, "relu5_4")
    got = vgg19.extract(real_params, jnp.asarray(x[None], jnp.float32),
                        RELUS)
    for l in RELUS:
        r = ref[l]
        err = np.abs(np.asarray(got[l][0], np.float64) - r).max()
        assert got[l].shape[1:] == r.shape, l
        assert err <= 1e-4 * np.abs(r).max(), (l, err / np.abs(r).max())


def test_matches_shared_reference_activations(real_params):
    ref = np.load(DATA)
    layers = [k for k in ref.files if k.startswith("relu")]
    got = vgg19.extract(real_params, ref["input_bgr"], layers)
    for l in layers:
        rel = np.abs(got[l] - ref[l]).max() / np.abs(ref[l]).max()
        assert rel <= 1e-4, (l, rel)


def test_truncated_network_matches_full(real_params):
    x = jnp.asarray(np.random.RandomState(1).randn(1, 32, 40, 3) * 50,
                    jnp.float32)
    short = vgg19.extract(real_params, x, ["relu3_1"])
    full = vgg19.extract(real_params, x, ["relu3_1", "relu5_4"])
    np.testing.assert_array_equal(short["relu3_1"], full["relu3_1"])


def test_avg_pooling_and_unknown_layer():
    p = vgg19.random_params(0)
    x = jnp.ones((1, 9, 11, 3))
    a = vgg19.extract(p, x, ["pool1"], pooling="avg")["pool1"]
    assert a.shape == (1, 4, 5, 64)
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        vgg19.extract(p, x, ["relu9_1"])


def test_param_shapes_agree_with_module_init():
    shapes = jax.eval_shape(vgg19.VGG19(layers=("relu5_4",)).init,
                            jax.random.PRNGKey(0), jnp.ones((1, 32, 32, 3)))
    got = jax.tree_util.tree_map(lambda a: tuple(a.shape), shapes["params"])
    assert got == vgg19.param_shapes()
    assert vgg19.NUM_PARAMS == 20_024_384


def test_custom_conv_gradient_equals_autodiff():
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 11, 5))
    k = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 5, 7))
    ref = lambda x, k: jnp.sum(jnp.sin(vgg19._conv(x, k)))
    new = lambda x, k: jnp.sum(jnp.sin(vgg19.conv3x3(x, k)))
    for arg in (0, 1):
        np.testing.assert_allclose(jax.grad(new, arg)(x, k),
                                   jax.grad(ref, arg)(x, k), rtol=1e-5,
                                   atol=1e-5)
