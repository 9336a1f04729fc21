"""Run a sweep: python scripts/sweep.py --config=configs/sweep_style_weight.py

Flags:
  --config       a sweep file: get_config() (overridable per field, e.g.
                 --config.size=256) and sweep(add), read from the same file.
  --workdir      sweep directory (default runs/<UTC time>-sweep-<name>); an
                 existing non-empty one is refused.
  --distributed  call jax.distributed.initialize() first: one process per
                 host, same command on every host (see nst_jax/app/sweep.py);
                 --coordinator, --num_processes and --process_id where JAX
                 cannot find them itself.
The last line on stdout is the sweep directory. Exit status: 0 done (a
diverged member is a result, see results.csv), 2 bad input, 130
interrupted. JAX's and XLA's log goes to log.txt in the sweep directory.
Continue an interrupted sweep (made with
--config.checkpoint_every=N) with --config.resume=SWEEP_DIR.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))  # Run from a checkout without installing.

from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from nst_jax.app import cli, compile_cache, sweep  # noqa: E402
from nst_jax.errors import UserError  # noqa: E402

config_flags.DEFINE_config_file(
    "config", "configs/sweep_style_weight.py", "Sweep file.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Sweep directory to create.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False, "Multi-host: jax.distributed.initialize() first.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "With --distributed: host:port of process 0.")
_NUM_PROCESSES = flags.DEFINE_integer(
    "num_processes", None, "With --distributed: how many processes.")
_PROCESS_ID = flags.DEFINE_integer(
    "process_id", None, "With --distributed: this process's index.")


def main(argv):
    cli.no_arguments(argv)
    cli.quiet_console()
    if _DISTRIBUTED.value:
        cli.init_distributed(_COORDINATOR.value, _NUM_PROCESSES.value,
                             _PROCESS_ID.value)
    config = cli.load_config()
    compile_cache.enable(config.compile_cache)  # Before the first jit.
    try:
        sweep_fn = sweep.load_sweep_fn(cli.config_file())
    except UserError as e:
        cli.fail(str(e))
    return sweep.main(config, sweep_fn, _WORKDIR.value,
                      config_file=cli.config_file())


if __name__ == "__main__":
    app.run(main, flags_parser=cli.parse_flags)
