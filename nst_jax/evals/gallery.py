"""The README gallery: every preset and feature, run on the embedded pair.

:data:`ENTRIES` lists what the README shows: each shipped preset, colour
preservation, two styles blended, and the style-weight sweep's contact
sheet. :func:`build` runs each through the same runner as
``scripts/run.py`` (and ``scripts/sweep.py``) into a scratch directory and
keeps one small JPEG per entry (under :data:`MAX_BYTES`), so the pictures
in the README are what the presets do today::

    python scripts/gallery.py            # rewrites docs/gallery/*.jpg

Entries run at their preset's own size up to :data:`DEFAULT_SIZE` (the
CPU-friendly gallery size; the sweep keeps its 128 px).

The embedded astronaut and Starry Night are the only inputs, except the
blend's second painting, which is read by path (``second_style``; by
default The Great Wave from ``../shared/images``, never committed).
"""

from __future__ import annotations

import io
import os
import shutil
import sys
import tempfile
import time
from typing import Callable, NamedTuple, Optional, TextIO

import ml_collections
import numpy as np
from PIL import Image

from nst_jax import config as cfg, plan as plan_lib
from nst_jax.app import config_file, runner, sweep
from nst_jax.errors import UserError
from nst_jax.io import atomic, images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
#: Presets larger than this are shown at this size (scripts/gallery.py).
DEFAULT_SIZE = 256
#: Each gallery JPEG stays under this many bytes.
MAX_BYTES = 100_000
#: The blend's second painting: public domain, kept outside the project.
SECOND_STYLE = os.path.join(os.path.dirname(ROOT), "shared", "images",
                            "style", "great_wave.jpg")


class Entry(NamedTuple):
    name: str  # JPEG file stem.
    config_file: str  # Relative to the checkout.
    overrides: dict  # Dotted config fields.
    caption: str  # What the picture should show.
    sweep: bool = False


ENTRIES = (
    Entry("default", "configs/default.py", {},
          "Gatys 2016 from the fast network's painting"),
    Entry("seed_paper", "configs/seed_paper.py", {},
          "the IJERT 2021 layer choice"),
    Entry("portrait", "configs/portrait.py", {},
          "portrait preset: gain maps, 128 -> 256 px"),
    Entry("fast", "configs/fast.py", {}, "one forward pass (Ghiasi 2017)"),
    Entry("luminance", "configs/default.py", {"color.preserve": "luminance"},
          "colour preservation: the photo's colours kept"),
    Entry("blend", "configs/default.py", {"style_blend": (0.5, 0.5)},
          "Starry Night and a second painting, half each"),
    Entry("sweep", "configs/sweep_style_weight.py", {},
          "the sweep example's contact sheet", sweep=True),
)


def at_size(config: ml_collections.ConfigDict, size: int
            ) -> ml_collections.ConfigDict:
    """The config with its last scale at ``size`` px, every coarser scale
    scaled by the same factor (so a coarse-to-fine preset keeps its shape)."""
    over = {"size": size}
    sizes = tuple(config.multiscale.sizes)
    if sizes:
        over["multiscale.sizes"] = tuple(
            max(16, round(s * size / sizes[-1])) for s in sizes[:-1]) + (size,)
    return cfg.override(config, over)


def with_steps(config: ml_collections.ConfigDict, steps: int
               ) -> ml_collections.ConfigDict:
    """Every scale cut to ``steps`` steps (a smoke run, not a picture)."""
    over = {"optim.steps": steps, "log_every": min(steps, config.log_every)}
    if config.multiscale.steps:
        over["multiscale.steps"] = (steps,) * len(config.multiscale.steps)
    return cfg.override(config, over)


def save_jpeg(rgb, path: str, max_bytes: int = MAX_BYTES) -> int:
    """Writes ``rgb`` as the best-quality JPEG under ``max_bytes``; returns
    its size. Quality steps down from 90, then the image is shrunk."""
    im = Image.fromarray(images.to_uint8(rgb))
    while True:
        for quality in range(90, 49, -5):
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=quality, optimize=True)
            if buf.tell() <= max_bytes:
                atomic.write_bytes(path, buf.getvalue())
                return buf.tell()
        im = im.resize((max(1, im.width * 3 // 4), max(1, im.height * 3 // 4)),
                       Image.LANCZOS)


def entry_config(entry: Entry, size: Optional[int], steps: Optional[int],
                 second_style: str) -> ml_collections.ConfigDict:
    config = config_file.get_config(os.path.join(ROOT, entry.config_file))
    over = dict(entry.overrides)
    if "style_blend" in over:
        over["style"] = (plan_lib.from_config(config).style[0], second_style)
    config = cfg.override(config, over)
    if size and size < config.size:
        config = at_size(config, size)
    if steps:
        config = with_steps(config, steps)
    return config


def build(out_dir: str, *, size: Optional[int] = None,
          steps: Optional[int] = None, only: Optional[list] = None,
          second_style: str = SECOND_STYLE, vgg_params=None,
          keep_runs: Optional[str] = None, out: TextIO = sys.stderr,
          sweep_fn: Optional[Callable] = None) -> dict[str, dict]:
    """Runs each entry and writes ``out_dir/<name>.jpg``.

    Args:
      out_dir: where the JPEGs go (created).
      size: the largest last-scale size: presets above it are scaled
        down (coarse-to-fine ones keep their ratios); None keeps each
        preset's own.
      steps: steps per scale override (for smoke tests); None keeps them.
      only: entry names to build (default all).
      second_style: the blend's second painting.
      vgg_params: VGG19 parameters to use instead of the real ones (tests).
      keep_runs: keep the run directories here (default: a temporary one,
        deleted).
      sweep_fn: the sweep entry's ``sweep(add)`` (default: its file's).

    Returns:
      {name: {"path", "bytes", "wall_s", "caption"}}.

    Raises:
      UserError: an unknown entry name, or a missing second painting.
    """
    names = [e.name for e in ENTRIES]
    unknown = sorted(set(only or ()) - set(names))
    if unknown:
        raise UserError(f"unknown gallery entries {unknown}; choose from "
                        f"{names}")
    todo = [e for e in ENTRIES if not only or e.name in only]
    if any("style_blend" in e.overrides for e in todo) and not os.path.isfile(
            second_style):
        raise UserError(f"the blend's second painting {second_style} does "
                        "not exist; pass --second_style=PATH or leave the "
                        "blend out with --only")
    os.makedirs(out_dir, exist_ok=True)
    scratch = keep_runs or tempfile.mkdtemp(prefix="nst_gallery_")
    done = {}
    try:
        for entry in todo:
            config = entry_config(entry, size, steps, second_style)
            workdir = os.path.join(scratch, entry.name)
            print(f"[gallery] {entry.name}: {entry.caption}", file=out,
                  flush=True)
            t0 = time.perf_counter()
            if entry.sweep:
                fn = sweep_fn or sweep.load_sweep_fn(
                    os.path.join(ROOT, entry.config_file))
                picture = sweep.run_sweep(config, fn, workdir,
                                          vgg_params=vgg_params,
                                          out=out)["contact_sheet"]
            else:
                picture = runner.execute(config, workdir,
                                         vgg_params=vgg_params, out=out)
            path = os.path.join(out_dir, entry.name + ".jpg")
            nbytes = save_jpeg(np.asarray(images.load(picture)), path)
            done[entry.name] = {"path": path, "bytes": nbytes,
                                "wall_s": round(time.perf_counter() - t0, 1),
                                "caption": entry.caption}
            print(f"[gallery] {entry.name}: {path} ({nbytes // 1000} KB, "
                  f"{done[entry.name]['wall_s']} s)", file=out, flush=True)
    finally:
        if not keep_runs:
            shutil.rmtree(scratch, ignore_errors=True)
    return done
