"""Gatys, Ecker & Bethge 2016 baseline.

Content relu4_2; style relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 with equal
weights; L-BFGS from the content image.

    python scripts/run.py --config=configs/default.py \
        --config.content=photo.jpg --config.style=painting.jpg

Every field is documented in nst_jax/config.py (the one base config).
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "default"
    return cfg.lock(c)
