"""Face Mesh crops: where the 192x192 landmark network looks (numpy).

Face Mesh regresses 468 points (x, y in crop pixels, z) and a
face-presence logit from a square crop in which the face is upright. A
crop is a :class:`Roi`: a square of ``side`` image pixels about
``centre``, its x axis along ``angle`` (the eye line). On paintings the
points move with the crop (10-20 px on Van Gogh's self-portrait between
single crops), so each pass runs a batch of :data:`N_CROPS` crops, the
ROI scaled by 0.9/1.0/1.1 and shifted by 0 or +-5% of its side along
either axis, and takes the median of each point and of the presence
score over them.

Coordinates are continuous image pixels: pixel k spans [k, k + 1).
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import numpy as np
from PIL import Image

SIZE = 192
#: ROI side over the face box's long side (detector box or mesh extent).
ENLARGE = 1.5
SCALES = (0.9, 1.0, 1.1)
SHIFTS = ((0.0, 0.0), (0.05, 0.0), (-0.05, 0.0), (0.0, 0.05), (0.0, -0.05))
N_CROPS = len(SCALES) * len(SHIFTS)
#: Mesh indices of the eye contours: the subject's right eye (image left
#: in a frontal, upright face) and left eye.
EYE_A = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159,
         160, 161, 246)
EYE_B = (362, 382, 381, 380, 374, 373, 390, 249, 263, 466, 388, 387, 386,
         385, 384, 398)


class Roi(NamedTuple):
    centre: np.ndarray  # (x, y)
    side: float
    angle: float  # Radians: the crop's x axis is (cos, sin) in the image.

    def axes(self) -> tuple[np.ndarray, np.ndarray]:
        u = np.array([math.cos(self.angle), math.sin(self.angle)])
        return u, np.array([-u[1], u[0]])


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    d = np.asarray(b, np.float64) - np.asarray(a, np.float64)
    return float(math.atan2(d[1], d[0]))


def roi_from_detection(box: np.ndarray, keypoints: np.ndarray) -> Roi:
    """The detector box's centre, its long side x ENLARGE, eyes level
    (keypoint 0 to keypoint 1 along the crop's x axis)."""
    box = np.asarray(box, np.float64)
    side = float(np.max(box[2:] - box[:2])) * ENLARGE
    return Roi((box[:2] + box[2:]) / 2, side,
               _angle(keypoints[0], keypoints[1]))


def roi_from_mesh(points: np.ndarray) -> Roi:
    """The mesh's own extent in its eye-level frame, x ENLARGE."""
    pts = np.asarray(points[:, :2], np.float64)
    angle = _angle(pts[list(EYE_A)].mean(0), pts[list(EYE_B)].mean(0))
    u, v = Roi(np.zeros(2), 1.0, angle).axes()
    a, b = pts @ u, pts @ v
    ca, cb = (a.min() + a.max()) / 2, (b.min() + b.max()) / 2
    side = max(np.ptp(a), np.ptp(b)) * ENLARGE
    return Roi(ca * u + cb * v, float(side), angle)


def crops(roi: Roi) -> list[Roi]:
    """The :data:`N_CROPS` jittered copies of ``roi``."""
    u, v = roi.axes()
    return [Roi(roi.centre + (dx * u + dy * v) * roi.side, roi.side * s,
                roi.angle)
            for s, (dx, dy) in itertools.product(SCALES, SHIFTS)]


def _grid(roi: Roi) -> np.ndarray:
    """(SIZE, SIZE, 2) image (x, y) of each crop pixel centre."""
    u, v = roi.axes()
    t = ((np.arange(SIZE) + 0.5) / SIZE - 0.5) * roi.side
    return (roi.centre + t[None, :, None] * u + t[:, None, None] * v)


def sample(rgb: np.ndarray, rois: list[Roi]) -> np.ndarray:
    """(len(rois), 192, 192, 3) float32 crops in [0, 1] (black outside the
    image).

    Bilinear sampling of the image first shrunk (antialiased) so that the
    smallest crop's pixel is about one image pixel: plain bilinear sampling
    of a face much larger than 192 px aliases brush strokes into noise
    that moves the points and the presence score from crop to crop.
    """
    img = np.asarray(rgb, np.float32) / 255.0
    shrink = min(r.side for r in rois) / SIZE
    if shrink > 1.0:
        h, w = img.shape[:2]
        small = (max(1, round(w / shrink)), max(1, round(h / shrink)))
        img = np.stack([np.asarray(Image.fromarray(img[..., c]).resize(
            small, Image.BILINEAR)) for c in range(3)], -1)
        scale = np.array([small[0] / w, small[1] / h])
        rois = [Roi(r.centre * scale, r.side * scale[0], r.angle)
                for r in rois]
    h, w = img.shape[:2]
    padded = np.zeros((h + 2, w + 2, 3), np.float32)
    padded[1:-1, 1:-1] = img
    out = []
    for roi in rois:
        # Array index of a continuous coordinate: minus the half pixel,
        # plus the one-pixel black border.
        g = _grid(roi) - 0.5 + 1.0
        x = np.clip(g[..., 0], 0, w + 1 - 1e-6)
        y = np.clip(g[..., 1], 0, h + 1 - 1e-6)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        x1, y1 = np.minimum(x0 + 1, w + 1), np.minimum(y0 + 1, h + 1)
        fx, fy = (x - x0)[..., None], (y - y0)[..., None]
        top = padded[y0, x0] * (1 - fx) + padded[y0, x1] * fx
        bottom = padded[y1, x0] * (1 - fx) + padded[y1, x1] * fx
        out.append(top * (1 - fy) + bottom * fy)
    return np.stack(out).astype(np.float32)


def to_image(points: np.ndarray, roi: Roi) -> np.ndarray:
    """(N, 2) crop-pixel (x, y) of the mesh output in image coordinates."""
    u, v = roi.axes()
    p = np.asarray(points[:, :2], np.float64) / SIZE - 0.5
    return roi.centre + p[:, :1] * roi.side * u + p[:, 1:2] * roi.side * v
