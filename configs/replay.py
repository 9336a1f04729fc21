"""Re-run a recorded run exactly: --config=configs/replay.py:RUN_DIR

Loads RUN_DIR/config.json (the fully resolved config of that run) and locks
it; overrides still apply on top (e.g. --config.optim.steps=10).
"""

import os

from nst_jax import config as cfg
from nst_jax.errors import UserError


def get_config(run_dir=None):
    if not run_dir:
        raise UserError("usage: --config=configs/replay.py:RUN_DIR")
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UserError(f"{path} not found; RUN_DIR must be a run directory")
    with open(path) as f:
        return cfg.from_json(f.read())
