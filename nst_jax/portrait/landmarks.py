"""Hand-placed face landmarks and the thin-plate-spline warp they define.

Two modules, one concept each; this one gathers their names so
``landmarks.read``, ``landmarks.warp_flow`` and the rest stay where
callers look for them:

- :mod:`nst_jax.portrait.landmark_file`: the landmark file's format (JSON
  with image, size, points and names), read, checked and written, and its
  points brought to the size their image is used at;
- :mod:`nst_jax.portrait.landmark_warp`: the morph those points define, as
  a flow of style (y, x) per content pixel (``portrait.flow``) or the
  morphed style image.
"""

from nst_jax.portrait.landmark_file import (
    MIN_POINTS, NAMES, Landmarks, check_pair, load, read, to_frame, to_json)
from nst_jax.portrait.landmark_warp import (
    BLEND_BAND, FRAME_ANCHORS, warp_flow, warp_image)

__all__ = ["BLEND_BAND", "FRAME_ANCHORS", "Landmarks", "MIN_POINTS", "NAMES",
           "check_pair", "load", "read", "to_frame", "to_json", "warp_flow",
           "warp_image"]
