"""Head-portrait preset after Selim, Elgharib & Doyle 2016.

The content loss is computed on gain-modulated targets at relu3_1 and
relu4_1 (plus a plain relu4_2 target): G = F[aligned style] / (F[content] + 1e-4), clamped to [0.7, 5],
target = F[content] * G. The style portrait is aligned to the content
portrait in VGG feature space (nearest-neighbour matching at relu4_1; the
paper uses face landmarks, which we do not have). Style layers as Gatys 2016.

    python scripts/run.py --config=configs/portrait.py
    python scripts/run.py --config=configs/portrait.py \
        --config.content=me.jpg --config.style=self_portrait.jpg

Coarse to fine: 100 L-BFGS steps at 128 px lay the face out, then 200 at
256 px. On the embedded pair that gives 6% lower relu4_2 structure loss than
configs/default.py at the same style loss (README, "Portrait preset").

The optimisation starts from the fast network's painting (init=fast): on
astronaut x Starry Night and Grace Hopper x Van Gogh's self-portrait it
reached the 300-step loss of the photo-started preset after 240 and 220
steps, and ended 5-7% lower (H200; configs/default.py gives the method).

With no paths it paints the embedded NASA astronaut portrait in the style of
the embedded Starry Night: about 75 s on a 2-core CPU after the one-time
weight download.
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "portrait"
    c.size = 256  # CPU-friendly; use 512+ on a GPU.
    # Gain-modulated relu3_1 and relu4_1 (the paper's layers) plus the plain
    # relu4_2 target of Gatys 2016, which holds the face's layout.
    c.loss.content_layers = ("relu3_1", "relu4_1", "relu4_2")
    c.portrait.enabled = True
    c.portrait.layers = ("relu3_1", "relu4_1")
    c.optim.steps = 200
    c.multiscale.sizes = (128, 256)
    c.multiscale.steps = (100, 200)
    c.save_every = 50
    c.init = "fast"
    return cfg.lock(c)
