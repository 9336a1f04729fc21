"""Sweep: 4 style weights x 2 total-variation weights = 8 members, one batch.

    python scripts/sweep.py --config=configs/sweep_style_weight.py

All eight members differ only in traced hyperparameters, so they run as one
vmapped program (compiled once) and, with several devices, sharded over them.
128 px, 50 Adam steps from the content image, real VGG19 weights. On a
2-core CPU this takes about 60 s in all (3 s of it compiling, ~7 s per
member); results.csv, contact_sheet.png and member_000/ ... member_007/ land
in runs/<UTC time>-sweep-sweep_style_weight. Adam ignores the overall scale
of the loss, so only the ratio of the weights matters here: style weight
1e-6 barely touches the photo, 1e-3 paints over it; tv weight 100 smooths
the brush strokes (1e-3 is negligible against the other terms).
"""

from nst_jax import config as cfg

STYLE_WEIGHTS = (1e-6, 1e-5, 1e-4, 1e-3)  # beta of Gatys 2016 (alpha = 1).
TV_WEIGHTS = (1e-3, 1e2)  # Smoothness prior on neighbouring pixels.


def get_config():
    c = cfg.base()
    c.name = "sweep_style_weight"
    c.size = 128  # CPU-friendly; raise with --config.size=512 on a GPU.
    c.optim.name = "adam"  # First-order: every member takes equal work.
    c.optim.learning_rate = 4.0  # Pixels (0..255 scale) per step.
    c.optim.steps = 50
    c.log_every = 10  # Steps per compiled chunk and metrics line.
    c.save_every = 0  # Members keep final.png only.
    return cfg.lock(c)


def sweep(add):
    """One member per (style weight, tv weight); dotted config keys."""
    for style_weight in STYLE_WEIGHTS:
        for tv_weight in TV_WEIGHTS:
            add(**{"loss.style_weight": style_weight,
                   "loss.tv_weight": tv_weight})
