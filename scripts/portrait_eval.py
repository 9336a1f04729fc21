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

import ast
import hashlib
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402
from PIL import Image  # noqa: E402

from nst_jax import config as cfg  # noqa: E402
from nst_jax.app import cli, config_file  # noqa: E402
from nst_jax.drive import driver, inputs  # noqa: E402
from nst_jax.errors import UserError  # noqa: E402
from nst_jax.evals import evaluate  # noqa: E402
from nst_jax.io import images, plot  # noqa: E402
from nst_jax.portrait import landmarks  # noqa: E402
from nst_jax.weights import (
    fast as fast_weights,
    vgg as vgg_weights)  # noqa: E402

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

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "configs")


def _preset(name: str):
    return config_file.get_config(os.path.join(_CONFIGS, f"{name}.py"))


def _overrides(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"--set needs KEY=VALUE, got {item!r}")
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _configs(pair: list[str], sets: dict, marks: list[str]):
    """The default config, then the preset once per landmark source."""
    photo, painting, photo_marks, painting_marks = pair
    given = {"hand": {"portrait.content_landmarks": photo_marks,
                      "portrait.style_landmarks": painting_marks},
             "auto": {"portrait.align": "auto"}}
    presets = [cfg.override(_preset("portrait"), {
        "content": photo, "style": (painting,), **given[m], **sets})
        for m in marks]
    portrait = presets[0]
    same = {k: portrait[k.split(".")[0]] if "." not in k else
            portrait[k.split(".")[0]][k.split(".")[1]]
            for k in ("size", "multiscale.sizes", "multiscale.steps",
                      "optim.steps")}
    default = cfg.override(_preset("default"), {
        "content": photo, "style": (painting,), **same})
    for c in (default, *presets):
        cfg.validate(c)
    return [default, *presets]


def _score(vgg, out, pair, grid):
    """Both yardsticks on the hand landmarks: "local" (the spline warp,
    3x3 cells, relu3_1/relu4_1) and "local2" (affine warp of five points,
    4x4 cells, relu2_2/relu3_3), and the structure loss."""
    photo, painting, photo_marks, painting_marks = pair
    hw = out.shape[:2]
    content = images.load(photo or inputs.DEFAULT_CONTENT)
    paint = images.load(painting)
    pts = (landmarks.load(photo_marks, hw),
           landmarks.load(painting_marks, paint.shape[:2]))
    local = evaluate.local_style(vgg, out, paint, *pts, grid)
    local2 = evaluate.local_style(vgg, out, paint, *pts, 4,
                                  evaluate.AFFINE_LAYERS, warp="affine")
    structure = evaluate.score(vgg, out, content, paint)["structure"]
    return {"local": local["overall"], "relu3_1": local["relu3_1"],
            "relu4_1": local["relu4_1"], "local2": local2["overall"],
            "structure": structure}


def main(argv):
    cli.no_arguments(argv)
    pairs = [p.split(",") for p in _PAIR.value]
    if not pairs or any(len(p) != 4 for p in pairs):
        cli.fail("give --pair=PHOTO,PAINTING,PHOTO.json,"
                 "PAINTING.json at least once")
    sets = _overrides(_SET.value)
    marks = _MARKS.value
    if not marks or set(marks) - {"auto", "hand"}:
        cli.fail("--marks takes auto, hand or auto,hand")
    try:
        runs = [_configs(p, sets, marks) for p in pairs]
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    vgg = vgg_weights.load_vgg19_params()
    fast = fast_weights.load_params()
    rows, tiles, labels = [], [], []
    for pair, configs in zip(pairs, runs):
        stems = [os.path.splitext(os.path.basename(p or "astronaut"))[0]
                 for p in pair[:2]]
        name = "_x_".join(stems)
        scores = {}
        outs = []
        kinds = ["default"] + [f"preset_{m}" for m in marks]
        for kind, c in zip(kinds, configs):
            t = time.perf_counter()
            key = hashlib.sha256(json.dumps(
                cfg.to_dict(c), sort_keys=True).encode()).hexdigest()[:12]
            path = os.path.join(_SAVE.value, f"{name}_{kind}_{key}.png")
            if _SAVE.value and os.path.exists(path):
                out = images.load(path)
            else:
                out, _ = driver.stylize(c, vgg, fast)
                if _SAVE.value:
                    images.save(path, out)
                    out = images.load(path)
            s = _score(vgg, out, pair, _GRID.value)
            s.update(pair=name, run=kind,
                     seconds=round(time.perf_counter() - t, 1))
            print(json.dumps(s), flush=True)
            scores[kind] = s
            outs.append(out)
        hw = outs[0].shape[:2]
        photo = images.resize(images.load(pair[0] or inputs.DEFAULT_CONTENT),
                              hw)
        tiles += [photo, images.load(pair[1]), outs[0]]
        labels += [[stems[0]], [stems[1]], ["default, same schedule"]]
        for m, kind, out in zip(marks, kinds[1:], outs[1:]):
            ratio = {k: scores[kind][k] / scores["default"][k]
                     for k in ("local", "relu3_1", "relu4_1", "local2",
                               "structure")}
            rows.append((f"{name} ({m})", ratio))
            tiles.append(out)
            labels.append([f"preset ({m} landmarks): local "
                           f"x{ratio['local']:.2f}, structure "
                           f"x{ratio['structure']:.2f}"])
    print(f"{'pair (landmarks)':48s} local  relu3_1  relu4_1  local2  "
          "structure")
    for name, r in rows:
        print(f"{name:48s} {r['local']:6.3f}  {r['relu3_1']:7.3f}  "
              f"{r['relu4_1']:7.3f}  {r['local2']:6.3f}  "
              f"{r['structure']:9.3f}")
    if _OUT.value:
        sheet = plot.contact_sheet(tiles, labels, None, thumb=_THUMB.value,
                                   cols=3 + len(marks))
        # Quality 85 keeps a README grid well under 100 KB.
        Image.fromarray(images.to_uint8(sheet)).save(_OUT.value,
                                                     quality=85)
        print(_OUT.value)
    return 0


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
