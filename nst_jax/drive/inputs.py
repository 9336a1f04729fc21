"""Turns a plan into the arrays one scale of a run needs.

Reads and validates the content, style, mask, init and flow inputs and
applies colour preservation, all as RGB 0..255 numpy arrays. Nothing here
is traced. :func:`check` validates every input file once, before a run
directory exists.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple, Optional

import numpy as np

from nst_jax import faces, plan as plan_lib
from nst_jax.errors import UserError
from nst_jax.io import images
from nst_jax.optimize import color
from nst_jax.plan import Plan
from nst_jax.portrait import landmarks
from nst_jax.vgg import vgg19

# Relative aspect-ratio tolerance for masks and flows against the content.
_ASPECT_TOLERANCE = 0.02


class ScaleInputs(NamedTuple):
    content_rgb: np.ndarray  # What the content loss sees (maybe luminance).
    original_rgb: np.ndarray  # The content photo, for colour recombination.
    style_rgbs: list  # One per style, colour-processed.
    masks: Optional[np.ndarray]  # (S, H, W) in 0..1 or None.
    init_rgb: Optional[np.ndarray]  # For init "style" / "file".


def min_side(plan: Plan) -> int:
    """Smallest image side the deepest layer in use can work with."""
    layers = list(plan.loss.content_layers) + list(plan.loss.style_layers)
    return vgg19.STRIDE[vgg19.deepest(layers)]


def _check_aspect(what: str, hw: tuple, image_hw: tuple,
                  image: str = "the content image") -> None:
    (h, w), (ih, iw) = hw, image_hw
    if abs(w / h - iw / ih) > _ASPECT_TOLERANCE * (iw / ih):
        raise UserError(f"{what} is {w}x{h} but {image} is {iw}x{ih}; it "
                        "must have that image's shape (any scale)")


def _stamp(path: str) -> tuple:
    try:
        st = os.stat(path)
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=4)
def _read_npy(path: str, *stamp) -> np.ndarray:
    """An .npy file read once per process and version of the file (a
    run checks its flow, then warps by it at every scale)."""
    try:
        flow = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"flow {path}: cannot read it as an .npy array "
                        f"({' '.join(str(e).split())})") from None
    flow.setflags(write=False)
    return flow


def load_flow(path: str, content_hw: tuple) -> np.ndarray:
    """A portrait flow file: (H, W, 2) float source (y, x) per pixel.

    Any size with the content's aspect ratio (it is rescaled per scale).

    Raises:
      UserError: missing, unreadable, wrong shape or dtype, NaN/inf.
    """
    if not path:
        raise UserError("portrait.align is 'flow' but portrait.flow is "
                        "empty; give an .npy of (H, W, 2) source coords")
    flow = _read_npy(path, *_stamp(path))
    if (flow.ndim != 3 or flow.shape[-1] != 2 or min(flow.shape[:2]) < 1
            or not np.issubdtype(flow.dtype, np.number)):
        raise UserError(f"flow {path} has shape {flow.shape} and dtype "
                        f"{flow.dtype}; it must be a numeric (H, W, 2) "
                        "array of source (y, x) per content pixel")
    flow = flow.astype(np.float32)
    if not np.all(np.isfinite(flow)):
        raise UserError(f"flow {path} contains NaN or infinite coordinates")
    _check_aspect(f"flow {path}", flow.shape[:2], content_hw)
    return flow


def load_landmarks(plan: Plan, content_hw: tuple
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The portrait's landmark pair as (y, x) arrays: the photo's in its
    (H, W) at this scale, the painting's in the painting resized to that
    frame (as the gains see it).

    Raises:
      UserError: unreadable or invalid files, or points that do not pair.
    """
    P = plan.portrait
    style_hw = images.load(plan.style[0],
                           max_pixels=plan.max_pixels).shape[:2]
    marks = [landmarks.read(p) for p in (P.content_landmarks,
                                         P.style_landmarks)]
    content = landmarks.load(marks[0], content_hw)
    style = landmarks.to_frame(landmarks.load(marks[1], style_hw),
                               style_hw, content_hw)
    landmarks.check_pair(*marks)
    return content, style


def detects_faces(plan: Plan) -> bool:
    """Whether the run looks for faces: align=auto without landmark
    files (files win over detection)."""
    P = plan.portrait
    return bool(P.enabled and P.align == "auto" and not P.content_landmarks)


def face_search(plan: Plan
                ) -> dict[str, faces.Search]:
    """{"content": ..., "style": ...}: the face search on the photo and
    on the first painting (each once per file and process).

    Raises:
      UserError: an unreadable image or face weights file.
    """
    P = plan.portrait
    return {role: faces.find_file(path, P.face_weights, plan.max_pixels)
            for role, path in (("content", plan.content),
                               ("style", plan.style[0]))}


def detected_landmarks(plan: Plan, content_hw: tuple
                       ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """As :func:`load_landmarks`, from the faces found on both images;
    None when either has none (the run aligns by features instead)."""
    found = face_search(plan)
    if any(s.face is None for s in found.values()):
        return None
    return tuple(landmarks.to_frame(s.face.points_xy[:, ::-1], s.image_hw,
                                    content_hw)
                 for s in (found["content"], found["style"]))


def _load_mask(path: str, content_hw: tuple, max_pixels: int, what: str
               ) -> np.ndarray:
    mask = images.load_mask(path, content_hw, max_pixels)
    if not np.any(mask > 0):
        raise UserError(f"{what} {path} is empty (all black); it needs "
                        "some white")
    return mask


def check(plan: Plan) -> None:
    """Validates every input file of ``plan`` without running anything.

    Decodes each image once at the first scale (a bad file fails here,
    before a run directory exists) and checks masks and flows against the
    content's shape.

    Raises:
      UserError: one line naming the file and the problem.
    """
    inp = prepare(plan, plan.scales[0].size)
    hw = inp.content_rgb.shape[:2]
    P = plan.portrait
    if P.enabled and P.align == "masks":
        # Each face mask must have the shape of the image it outlines.
        for what, path, image in (
                ("portrait.content_mask", P.content_mask,
                 plan.content),
                ("portrait.style_mask", P.style_mask, plan.style[0])):
            size = images.load(path, max_pixels=plan.max_pixels).shape[:2]
            _check_aspect(f"{what} {path}", size, images.load(
                image, max_pixels=plan.max_pixels).shape[:2], image)
            _load_mask(path, hw, plan.max_pixels, what)
    if P.enabled and P.align == "flow":
        load_flow(P.flow, hw)
    if "content_landmarks" in plan_lib.input_paths(plan):
        load_landmarks(plan, hw)


def prepare(plan: Plan, size: int) -> ScaleInputs:
    """Loads and preprocesses every image for one scale (long side size)."""
    need = min_side(plan)
    content = images.load(plan.content, size,
                          max_pixels=plan.max_pixels, min_side=need)
    h, w = content.shape[:2]
    if min(h, w) < need:
        raise UserError(
            f"at size {size} the content image is {w}x{h} px, smaller than "
            f"the {need} px the deepest layer needs; raise --config.size")
    style_size = max(int(round(size * plan.style_scale)), need)
    styles = [images.load(p, style_size, max_pixels=plan.max_pixels,
                          min_side=need) for p in plan.style]
    original = content
    mode = plan.color.preserve
    if mode == "luminance":
        styles = [color.match_luminance(s, content) for s in styles]
        content = color.to_luminance_rgb(content)
    elif mode == "match":
        styles = [color.match_color(s, content, plan.color.match_method)
                  for s in styles]
    masks = None
    if plan.masks:
        original_hw = images.load(plan.content,
                                  max_pixels=plan.max_pixels).shape[:2]
        for p in plan.masks:
            _check_aspect(f"mask {p}", images.load(
                p, max_pixels=plan.max_pixels).shape[:2], original_hw)
        masks = np.stack([_load_mask(p, (h, w), plan.max_pixels, "mask")
                          for p in plan.masks])
    init = None
    if plan.init == "style":
        init = images.resize(styles[0], (h, w))
    elif plan.init == "file":
        init = images.resize(images.load(plan.init_path,
                                          max_pixels=plan.max_pixels),
                             (h, w))
    return ScaleInputs(content, original, styles, masks, init)
