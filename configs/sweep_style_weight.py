"""Sweep: 4 style weights x 2 total-variation weights = 8 members, one batch.

    python scripts/sweep.py --config=configs/sweep_style_weight.py

All eight members differ only in traced hyperparameters, so they run as one
vmapped program (compiled once) and, with several devices, sharded over them.
128 px, 50 Adam steps from the photo, real VGG19 weights: 129 s wall on
this project's 2-core CPU (0.43 steps/s for the 8 members together, after
about 10 s of compiling); the same work as the example it replaces. The contact sheet has one row per style weight (photo at the
top, painting at the bottom) and one column per TV weight (none, then
smoothed). results.csv, contact_sheet.png and member_000/ ... member_007/
land in runs/<UTC time>-sweep-sweep_style_weight.

How the ranges were chosen: a 16-member sweep over the sweep (style weight
1e-7..1e-4 x TV weight 0, 1e2, 1e3, 1e4; this config otherwise), each
final image scored against the embedded pair with
nst_jax.evals.evaluate.score. "style" is the summed Gram distance to Starry
Night as a fraction of the photo's own (1 = the photo, lower = closer to
the painting); "speckle" is the mean squared difference of neighbouring
pixels (0..255 units; the photo has 1646):

    style weight | style (TV 0 / 1e3) | speckle (TV 0 / 1e3)
    1e-7         | 0.59 / 0.39        | 1968 / 155
    1e-6         | 0.17 / 0.19        | 2008 / 161
    1e-5         | 0.024 / 0.028      | 3063 / 352
    1e-4         | 0.0093 / 0.0089    | 3349 / 1282

Along style weight the picture goes from the photo (1e-7: colours and face
intact, the style distance only 41% lower) through Starry Night's texture
laid over it (1e-6, 1e-5) to the painting's swirls and palette with the
astronaut still legible (1e-4). At 1e-3, and at every weight from 1e-3 to
10 with learning rate 8 or 16, the photo was gone (style fraction
0.007-0.0085: the painting alone). TV weight 1e3 removes 62-92% of the
speckle (the high-frequency noise that Gatys outputs carry, which style
weight raises to twice the photo's) while keeping the style distance
within 20% from 1e-6 up; 1e2 removed too little to see at 1e-4 (-14%) and
1e4 blurred the face away. The example this replaces (style 1e-6..1e-3 at
learning rate 4, TV 1e-3 and 1e2) was reported to give eight near-alike
photos; that was not re-measured here. Adam ignores the overall scale of the loss, so
only the ratios of the weights to the content weight (1) matter.
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
