"""Stylize one image: python scripts/run.py --config=configs/portrait.py

Flags:
  --config   a config file (configs/*.py, optionally :ARG), overridable per
             field: --config.size=768 --config.style=starry.jpg
  --workdir  run directory (default runs/<UTC time>-<config name>); an
             existing non-empty one is refused.
The last line on stdout is the path of final.png. Exit status: 0 done,
2 bad input, 3 loss diverged, 130 interrupted.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from nst_jax import runner  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/default.py", "Run config file.", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Run directory to create.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    return runner.main(
        _CONFIG.value, _WORKDIR.value,
        config_file=config_flags.get_config_filename(flags.FLAGS["config"]),
        overrides={k: list(v) if isinstance(v, tuple) else v for k, v in
                   config_flags.get_override_values(
                       flags.FLAGS["config"]).items()})


if __name__ == "__main__":
    app.run(main, flags_parser=runner.parse_flags)
