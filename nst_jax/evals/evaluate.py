"""Comparable figures for finished images, whatever config made them.

Every run optimises its own loss, so its own numbers do not compare across
presets. These use fixed yardsticks, unweighted, in float32: content
(structure) loss at relu4_2 and Gatys style loss at relu1_1..relu5_1
(:func:`score`); and for portraits a local style distance (:func:`local_style`)
that is independent of any method's own matching: the painting is morphed
onto the photo by hand-placed landmarks (:mod:`nst_jax.portrait.landmarks`),
the face region is cut into a grid of cells and each cell of the output is
compared with the same cell of the morphed painting (Gram MSE at relu3_1 and
relu4_1). The landmarks, not the method under test, decide what corresponds to
what.

Features come from the whole image and are then cropped, so a cell's
figure also sees up to a receptive field beyond its border (about 34 px at
relu4_1): cells much smaller than that measure their neighbourhood.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from nst_jax.io import images
from nst_jax.optimize import losses
from nst_jax.portrait import alignment, landmarks
from nst_jax.vgg import vgg19

STRUCTURE_LAYER = "relu4_2"
STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def score(vgg_params, image_rgb: np.ndarray, content_rgb: np.ndarray,
          style_rgb: np.ndarray) -> dict[str, float]:
    """{"structure": relu4_2 MSE to the content, "style": summed Gram MSE}.

    The content is resized to the image's size first; the style is used at
    the size given.
    """
    if content_rgb.shape[:2] != image_rgb.shape[:2]:
        content_rgb = images.resize(content_rgb, image_rgb.shape[:2])
    layers = (STRUCTURE_LAYER,) + STYLE_LAYERS
    fi = vgg19.features(vgg_params, image_rgb, layers)
    fc = vgg19.features(vgg_params, content_rgb, (STRUCTURE_LAYER,))
    fs = vgg19.features(vgg_params, style_rgb, STYLE_LAYERS)
    structure = losses.mse(fi[STRUCTURE_LAYER], fc[STRUCTURE_LAYER])
    style = sum(losses.mse(losses.gram(fi[l]), losses.gram(fs[l]))
                for l in STYLE_LAYERS)
    return {"structure": float(structure), "style": float(style)}


LOCAL_LAYERS = ("relu3_1", "relu4_1")
#: Face box = the landmarks' bounding box scaled by this about its centre.
BOX_ENLARGE = 1.25
# A Gram from fewer feature positions than this per side is mostly noise.
_MIN_CELL = 2


def face_box(points_yx: np.ndarray, image_hw: Sequence[int],
             enlarge: float = BOX_ENLARGE) -> tuple[int, int, int, int]:
    """(y0, x0, y1, x1) pixel box, end exclusive: the points' bounding box
    scaled by ``enlarge`` about its centre and clipped to the image."""
    pts = np.asarray(points_yx, np.float64)
    lo, hi = pts.min(0), pts.max(0)
    centre, half = (lo + hi) / 2, (hi - lo) * enlarge / 2
    y0, x0 = np.maximum(np.floor(centre - half), 0).astype(int)
    y1, x1 = np.minimum(np.ceil(centre + half) + 1,
                        np.asarray(image_hw)).astype(int)
    return int(y0), int(x0), int(y1), int(x1)


def _edges(lo: int, hi: int, grid: int, stride: int, size: int
           ) -> np.ndarray:
    # Shared edges, so the cells tile the box at every layer.
    px = np.linspace(lo, hi, grid + 1)
    return np.clip(np.round(px / stride).astype(int), 0, size)


def cell_edges(box: Sequence[int], grid: int, layer: str,
               feat_hw: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column edges (grid + 1 each) of the cells in ``layer``'s
    feature map.

    Raises:
      ValueError: a cell smaller than 2x2 feature positions.
    """
    s = vgg19.STRIDE[layer]
    ys = _edges(box[0], box[2], grid, s, feat_hw[0])
    xs = _edges(box[1], box[3], grid, s, feat_hw[1])
    small = min(np.diff(ys).min(), np.diff(xs).min())
    if small < _MIN_CELL:
        raise ValueError(
            f"a {grid}x{grid} grid over the {box[2] - box[0]}x"
            f"{box[3] - box[1]} px face box gives cells of {small} "
            f"position(s) at {layer} (stride {s}); need {_MIN_CELL}: use a "
            f"smaller grid or a larger image")
    return ys, xs


#: The second yardstick's layers: none of the portrait preset's local
#: style layers (relu1_1..relu4_1) nor its content layers.
AFFINE_LAYERS = ("relu2_2", "relu3_3")
#: Points the second yardstick's affine warp is fitted to (indices into
#: nst_jax.portrait.landmarks.NAMES: the eyes, the nose tip, the mouth
#: corners).
AFFINE_POINTS = (0, 1, 2, 3, 4)


def affine_painting(painting_rgb: np.ndarray, content_pts: np.ndarray,
                    painting_pts: np.ndarray, hw: Sequence[int]
                    ) -> np.ndarray:
    """The painting moved onto the photo's face by the least-squares affine
    map of five points (eyes, nose tip, mouth corners): no spline, no
    frame anchors, nothing the portrait preset's own warp shares.

    Args:
      painting_rgb: (h, w, 3) painting at its own size.
      content_pts, painting_pts: (N >= 5, 2) (y, x) named points (order of
        ``nst_jax.portrait.landmarks.NAMES``) in the output's / painting's
        pixels.
      hw: (H, W) of the output.
    """
    idx = list(AFFINE_POINTS)
    # Sampled from the painting resized to the output's frame (as the
    # spline's warp does), so a large painting is not aliased.
    hw = (int(hw[0]), int(hw[1]))
    frame = images.resize(painting_rgb, hw)
    src = np.asarray(content_pts, np.float64)[idx]
    dst = landmarks.to_frame(np.asarray(painting_pts, np.float64)[idx],
                             np.shape(painting_rgb)[:2], hw)
    a = np.concatenate([src, np.ones((len(src), 1))], 1)
    m, *_ = np.linalg.lstsq(a, dst, rcond=None)  # (3, 2)
    grid = np.stack(np.mgrid[:hw[0], :hw[1]], -1).reshape(-1, 2)
    flow = np.concatenate([grid, np.ones((len(grid), 1))], 1) @ m
    flow = np.clip(flow, 0.0, np.array(hw, np.float64) - 1)
    return alignment.warp(frame, flow.reshape(hw[0], hw[1], 2))


def local_style(vgg_params, output_rgb: np.ndarray,
                painting_rgb: np.ndarray, content_pts: np.ndarray,
                painting_pts: np.ndarray, grid: int = 4,
                layers: Sequence[str] = LOCAL_LAYERS,
                warp: str = "tps") -> dict:
    """Per-cell Gram MSE between the output's face and the morphed painting.

    Args:
      vgg_params: VGG19 parameters.
      output_rgb: (H, W, 3) 0..255 stylised image, in the photo's frame.
      painting_rgb: (h, w, 3) 0..255 painting, any size.
      content_pts: (N, 2) photo landmarks (y, x) in the output's pixels.
      painting_pts: (N, 2) painting landmarks (y, x) in its own pixels.
      grid: cells per side of the face box.
      layers: VGG layers compared.
      warp: "tps" (the thin-plate spline through all the points,
        :func:`nst_jax.portrait.landmarks.warp_image`) or "affine"
        (:func:`affine_painting`).

    Returns:
      ``{layer: mean over cells, "overall": geometric mean over layers of
      those,
      "cells": (len(layers), grid, grid) float64, "layers": layers,
      "box": (y0, x0, y1, x1), "warped": the morphed painting (H, W, 3)}``.

    Raises:
      ValueError: a grid too fine for the face box (see
        :func:`cell_edges`).
      UserError: landmark counts differ.
    """
    out = np.asarray(output_rgb, np.float32)
    hw = out.shape[:2]
    box = face_box(content_pts, hw)
    # Pooling floors odd sizes, so each map is (H // stride, W // stride);
    # a grid too fine is refused before any network runs.
    edges = [cell_edges(box, grid, layer,
                        (hw[0] // vgg19.STRIDE[layer],
                         hw[1] // vgg19.STRIDE[layer])) for layer in layers]
    if warp == "affine":
        warped = affine_painting(painting_rgb, content_pts, painting_pts, hw)
    else:
        warped, _ = landmarks.warp_image(painting_rgb, content_pts,
                                         painting_pts, hw)
    f_out = vgg19.features(vgg_params, out, layers)
    f_ref = vgg19.features(vgg_params, warped, layers)
    cells = np.zeros((len(layers), grid, grid))
    for k, (layer, (ys, xs)) in enumerate(zip(layers, edges)):
        for i in range(grid):
            for j in range(grid):
                win = (slice(None), slice(ys[i], ys[i + 1]),
                       slice(xs[j], xs[j + 1]))
                cells[k, i, j] = float(losses.mse(
                    losses.gram(f_out[layer][win]),
                    losses.gram(f_ref[layer][win])))
    result = {layer: float(cells[k].mean()) for k, layer in enumerate(layers)}
    # Geometric mean over layers: relu4_1's Gram errors run ~300x relu3_1's,
    # so an arithmetic mean would be relu4_1 alone. The ratio of two
    # outputs' figures is then the geometric mean of the per-layer ratios.
    overall = float(np.exp(np.mean(np.log(cells.mean(axis=(1, 2)) + 1e-30))))
    result.update(overall=overall, cells=cells,
                  layers=tuple(layers), box=box, warped=warped)
    return result
