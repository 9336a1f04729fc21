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

from nst_jax import vgg19


class LossSpec(NamedTuple):
    """Static (hashable) part of the loss."""
    content_layers: tuple[str, ...]
    style_layers: tuple[str, ...]
    pooling: str = "max"
    dtype: str = "float32"

    @property
    def layers(self) -> tuple[str, ...]:
        seen = dict.fromkeys(self.content_layers + self.style_layers)
        return tuple(seen)


def gram(feats_NxHxWxC: jax.Array) -> jax.Array:
    """Gram matrix normalised by the number of positions H*W -> (N, C, C)."""
    _, h, w, _ = feats_NxHxWxC.shape
    return jnp.einsum("nhwc,nhwd->ncd", feats_NxHxWxC, feats_NxHxWxC,
                      preferred_element_type=jnp.float32) / (h * w)


def masked_gram(feats_1xHxWxC: jax.Array, masks_SxHxW: jax.Array
                ) -> jax.Array:
    """Guided Grams (Gatys et al. 2017): one per mask -> (S, C, C).

    Each is normalised by the mask's energy, so a region's Gram is on the
    same scale as a whole-image Gram and comparable to the style target.
    """
    f_HxWxC = feats_1xHxWxC[0]
    fm_SxHxWxC = f_HxWxC[None] * masks_SxHxW[..., None]
    norm_S = jnp.maximum(jnp.sum(masks_SxHxW ** 2, axis=(1, 2)), 1e-8)
    return jnp.einsum("shwc,shwd->scd", fm_SxHxWxC, fm_SxHxWxC,
                      preferred_element_type=jnp.float32) / norm_S[:, None,
                                                                   None]


def mse(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b))


def content_loss(feats: dict, targets: dict, layers: tuple[str, ...],
                 layer_weights: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Weighted sum over layers of feature MSE; also per-layer MSEs."""
    per_layer = jnp.stack([mse(feats[l], targets[l]) for l in layers])
    return jnp.sum(layer_weights * per_layer), per_layer


def style_loss(feats: dict, target_grams: dict, layers: tuple[str, ...],
               layer_weights: jax.Array, blend_S: jax.Array,
               masks: Optional[dict] = None
               ) -> tuple[jax.Array, jax.Array]:
    """Weighted sum over layers of Gram MSE; also per-layer MSEs.

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
    """
    w_S = blend_S / jnp.sum(blend_S)
    per = []
    for l in layers:
        if masks is None:
            target_CxC = jnp.einsum("s,scd->cd", w_S, target_grams[l])
            per.append(mse(gram(feats[l])[0], target_CxC))
        else:
            g_SxCxC = masked_gram(feats[l], masks[l])
            err_S = jnp.mean(jnp.square(g_SxCxC - target_grams[l]),
                             axis=(1, 2))
            per.append(jnp.sum(w_S * err_S) * w_S.shape[0])
    per_layer = jnp.stack(per)
    return jnp.sum(layer_weights * per_layer), per_layer


def tv_loss(image_NxHxWxC: jax.Array) -> jax.Array:
    """Mean squared difference between vertical and horizontal neighbours."""
    dy = image_NxHxWxC[:, 1:] - image_NxHxWxC[:, :-1]
    dx = image_NxHxWxC[:, :, 1:] - image_NxHxWxC[:, :, :-1]
    return jnp.mean(jnp.square(dy)) + jnp.mean(jnp.square(dx))


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
    feats = vgg19.extract(vgg_params, image_1xHxWx3, spec.layers,
                          pooling=spec.pooling, dtype=jnp.dtype(spec.dtype))
    c, c_layers = content_loss(feats, targets["content"], spec.content_layers,
                               hparams["content_layer_weights"])
    s, s_layers = style_loss(feats, targets["style"], spec.style_layers,
                             hparams["style_layer_weights"],
                             hparams["style_blend"], targets.get("masks"))
    tv = tv_loss(image_1xHxWx3)
    loss = (hparams["content_weight"] * c + hparams["style_weight"] * s
            + hparams["tv_weight"] * tv)
    aux = {"loss": loss, "content": c, "style": s, "tv": tv}
    for i, l in enumerate(spec.content_layers):
        aux[f"content/{l}"] = c_layers[i]
    for i, l in enumerate(spec.style_layers):
        aux[f"style/{l}"] = s_layers[i]
    return loss, aux
