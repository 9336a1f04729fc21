"""config -> Plan, checked: the one place a run's config is read.

:func:`build` validates every field (:mod:`nst_jax.plan.validate`), checks
that every input file the run will read exists and is a file, and reads the
content's header once for the (H, W) of each scale. A bad config or input
fails here with one ``UserError`` line, before any other code opens a file.
"""

from __future__ import annotations

import dataclasses
import os

from nst_jax import config as cfg
from nst_jax.errors import UserError
from nst_jax.io import images, resizing
from nst_jax.plan import types, validate
from nst_jax.plan.types import Plan
from nst_jax.style import terms

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff",
                    ".bmp", ".gif")


def fields(config: cfg.Config) -> Plan:
    """The plan of ``config`` with every field checked; no file read.

    Raises:
      UserError: one line naming the field, the problem and what to do.
    """
    plan = types.from_config(config)
    validate.check(plan)
    return plan


def build(config: cfg.Config) -> Plan:
    """The checked plan of one run (one photo), scales sized.

    Raises:
      UserError: a bad field, a missing or unreadable input file, or a
        content that names several photos (split those first, see
        :func:`content_files`).
    """
    plan = fields(config)
    if several_photos(config.content):
        raise UserError(f"content {config.content} names several photos; "
                        "a plan is one photo (the runner makes one each)")
    for role, path in input_paths(plan).items():
        if not path:
            raise UserError(f"{role} path is empty")
        if not os.path.exists(path):
            raise UserError(f"{role} file {path} does not exist")
        if os.path.isdir(path):
            raise UserError(f"{role} path {path} is a directory; give an "
                            "image file")
    h, w = images.header_hw(plan.content)
    plan = dataclasses.replace(plan, content_hw=tuple(
        resizing.long_side_hw(h, w, s.size) for s in plan.scales))
    if plan.loss.style_loss in terms.PATCHES:
        heads = [images.header_hw(p) for p in plan.style]
        validate.style_sizes(plan, [
            [resizing.long_side_hw(*hw, round(s.size * plan.style_scale))
             for hw in heads] for s in plan.scales])
    return plan


def input_paths(plan: Plan) -> dict[str, str]:
    """Every file a run reads, by role (checked by :func:`build`, hashed
    in the manifest)."""
    paths = {"content": plan.content}
    for i, p in enumerate(plan.style):
        paths[f"style{i}"] = p
    for i, p in enumerate(plan.masks):
        paths[f"mask{i}"] = p
    if plan.init == "file":
        paths["init"] = plan.init_path
    P = plan.portrait
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


def several_photos(content: str) -> bool:
    """Whether a config's ``content`` names a folder or lists several
    files separated by commas."""
    path = content or types.DEFAULT_CONTENT
    return os.path.isdir(path) or ("," in path and not os.path.exists(path))


def content_files(content: str) -> list[str]:
    """The photos a config's ``content`` names: itself, the images in the
    folder it names (by extension, sorted by name), or the files it lists
    separated by commas (in that order; a path that exists as written is
    one file, commas and all).

    Raises:
      UserError: a folder with no image files; a listed file missing.
    """
    path = content or types.DEFAULT_CONTENT
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
