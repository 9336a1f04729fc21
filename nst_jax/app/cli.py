"""What the absl scripts share: flag parsing and config loading that turn
every bad flag or config file into one ``error:`` line and exit status 2,
a quiet console and the multi-host start."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Optional

import jax
import ml_collections
from absl import flags
from absl import logging as absl_logging
from ml_collections import config_flags

from nst_jax.app import rundir
from nst_jax.app.exits import EXIT_USER_ERROR
from nst_jax.errors import UserError


def _last_line(e: BaseException) -> str:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    return lines[-1] if lines else type(e).__name__


def fail(message: str) -> None:
    """Prints ``error: message`` on one line and exits with status 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


def no_arguments(argv: list[str]) -> None:
    """Refuses positional arguments (everything goes through flags): one
    line and exit 2, like a bad flag, instead of absl's usage text."""
    if len(argv) > 1:
        fail(f"unexpected arguments {argv[1:]}: this script takes only "
             "--flags (see --help)")


def parse_flags(argv: list[str]) -> list[str]:
    """absl flag parsing for the scripts: a bad flag is one line on stderr
    and exit 2 (pass as ``app.run(main, flags_parser=...)``)."""
    try:
        return flags.FLAGS(argv)
    except Exception as e:  # flags.Error, or UserError from a config file.
        fail(str(e).splitlines()[0] if str(e) else repr(e))


def config_file(name: str = "config") -> str:
    return config_flags.get_config_filename(flags.FLAGS[name])


def load_config(name: str = "config") -> ml_collections.ConfigDict:
    """The config of a ``config_flags`` flag, or one error line and exit 2.

    config_flags defers a failed load (a misspelled path, a config file
    that raises) until the config is first used; it is forced here.
    """
    path = config_file(name).split(":", 1)[0]
    if not os.path.isfile(path):
        fail(f"config file {path} does not exist; give a path like "
             "configs/default.py")
    value = flags.FLAGS[name].value
    if isinstance(value, ml_collections.ConfigDict):
        return value
    try:
        value.lock()  # The placeholder raises the stored load error here.
    except UserError as e:
        fail(str(e))
    except Exception as e:  # Whatever the config file raised.
        fail(f"cannot load config file {path}: {_last_line(e)}")
    fail(f"config file {path} gave no config")
    return value  # Not reached.


def overrides(name: str = "config") -> dict[str, Any]:
    """The command-line ``--config.x=...`` overrides, JSON-native."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in
            config_flags.get_override_values(flags.FLAGS[name]).items()}


def init_distributed(coordinator: Optional[str] = None,
                     num_processes: Optional[int] = None,
                     process_id: Optional[int] = None) -> None:
    """``jax.distributed.initialize`` before anything touches a device.

    With no arguments JAX finds the coordinator, process count and index
    itself on Cloud TPU, SLURM, Open MPI and Kubernetes.
    """
    try:
        jax.distributed.initialize(coordinator, num_processes, process_id)
    except (RuntimeError, ValueError) as e:
        fail(f"cannot start the distributed run: {_last_line(e)}")


def _for_console(record: logging.LogRecord) -> bool:
    """Errors, and nst_jax's own warnings (e.g. an unusable cache)."""
    return record.levelno >= logging.ERROR or (
        record.levelno >= logging.WARNING
        and record.name.split(".")[0] == "nst_jax")


def quiet_console() -> None:
    """Keeps JAX's, XLA's and absl's log chatter off the console.

    The console keeps nst_jax's progress lines and result (printed, not
    logged), errors and nst_jax's own warnings; everything logged at INFO
    and up, Python warnings included, goes to ``log.txt`` in the run
    directory (``rundir.LogFile``). Call first in ``main``, after
    ``app.run`` has installed absl's handler. Messages that XLA's C++ code
    writes to stderr itself are not Python logging and stay there.
    """
    handler = absl_logging.get_absl_handler()
    if _for_console not in handler.filters:
        handler.addFilter(_for_console)
    root = logging.getLogger()
    if not any(isinstance(h, rundir.LogFile) for h in root.handlers):
        root.addHandler(rundir.LogFile())
    logging.captureWarnings(True)
