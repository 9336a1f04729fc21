"""The thin-plate-spline warp that face landmarks define: the style
morphed so its landmarks land on the content's.

:func:`warp_flow` turns a content/style pair of landmark sets (read by
:mod:`nst_jax.portrait.landmark_file`) into an (H, W, 2) flow of absolute
style (y, x) per content pixel, the format of ``portrait.flow`` and
:func:`nst_jax.portrait.alignment.warp`: ``np.save`` it and pass
``--config.portrait.flow=flow.npy``.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image

from nst_jax.io import images
from nst_jax.portrait import alignment, tps
from nst_jax.portrait.landmark_file import check_pair, to_frame

# Width of the band outside the landmarks' convex hull over which the flow
# fades from the full spline to its affine part, in units of the landmarks'
# larger bounding-box side (see warp_flow). A steeper fade folds the image:
# at 0.5, Grace Hopper -> Van Gogh self-portrait had 0.7% of pixels with a
# negative Jacobian; at 1.0 none of the six committed pairs has any.
BLEND_BAND = 1.0
#: Border segments per side pinned by ``warp_flow(frame_anchors=True)``.
FRAME_ANCHORS = 4


def warp_flow(content_pts: np.ndarray, style_pts: np.ndarray,
              content_hw: Sequence[int], style_hw: Sequence[int],
              smoothing: float = 0.0, clip: bool = True,
              frame_anchors: bool = False) -> np.ndarray:
    """Per content pixel, the style (y, x) a landmark spline sends it to.

    A thin-plate spline (with its affine part) fitted to map each content
    landmark onto its style landmark is evaluated on the content's pixel
    grid. Outside the landmarks' convex hull nothing constrains the
    spline's bending part: it keeps growing (like log r overall, with
    large constants when neighbouring landmarks move apart) and carries the
    face's local distortions into hair, background and shoulders. So it
    is faded out (smoothstep, no crease) over a band of ``BLEND_BAND``
    times the landmarks' larger bounding-box side, and beyond that the
    flow is the affine part alone: the face's overall position, scale,
    rotation and shear. Last, with ``clip`` the coordinates are clamped to
    the style frame, as the affine part can still point outside it (a
    small face in the photo and a large one in the painting zooms in), so
    far from the face the sampled image may be the painting's edge
    stretched.

    Args:
      content_pts: (N, 2) (y, x) in the content's pixels.
      style_pts: (N, 2) (y, x) in the style frame: the style resized to
        ``content_hw`` in nst_jax's convention (see :func:`to_frame`).
      content_hw: (H, W) of the content (the flow's grid).
      style_hw: (H, W) of the frame ``style_pts`` live in.
      smoothing: spline regularisation (0 = exact at the landmarks).
      clip: clamp the result into ``[0, H-1] x [0, W-1]`` of ``style_hw``.
      frame_anchors: also pin the content frame's border (corners and
        edge points, :data:`FRAME_ANCHORS` per side) to the same relative
        points of the style frame, so the whole photo maps onto the whole
        painting (face onto face, the rest squeezed or stretched around
        it) and nothing samples past the painting's edge. For the portrait
        gains; the local yardstick morphs with the face points alone.

    Returns:
      (H, W, 2) float32 absolute style (y, x) per content pixel.
    """
    if frame_anchors:
        t = np.linspace(0.0, 1.0, FRAME_ANCHORS + 1)
        rel = np.unique(np.concatenate([
            np.stack([t, np.zeros_like(t)], 1),
            np.stack([t, np.ones_like(t)], 1),
            np.stack([np.zeros_like(t), t], 1),
            np.stack([np.ones_like(t), t], 1)]), axis=0)
        c_max = np.array([content_hw[0] - 1, content_hw[1] - 1], np.float64)
        s_max = np.array([style_hw[0] - 1, style_hw[1] - 1], np.float64)
        content_pts = np.concatenate([content_pts, rel * c_max])
        style_pts = np.concatenate([style_pts, rel * s_max])
    spline = tps.fit(content_pts, style_pts, smoothing)
    h, w = int(content_hw[0]), int(content_hw[1])
    extent = np.ptp(np.asarray(content_pts, np.float64), axis=0).max()
    band = max(BLEND_BAND * extent, 1.0)
    flow = np.empty((h, w, 2), np.float32)
    # Rows in bands keep the (pixels x landmarks) temporaries small.
    rows = max(1, (1 << 20) // (w * max(len(spline.centres), 8)))
    for y0 in range(0, h, rows):
        grid = np.stack(np.mgrid[y0:min(h, y0 + rows), :w], -1)
        pts = grid.reshape(-1, 2).astype(np.float64)
        affine, bend = tps.parts(spline, pts)
        t = np.clip(tps.hull_distance(content_pts, pts) / band, 0.0,
                    1.0)
        keep = 1.0 - t * t * (3.0 - 2.0 * t)
        flow[y0:y0 + rows] = (affine + keep[:, None] * bend).reshape(
            grid.shape)
    if clip:
        hi = np.array([style_hw[0] - 1, style_hw[1] - 1], np.float32)
        flow = np.clip(flow, 0.0, hi)
    return flow


def warp_image(style_rgb: np.ndarray, content_pts: np.ndarray,
               style_pts: np.ndarray, content_hw: Sequence[int]
               ) -> tuple[np.ndarray, np.ndarray]:
    """The style image morphed onto the content's face.

    Args:
      style_rgb: (h, w, C) style image at any size.
      content_pts: (N, 2) (y, x) in the content's ``content_hw`` pixels.
      style_pts: (N, 2) (y, x) in ``style_rgb``'s own pixels.
      content_hw: (H, W) of the content.

    Returns:
      ``(warped (H, W, C) float32, flow (H, W, 2))``; the flow samples the
      style resized to (H, W), as ``portrait.flow`` expects.
    """
    check_pair(content_pts, style_pts)
    hw = (int(content_hw[0]), int(content_hw[1]))
    frame = images.resize(style_rgb, hw, Image.BILINEAR)
    flow = warp_flow(content_pts,
                     to_frame(style_pts, np.shape(style_rgb)[:2], hw),
                     hw, hw)
    return alignment.warp(frame, flow), flow
