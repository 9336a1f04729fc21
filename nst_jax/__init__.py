"""nst_jax: neural style transfer (Gatys et al. 2016) in JAX and Flax.

The Python API (names load on first use, so ``import nst_jax`` is cheap):

- :func:`stylize` (content, style, config=None, **overrides) -> image, and
  :func:`load_config` (preset, **overrides): :mod:`nst_jax.api`.
- The pure pieces: :class:`VGG19` (the Flax module), :func:`features`
  (named layer activations of an RGB image), :func:`load_vgg19_params`,
  :func:`total_loss` with its :class:`LossSpec`, and
  :func:`compute_targets` (content features and style Grams).
"""

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "stylize": ("nst_jax.api", "stylize"),
    "load_config": ("nst_jax.api", "load_config"),
    "VGG19": ("nst_jax.vgg.vgg19", "VGG19"),
    "features": ("nst_jax.vgg.vgg19", "features"),
    "load_vgg19_params": ("nst_jax.weights.vgg", "load_vgg19_params"),
    "total_loss": ("nst_jax.optimize.losses", "total_loss"),
    "LossSpec": ("nst_jax.optimize.losses", "LossSpec"),
    "compute_targets": ("nst_jax.drive.targets", "compute"),
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'nst_jax' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
