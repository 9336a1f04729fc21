"""Turns a config into the arrays one scale of a run needs.

Reads and validates the content, style, mask and init images, applies colour
preservation, aligns the style portrait for the gain maps, all in RGB 0..255
numpy arrays. Nothing here is traced.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import ml_collections
import numpy as np

from nst_jax import images, vgg19
from nst_jax.errors import UserError

ASSETS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
DEFAULT_CONTENT = os.path.join(ASSETS, "content.jpg")
DEFAULT_STYLE = os.path.join(ASSETS, "style.jpg")


def content_path(config: ml_collections.ConfigDict) -> str:
    return config.content or DEFAULT_CONTENT


def style_paths(config: ml_collections.ConfigDict) -> list[str]:
    style = config.style
    if isinstance(style, str):  # Tolerate a bare string from Python callers.
        style = (style,) if style else ()
    return list(style) or [DEFAULT_STYLE]


def input_paths(config: ml_collections.ConfigDict) -> dict[str, str]:
    """Every file a run reads, by role (for hashing in the manifest)."""
    paths = {"content": content_path(config)}
    for i, p in enumerate(style_paths(config)):
        paths[f"style{i}"] = p
    for i, p in enumerate(config.masks):
        paths[f"mask{i}"] = p
    if config.init == "file":
        paths["init"] = config.init_path
    P = config.portrait
    if P.enabled and P.align == "masks":
        paths["content_mask"] = P.content_mask
        paths["style_mask"] = P.style_mask
    if P.enabled and P.align == "flow":
        paths["flow"] = P.flow
    return paths


class ScaleInputs(NamedTuple):
    content_rgb: np.ndarray  # What the content loss sees (maybe luminance).
    original_rgb: np.ndarray  # The content photo, for colour recombination.
    style_rgbs: list  # One per style, colour-processed.
    masks: Optional[np.ndarray]  # (S, H, W) in 0..1 or None.
    init_rgb: Optional[np.ndarray]  # For init "style" / "file".


def min_side(config: ml_collections.ConfigDict) -> int:
    """Smallest image side the deepest layer in use can work with."""
    layers = list(config.loss.content_layers) + list(config.loss.style_layers)
    return vgg19.STRIDE[vgg19.deepest(layers)]


def _check_mask_aspect(mask: str, content: str, max_pixels: int) -> None:
    """A mask must have the content's aspect ratio (it is resized to it)."""
    mh, mw = images.load(mask, max_pixels=max_pixels).shape[:2]
    ch, cw = images.load(content, max_pixels=max_pixels).shape[:2]
    if abs(mw / mh - cw / ch) > 0.02 * (cw / ch):
        raise UserError(f"mask {mask} is {mw}x{mh} but the content image "
                        f"is {cw}x{ch}; a mask must have the content's "
                        "shape (any scale)")


def prepare(config: ml_collections.ConfigDict, size: int) -> ScaleInputs:
    """Loads and preprocesses every image for one scale (long side size)."""
    need = min_side(config)
    content = images.load(content_path(config), size,
                          max_pixels=config.max_pixels, min_side=need)
    h, w = content.shape[:2]
    if min(h, w) < need:
        raise UserError(
            f"at size {size} the content image is {w}x{h} px, smaller than "
            f"the {need} px the deepest layer needs; raise --config.size")
    style_size = max(int(round(size * config.style_scale)), need)
    styles = [images.load(p, style_size, max_pixels=config.max_pixels,
                          min_side=need) for p in style_paths(config)]
    original = content
    mode = config.color.preserve
    if mode != "none":
        from nst_jax import color  # Only colour-preserving runs need it.
    if mode == "luminance":
        styles = [color.match_luminance(s, content) for s in styles]
        content = color.to_luminance_rgb(content)
    elif mode == "match":
        styles = [color.match_color(s, content, config.color.match_method)
                  for s in styles]
    masks = None
    if config.masks:
        for p in config.masks:
            _check_mask_aspect(p, content_path(config), config.max_pixels)
        masks = np.stack([images.load_mask(p, (h, w)) for p in config.masks])
        if np.any(masks.sum(axis=(1, 2)) == 0):
            raise UserError("a style mask is empty (all black); each mask "
                            "needs some white where its style goes")
    init = None
    if config.init == "style":
        init = images.resize(styles[0], (h, w))
    elif config.init == "file":
        init = images.resize(images.load(config.init_path,
                                          max_pixels=config.max_pixels),
                             (h, w))
    return ScaleInputs(content, original, styles, masks, init)
