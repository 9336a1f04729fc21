"""Gatys, Ecker & Bethge 2016, started from the fast network's painting.

Content relu4_2; style relu1_1, relu2_1, relu3_1, relu4_1, relu5_1 with equal
weights; 300 L-BFGS steps. The optimisation starts from the one-pass
painting of Magenta's fast network (init=fast, Ghiasi et al. 2017) instead
of the photo: measured on three content/style pairs at 256 and 512 px
(astronaut x Starry Night, Grace Hopper x Van Gogh's self-portrait, coffee
x The Great Wave; H200, real weights), it reached the loss that 300 steps
from the photo reach after 90-170 steps (0.30-0.57 of the steps, so of the
time: both runs take the same step, and the fast pass adds ~0.3 s on a
2-core CPU at 512 px after its one compile), and after 300 steps its loss
was 10-17% lower (ratios 0.83-0.90). It also takes the painting's palette
where the photo-started run keeps the photo's colours. For Gatys' own
start, add --config.init=content.

    python scripts/run.py --config=configs/default.py \
        --config.content=photo.jpg --config.style=painting.jpg

Every field is documented in nst_jax/config.py (the one base config).
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "default"
    c.init = "fast"
    return cfg.lock(c)
