"""Pure loss functions of Gatys et al. 2016 (plus total variation).

Everything here is a pure function of arrays, safe under ``jit``, ``grad``
and ``vmap``. Static choices (layer names, pooling, dtype) live in a
:class:`LossSpec` bound before tracing; numeric hyperparameters come in the
``hparams`` dict as arrays, so changing them never recompiles.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp

from nst_jax.style import terms
from nst_jax.vgg import tiling, vgg19
# The Gram statistics are part of this module's interface.
from nst_jax.vgg.gram import (  # noqa: F401
    cell_bounds, cell_grams, gram, mask_energy, masked_gram)

#: Backward-pass memory modes: vgg19.REMATS, plus "tiles" (blocks 1-3 run
#: tile by tile, never whole: :mod:`nst_jax.vgg.tiling`; the rest as "blocks").
REMATS = vgg19.REMATS + ("tiles",)


class LossSpec(NamedTuple):
    """Static (hashable) part of the loss."""
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str = "max"
    dtype: str = "float32"
    remat: str = "none"  # REMATS: what the backward pass recomputes.
    # Portrait local style: layers whose per-cell Grams are matched to the
    # aligned painting's (targets["local"]), on a local_grid^2 cell grid.
    local_layers: tuple[str, ...] = ()
    local_grid: int = 3
    tile_size: int = 256  # Tile side in px under remat="tiles".
    # The style statistic (nst_jax.style.terms.NAMES); sliced_w2's
    # directions per layer (0: as many as channels).
    style_loss: str = "gram"
    sliced_projections: int = 0

    @property
    def layers(self) -> tuple[str, ...]:
        seen = dict.fromkeys(self.content_layers + self.style_layers
                             + self.local_layers)
        return tuple(seen)


def local_style_loss(feats: dict, target_cells: dict,
                     layers: tuple[str, ...], grid: int,
                     done: Optional[dict] = None) -> jax.Array:
    """Sum over ``layers`` of the mean per-cell Gram MSE to the targets.

    Args:
      feats: {layer: (1, h, w, C)} of the image being optimised.
      target_cells: {layer: (grid*grid, C, C)}, :func:`cell_grams` of the
        painting aligned to the photo's frame.
      done: {layer: (cells, C, C)} already reduced (tiled layers).
    """
    done = done or {}
    return sum(mse(done[l] if l in done else cell_grams(feats[l], grid)[0],
                   target_cells[l]) for l in layers)


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b))


def content_loss(feats: dict, targets: dict, layers: tuple[str, ...],
                 layer_weights: jax.Array, done: Optional[dict] = None
                 ) -> tuple[jax.Array, jax.Array]:
    """Weighted sum over layers of feature MSE; also per-layer MSEs.

    ``done``: {layer: MSE} already reduced (tiled layers), used as given.
    """
    done = done or {}
    per_layer = jnp.stack([done[l] if l in done else mse(feats[l], targets[l])
                           for l in layers])
    return jnp.sum(layer_weights * per_layer), per_layer


def style_loss(feats: dict, target_grams: dict, layers: tuple[str, ...],
               layer_weights: jax.Array, blend_S: jax.Array,
               masks: Optional[dict] = None, done: Optional[dict] = None,
               statistic: str = "gram") -> tuple[jax.Array, jax.Array]:
    """Weighted sum over layers of Gram MSE (or of another ``statistic``'s
    term, :func:`_statistic_loss`); also the per-layer values.

    Args:
      feats: {layer: (1, h, w, C)} of the image being optimised.
      target_grams: {layer: (S, C, C)}, one Gram per style image.
      layers: style layers.
      layer_weights: (L,) weight per layer.
      blend_S: (S,) non-negative weight per style image.
      masks: optional {layer: (S, h, w)} regions of the output assigned to
        each style. Without masks the target is the blend of the style
        Grams (as jcjohnson/neural-style); with masks each region's guided
        Gram is matched to its own style and the losses are blended.
      done: {layer: Gram (1, C, C), or with masks (S, C, C)} already
        reduced (tiled layers), used in place of ``feats``.
      statistic: ``loss.style_loss``; for all but "gram",
        ``target_grams`` holds {layer: (one target dict per style, ...)}
        of :func:`nst_jax.style.terms.layer_target`.
    """
    done = done or {}
    w_S = blend_S / jnp.sum(blend_S)
    if statistic != "gram":
        return _statistic_loss(statistic, feats, target_grams, layers,
                               layer_weights, w_S, masks)
    per = []
    for l in layers:
        if masks is None:
            target_CxC = jnp.einsum("s,scd->cd", w_S, target_grams[l])
            g = done[l] if l in done else gram(feats[l])
            per.append(mse(g[0], target_CxC))
        else:
            g_SxCxC = (done[l] if l in done
                       else masked_gram(feats[l], masks[l]))
            err_S = jnp.mean(jnp.square(g_SxCxC - target_grams[l]),
                             axis=(1, 2))
            per.append(jnp.sum(w_S * err_S) * w_S.shape[0])
    per_layer = jnp.stack(per)
    return jnp.sum(layer_weights * per_layer), per_layer


def _statistic_loss(statistic: str, feats: dict, targets: dict,
                    layers: tuple[str, ...], layer_weights: jax.Array,
                    w_S: jax.Array, masks: Optional[dict]
                    ) -> tuple[jax.Array, jax.Array]:
    """:func:`style_loss` for the statistics of :mod:`nst_jax.style`: each
    style's term, blended by ``w_S`` (with masks, each region's term, as
    the guided Grams)."""
    per = []
    for l in layers:
        err_S = jnp.stack([
            terms.layer_loss(statistic, feats[l], t,
                             None if masks is None else masks[l][s])
            for s, t in enumerate(targets[l])])
        per.append(jnp.sum(w_S * err_S)
                   * (w_S.shape[0] if masks is not None else 1))
    per_layer = jnp.stack(per)
    return jnp.sum(layer_weights * per_layer), per_layer


def tv_loss(image_NxHxWxC: jax.Array) -> jax.Array:
    """Mean squared difference between vertical and horizontal neighbours."""
    dy = image_NxHxWxC[:, 1:] - image_NxHxWxC[:, :-1]
    dx = image_NxHxWxC[:, :, 1:] - image_NxHxWxC[:, :, :-1]
    return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))


def _features(vgg_params, image, targets: dict, spec: LossSpec
              ) -> tuple[dict, dict]:
    """The loss's maps, and the reductions of the layers run tile by tile
    ({"sq", "gram", "masked", "cells"}: {layer: value}; empty unless
    ``spec.remat == "tiles"``)."""
    if spec.remat != "tiles":
        feats = vgg19.extract(vgg_params, image, spec.layers,
                              pooling=spec.pooling,
                              dtype=jnp.dtype(spec.dtype), remat=spec.remat)
        return feats, {"sq": {}, "gram": {}, "masked": {}, "cells": {}}
    head = set(tiling.head(spec.layers))
    masks = targets.get("masks")
    cells = {}
    for l in spec.local_layers:
        if l in head:
            h, w = image.shape[1] // vgg19.STRIDE[l], (
                image.shape[2] // vgg19.STRIDE[l])
            cells[l] = tiling.cell_masks(h, w, spec.local_grid)
    feats, out = tiling.extract(
        vgg_params, image, spec.layers, tile=spec.tile_size,
        pooling=spec.pooling, dtype=spec.dtype,
        grams=() if masks else tuple(l for l in spec.style_layers
                                     if l in head),
        masks={l: masks[l] for l in spec.style_layers
               if masks and l in head},
        cells=cells,
        content={l: targets["content"][l] for l in spec.content_layers
                 if l in head})
    # Guided Grams are normalised by their mask's energy; cells by their
    # positions (as masked_gram and cell_grams).
    for l, g in out["masked"].items():
        out["masked"][l] = g / mask_energy(masks[l])[:, None, None]
    for l, g in out["cells"].items():
        out["cells"][l] = g / jnp.sum(cells[l], axis=(1, 2))[:, None, None]
    return feats, out


def aux_keys(spec: LossSpec) -> tuple[str, ...]:
    """The keys of :func:`total_loss`'s aux (each a float32 scalar)."""
    return (("loss", "content", "style", "tv")
            + (("local",) if spec.local_layers else ())
            + tuple(f"content/{l}" for l in spec.content_layers)
            + tuple(f"style/{l}" for l in spec.style_layers))


def total_loss(image_1xHxWx3: jax.Array, vgg_params, targets: dict,
               hparams: dict, spec: LossSpec) -> tuple[jax.Array, dict]:
    """alpha * content + beta * style + tv_weight * tv of a VGG-space image.

    Args:
      image_1xHxWx3: the image being optimised, BGR minus the mean pixel.
      vgg_params: VGG19 conv parameters.
      targets: {"content": {layer: (1,h,w,C)}, "style": {layer: (S,C,C)},
        optionally "masks": {layer: (S,h,w)}}.
      hparams: arrays "content_weight", "style_weight", "tv_weight",
        "content_layer_weights" (Lc,), "style_layer_weights" (Ls,),
        "style_blend" (S,).
      spec: static layer lists, pooling and compute dtype.

    Returns:
      (loss, aux) where aux holds each term and each layer's unweighted MSE.
    """
    feats, done = _features(vgg_params, image_1xHxWx3, targets, spec)
    c, c_layers = content_loss(feats, targets["content"], spec.content_layers,
                               hparams["content_layer_weights"], done["sq"])
    s, s_layers = style_loss(feats, targets["style"], spec.style_layers,
                             hparams["style_layer_weights"],
                             hparams["style_blend"], targets.get("masks"),
                             done["masked" if "masks" in targets else "gram"],
                             spec.style_loss)
    tv = tv_loss(image_1xHxWx3)
    loss = (hparams["content_weight"] * c + hparams["style_weight"] * s
            + hparams["tv_weight"] * tv)
    aux = {"loss": loss, "content": c, "style": s, "tv": tv}
    if spec.local_layers:
        local = local_style_loss(feats, targets["local"], spec.local_layers,
                                 spec.local_grid, done["cells"])
        loss = loss + hparams["local_weight"] * local
        aux.update(loss=loss, local=local)
    for i, l in enumerate(spec.content_layers):
        aux[f"content/{l}"] = c_layers[i]
    for i, l in enumerate(spec.style_layers):
        aux[f"style/{l}"] = s_layers[i]
    return loss, aux
