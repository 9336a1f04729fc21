"""Finding a face's points: BlazeFace, then Face Mesh twice, then names.

1. The detector runs once on three copies of the image (plain, blurred by
   0.5 and 1.0 detector pixels: one batch, one compiled program) and the
   best box over them is kept (:mod:`nst_jax.faces.detect`).
2. Face Mesh runs on 15 jittered crops around that box, eyes level, and
   the per-point median is taken; then again on 15 crops around its own
   mesh (:mod:`nst_jax.faces.mesh`). Each pass is one batch of one
   compiled program.
3. The face is accepted only if the median face-presence score of the
   second pass is at least :data:`PRESENCE_MIN`: true faces scored
   0.67-1.0 on this project's portraits, the detector's false boxes on
   textured pictures (Starry Night, Tubingen, Composition VII) 0.00-0.04.
4. The mesh gives the nine named points (:mod:`nst_jax.faces.points`).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple, Optional

import jax
import numpy as np

from nst_jax import executables
from nst_jax.faces import detect, mesh, points, weights
from nst_jax.tflite import network
from nst_jax.io import images

PRESENCE_MIN = 0.5


class Face(NamedTuple):
    """A found face, in image pixels (x, y; pixel centres at integers, as
    landmark files)."""
    points_xy: np.ndarray  # (9, 2), order of nst_jax.portrait.landmarks.NAMES.
    mesh_xy: np.ndarray  # (468, 2)
    detector_score: float
    presence: float  # Median Face Mesh presence over the last pass.
    box: np.ndarray  # Detector box (x0, y0, x1, y1).
    blur: float  # Blur (detector pixels) of the copy the box came from.


class Search(NamedTuple):
    """What a search found: ``face`` is None when it found none."""
    face: Optional[Face]
    detector_score: float  # The best box's score (0..1).
    presence: Optional[float]  # None when no box reached the mesh.
    image_hw: tuple[int, int]

    def describe(self) -> str:
        """One short phrase for the console and the manifest."""
        if self.face is not None:
            return (f"face found (detector {self.detector_score:.2f}, "
                    f"mesh presence {self.presence:.2f})")
        if self.presence is None:
            return (f"no face found (best detector score "
                    f"{self.detector_score:.2f} < {detect.SCORE_MIN})")
        return (f"no face found (detector {self.detector_score:.2f}, but "
                f"mesh presence {self.presence:.2f} < {PRESENCE_MIN})")

    def record(self) -> dict:
        """JSON-able summary for the run manifest."""
        out = {"found": self.face is not None,
               "detector_score": round(self.detector_score, 4),
               "presence": (None if self.presence is None
                            else round(self.presence, 4))}
        if self.face is not None:
            out["points_xy"] = np.round(self.face.points_xy, 2).tolist()
        return out


def _run(net: tuple, x: np.ndarray) -> list[np.ndarray]:
    """The network on ``x``, its program kept in the executable store
    (a warm launch neither traces nor lowers it)."""
    program, params = net
    fn, _ = executables.compiled(
        jax.jit(functools.partial(network.apply, program)),
        ("tflite.apply", program), params, x)
    return [np.asarray(o) for o in fn(params, x)]


def _mesh_pass(rgb: np.ndarray, roi: mesh.Roi, nets: weights.Networks
               ) -> tuple[np.ndarray, float]:
    """Median (468, 2) image points and presence over the jittered crops."""
    rois = mesh.crops(roi)
    coords, logits = _run(nets.mesh, mesh.sample(rgb, rois))
    coords = coords.reshape(len(rois), -1, 3)
    pts = np.stack([mesh.to_image(c, r) for c, r in zip(coords, rois)])
    presence = 1.0 / (1.0 + np.exp(-logits.reshape(-1).astype(np.float64)))
    return np.median(pts, axis=0), float(np.median(presence))


def find(rgb: np.ndarray, nets: weights.Networks) -> Search:
    """Searches an (H, W, 3) 0..255 image for its most confident face."""
    rgb = np.asarray(rgb, np.float32)
    hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    x, square = detect.inputs(rgb)
    regressors, logits = _run(nets.detector, x)
    logits = logits.reshape(len(x), -1)
    best = float(1.0 / (1.0 + np.exp(-np.clip(logits.max(), -100, 100))))
    found = [d for i in range(len(x)) if (d := detect.decode(
        regressors[i], logits[i], square, i)) is not None]
    if not found:
        return Search(None, best, None, hw)
    det = max(found, key=lambda d: d.score)
    pts, _ = _mesh_pass(rgb, mesh.roi_from_detection(det.box, det.keypoints),
                        nets)
    pts, presence = _mesh_pass(rgb, mesh.roi_from_mesh(pts), nets)
    if presence < PRESENCE_MIN:
        return Search(None, det.score, presence, hw)
    # Continuous coordinates to pixel centres at integers.
    face = Face(points.named(pts) - 0.5, pts - 0.5, det.score, presence,
                det.box - 0.5, detect.BLUR_SIGMAS[det.variant])
    return Search(face, det.score, presence, hw)


@functools.lru_cache(maxsize=16)
def _find_file(path: str, stamp: tuple, source: str, max_pixels: int
               ) -> Search:
    del stamp  # Only part of the cache key.
    rgb = images.load(path, max_pixels=max_pixels)
    return find(rgb, weights.load(source))


def find_file(path: str, source: str = "",
              max_pixels: int = images.DEFAULT_MAX_PIXELS) -> Search:
    """:func:`find` on an image file, once per file version and process.

    Raises:
      UserError: an unreadable image; WeightsError: see
        :func:`nst_jax.faces.weights.load`.
    """
    path = os.path.abspath(path)
    st = os.stat(path)
    return _find_file(path, (st.st_size, st.st_mtime_ns), source or "",
                      int(max_pixels))
