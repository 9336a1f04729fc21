"""Stylize one image: python scripts/run.py --config=configs/portrait.py

Flags:
  --config   a config file (configs/*.py, optionally :ARG), overridable per
             field: --config.size=768 --config.style=starry.jpg
  --workdir  run directory (default runs/<UTC time>-<config name>); an
             existing non-empty one is refused.
The last line on stdout is the path of final.png. Exit status: 0 done,
2 bad input, 3 loss diverged, 130 interrupted. JAX's and XLA's log goes
to log.txt in the run directory. Compiled programs are cached across runs
(--config.compile_cache, see nst_jax/app/compile_cache.py). Continue an
interrupted run (made with --config.checkpoint_every=N) with
--config=configs/replay.py:RUN_DIR --config.resume=RUN_DIR.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from nst_jax.app import cli, compile_cache, runner  # noqa: E402

config_flags.DEFINE_config_file(
    "config", "configs/default.py", "Run config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory to create.")


def main(argv):
    cli.no_arguments(argv)
    cli.quiet_console()
    config = cli.load_config()
    compile_cache.enable(config.compile_cache)  # Before the first jit.
    return runner.main(config, _WORKDIR.value,
                       config_file=cli.config_file(),
                       overrides=cli.overrides())


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
