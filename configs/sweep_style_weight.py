"""Sweep: 4 style weights x 2 total-variation weights = 8 members, one batch.

    python scripts/sweep.py --config=configs/sweep_style_weight.py

All eight members differ only in traced hyperparameters, so they run as one
vmapped program (compiled once) and, with several devices, sharded over them.
128 px, 50 Adam steps from the photo, real VGG19 weights. The contact sheet
has one row per style weight (photo at the top, painting at the bottom) and
one column per TV weight (none, then smoothed). results.csv,
contact_sheet.png and member_000/ ... member_007/ land in
runs/<UTC time>-sweep-sweep_style_weight.

Why these ranges: along style weight the picture goes from the photo
(1e-7) through Starry Night's texture laid over it to the painting's
swirls with the astronaut still legible (1e-4); above that the photo is
gone. TV weight 1e3 removes most of the speckle that style weight adds
while keeping the style; 1e2 is too little to see, 1e4 blurs the face.
Adam ignores the overall scale of the loss, so only the ratios of the
weights to the content weight (1) matter. The sweep over the sweep that
chose them, its table and the example's wall time: docs/sweeps.md and
docs/performance.md.
"""

from nst_jax import config as cfg

STYLE_WEIGHTS = (1e-7, 1e-6, 1e-5, 1e-4)  # beta of Gatys 2016 (alpha = 1).
TV_WEIGHTS = (0.0, 1e3)  # Smoothness prior on neighbouring pixels.


def get_config():
    c = cfg.base()
    c.name = "sweep_style_weight"
    c.size = 128  # CPU-friendly; raise with --config.size=512 on a GPU.
    c.optim.name = "adam"  # First-order: every member takes equal work.
    c.optim.learning_rate = 8.0  # Pixels (0..255 scale) per step.
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
