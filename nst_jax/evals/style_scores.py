"""Every style statistic as a yardstick for every output.

Each ``loss.style_loss`` optimises its own statistic, so its own loss says
nothing about how an output fares under another. :func:`cross_scores`
scores one finished image by all of them (unweighted over their layers,
scaled as in training, :mod:`nst_jax.style.terms`) and by the relu4_2
structure loss to the photo; :func:`table` lays a sweep's outputs out as
rows (made with) by columns (scored by). Fixed choices make the columns
comparable between rows: the base config's style layers (mrf: relu3_1 and
relu4_1, as in training) and sliced_w2 directions drawn from seed 0.
"""

from __future__ import annotations

import json
import os

import jax
import numpy as np

from nst_jax.errors import UserError
from nst_jax.evals import evaluate
from nst_jax.io import images
from nst_jax.plan import types
from nst_jax.optimize import losses
from nst_jax.style import terms
from nst_jax.vgg import vgg19
from nst_jax.weights import vgg as vgg_weights

#: Layers each statistic is scored at (the others: evaluate.STYLE_LAYERS).
LAYERS = {"mrf": ("relu3_1", "relu4_1")}


def layers(statistic: str) -> tuple[str, ...]:
    return LAYERS.get(statistic, evaluate.STYLE_LAYERS)


def cross_scores(vgg_params, image_rgb: np.ndarray, content_rgb: np.ndarray,
                 style_rgb: np.ndarray, statistics=terms.NAMES
                 ) -> dict[str, float]:
    """{statistic: its style loss of the image, "structure": relu4_2 MSE}.

    The content is resized to the image's size; the style is used at the
    size given (as a run's style at that scale).
    """
    if content_rgb.shape[:2] != image_rgb.shape[:2]:
        content_rgb = images.resize(content_rgb, image_rgb.shape[:2])
    every = tuple(dict.fromkeys(
        (evaluate.STRUCTURE_LAYER,) + sum((layers(s) for s in statistics),
                                          ())))
    fi = vgg19.features(vgg_params, image_rgb, every)
    fs = vgg19.features(vgg_params, style_rgb, every)
    fc = vgg19.features(vgg_params, content_rgb,
                        (evaluate.STRUCTURE_LAYER,))
    out = {}
    for stat in statistics:
        total = 0.0
        for i, l in enumerate(layers(stat)):
            if stat == "gram":
                v = losses.mse(losses.gram(fi[l]), losses.gram(fs[l]))
            else:
                key = jax.random.fold_in(jax.random.PRNGKey(0), i)
                t = terms.layer_target(stat, fs[l], fi[l].shape[1:3], key)
                v = terms.layer_loss(stat, fi[l], t)
            total += float(v)
        out[stat] = total
    out["structure"] = float(losses.mse(fi[evaluate.STRUCTURE_LAYER],
                                        fc[evaluate.STRUCTURE_LAYER]))
    return out


def table(rows: dict[str, dict[str, float]],
          reference: dict[str, dict[str, float]] | None = None) -> str:
    """Markdown: one row per output (made with), one column per yardstick
    (scored by), each cell the score over the column's lowest among
    ``rows`` (1.00 = the best output by that yardstick), the lowest's
    value under the header. ``reference`` rows (e.g. the photo every run
    started from) come last, on the same scale, outside the lowest."""
    cols = list(next(iter(rows.values())))
    best = {c: min(r[c] for r in rows.values()) for c in cols}
    lines = ["| made with \\ scored by | " + " | ".join(cols) + " |",
             "| --- |" + " --- |" * len(cols),
             "| (lowest) | " + " | ".join(f"{best[c]:.4g}" for c in cols)
             + " |"]
    for name, r in {**rows, **(reference or {})}.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{r[c] / best[c]:.2f}" if best[c] > 0 else f"{r[c]:.3g}"
            for c in cols) + " |")
    return "\n".join(lines)


def sweep_scores(vgg_params, sweep_dir: str
                 ) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """({member's loss.style_loss (and member name): cross_scores} of every
    finished member of a sweep directory, cross_scores of the first
    finished member's photo at its output's size: where a run from the
    photo started)."""
    members = sorted(d for d in os.listdir(sweep_dir)
                     if d.startswith("member_"))
    if not members:
        raise UserError(f"{sweep_dir} holds no member_* run directories "
                        "(give a scripts/sweep.py --workdir)")
    rows, start = {}, None
    for m in members:
        run = os.path.join(sweep_dir, m)
        final = os.path.join(run, "final.png")
        if not os.path.isfile(final):
            continue
        with open(os.path.join(run, "config.json")) as f:
            c = json.load(f)
        out = images.load(final)
        style_path = (c.get("style") or [types.DEFAULT_STYLE])[0]
        style = images.load(style_path, max(1, round(
            max(out.shape[:2]) * c.get("style_scale", 1.0))))
        content = images.load(c.get("content") or types.DEFAULT_CONTENT)
        name = c.get("loss", {}).get("style_loss", "gram")
        rows[name if name not in rows else f"{name} ({m})"] = cross_scores(
            vgg_params, out, content, style)
        if start is None:
            start = cross_scores(vgg_params, images.resize(
                content, out.shape[:2]), content, style)
    if not rows:
        raise UserError(f"no member of {sweep_dir} has a final.png")
    return rows, start


def main(sweep_dir: str, out_json: str = "") -> None:
    """scripts/style_eval.py: prints :func:`table` of :func:`sweep_scores`,
    the photo last."""
    if not sweep_dir or not os.path.isdir(sweep_dir):
        raise UserError(f"--sweep={sweep_dir!r} is not a directory")
    rows, start = sweep_scores(vgg_weights.load_vgg19_params(), sweep_dir)
    print(table(rows, {"(the photo: the start)": start}))
    if out_json:
        with open(out_json, "w") as f:
            json.dump({**rows, "photo": start}, f, indent=2)
