"""The Python API: style transfer from a notebook, no run directory needed.

    import nst_jax
    out = nst_jax.stylize("photo.jpg", "painting.jpg", "portrait",
                          size=192, **{"multiscale.sizes": (96, 192)})

:func:`stylize` runs a preset (or any config) in memory and returns the
picture; :func:`load_config` gives the config to inspect or change first.
The pure pieces a researcher composes are re-exported by ``nst_jax``:
the VGG19 Flax module and its weights, the total loss, the targets.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Optional, Sequence, Union

import numpy as np

from nst_jax import config as cfg, plan
from nst_jax.app import config_file, runner
from nst_jax.drive import driver
from nst_jax.errors import UserError
from nst_jax.io import images

#: The presets shipped in the repository's configs/ folder.
CONFIGS = os.path.join(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))), "configs")

Image = Union[str, "os.PathLike[str]", np.ndarray]


def _dotted(overrides: dict[str, Any]) -> dict[str, Any]:
    """``optim__steps`` -> ``optim.steps`` (keyword arguments cannot hold
    dots; ``**{"optim.steps": 50}`` works too)."""
    return {k.replace("__", "."): v for k, v in overrides.items()}


def load_config(preset: str = "default", **overrides: Any
                ) -> cfg.Config:
    """A preset's config with dotted-key overrides, validated.

    Args:
      preset: a name in configs/ ("default", "portrait", "fast",
        "seed_paper", "tiny") or the path of a config file.
      **overrides: fields to change: ``size=256``, ``optim__steps=50`` or
        ``**{"optim.steps": 50}``.

    Raises:
      UserError: an unknown preset or field, a wrong type, a bad value.
    """
    path = preset if os.sep in preset or preset.endswith(".py") else (
        os.path.join(CONFIGS, f"{preset}.py"))
    if not os.path.isfile(path):
        names = sorted(f[:-3] for f in os.listdir(CONFIGS)
                       if f.endswith(".py")) if os.path.isdir(CONFIGS) else []
        raise UserError(f"no config {preset!r}: give a config file's path "
                        f"or one of {names}")
    c = cfg.override(config_file.get_config(path), _dotted(overrides))
    plan.fields(c)
    return c


def _as_path(image: Image, folder: str, name: str) -> str:
    """A path for an image given as a path or an (H, W, 3) array (saved as
    a lossless PNG: the array is rounded to 0..255 integers)."""
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[-1] != 3:
            raise UserError(f"{name} array has shape {image.shape}; give "
                            "(H, W, 3) RGB in 0..255")
        path = os.path.join(folder, f"{name}.png")
        images.save(path, np.asarray(image, np.float32))
        return path
    return os.fspath(image)


def stylize(content: Optional[Image] = None,
            style: Union[None, Image, Sequence[Image]] = None,
            config: Union[None, str, cfg.Config] = None, *,
            workdir: Optional[str] = None, vgg_params=None,
            **overrides: Any) -> np.ndarray:
    """Paints ``content`` in the style of ``style``; returns the picture.

    Args:
      content: the photo: a path or an (H, W, 3) RGB array in 0..255;
        None for the config's (by default the embedded astronaut).
      style: the painting, or a list of them (blended by
        ``style_blend``), each a path or an array; None for the config's
        (by default the embedded Starry Night).
      config: a preset name or config file (see :func:`load_config`), a
        ConfigDict, or None for "default".
      workdir: None to run in memory; a folder to make a full run
        directory there (config, manifest, metrics, final.png).
      vgg_params: VGG19 parameters to reuse across calls (see
        :func:`nst_jax.load_vgg19_params`); loaded once per call if None.
      **overrides: config fields, as for :func:`load_config`.

    Returns:
      (H, W, 3) float32 RGB in 0..255 at the config's size.

    Raises:
      UserError: bad input or config (one line saying what to fix).
      FloatingPointError: the loss diverged.
    """
    base = (load_config(config or "default")
            if config is None or isinstance(config, (str, os.PathLike))
            else config)
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    with tempfile.TemporaryDirectory(prefix="nst_jax-") as tmp:
        paths = {}
        if content is not None:
            paths["content"] = _as_path(content, tmp, "content")
        if style is not None:
            paths["style"] = tuple(_as_path(s, tmp, f"style{i}")
                                   for i, s in enumerate(styles))
        c = cfg.override(base, {**paths, **_dotted(overrides)})
        if workdir is None:
            out, _ = driver.stylize(plan.build(c), vgg_params)
            return np.asarray(out, np.float32)
        final = runner.execute(c, workdir, vgg_params=vgg_params)
        return images.load(final)
