"""The project's nine named face points from a 468-point Face Mesh.

Names and order are :data:`nst_jax.portrait.landmarks.NAMES` (image
left/right): eyes = the mean of each eye's contour, nose tip = point 1, mouth
corners = 61 and 291, mouth centre = the mean of 13 and 14 (inner lips), chin =
152, and the face's sides = the mesh's extreme points along the eye line among
those within :data:`SIDE_BAND` inter-ocular distances of it, placed on the eye
line. The mesh's own silhouette ring at eye height puts the far side of a
three-quarter view on the cheek (40.6 px off on Van Gogh's self-portrait
against 14.3 px with this rule).
"""

from __future__ import annotations

import numpy as np

from nst_jax.faces import mesh

NOSE_TIP = 1
MOUTH_A, MOUTH_B = 61, 291  # The subject's right and left mouth corner.
LIPS = (13, 14)
CHIN = 152
SIDE_BAND = 0.15


def named(points_xy: np.ndarray) -> np.ndarray:
    """(9, 2) (x, y) in the order of ``nst_jax.portrait.landmarks.NAMES``.

    Args:
      points_xy: (468, 2) mesh points in image coordinates.
    """
    p = np.asarray(points_xy, np.float64)
    eye_a, eye_b = p[list(mesh.EYE_A)].mean(0), p[list(mesh.EYE_B)].mean(0)
    mouth_a, mouth_b = p[MOUTH_A], p[MOUTH_B]
    if eye_a[0] > eye_b[0]:  # Image left is the subject's left here.
        eye_a, eye_b, mouth_a, mouth_b = eye_b, eye_a, mouth_b, mouth_a
    mid, iod = (eye_a + eye_b) / 2, float(np.linalg.norm(eye_b - eye_a))
    e = (eye_b - eye_a) / max(iod, 1e-9)
    n = np.array([-e[1], e[0]])
    along, across = (p - mid) @ e, (p - mid) @ n
    band = np.abs(across) <= SIDE_BAND * iod
    lo, hi = along[band].min(), along[band].max()
    return np.stack([eye_a, eye_b, p[NOSE_TIP], mouth_a, mouth_b,
                     p[list(LIPS)].mean(0), p[CHIN], mid + lo * e,
                     mid + hi * e])
