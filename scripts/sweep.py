"""Run a sweep: python scripts/sweep.py --config=configs/sweep_style_weight.py

Flags:
  --config       a sweep file: get_config() (overridable per field, e.g.
                 --config.size=256) and sweep(add), read from the same file.
  --workdir      sweep directory (default runs/<UTC time>-sweep-<name>); an
                 existing non-empty one is refused.
  --distributed  call jax.distributed.initialize() first: one process per
                 host, same command on every host (see nst_jax/sweep.py).
The last line on stdout is the sweep directory. Exit status: 0 done (a
diverged member is a result, see results.csv), 2 bad input, 130 interrupted.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from nst_jax import runner, sweep, sweep_runs  # noqa: E402
from nst_jax.errors import UserError  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/sweep_style_weight.py", "Sweep file.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory to create.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: jax.distributed.initialize() first.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _DISTRIBUTED.value:
        import jax  # Must run before any computation touches a device.
        jax.distributed.initialize()
    config_file = config_flags.get_config_filename(flags.FLAGS["config"])
    try:
        sweep_fn = sweep.load_sweep_fn(config_file)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return runner.EXIT_USER_ERROR
    return sweep_runs.main(_CONFIG.value, sweep_fn, _WORKDIR.value,
                      config_file=config_file)


if __name__ == "__main__":
    app.run(main, flags_parser=runner.parse_flags)
