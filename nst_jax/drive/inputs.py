"""Turns a config into the arrays one scale of a run needs.

Reads and validates the content, style, mask, init and flow inputs and
applies colour preservation, all as RGB 0..255 numpy arrays. Nothing here
is traced. :func:`check` validates every input file once, before a run
directory exists.
"""

from __future__ import annotations

import os
from typing import NamedTuple, Optional

import ml_collections
import numpy as np

from nst_jax import config as cfg, faces
from nst_jax.errors import UserError
from nst_jax.io import images
from nst_jax.optimize import color
from nst_jax.portrait import landmarks
from nst_jax.vgg import vgg19

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))), "assets")
DEFAULT_CONTENT = os.path.join(ASSETS, "content.jpg")
DEFAULT_STYLE = os.path.join(ASSETS, "style.jpg")
# Relative aspect-ratio tolerance for masks and flows against the content.
_ASPECT_TOLERANCE = 0.02


IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff",
                    ".bmp", ".gif")


def content_path(config: ml_collections.ConfigDict) -> str:
    return config.content or DEFAULT_CONTENT


def content_files(config: ml_collections.ConfigDict) -> list[str]:
    """The photos of a run: ``content`` itself, the images in the folder
    it names (by extension, sorted by name), or the files it lists
    separated by commas (in that order; a path that exists as written is
    one file, commas and all).

    Raises:
      UserError: a folder with no image files; a listed file missing.
    """
    path = content_path(config)
    if "," in path and not os.path.exists(path):
        files = [p.strip() for p in path.split(",") if p.strip()]
        for f in files:
            if not os.path.isfile(f):
                raise UserError(
                    f"content file {f} does not exist" + (
                        " or is a folder" if os.path.exists(f) else "")
                    + f" (content lists {len(files)} files separated by "
                    "commas)")
        return files
    if not os.path.isdir(path):
        return [path]
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if f.lower().endswith(IMAGE_EXTENSIONS)
                   and os.path.isfile(os.path.join(path, f)))
    if not files:
        raise UserError(f"content folder {path} holds no image files ("
                        f"{', '.join(IMAGE_EXTENSIONS)})")
    return files


def several_photos(config: ml_collections.ConfigDict) -> bool:
    """Whether ``content`` names a folder or lists several files."""
    path = content_path(config)
    return os.path.isdir(path) or ("," in path and not os.path.exists(path))


def style_paths(config: ml_collections.ConfigDict) -> list[str]:
    style = config.style
    if isinstance(style, str):  # Tolerate a bare string from Python callers.
        style = (style,) if style else ()
    return list(style) or [DEFAULT_STYLE]


def input_paths(config: ml_collections.ConfigDict) -> dict[str, str]:
    """Every file a run reads, by role (for hashing in the manifest)."""
    paths = {"content": content_path(config)}
    for i, p in enumerate(style_paths(config)):
        paths[f"style{i}"] = p
    for i, p in enumerate(config.masks):
        paths[f"mask{i}"] = p
    if config.init == "file":
        paths["init"] = config.init_path
    P = config.portrait
    if P.enabled and P.align == "masks":
        paths["content_mask"] = P.content_mask
        paths["style_mask"] = P.style_mask
    if P.enabled and P.align == "flow":
        paths["flow"] = P.flow
    if P.enabled and P.align in ("features", "landmarks", "auto") and (
            P.content_landmarks):
        paths["content_landmarks"] = P.content_landmarks
        paths["style_landmarks"] = P.style_landmarks
    return paths


class ScaleInputs(NamedTuple):
    content_rgb: np.ndarray  # What the content loss sees (maybe luminance).
    original_rgb: np.ndarray  # The content photo, for colour recombination.
    style_rgbs: list  # One per style, colour-processed.
    masks: Optional[np.ndarray]  # (S, H, W) in 0..1 or None.
    init_rgb: Optional[np.ndarray]  # For init "style" / "file".


def min_side(config: ml_collections.ConfigDict) -> int:
    """Smallest image side the deepest layer in use can work with."""
    layers = list(config.loss.content_layers) + list(config.loss.style_layers)
    return vgg19.STRIDE[vgg19.deepest(layers)]


def _check_aspect(what: str, hw: tuple, image_hw: tuple,
                  image: str = "the content image") -> None:
    (h, w), (ih, iw) = hw, image_hw
    if abs(w / h - iw / ih) > _ASPECT_TOLERANCE * (iw / ih):
        raise UserError(f"{what} is {w}x{h} but {image} is {iw}x{ih}; it "
                        "must have that image's shape (any scale)")


def load_flow(path: str, content_hw: tuple) -> np.ndarray:
    """A portrait flow file: (H, W, 2) float source (y, x) per pixel.

    Any size with the content's aspect ratio (it is rescaled per scale).

    Raises:
      UserError: missing, unreadable, wrong shape or dtype, NaN/inf.
    """
    if not path:
        raise UserError("portrait.align is 'flow' but portrait.flow is "
                        "empty; give an .npy of (H, W, 2) source coords")
    try:
        flow = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise UserError(f"flow {path}: cannot read it as an .npy array "
                        f"({' '.join(str(e).split())})") from None
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


def load_landmarks(config: ml_collections.ConfigDict, content_hw: tuple
                   ) -> tuple[np.ndarray, np.ndarray]:
    """The portrait's landmark pair as (y, x) arrays: the photo's in its
    (H, W) at this scale, the painting's in the painting resized to that
    frame (as the gains see it).

    Raises:
      UserError: unreadable or invalid files, or points that do not pair.
    """
    P = config.portrait
    style_hw = images.load(style_paths(config)[0],
                           max_pixels=config.max_pixels).shape[:2]
    marks = [landmarks.read(p) for p in (P.content_landmarks,
                                         P.style_landmarks)]
    content = landmarks.load(marks[0], content_hw)
    style = landmarks.to_frame(landmarks.load(marks[1], style_hw),
                               style_hw, content_hw)
    landmarks.check_pair(*marks)
    return content, style


def detects_faces(config: ml_collections.ConfigDict) -> bool:
    """Whether the run looks for faces: align=auto without landmark
    files (files win over detection)."""
    P = config.portrait
    return bool(P.enabled and P.align == "auto" and not P.content_landmarks)


def face_search(config: ml_collections.ConfigDict
                ) -> dict[str, faces.Search]:
    """{"content": ..., "style": ...}: the face search on the photo and
    on the first painting (each once per file and process).

    Raises:
      UserError: an unreadable image or face weights file.
    """
    P = config.portrait
    return {role: faces.find_file(path, P.face_weights, config.max_pixels)
            for role, path in (("content", content_path(config)),
                               ("style", style_paths(config)[0]))}


def detected_landmarks(config: ml_collections.ConfigDict, content_hw: tuple
                       ) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """As :func:`load_landmarks`, from the faces found on both images;
    None when either has none (the run aligns by features instead)."""
    found = face_search(config)
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


def check(config: ml_collections.ConfigDict) -> None:
    """Validates every input file of ``config`` without running anything.

    Decodes each image once at the first scale (a bad file fails here,
    before a run directory exists) and checks masks and flows against the
    content's shape.

    Raises:
      UserError: one line naming the file and the problem.
    """
    for role, path in input_paths(config).items():
        if not path:
            raise UserError(f"{role} path is empty")
        if not os.path.exists(path):
            raise UserError(f"{role} file {path} does not exist")
        if os.path.isdir(path):
            raise UserError(f"{role} path {path} is a directory; give an "
                            "image file")
    inp = prepare(config, cfg.scales(config)[0][0])
    hw = inp.content_rgb.shape[:2]
    P = config.portrait
    if P.enabled and P.align == "masks":
        # Each face mask must have the shape of the image it outlines.
        for what, path, image in (
                ("portrait.content_mask", P.content_mask,
                 content_path(config)),
                ("portrait.style_mask", P.style_mask, style_paths(config)[0])):
            size = images.load(path, max_pixels=config.max_pixels).shape[:2]
            _check_aspect(f"{what} {path}", size, images.load(
                image, max_pixels=config.max_pixels).shape[:2], image)
            _load_mask(path, hw, config.max_pixels, what)
    if P.enabled and P.align == "flow":
        load_flow(P.flow, hw)
    if "content_landmarks" in input_paths(config):
        load_landmarks(config, hw)


def prepare(config: ml_collections.ConfigDict, size: int) -> ScaleInputs:
    """Loads and preprocesses every image for one scale (long side size)."""
    need = min_side(config)
    content = images.load(content_path(config), size,
                          max_pixels=config.max_pixels, min_side=need)
    h, w = content.shape[:2]
    if min(h, w) < need:
        raise UserError(
            f"at size {size} the content image is {w}x{h} px, smaller than "
            f"the {need} px the deepest layer needs; raise --config.size")
    style_size = max(int(round(size * config.style_scale)), need)
    styles = [images.load(p, style_size, max_pixels=config.max_pixels,
                          min_side=need) for p in style_paths(config)]
    original = content
    mode = config.color.preserve
    if mode == "luminance":
        styles = [color.match_luminance(s, content) for s in styles]
        content = color.to_luminance_rgb(content)
    elif mode == "match":
        styles = [color.match_color(s, content, config.color.match_method)
                  for s in styles]
    masks = None
    if config.masks:
        original_hw = images.load(content_path(config),
                                  max_pixels=config.max_pixels).shape[:2]
        for p in config.masks:
            _check_aspect(f"mask {p}", images.load(
                p, max_pixels=config.max_pixels).shape[:2], original_hw)
        masks = np.stack([_load_mask(p, (h, w), config.max_pixels, "mask")
                          for p in config.masks])
    init = None
    if config.init == "style":
        init = images.resize(styles[0], (h, w))
    elif config.init == "file":
        init = images.resize(images.load(config.init_path,
                                          max_pixels=config.max_pixels),
                             (h, w))
    return ScaleInputs(content, original, styles, masks, init)
