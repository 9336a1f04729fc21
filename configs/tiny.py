"""CPU-tiny settings for tests and smoke runs (seconds, not minutes).

    python scripts/run.py --config=configs/tiny.py
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "tiny"
    c.size = 32
    c.loss.content_layers = ("relu2_2",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    c.optim.name = "adam"
    c.optim.learning_rate = 5.0
    c.optim.steps = 3
    c.log_every = 2
    c.save_every = 2
    return cfg.lock(c)
