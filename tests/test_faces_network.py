"""The face networks: the TFLite reader on the real files and on broken
ones, and the Flax port's parity with the TFLite runtime."""

import collections
import os

import jax
import numpy as np
import pytest

from nst_jax.errors import WeightsError
from nst_jax.faces import weights
from nst_jax.tflite import model as tflite, network, ops

# Made by tests/data/make_face_fixture.py (see its docstring for the keys).
DATA = os.path.join(os.path.dirname(__file__), "data", "face_parity.npz")
# The outputs reach 165 (detector box offsets, in 128-px input pixels),
# 118 (detector logits) and 146 (mesh coordinates, in 192-px crop pixels),
# where float32 steps by 1.5e-5; the runtime's own two CPU kernel sets
# (XNNPACK and builtin) differ by up to 1.4e-4 on them. The port differs
# from the XNNPACK reference by at most 9.2e-5 (box offsets), 2.7e-4
# (logits), 3.3e-7 (scores), 1.4e-4 (mesh coordinates) and 1.9e-5 (face
# presence logit), 2e-6 of each output's largest value or less; the
# tolerances leave room for other conv algorithms.
TOL = {"detector_regressors": 5e-4, "detector_classificators": 1e-3,
       "mesh_landmarks": 5e-4, "mesh_presence": 1e-4}
SCORE_TOL = 1e-5
DETECTOR_OPS = {"CONV_2D": 21, "DEPTHWISE_CONV_2D": 16, "RELU": 17,
                "ADD": 16, "PAD": 11, "MAX_POOL_2D": 3, "RESHAPE": 4,
                "CONCATENATION": 2, "DEQUANTIZE": 74}
MESH_OPS = {"CONV_2D": 25, "PRELU": 23, "DEPTHWISE_CONV_2D": 20, "ADD": 20,
            "MAX_POOL_2D": 6, "PAD": 3}



@pytest.fixture(scope="module")
def files():
    """name -> the .tflite bytes, read once."""
    return {name: weights.model_bytes(name) for name in ("detector", "mesh")}


@pytest.fixture(scope="module")
def models(files):
    return {name: tflite.read(data) for name, data in files.items()}


@pytest.fixture(scope="module")
def converted(models):
    return {name: network.convert(m) for name, m in models.items()}


@pytest.fixture(scope="module")
def ref():
    with np.load(DATA) as f:
        return dict(f)


def _inputs(name, rgb_NxHxWx3_uint8):
    # The fixture script's conversion, exactly, in float32.
    x = rgb_NxHxWx3_uint8.astype(np.float32)
    if name == "detector":
        return x / np.float32(127.5) - np.float32(1)
    return x / np.float32(255)


def _constants(model):
    """dtype name -> (tensor count, element count) of constant tensors."""
    found = collections.defaultdict(lambda: [0, 0])
    for i in range(len(model.tensors)):
        value = tflite.constant(model, i)
        if value is not None:
            found[value.dtype.name][0] += 1
            found[value.dtype.name][1] += value.size
    return {k: tuple(v) for k, v in found.items()}


def test_detector_file(models):
    m = models["detector"]
    assert collections.Counter(op.op for op in m.operators) == DETECTOR_OPS
    assert [m.tensors[i].shape for i in m.inputs] == [(1, 128, 128, 3)]
    assert [(m.tensors[i].name, m.tensors[i].shape) for i in m.outputs] == [
        ("regressors", (1, 896, 16)), ("classificators", (1, 896, 1))]
    # fp16 weights, dequantised by 74 DEQUANTIZE ops; int32 PAD paddings.
    assert _constants(m) == {"float16": (74, 101390), "int32": (11, 88)}
    first = m.operators[2]
    assert first.op == "CONV_2D"
    assert first.options == {"padding": "SAME", "stride_w": 2,
                             "stride_h": 2, "activation": "NONE",
                             "dilation_w": 1, "dilation_h": 1}
    assert m.tensors[first.inputs[1]].shape == (24, 5, 5, 3)
    reshapes = [op.options for op in m.operators if op.op == "RESHAPE"]
    assert {o["new_shape"] for o in reshapes} == {(1, -1, 1), (1, -1, 16)}


def test_mesh_file(models):
    m = models["mesh"]
    assert len(m.operators) == 97
    assert collections.Counter(op.op for op in m.operators) == MESH_OPS
    assert [m.tensors[i].shape for i in m.inputs] == [(1, 192, 192, 3)]
    assert [m.tensors[i].shape for i in m.outputs] == [(1, 1, 1, 1404),
                                                       (1, 1, 1, 1)]
    # 604,709 constant elements: 604,685 float32 weights, 24 int32 paddings.
    assert _constants(m) == {"float32": (113, 604685), "int32": (3, 24)}
    pools = {tuple(sorted(op.options.items())) for op in m.operators
             if op.op == "MAX_POOL_2D"}
    assert pools == {(("activation", "NONE"), ("filter_h", 2),
                      ("filter_w", 2), ("padding", "VALID"),
                      ("stride_h", 2), ("stride_w", 2))}
    depthwise = [op.options for op in m.operators
                 if op.op == "DEPTHWISE_CONV_2D"]
    assert {o["depth_multiplier"] for o in depthwise} == {1}


def _refused(data: bytes) -> str:
    with pytest.raises(WeightsError) as info:
        tflite.read(data)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_truncated_files_are_refused(files):
    for data in files.values():
        for cut in (0, 3, 7, 8, 16, 100, 4096, len(data) // 3,
                    len(data) // 2, len(data) - 1000, len(data) - 1):
            message = _refused(data[:cut])
            assert message.startswith("malformed TFLite file: "), cut


def test_garbage_is_refused(files):
    rng = np.random.RandomState(0)
    noise = bytearray(rng.bytes(5000))
    assert _refused(bytes(noise)).startswith("malformed TFLite file: ")
    noise[4:8] = tflite.IDENTIFIER  # Past the identifier check.
    assert _refused(bytes(noise)).startswith("malformed TFLite file: ")
    data = files["detector"]
    wrong_id = data[:4] + b"TFL2" + data[8:]
    assert "TFL3 file identifier" in _refused(wrong_id)
    onnx_start = b"\x08\x08\x12\x07pytorch\x1a\x052.1.0:\x8a\x01\n"
    assert _refused(onnx_start).startswith("malformed TFLite file: ")
    assert _refused(b"").startswith("malformed TFLite file: ")


def test_corrupted_bytes_never_crash_the_reader(files):
    # Bytes flipped in the tables (the first 8 KB: root, vtables, operator
    # and tensor tables) either still parse or raise WeightsError.
    rng = np.random.RandomState(1)
    data = files["detector"]
    refused = 0
    for _ in range(100):
        broken = bytearray(data)
        for _ in range(rng.randint(1, 6)):
            broken[rng.randint(0, 8192)] = rng.randint(256)
        try:
            tflite.read(bytes(broken))
        except WeightsError as e:
            assert "\n" not in str(e)
            refused += 1
    assert refused > 0


def test_convert(converted):
    program, params = converted["detector"]
    hash(program)  # A jit static argument / module field.
    assert all(v.dtype == np.float32 for v in params.values())
    assert params["conv2d/Kernel"].shape == (5, 5, 3, 24)  # HWIO.
    assert params["depthwise_conv2d/Kernel"].shape == (3, 3, 1, 24)
    assert not any(s.op == "DEQUANTIZE" for s in program.steps)
    assert sum(v.size for v in params.values()) == 101390
    program, params = converted["mesh"]
    assert sum(v.size for v in params.values()) == 604685
    assert params["p_re_lu/Alpha"].shape == (1, 1, 16)


def test_unsupported_op_is_refused(models):
    m = models["mesh"]
    ops = list(m.operators)
    ops[5] = ops[5]._replace(op="SOFTMAX")
    with pytest.raises(WeightsError, match="unsupported TFLite op SOFTMAX"):
        network.convert(m._replace(operators=ops))


def test_init_matches_converted_params(converted):
    program, params = converted["mesh"]
    shapes = jax.eval_shape(network.Network(program).init,
                            jax.random.PRNGKey(0),
                            np.zeros((1, 192, 192, 3), np.float32))
    assert {k: v.shape for k, v in shapes["params"].items()} == {
        k: v.shape for k, v in params.items()}


@pytest.mark.parametrize("name,keys", [
    ("detector", ("detector_regressors", "detector_classificators")),
    ("mesh", ("mesh_landmarks", "mesh_presence")),
])
def test_matches_tflite_runtime(converted, ref, name, keys):
    program, params = converted[name]
    image = ref[f"{name}_input"]
    # Batch 3: the reference pair (image, mirrored image), then the image
    # again; the files are exported at batch 1.
    x = _inputs(name, np.stack([image, image[:, ::-1], image]))
    outputs = network.apply(program, params, x)
    assert len(outputs) == len(keys)
    for key, out in zip(keys, outputs):
        want = ref[key][[0, 1, 0]]
        out = np.asarray(out)
        assert out.shape == want.shape, key
        assert np.abs(out - want).max() <= TOL[key], key
    if name == "detector":
        scores = jax.nn.sigmoid(outputs[1])
        want = jax.nn.sigmoid(ref["detector_classificators"][[0, 1, 0]])
        assert float(np.max(want)) > 0.9  # A face is found: not vacuous.
        assert np.abs(np.asarray(scores) - want).max() <= SCORE_TOL
    else:
        assert ref["mesh_presence"].min() > 10  # A face, confidently.


@pytest.mark.parametrize("size,stride,dilation,padding,multiplier", [
    ((3, 3), (1, 1), (1, 1), "SAME", 1),
    ((3, 3), (2, 2), (1, 1), "SAME", 1),  # Odd input: uneven SAME pads.
    ((5, 3), (2, 1), (1, 2), "SAME", 2),
    ((3, 3), (3, 3), (1, 1), "VALID", 1),
    ((2, 2), (2, 2), (2, 1), "VALID", 3),
])
def test_window_ops_match_lax(size, stride, dilation, padding, multiplier):
    # Against XLA's grouped convolution and reduce-window, op by op.
    rng = np.random.RandomState(0)
    x = rng.standard_normal((2, 9, 11, 4)).astype(np.float32)
    w = rng.standard_normal(size + (1, 4 * multiplier)).astype(np.float32)
    options = {"padding": padding, "stride_h": stride[0],
               "stride_w": stride[1], "activation": "NONE"}
    got = ops.depthwise_conv_2d(
        x, w, depth_multiplier=multiplier, dilation_h=dilation[0],
        dilation_w=dilation[1], **options)
    want = jax.lax.conv_general_dilated(
        x, w, stride, padding, rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=4,
        precision=jax.lax.Precision.HIGHEST)
    assert got.shape == want.shape
    assert np.abs(np.asarray(got - want)).max() <= 1e-5
    got = ops.max_pool_2d(x, filter_h=size[0], filter_w=size[1],
                              **options)
    want = jax.lax.reduce_window(x, -np.inf, jax.lax.max,
                                 (1,) + size + (1,), (1,) + stride + (1,),
                                 padding)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
