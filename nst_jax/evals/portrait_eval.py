"""The portrait preset against configs/default.py, judged locally
(``scripts/portrait_eval.py``; the method is in docs/portrait.md).

For each pair (photo, painting and their hand-placed landmark files) it
paints the photo with configs/default.py given the preset's schedule, and
with configs/portrait.py once per landmark source ("auto": found by
nst_jax.faces; "hand": the pair's files), and scores every output on two
yardsticks built on the hand landmarks (:func:`score`).
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import time

from PIL import Image

from nst_jax import config as cfg, plan
from nst_jax.app import config_file
from nst_jax.drive import driver
from nst_jax.errors import UserError
from nst_jax.evals import evaluate
from nst_jax.figures import plot
from nst_jax.io import images
from nst_jax.portrait import landmarks
from nst_jax.weights import fast as fast_weights, vgg as vgg_weights

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), "configs")
MARKS = ("auto", "hand")
RATIOS = ("local", "relu3_1", "relu4_1", "local2", "structure")


def _preset(name: str):
    return config_file.get_config(os.path.join(CONFIGS, f"{name}.py"))


def overrides(items: list[str]) -> dict:
    """``["KEY=VALUE", ...]`` (values as Python literals) as a dict.

    Raises:
      UserError: an item without "=".
    """
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


def configs_for(pair: list[str], sets: dict, marks: list[str]) -> list:
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
        plan.fields(c)
    return [default, *presets]


def score(vgg, out, pair: list[str], grid: int) -> dict:
    """Both yardsticks on the hand landmarks: "local" (the spline warp,
    grid x grid cells, relu3_1/relu4_1) and "local2" (affine warp of five
    points, 4x4 cells, relu2_2/relu3_3), and the structure loss."""
    photo, painting, photo_marks, painting_marks = pair
    hw = out.shape[:2]
    content = images.load(photo or plan.DEFAULT_CONTENT)
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


def _painted(c, name: str, kind: str, save_dir: str, vgg, fast):
    """One run's output, reused from ``save_dir`` when already there
    (read back from the PNG either way, so both compare alike)."""
    key = hashlib.sha256(json.dumps(
        cfg.to_dict(c), sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(save_dir, f"{name}_{kind}_{key}.png")
    if save_dir and os.path.exists(path):
        return images.load(path)
    out, _ = driver.stylize(plan.build(c), vgg, fast)
    if save_dir:
        images.save(path, out)
        out = images.load(path)
    return out


def compare(pairs: list[list[str]], marks: list[str], sets: dict,
            grid: int = 3, save_dir: str = "", sheet: str = "",
            thumb: int = 160) -> list[tuple[str, dict]]:
    """Paints and scores every pair; prints a JSON line per run and a
    table of preset/default ratios; writes the JPEG grid to ``sheet``.

    Returns:
      [(pair (landmarks), {ratio name: preset / default})].

    Raises:
      UserError: a bad pair, landmark file or override.
    """
    if not pairs or any(len(p) != 4 for p in pairs):
        raise UserError("give --pair=PHOTO,PAINTING,PHOTO.json,"
                        "PAINTING.json at least once")
    if not marks or set(marks) - set(MARKS):
        raise UserError("--marks takes auto, hand or auto,hand")
    runs = [configs_for(p, sets, marks) for p in pairs]
    vgg = vgg_weights.load_vgg19_params()
    fast = fast_weights.load_params()
    rows, tiles, labels = [], [], []
    kinds = ["default"] + [f"preset_{m}" for m in marks]
    for pair, configs in zip(pairs, runs):
        stems = [os.path.splitext(os.path.basename(p or "astronaut"))[0]
                 for p in pair[:2]]
        name = "_x_".join(stems)
        scores, outs = {}, []
        for kind, c in zip(kinds, configs):
            t = time.perf_counter()
            out = _painted(c, name, kind, save_dir, vgg, fast)
            s = score(vgg, out, pair, grid)
            s.update(pair=name, run=kind,
                     seconds=round(time.perf_counter() - t, 1))
            print(json.dumps(s), flush=True)
            scores[kind] = s
            outs.append(out)
        photo = images.resize(images.load(pair[0] or plan.DEFAULT_CONTENT),
                              outs[0].shape[:2])
        tiles += [photo, images.load(pair[1]), outs[0]]
        labels += [[stems[0]], [stems[1]], ["default, same schedule"]]
        for m, kind, out in zip(marks, kinds[1:], outs[1:]):
            ratio = {k: scores[kind][k] / scores["default"][k]
                     for k in RATIOS}
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
    if sheet:
        grid_rgb = plot.contact_sheet(tiles, labels, None, thumb=thumb,
                                      cols=3 + len(marks))
        # Quality 85 keeps a README grid small.
        Image.fromarray(images.to_uint8(grid_rgb)).save(sheet, quality=85)
        print(sheet)
    return rows
