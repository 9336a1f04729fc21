"""The fast (Ghiasi et al. 2017) networks: parity with onnxruntime on the
real weights, sizes, compilation, and the mapping from the ONNX graphs."""

import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from nst_jax.errors import WeightsError
from nst_jax.fast import model
from nst_jax.weights import fast as fast_weights, fast_params as params_lib
from nst_jax.weights.onnx import Graph, Node

# Made by tests/data/make_fast_fixture.py (see its docstring for the keys).
DATA = os.path.join(os.path.dirname(__file__), "data", "fast_parity.npz")
# Against the graphs with activation quantisation removed, the port
# differs by at most 1.9e-6 (embedding), 1.9e-6 (output) and 1.5e-6
# (45x61 output); 1e-4 leaves room for other CPUs' conv algorithms.
FLOAT_TOL = 1e-4
# Against the int8 graphs as shipped, end to end, the port differs by
# mean 0.016 (max 0.052) in the embedding and mean 0.031 (max 0.19) in
# the [0, 1] output: the activation quantisation's effect.
INT8_EMBEDDING_MEAN_TOL = 0.03
INT8_OUTPUT_MEAN_TOL = 0.05


@pytest.fixture(scope="module")
def real_params():
    return fast_weights.load_params()


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA) as f:
        return dict(f)


def _image(rgb_HxWx3_uint8):
    # The fixture script's conversion, exactly: uint8 / 255 in float32.
    return jnp.asarray((rgb_HxWx3_uint8.astype(np.float32) / 255)[None])


def test_matches_float_graphs(real_params, ref):
    emb = np.asarray(model.embed(real_params, _image(ref["style"])))[0]
    assert np.abs(ref["float_embedding"]).max() > 1  # Not vacuous.
    assert np.abs(emb - ref["float_embedding"]).max() <= FLOAT_TOL
    emb_1x100 = ref["float_embedding"][None]
    for content, want in (("content", "float_output"),
                          ("content_odd", "float_output_odd")):
        out = np.asarray(model.stylize(real_params, _image(ref[content]),
                                       emb_1x100))[0]
        assert out.shape == ref[want].shape, content
        assert np.abs(out - ref[want]).max() <= FLOAT_TOL, content


def test_close_to_int8_graphs(real_params, ref):
    # The fixture is the quantised graph: outputs on its 1/256 grid.
    grid = ref["int8_output"] * 256
    assert np.array_equal(grid, np.round(grid))
    emb_1x100 = model.embed(real_params, _image(ref["style"]))
    out = np.asarray(model.stylize(real_params, _image(ref["content"]),
                                   emb_1x100))[0]
    emb_diff = np.abs(np.asarray(emb_1x100)[0] - ref["int8_embedding"])
    assert emb_diff.mean() <= INT8_EMBEDDING_MEAN_TOL
    assert np.abs(out - ref["int8_output"]).mean() <= INT8_OUTPUT_MEAN_TOL


def test_any_size_is_padded_and_cropped_back():
    params = model.random_params(0)
    rng = np.random.RandomState(0)
    content = rng.uniform(0, 1, (2, 37, 50, 3)).astype(np.float32)
    emb_2x100 = rng.standard_normal((2, 100)).astype(np.float32)
    out = np.asarray(model.stylize(params, content, emb_2x100))
    assert out.shape == (2, 37, 50, 3)
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # Exactly the network on the reflect-padded 40x52 image, cropped.
    padded = np.pad(content, ((0, 0), (0, 3), (0, 2), (0, 0)), "reflect")
    want = np.asarray(model.stylize(params, padded, emb_2x100))
    np.testing.assert_allclose(out, want[:, :37, :50], atol=1e-6)
    assert np.abs(out[0] - out[1]).max() > 0.01  # Per-sample embeddings.


def test_style_image_too_small_is_refused():
    with pytest.raises(ValueError, match="at least 32"):
        model.embed(model.random_params(0), np.zeros((1, 31, 64, 3)))


def test_compiles_once_per_input_size():
    rng = np.random.RandomState(1)
    params = [model.random_params(s) for s in (0, 1)]
    emb_1x100 = rng.standard_normal((1, 100)).astype(np.float32)

    def images(h, w):
        return rng.uniform(0, 1, (1, h, w, 3)).astype(np.float32)

    before = model.stylize._cache_size()
    for p, size in [(params[0], (13, 22)), (params[1], (13, 22)),
                    (params[1], (22, 13)), (params[0], (13, 22))]:
        model.stylize(p, images(*size), emb_1x100)
    assert model.stylize._cache_size() - before == 2
    before = model.embed._cache_size()
    for p in params:
        model.embed(p, images(33, 35))
    assert model.embed._cache_size() - before == 1


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_dequantize_per_channel(axis):
    q = np.arange(-12, 12, dtype=np.int8).reshape(2, 3, 4)
    n = q.shape[axis]
    scale = np.linspace(0.5, 2.0, n).astype(np.float32)
    zp = np.arange(n, dtype=np.int8) - 1
    shape = [1, 1, 1]
    shape[axis] = n
    want = (q.astype(np.float32) - zp.reshape(shape)) * scale.reshape(shape)
    got = params_lib.dequantize(q, scale, zp, axis)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


def test_dequantize_per_tensor_and_int32():
    q = np.array([[-128, 0], [5, 127]], np.int8)
    got = params_lib.dequantize(q, np.float32(0.5), np.int8(-128))
    np.testing.assert_array_equal(got, [[0, 64], [66.5, 127.5]])
    big = np.array([2**31 - 1, -2**31], np.int32)  # No int32 wrap-around.
    got = params_lib.dequantize(big, np.float32(1), np.int32(-1))
    np.testing.assert_array_equal(got, np.float32([2.0**31, -2.0**31 + 1]))
    assert params_lib.dequantize(q, np.float32(2)).tolist() == [[-256, 0],
                                                                [10, 254]]
    with pytest.raises(WeightsError, match="3 scales along axis 0"):
        params_lib.dequantize(q, np.ones(3, np.float32),
                              np.zeros(3, np.int8), 0)


# ------------------------------------------------------ synthetic graphs

def _conv_name(network, path):
    """The Conv node name tf2onnx gave the layer at ``path``."""
    if network == "predictor":
        if path == ("bottleneck",):
            return "mobilenet_conv/Conv/BiasAdd_int8_prequant"
        end = ("BatchNorm/FusedBatchNormV3_prequant"
               if path[-1] == "project" else "Relu6_prequant")
        return "/".join(("MobilenetV2",) + path + (end,))
    norm = {"gamma": "Conv_1", "beta": "Conv"}.get(path[-1])
    kind, i = re.fullmatch(r"([a-z_]+?)(\d)", path[0]).groups()
    if kind == "contract_conv":
        return f"transformer/contract/conv{i}/Relu_prequant"
    if kind == "expand_conv":
        return f"transformer/expand/conv{i}/conv/Conv2D_prequant"
    if kind == "expand_norm":
        return (f"style_params/transformer/expand/conv{i}/conv/StyleNorm/"
                f"{norm}/BiasAdd_prequant")
    j = path[1][-1]
    if norm is None:
        return f"transformer/residual/residual{i}/conv{j}/Conv2D_prequant"
    return (f"style_params/transformer/residual/residual{i}/conv{j}/"
            f"StyleNorm/{norm}/BiasAdd_prequant")


def _layers(tree, path=()):
    if "kernel" in tree:
        yield path, tree
    else:
        for k, v in tree.items():
            yield from _layers(v, path + (k,))


def _quantised_graph(network, tree) -> Graph:
    """A QDQ graph holding ``tree``'s layers, laid out like the real ones:
    int8 OIHW weights and int32 biases per output channel, zero points
    shared by every layer of one width, tensor names that say nothing."""
    layers = list(_layers(tree))
    nodes, inits = [], {}
    for k, (path, leaves) in enumerate(layers):
        kernel = leaves["kernel"]
        w_OIHW = (kernel.T[:, :, None, None] if kernel.ndim == 2
                  else kernel.transpose(3, 2, 0, 1))
        c_out = w_OIHW.shape[0]
        bias = leaves.get("bias", np.zeros(c_out, np.float32))
        w_scale = np.abs(w_OIHW).reshape(c_out, -1).max(1) / 127 + 1e-12
        b_scale = np.full(c_out, 1e-6, np.float32)
        # Named backwards, so the names point at the wrong layers.
        q = f"q{len(layers) - k}"
        inits.update({
            q + "w": np.round(w_OIHW / w_scale[:, None, None, None]
                              ).astype(np.int8),
            q + "b": np.round(bias / b_scale).astype(np.int32),
            q + "ws": w_scale.astype(np.float32), q + "bs": b_scale,
            f"zp8_{c_out}": np.zeros(c_out, np.int8),
            f"zp32_{c_out}": np.zeros(c_out, np.int32)})
        name = _conv_name(network, path)
        nodes += [
            Node("DequantizeLinear", q + "dw", (q + "w", q + "ws",
                                                f"zp8_{c_out}"),
                 (q + "dw",), {"axis": 0}),
            Node("DequantizeLinear", q + "db", (q + "b", q + "bs",
                                                f"zp32_{c_out}"),
                 (q + "db",), {"axis": 0}),
            Node("Conv", name, ("x", q + "dw", q + "db"), (name,), {})]
    return Graph(nodes, inits, ["x"], [nodes[-1].outputs[0]])


@pytest.fixture(scope="module")
def synthetic():
    params = model.random_params(3)
    return params, {n: _quantised_graph(n, params[n]) for n in params}


def test_from_graphs_maps_every_layer(synthetic):
    params, graphs = synthetic
    got = params_lib.from_graphs(graphs["predictor"],
                                 graphs["transformer"])
    for network in params:
        layers = dict(_layers(got[network]))
        for path, want in _layers(params[network]):
            for leaf, value in want.items():
                step = np.abs(value).max() / 127
                err = np.abs(layers[path][leaf] - value).max()
                assert err <= step / 2 + 1e-6, (network, path, leaf)


def _drop(graph, conv):
    return graph._replace(nodes=[n for n in graph.nodes if n.name != conv])


def _rename(graph, conv, new):
    return graph._replace(nodes=[
        n._replace(name=new) if n.name == conv else n for n in graph.nodes])


def _twice(graph, conv):
    return graph._replace(nodes=graph.nodes + [
        n for n in graph.nodes if n.name == conv])


R3 = "transformer/residual/residual3/conv2/Conv2D_prequant"
E7 = "MobilenetV2/expanded_conv_7/expand/Relu6_prequant"


@pytest.mark.parametrize("edit, message", [
    (lambda g: (g["predictor"], _drop(g["transformer"], R3)),
     "missing: transformer/residual3/conv2"),
    (lambda g: (_drop(g["predictor"], E7), g["transformer"]),
     "missing: predictor/expanded_conv_7/expand"),
    (lambda g: (g["predictor"], _rename(g["transformer"], R3, "extra")),
     "unexpected transformer convs: extra"),
    (lambda g: (_twice(g["predictor"], E7), g["transformer"]),
     "more than once: predictor/expanded_conv_7/expand"),
    (lambda g: (g["transformer"], g["predictor"]), "missing: predictor/"),
], ids=["no_residual_conv", "no_predictor_conv", "renamed", "twice",
        "swapped"])
def test_from_graphs_refuses_a_graph_that_does_not_fit(synthetic, edit,
                                                       message):
    with pytest.raises(WeightsError) as e:
        params_lib.from_graphs(*edit(synthetic[1]))
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_expected_shapes_are_cached_by_model_source(tmp_path, monkeypatch):
    """The traced shapes are kept beside the weights and reused only while
    the model's source is unchanged."""
    monkeypatch.setenv("NST_JAX_CACHE", str(tmp_path))
    traced = traverse_util.flatten_dict(jax.tree_util.tree_map(
        lambda x: tuple(x.shape), model.abstract_params()), sep="/")
    assert fast_weights.expected_shapes() == traced  # Traced, then saved.
    path = tmp_path / "fast_model_shapes.json"
    saved = json.loads(path.read_text())
    key = next(iter(saved["shapes"]))
    saved["shapes"][key] = [7, 7]  # Read back only under its own hash:
    path.write_text(json.dumps(saved))
    assert fast_weights.expected_shapes()[key] == (7, 7)
    saved["source_sha256"] = "0" * 64  # another model's source: traced.
    path.write_text(json.dumps(saved))
    assert fast_weights.expected_shapes() == traced
    path.write_text("{not json")  # Corrupt: traced again.
    assert fast_weights.expected_shapes() == traced
