"""Sweep: the five style statistics on the embedded pair, side by side.

    python scripts/sweep.py --config=configs/sweep_style_losses.py

One member per ``loss.style_loss`` (gram, gaussian_w2, sliced_w2, mrf,
histogram), everything else equal: 256 px, 100 L-BFGS steps from the
photo, the default style weight (each statistic is scaled so that it
starts at the Gram's style loss, nst_jax/style/terms.py). mrf matches 3x3
patches at relu3_1 and relu4_1 as Li & Wand 2016 do (the shallower
layers would compare billions of patch pairs at 256 px); the others use
relu1_1 .. relu5_1. Each statistic compiles its own program, so the
members run one after another. contact_sheet.png has one picture per
statistic; scripts/style_eval.py scores every output by every statistic.
What the pictures and the table show: docs/style_losses.md.
"""

from nst_jax import config as cfg

STATISTICS = ("gram", "gaussian_w2", "sliced_w2", "mrf", "histogram")
#: Li & Wand's layers for patch matching.
MRF_LAYERS = ("relu3_1", "relu4_1")


def get_config():
    c = cfg.base()
    c.name = "sweep_style_losses"
    c.size = 256
    c.optim.steps = 100
    c.log_every = 25
    c.save_every = 0  # Members keep final.png only.
    return cfg.lock(c)


def sweep(add):
    """One member per style statistic; dotted config keys."""
    for name in STATISTICS:
        extra = {"loss.style_layers": MRF_LAYERS} if name == "mrf" else {}
        add(**{"loss.style_loss": name, **extra})
