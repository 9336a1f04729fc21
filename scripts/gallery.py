"""Regenerate the README gallery: python scripts/gallery.py

Runs every preset and feature of nst_jax.evals.gallery.ENTRIES on the embedded
astronaut and Starry Night (the blend adds --second_style) and writes one
JPEG under 100 KB each to --out_dir (default docs/gallery). On a 2-core CPU
the whole gallery took 32 minutes (one run at 256 px).

Flags:
  --only        entry names (default all): default, seed_paper, portrait,
                fast, luminance, blend, sweep
  --size        the largest last-scale size (default 256): presets above it
                are scaled down, the others keep their own
  --steps       steps per scale (default: each preset's own; for smoke runs)
  --keep_runs   keep the run directories there (default: deleted)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402

from nst_jax.app import cli, compile_cache, exits  # noqa: E402
from nst_jax.evals import gallery  # noqa: E402

_OUT = flags.DEFINE_string("out_dir", os.path.join(gallery.ROOT, "docs",
                                                   "gallery"),
                           "Where the JPEGs go.")
_ONLY = flags.DEFINE_list("only", [], "Entries to build (default all).")
_SIZE = flags.DEFINE_integer(
    "size", gallery.DEFAULT_SIZE,
    "Largest last-scale size: presets above it are scaled down.")
_STEPS = flags.DEFINE_integer("steps", None, "Steps per scale override.")
_SECOND = flags.DEFINE_string("second_style", gallery.SECOND_STYLE,
                              "The blend's second painting.")
_KEEP = flags.DEFINE_string("keep_runs", None,
                            "Keep the run directories here.")


def main(argv):
    cli.no_arguments(argv)
    cli.quiet_console()
    compile_cache.enable()  # As run.py does; NST_JAX_COMPILE_CACHE=0: off.
    def report(done):
        for name, d in done.items():
            print(f"{d['path']}\t{d['bytes']} bytes\t{d['wall_s']} s")
    return exits.call(
        lambda: gallery.build(_OUT.value, size=_SIZE.value,
                              steps=_STEPS.value, only=_ONLY.value,
                              second_style=_SECOND.value,
                              keep_runs=_KEEP.value),
        done=report, diverged="; the gallery was not finished",
        interrupted="interrupted: the JPEGs written so far are kept")


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
