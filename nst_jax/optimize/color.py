"""Colour preservation for style transfer (Gatys et al. 2017, section 5).

Two ways to keep the content photo's colours:

* ``"luminance"``: transfer style on luminance only. Style and content are
  turned into grey images (Y replicated to three channels so VGG can read
  them), the style's Y is shifted and scaled to the content's Y mean and
  standard deviation, and after optimisation the output's Y is recombined
  with the content's chrominance (I and Q of YIQ).
* ``"match"``: recolour the *style* image so its colour distribution matches
  the content's, then run ordinary transfer. :func:`match_color` offers a
  linear mean/covariance match (Cholesky or symmetric square root) and an
  exact per-channel histogram match.

Images are float RGB arrays ``(..., H, W, 3)`` in 0..255. The YIQ helpers
also accept JAX arrays so they can run inside jitted code; the rest work on
NumPy and return float32.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PRESERVE_MODES = ("none", "luminance", "match")
MATCH_METHODS = ("linear", "sym", "histogram")

# NTSC (FCC) RGB -> YIQ. The Y row sums to exactly 1 so white stays 255, and
# the I and Q rows sum to 0 so greys have no chrominance.
_RGB_TO_YIQ = np.array([
    [0.299, 0.587, 0.114],
    [0.5959, -0.2746, -0.3213],
    [0.2115, -0.5227, 0.3112],
])
# The exact inverse rather than the rounded textbook matrix, so that a round
# trip is lossless to float precision.
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


def _apply_matrix(x: Any, matrix: np.ndarray) -> Any:
    """``x @ matrix.T`` on the last axis, keeping NumPy vs JAX and dtype."""
    if isinstance(x, jax.Array):
        dtype = x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else (
            jnp.float32)
        return jnp.asarray(x, dtype) @ jnp.asarray(matrix.T, dtype)
    x = np.asarray(x)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float32
    if x.shape[-1:] != (3,):
        raise ValueError(f"expected a last axis of size 3, got shape "
                         f"{x.shape}")
    # Multiply in float64 and cast back: cheap and keeps round trips tight.
    return (x.astype(np.float64) @ matrix.T).astype(dtype)


def rgb_to_yiq(rgb: Any) -> Any:
    """Converts RGB to YIQ on the last axis.

    Args:
        rgb: NumPy or JAX array ``(..., 3)``, any range (0..255 here).

    Returns:
        Array of the same kind and shape: Y in the RGB range, I and Q signed.
    """
    return _apply_matrix(rgb, _RGB_TO_YIQ)


def yiq_to_rgb(yiq: Any) -> Any:
    """Inverse of :func:`rgb_to_yiq` (no clipping).

    Args:
        yiq: NumPy or JAX array ``(..., 3)``.

    Returns:
        RGB array of the same kind and shape.
    """
    return _apply_matrix(yiq, _YIQ_TO_RGB)


def luminance(rgb: Any) -> Any:
    """Y channel of an RGB image.

    Args:
        rgb: NumPy or JAX array ``(..., H, W, 3)``.

    Returns:
        Array ``(..., H, W)``.
    """
    return rgb_to_yiq(rgb)[..., 0]


def to_luminance_rgb(rgb: Any) -> Any:
    """Grey image whose three channels all equal the input's Y.

    Args:
        rgb: NumPy or JAX array ``(..., H, W, 3)``.

    Returns:
        Array of the same shape; VGG sees luminance only.
    """
    y = luminance(rgb)[..., None]
    if isinstance(y, jax.Array):
        return jnp.repeat(y, 3, axis=-1)
    return np.repeat(y, 3, axis=-1)


def match_luminance(style_rgb: Any, content_rgb: Any,
                    eps: float = 1e-6) -> np.ndarray:
    """Style as a grey image with its Y mean/std matched to the content's.

    Implements ``L_s' = sigma_c / sigma_s * (L_s - mu_s) + mu_c``, so that
    the style's overall brightness and contrast do not leak into the output.

    Args:
        style_rgb: Style image ``(H, W, 3)`` in 0..255.
        content_rgb: Content image ``(H', W', 3)``; sizes may differ.
        eps: Guards the division for a flat (constant) style image.

    Returns:
        float32 ``(H, W, 3)`` grey image, clipped to 0..255.
    """
    ys = luminance(np.asarray(style_rgb, np.float64))
    yc = luminance(np.asarray(content_rgb, np.float64))
    scale = yc.std() / max(ys.std(), eps)
    y = (ys - ys.mean()) * scale + yc.mean()
    y = np.clip(y, 0.0, 255.0)
    return np.repeat(y[..., None], 3, axis=-1).astype(np.float32)


def recombine_luminance(output_rgb: Any, content_rgb: Any) -> np.ndarray:
    """Output's luminance with the content's chrominance.

    Args:
        output_rgb: Stylised luminance-only result ``(H, W, 3)``; only its Y
            is used, so a slightly coloured result is fine.
        content_rgb: Content image of the same shape.

    Returns:
        float32 RGB ``(H, W, 3)`` clipped to 0..255.

    Raises:
        ValueError: If the two shapes differ.
    """
    out = np.asarray(output_rgb, np.float64)
    content = np.asarray(content_rgb, np.float64)
    if out.shape != content.shape:
        raise ValueError(
            f"recombine_luminance needs output and content of the same "
            f"shape, got {out.shape} and {content.shape}; resize the content "
            f"to the output first")
    yiq = rgb_to_yiq(content)
    yiq[..., 0] = luminance(out)
    return np.clip(yiq_to_rgb(yiq), 0.0, 255.0).astype(np.float32)


def _mean_cov(pixels: np.ndarray, eps: float) -> tuple[np.ndarray,
                                                       np.ndarray]:
    """Mean and regularised covariance of ``(N, 3)`` pixels.

    ``eps`` is relative to the mean channel variance, so the ridge means the
    same for any image scale; the absolute floor keeps a flat image's
    covariance invertible.
    """
    mu = pixels.mean(axis=0)
    centred = pixels - mu
    cov = centred.T @ centred / pixels.shape[0]
    ridge = eps * np.trace(cov) / 3.0 + 1e-8
    return mu, cov + ridge * np.eye(3)


def _sym_power(cov: np.ndarray, power: float) -> np.ndarray:
    """Symmetric matrix power of an SPD matrix via its eigendecomposition."""
    vals, vecs = np.linalg.eigh(cov)
    # eigh may return tiny negative eigenvalues from round-off.
    vals = np.maximum(vals, 1e-12)
    return (vecs * vals**power) @ vecs.T


def _histogram_match(style: np.ndarray, content: np.ndarray) -> np.ndarray:
    """Per-channel exact histogram matching of ``(N, 3)`` pixel sets.

    Each style pixel's rank is mapped to the content value at the same
    quantile. Ranking (not value lookup) breaks ties, so the output's sorted
    values are exactly the content's quantiles even for flat regions.
    """
    n_s, n_c = style.shape[0], content.shape[0]
    q_style = (np.arange(n_s) + 0.5) / n_s
    q_content = (np.arange(n_c) + 0.5) / n_c
    out = np.empty_like(style)
    for ch in range(3):
        order = np.argsort(style[:, ch], kind="stable")
        targets = np.interp(q_style, q_content, np.sort(content[:, ch]))
        out[order, ch] = targets
    return out


def match_color(style_rgb: Any, content_rgb: Any, method: str = "linear",
                eps: float = 1e-4) -> np.ndarray:
    """Recolours the style image so its colours follow the content's.

    Args:
        style_rgb: Style image ``(H, W, 3)`` in 0..255.
        content_rgb: Content image ``(H', W', 3)``; sizes may differ.
        method: ``"linear"``: ``x' = L_c L_s^-1 (x - mu_s) + mu_c`` with
            ``L`` the Cholesky factors of the pixel covariances;
            ``"sym"``: the same with ``C_c^1/2 C_s^-1/2`` (symmetric square
            roots), which rotates colours less; ``"histogram"``: exact
            per-channel histogram matching.
        eps: Ridge added to both covariances, as a fraction of the mean
            channel variance. It bounds the gain along colour directions the
            style barely uses (e.g. a near-grey style), at the cost of a
            matching error of about that relative size.

    Returns:
        float32 array with the style image's shape, clipped to 0..255.

    Raises:
        ValueError: If ``method`` is unknown or an image is not ``(..., 3)``.
    """
    if method not in MATCH_METHODS:
        raise ValueError(f"unknown colour match method {method!r}; valid: "
                         f"{', '.join(MATCH_METHODS)}")
    style = np.asarray(style_rgb, np.float64)
    content = np.asarray(content_rgb, np.float64)
    for name, img in (("style", style), ("content", content)):
        if img.shape[-1:] != (3,):
            raise ValueError(f"{name} image must end in 3 channels, got "
                             f"shape {img.shape}")
    s_pix = style.reshape(-1, 3)
    c_pix = content.reshape(-1, 3)
    if method == "histogram":
        out = _histogram_match(s_pix, c_pix)
    else:
        mu_s, cov_s = _mean_cov(s_pix, eps)
        mu_c, cov_c = _mean_cov(c_pix, eps)
        if method == "linear":
            l_s = np.linalg.cholesky(cov_s)
            l_c = np.linalg.cholesky(cov_c)
            # L_c L_s^-1 without forming the inverse explicitly.
            transform = l_c @ np.linalg.solve(l_s, np.eye(3))
        else:
            transform = _sym_power(cov_c, 0.5) @ _sym_power(cov_s, -0.5)
        out = (s_pix - mu_s) @ transform.T + mu_c
    out = np.clip(out, 0.0, 255.0)
    return out.reshape(style.shape).astype(np.float32)
