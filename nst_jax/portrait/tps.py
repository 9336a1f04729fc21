"""Thin-plate splines: the smooth 2-D warp fitted to point pairs, and the
convex-hull distance used to fade it out away from the points."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def check_geometry(points: np.ndarray) -> None:
    """Raises ValueError if points coincide or all lie on one line.

    Either makes the spline's linear system singular.
    """
    p = np.asarray(points, np.float64)
    gaps = np.linalg.norm(p[:, None] - p[None], axis=-1)
    np.fill_diagonal(gaps, np.inf)
    if gaps.min() < 1e-3:
        raise ValueError("two points coincide; each must be distinct")
    sv = np.linalg.svd(p - p.mean(0), compute_uv=False)
    if sv[1] <= 1e-6 * sv[0]:
        raise ValueError("the points lie on one line; a 2-d warp needs "
                         "them spread in both directions")


class Spline(NamedTuple):
    """A fitted thin-plate spline in normalised coordinates."""
    centres: np.ndarray    # (N, 2) source points, normalised
    bend: np.ndarray       # (N, 2) kernel weights
    affine: np.ndarray     # (3, 2) rows: constant, y, x
    mean: np.ndarray       # (2,) normalisation offset
    scale: float           # normalisation scale


def _kernel(q_Px2: np.ndarray, c_Nx2: np.ndarray) -> np.ndarray:
    # U(r) = r^2 log r = r^2 log(r^2) / 2, with U(0) = 0.
    r2 = np.sum((q_Px2[:, None] - c_Nx2[None]) ** 2, axis=-1)
    return 0.5 * r2 * np.log(np.where(r2 > 0, r2, 1.0))


def fit(src_yx: np.ndarray, dst_yx: np.ndarray,
               smoothing: float = 0.0) -> Spline:
    """Thin-plate spline with affine part mapping ``src`` onto ``dst``.

    Coordinates are centred and scaled by the source points' RMS radius,
    so ``smoothing`` (added to the kernel's diagonal; 0 interpolates
    exactly) does not depend on the image size.
    """
    src = np.asarray(src_yx, np.float64)
    dst = np.asarray(dst_yx, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2:
        raise ValueError(f"point arrays must both be (N, 2), got "
                         f"{src.shape} and {dst.shape}")
    check_geometry(src)
    mean = src.mean(0)
    scale = float(np.sqrt(np.mean(np.sum((src - mean) ** 2, axis=-1))))
    c = (src - mean) / scale
    n = len(c)
    lhs = np.zeros((n + 3, n + 3))
    lhs[:n, :n] = _kernel(c, c) + smoothing * np.eye(n)
    lhs[:n, n:] = np.concatenate([np.ones((n, 1)), c], axis=1)
    lhs[n:, :n] = lhs[:n, n:].T
    rhs = np.concatenate([dst, np.zeros((3, 2))])
    sol = np.linalg.solve(lhs, rhs)
    return Spline(c, sol[:n], sol[n:], mean, scale)


def parts(spline: Spline, pts_yx: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(affine part, bending part) of the spline at (P, 2) points."""
    q = (np.asarray(pts_yx, np.float64) - spline.mean) / spline.scale
    affine = spline.affine[0] + q @ spline.affine[1:]
    return affine, _kernel(q, spline.centres) @ spline.bend


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull vertices, counter-clockwise (monotone chain)."""
    pts = sorted(set(map(tuple, np.asarray(points, np.float64))))

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    def half(seq):
        out = []
        for p in seq:
            while len(out) >= 2 and cross(out[-2], out[-1], p) <= 0:
                out.pop()
            out.append(p)
        return out[:-1]

    return np.asarray(half(pts) + half(pts[::-1]))


def hull_distance(points: np.ndarray, pts_yx: np.ndarray) -> np.ndarray:
    """Distance of (P, 2) points from the hull of ``points``; 0 inside."""
    v = _hull(points)
    a, e = v, np.roll(v, -1, axis=0) - v
    q = np.asarray(pts_yx, np.float64)[:, None] - a[None]     # (P, K, 2)
    inside = np.all(e[None, :, 0] * q[..., 1] - e[None, :, 1] * q[..., 0]
                    >= 0, axis=1)
    t = np.clip(np.sum(q * e, -1) / np.sum(e * e, -1), 0.0, 1.0)
    dist = np.linalg.norm(q - t[..., None] * e, axis=-1).min(axis=1)
    return np.where(inside, 0.0, dist)
