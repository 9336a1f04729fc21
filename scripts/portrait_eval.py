"""The portrait preset against configs/default.py, judged locally.

    python scripts/portrait_eval.py \
        --pair=PHOTO,PAINTING,PHOTO.json,PAINTING.json [--pair=...] \
        [--out=grid.jpg] [--set=loss.style_weight=4e-3 ...]

For each pair (PHOTO may be "" for the embedded astronaut; the JSON files
are landmark files, see nst_jax/portrait/landmarks.py) it paints the photo
twice: configs/default.py given the preset's size and coarse-to-fine schedule
(its own loss weights otherwise), and configs/portrait.py once per
--marks: "auto" finds the faces itself (portrait.align=auto), "hand" is
given the pair's landmark files (--set overrides the preset's fields,
e.g. to try other weights). Each output is scored with
nst_jax/evals/evaluate.py: the local style distance (per face cell, Gram MSE at
relu3_1 and relu4_1 against the painting morphed onto the photo by the
landmarks; lower is better) and the relu4_2 structure loss to the photo.
A second yardstick shares nothing with the preset's local style term
("local2": an affine warp fitted to five points, 4x4 cells, relu2_2
and relu3_3). One JSON line per run, then a table of
preset/default ratios; --out writes a JPEG grid, one row per pair:
photo | painting | default | preset per --marks.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402

from nst_jax.app import cli, exits  # noqa: E402
from nst_jax.evals import portrait_eval  # noqa: E402

_PAIR = flags.DEFINE_multi_string(
    "pair", [], "PHOTO,PAINTING,PHOTO_LANDMARKS,PAINTING_LANDMARKS")
_SET = flags.DEFINE_multi_string(
    "set", [], "preset override KEY=VALUE (Python literal), repeatable")
_OUT = flags.DEFINE_string("out", "", "JPEG grid to write (optional)")
_GRID = flags.DEFINE_integer("grid", 3, "face cells per side")
_THUMB = flags.DEFINE_integer("thumb", 160, "grid picture size (px)")
_MARKS = flags.DEFINE_list(
    "marks", ["auto"], "how the preset gets its landmarks, one run each: "
    "auto (found by nst_jax.faces, portrait.align=auto), hand (the pair's "
    "JSON files); both are scored on the hand files")
_SAVE = flags.DEFINE_string(
    "save_dir", "", "keep each output here as PNG, named by pair, run and "
    "a hash of its config; an output already there is reused (scored from "
    "the PNG either way, so reused and fresh runs compare alike)")


def main(argv):
    cli.no_arguments(argv)
    cli.quiet_console()
    return exits.call(
        lambda: portrait_eval.compare(
            [p.split(",") for p in _PAIR.value], _MARKS.value,
            portrait_eval.overrides(_SET.value), _GRID.value, _SAVE.value,
            _OUT.value, _THUMB.value),
        done=lambda rows: None,
        interrupted="interrupted: outputs finished so far are in --save_dir")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
