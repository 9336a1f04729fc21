"""BlazeFace short-range: its inputs, anchors and box decoding (numpy).

The network sees a 128x128 square: the image letterboxed onto a black
square (centred) and sampled down, RGB scaled to [-1, 1]. It scores 896
anchors (a 16x16 grid of 2 at stride 8, an 8x8 grid of 6 at stride 16,
each of unit size, centred on its cell) and regresses, per anchor, a box
(centre x, y, width, height) and six keypoints (the subject's right eye,
left eye, nose tip, mouth centre, right and left ear tragion) in detector
pixels relative to the anchor centre.

Brush texture defeats the detector on paintings (on Van Gogh's straw-hat
self-portrait its best score is 0.19): :func:`inputs` therefore also makes
copies blurred by a Gaussian of 0.5 and 1.0 detector pixels, and the best
box over the three is kept. The Face Mesh presence score, later, rejects
what the blur makes the detector see in textured pictures without faces.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import numpy as np

SIZE = 128
#: Gaussian blur of each input copy, in detector pixels (0 = none).
BLUR_SIGMAS = (0.0, 0.5, 1.0)
SCORE_MIN = 0.5
NMS_IOU = 0.3
_GRIDS = ((16, 2), (8, 6))  # (cells per side, anchors per cell)


class Detection(NamedTuple):
    """One face box in image pixels (continuous: pixel k spans [k, k+1))."""
    score: float
    box: np.ndarray  # (x0, y0, x1, y1)
    keypoints: np.ndarray  # (6, 2) (x, y)
    variant: int  # Index into BLUR_SIGMAS of the copy it came from.


def anchors() -> np.ndarray:
    """(896, 2) anchor centres (x, y) in [0, 1] of the detector square."""
    out = []
    for grid, per in _GRIDS:
        c = (np.arange(grid) + 0.5) / grid
        xy = np.stack(np.meshgrid(c, c, indexing="xy"), -1).reshape(-1, 2)
        out.append(np.repeat(xy, per, axis=0))
    return np.concatenate(out)


def _weights(n_out: int, n_in: int, n_real: int, offset: float,
             sigma: float) -> np.ndarray:
    """(n_out, n_real) resampling matrix from a padded axis of ``n_in``
    positions (real pixels at ``offset .. offset + n_real``) to ``n_out``.

    sigma 0: plain bilinear sampling at the output pixel centres; else a
    Gaussian of ``sigma`` output pixels, normalised over the padded axis.
    """
    scale = n_in / n_out
    centre = (np.arange(n_out) + 0.5) * scale - 0.5  # In input pixels.
    pos = np.arange(n_in)[None, :].astype(np.float64)
    d = pos - centre[:, None]
    if sigma <= 0:
        w = np.maximum(0.0, 1.0 - np.abs(d))
    else:
        w = np.exp(-0.5 * (d / (sigma * scale)) ** 2)
    w /= np.maximum(w.sum(1, keepdims=True), 1e-12)
    lo = int(round(offset))
    return w[:, lo:lo + n_real]


class Square(NamedTuple):
    """The letterbox: image pixel = detector unit * side - offset."""
    side: float
    offset_xy: np.ndarray


def inputs(rgb: np.ndarray, sigmas: Sequence[float] = BLUR_SIGMAS
           ) -> tuple[np.ndarray, Square]:
    """(len(sigmas), 128, 128, 3) float32 detector inputs in [-1, 1].

    Args:
      rgb: (H, W, 3) image, 0..255.
      sigmas: blur of each copy in detector pixels.
    """
    h, w = rgb.shape[:2]
    side = max(h, w)
    oy, ox = (side - h) // 2, (side - w) // 2
    img = np.asarray(rgb, np.float64) / 127.5 - 1.0
    out = []
    for s in sigmas:
        wy = _weights(SIZE, side, h, oy, s)
        wx = _weights(SIZE, side, w, ox, s)
        # The weights sum to 1 over the square; what falls on the black
        # padding contributes -1.
        inside = wy.sum(1)[:, None] * wx.sum(1)[None, :]
        out.append(np.einsum("yi,ijc,xj->yxc", wy, img, wx, optimize=True)
                   - (1.0 - inside)[:, :, None])
    return (np.stack(out).astype(np.float32),
            Square(float(side), np.array([ox, oy], np.float64)))


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
    area = lambda b: np.prod(np.clip(b[..., 2:] - b[..., :2], 0, None),
                             axis=-1)
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-12)


def decode(regressors: np.ndarray, logits: np.ndarray, square: Square,
           variant: int = 0, score_min: float = SCORE_MIN
           ) -> Optional[Detection]:
    """The best face of one input copy, or None below ``score_min``.

    The candidates overlapping the best one (IoU > NMS_IOU) are averaged,
    weighted by score (MediaPipe's weighted non-maximum suppression).

    Args:
      regressors: (896, 16) raw box and keypoint outputs.
      logits: (896,) raw scores.
      square: the letterbox of :func:`inputs`.
    """
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64),
                                          -100, 100)))
    keep = scores >= score_min
    if not keep.any():
        return None
    a = anchors()[keep]
    r = regressors[keep].astype(np.float64) / SIZE
    centre = a + r[:, 0:2]
    half = r[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], 1)
    kps = a[:, None, :] + r[:, 4:16].reshape(-1, 6, 2)
    s = scores[keep]
    top = int(np.argmax(s))
    near = _iou(boxes[top], boxes) > NMS_IOU
    wts = s[near] / s[near].sum()
    box = (wts[:, None] * boxes[near]).sum(0)
    kp = (wts[:, None, None] * kps[near]).sum(0)
    to_px = lambda p: p * square.side - square.offset_xy
    return Detection(float(s[top]), np.concatenate(
        [to_px(box[:2]), to_px(box[2:])]), to_px(kp), variant)
