"""What the optimisation aims at, computed once per scale outside the loop.

Content features, per-style Gram matrices and guided-Gram masks
(:func:`compute`), the Selim et al. 2016 gain-modulated content targets
(:func:`portrait_targets`), the starting image (:func:`init_image`) and the
colour of the saved output (:func:`output_rgb`). Inputs are the RGB 0..255
arrays of :mod:`nst_jax.drive.inputs`; outputs are jax arrays in VGG space.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from nst_jax import executables
from nst_jax.drive import inputs
from nst_jax.fast import transfer
from nst_jax.io import images
from nst_jax.optimize import color, losses
from nst_jax.plan import Plan
from nst_jax.portrait import (
    alignment,
    gains as gain_maps,
    landmarks,
    patchmatch)
from nst_jax.style import terms
from nst_jax.vgg import tiling, vgg19


def compute(vgg_params, spec: losses.LossSpec, content_rgb: np.ndarray,
            style_rgbs: list, masks_SxHxW: Optional[np.ndarray] = None,
            content_overrides: Optional[dict] = None,
            local: Optional[dict] = None, seed: int = 0) -> dict:
    """Content features and per-style Grams, computed once per scale.

    Args:
      vgg_params: VGG19 conv params.
      spec: layers, pooling, dtype.
      content_rgb: (H, W, 3) 0..255.
      style_rgbs: list of (h, w, 3) 0..255 (sizes may differ).
      masks_SxHxW: optional masks over the content frame, one per style.
      content_overrides: {layer: target} replacing plain content features
        (the portrait gain-map targets).
      local: the portrait's per-cell Gram targets (:func:`portrait_targets`).
      seed: the run's seed (sliced_w2's directions).

    Returns:
      {"content": {layer: (1, h, w, C)}, "style": {layer: (S, C, C)}} and,
      with masks, "masks": {layer: (S, h, w)}; with ``local``, "local".
      For a ``spec.style_loss`` other than "gram", "style" holds {layer:
      (one :func:`nst_jax.style.terms.layer_target` per style, ...)}.
    """
    if spec.remat == "tiles":  # Only the content layers' maps, whole.
        kw = dict(tile=spec.tile_size, pooling=spec.pooling,
                  dtype=spec.dtype)
        content = tiling.features(vgg_params, content_rgb,
                                  spec.content_layers, **kw)[0]
        grams = [tiling.features(vgg_params, s, grams=spec.style_layers,
                                 **kw)[1] for s in style_rgbs]
    else:
        feats = vgg19.features(vgg_params, content_rgb, spec.content_layers,
                               spec.pooling, spec.dtype)
        content = {l: feats[l] for l in spec.content_layers}
        # Validation refused remat=tiles for the other statistics.
        grams = ([_style_grams(vgg_params, s, spec) for s in style_rgbs]
                 if spec.style_loss == "gram" else None)
    content.update(content_overrides or {})
    targets = {"content": content,
               # (1, C, C) each: one style needs no (eager) concatenation.
               "style": _style_statistics(vgg_params, style_rgbs, spec,
                                          content_rgb.shape[:2], seed)
                        if grams is None else
                        {l: grams[0][l] if len(grams) == 1 else
                         jnp.concatenate([g[l] for g in grams])
                         for l in spec.style_layers}}
    if masks_SxHxW is not None:
        m = jnp.asarray(masks_SxHxW, jnp.float32)
        h, w = content_rgb.shape[:2]
        targets["masks"] = {
            l: jax.image.resize(m, (m.shape[0], h // vgg19.STRIDE[l],
                                    w // vgg19.STRIDE[l]),
                                "linear", antialias=True)
            for l in spec.style_layers}
    if local is not None:
        targets["local"] = local
    return targets


@functools.lru_cache(maxsize=8)
def _grams_fn(layers: tuple, pooling: str, dtype: str):
    def f(params, x):
        feats = vgg19.extract(params, x, layers, pooling, jnp.dtype(dtype))
        return {l: losses.gram(feats[l]) for l in layers}
    return jax.jit(f)


def _style_grams(vgg_params, rgb, spec: losses.LossSpec) -> dict:
    """{layer: (1, C, C)} of one style image, in one compiled program (not a
    program per layer's Gram, each traced and looked up at start-up)."""
    x, key = vgg19.to_input(rgb), (tuple(spec.style_layers), spec.pooling,
                                    spec.dtype)
    fn, _ = executables.compiled(_grams_fn(*key), ("targets.grams", *key),
                                 vgg_params, x)
    return fn(vgg_params, x)


def _style_statistics(vgg_params, style_rgbs: list, spec: losses.LossSpec,
                      content_hw: tuple, seed: int) -> dict:
    """{layer: (target per style, ...)} of ``spec.style_loss``; the
    optimised image's map at each layer is content_hw // stride."""
    out = {l: [] for l in spec.style_layers}
    for si, rgb in enumerate(style_rgbs):
        feats = vgg19.features(vgg_params, rgb, spec.style_layers,
                               spec.pooling, spec.dtype)
        for li, l in enumerate(spec.style_layers):
            hw = (content_hw[0] // vgg19.STRIDE[l],
                  content_hw[1] // vgg19.STRIDE[l])
            key = jax.random.fold_in(
                jax.random.fold_in(jax.random.PRNGKey(seed), li), si)
            out[l].append(terms.layer_target(spec.style_loss, feats[l], hw,
                                             key, spec.sliced_projections))
    return {l: tuple(t) for l, t in out.items()}


class Alignment(NamedTuple):
    """The painting's correspondence to the photo, found once per run.

    ``flow`` (H, W, 2) holds, per photo pixel, absolute (y, x) coordinates
    in the painting resized to (H, W) (any size with the photo's aspect:
    :func:`nst_jax.portrait.alignment.resize_flow` fits it to each scale);
    ``confidence`` (H, W) in [0, 1] or None says how sure it is.
    """
    flow: np.ndarray
    confidence: Optional[np.ndarray]


def _vgg_features(vgg_params, spec: losses.LossSpec):
    def feats(rgb, layers):
        return vgg19.features(vgg_params, rgb, layers, spec.pooling,
                              spec.dtype)
    return feats


def portrait_alignment(plan: Plan, vgg_params,
                       inp: inputs.ScaleInputs, spec: losses.LossSpec
                       ) -> Optional[Alignment]:
    """The searched correspondence of ``portrait.align`` "landmarks",
    "auto" or "features", or None for the other modes (cheap, made per
    scale).

    "landmarks" morphs the painting with a thin-plate spline through the
    two landmark files; "auto" does the same with the points found on both
    images (:mod:`nst_jax.faces`; the files when given), or, when either
    image shows no face, what "features" does without landmark files;
    "features" does the same when landmark files are
    given and then refines (or, without them, finds) the correspondence
    with PatchMatch over VGG19 features (:mod:`nst_jax.portrait.patchmatch`),
    whose forward-backward check gives the confidence. Made at ``inp``'s frame
    (the driver passes the last, largest scale) and reused at every scale.
    """
    P = plan.portrait
    if not P.enabled or P.align not in ("features", "landmarks", "auto"):
        return None
    h, w = inp.content_rgb.shape[:2]
    style = images.resize(inp.style_rgbs[0], (h, w))
    morph = confidence = None
    pair = (inputs.load_landmarks(plan, (h, w)) if P.content_landmarks
            else inputs.detected_landmarks(plan, (h, w))
            if P.align == "auto" else None)
    if pair is not None:
        morph = landmarks.warp_flow(*pair, (h, w), (h, w),
                                    frame_anchors=True)
    # align=auto without a face on either image falls back to features.
    if P.align == "features" or (P.align == "auto" and morph is None):
        start = style if morph is None else alignment.warp(style, morph)
        flow, confidence = patchmatch.correspondence(
            start, inp.content_rgb, _vgg_features(vgg_params, spec),
            layers=tuple(P.match_layers), size=P.match_size,
            anchored=morph is not None)
        # One resampling of the painting: the morph composed with the
        # refinement.
        morph = flow if morph is None else alignment.warp(morph, flow)
    return Alignment(np.asarray(morph, np.float32), confidence)


def aligned_painting(plan: Plan, vgg_params,
                     inp: inputs.ScaleInputs, spec: losses.LossSpec,
                     align: Optional[Alignment] = None
                     ) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """The first style image in the photo's frame, aligned as
    ``plan.portrait.align`` says, and the alignment's confidence.

    For "landmarks" and "features" the alignment is ``align`` from
    :func:`portrait_alignment` (made here when not given); the confidence
    (H, W) in [0, 1], or None, says where PatchMatch's forward and backward
    matches agree.
    """
    P = plan.portrait
    h, w = inp.content_rgb.shape[:2]
    style = images.resize(inp.style_rgbs[0], (h, w))
    if align is None:
        align = portrait_alignment(plan, vgg_params, inp, spec)
    confidence = None
    if align is not None:
        style = alignment.warp(style, alignment.resize_flow(align.flow,
                                                            (h, w)))
        if align.confidence is not None:
            confidence = images.resize(align.confidence, (h, w))
    elif P.align == "masks":
        style = alignment.align_with_masks(
            style, inp.content_rgb, images.load_mask(P.style_mask, (h, w)),
            images.load_mask(P.content_mask, (h, w)))
    elif P.align == "flow":
        style = alignment.align_with_flow(
            style, inputs.load_flow(P.flow, (h, w)), (h, w))
    return style, confidence


def portrait_targets(plan: Plan, vgg_params,
                     inp: inputs.ScaleInputs, spec: losses.LossSpec,
                     align: Optional[Alignment] = None
                     ) -> tuple[Optional[dict], Optional[dict]]:
    """(gain-modulated content targets, per-cell Gram targets), each or None.

    Both come from one :func:`aligned_painting` and one pass of VGG19 over
    it. The gains (Selim et al. 2016) compare the photo with it; where the
    alignment is unsure (PatchMatch's forward and backward matches
    disagree: parts of one face with no counterpart in the other) they are
    pulled toward 1, so those parts keep the photo's own features. The cell
    Grams ({layer: (cells, C, C)}, :func:`nst_jax.optimize.losses.cell_grams`)
    are the local style term's targets, None when ``spec.local_layers`` is
    empty.
    """
    P = plan.portrait
    if not P.enabled:
        return None, None
    style, confidence = aligned_painting(plan, vgg_params, inp, spec, align)
    feats = _vgg_features(vgg_params, spec)
    layers = tuple(P.layers)
    f = feats(style, tuple(dict.fromkeys(layers + spec.local_layers)))
    gains = gain_maps.gain_targets(feats(inp.content_rgb, layers), f,
                                   layers, P.g_min, P.g_max,
                                   confidence=confidence)
    local = ({l: _cell_grams(f[l], spec.local_grid)[0]
              for l in spec.local_layers} if spec.local_layers else None)
    return gains, local


def _cell_grams(feats_1xHxWxC: jax.Array, grid: int) -> jax.Array:
    """:func:`losses.cell_grams` as one kept program per map shape (op by
    op it is ~9 dispatched Grams a layer; the bytes are the same)."""
    fn, _ = executables.compiled(
        jax.jit(functools.partial(losses.cell_grams, grid=grid)),
        ("targets.cell_grams", grid), feats_1xHxWxC)
    return fn(feats_1xHxWxC)


def init_image(kind: str, seed, content_rgb: np.ndarray,
               other_rgb: Optional[np.ndarray] = None) -> jax.Array:
    """Starting image in VGG space, (1, H, W, 3).

    Args:
      kind: "content"; "noise" (uniform 0..255 from ``seed``, so members
        of a sweep differ by seed); "style" / "file" (``other_rgb``,
        already resized to the content frame).
      seed: int or int32 array.
      content_rgb: (H, W, 3) 0..255.
      other_rgb: the image for "style" and "file".
    """
    h, w = content_rgb.shape[:2]
    if kind == "noise":
        key = jax.random.PRNGKey(seed)
        rgb = jax.random.uniform(key, (h, w, 3), jnp.float32, 0.0, 255.0)
    elif kind == "content":
        rgb = jnp.asarray(content_rgb, jnp.float32)
    else:
        if other_rgb is None:
            raise ValueError(f"init {kind!r} needs an image")
        rgb = jnp.asarray(other_rgb, jnp.float32)
    return images.to_vgg(rgb)[None]


def start_images(plans: list, inps: list, hps: list,
                 fast_params) -> list:
    """Each member's starting image in VGG space, (1, H, W, 3).

    ``inps``: each member's :class:`nst_jax.drive.inputs.ScaleInputs`.
    init=fast starts from the fast network's painting of the photo, with each
    member's own style blend and strength (one batched call).
    """
    c0 = plans[0]
    if c0.init != "fast":
        return [init_image(c0.init, hp["seed"], inp.content_rgb,
                                       inp.init_rgb)
                for hp, inp in zip(hps, inps)]
    embs = {}
    for inp in inps:  # One style and photo embedding per distinct photo.
        if id(inp) not in embs:
            embs[id(inp)] = transfer.embeddings(
                fast_params, inp.style_rgbs + [inp.content_rgb],
                c0.fast.style_size)
    painted = transfer.paint(
        fast_params, np.stack([inp.content_rgb for inp in inps]),
        np.stack([transfer.member_embedding(embs[id(inp)], c.style_blend,
                                            c.fast.strength)
                  for c, inp in zip(plans, inps)]))
    return [images.to_vgg(p)[None] for p in painted]


def output_rgb(plan: Plan, inp: inputs.ScaleInputs,
               raw_rgb: np.ndarray) -> np.ndarray:
    """The image as saved, from the optimised one (RGB 0..255 float32).

    With luminance-only colour preservation the optimised image is a grey
    picture; the photo's chroma is put back here. Only the saved output is
    recoloured: the next scale of a coarse-to-fine run starts from the raw
    optimised image, whose targets are grey too.
    """
    rgb = np.asarray(raw_rgb, np.float32)
    if plan.color.preserve == "luminance":
        rgb = color.recombine_luminance(rgb, inp.original_rgb)
    return rgb
