"""Shared test configs: small, fast, and easy to break on purpose."""

from nst_jax import config as cfg


def small_config(content_path: str, style_path: str, **overrides):
    """32 px, 4 Adam steps on two shallow layers; dotted-key overrides.

    Not validated, so a test can pass deliberately bad values.
    """
    c = cfg.base()
    c.content, c.style = content_path, (style_path,)
    c.size = 32
    c.loss.content_layers = ("relu2_1",)
    c.loss.style_layers = ("relu1_1", "relu2_1")
    c.optim.name = "adam"
    c.optim.learning_rate = 4.0
    c.optim.steps = 4
    c.log_every = 2
    return cfg.override(c, overrides)
