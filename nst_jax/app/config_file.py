"""Config files (``configs/*.py``, sweep files) loaded as Python modules,
outside absl's flags (the scripts' ``--config`` goes through
``nst_jax.app.cli``)."""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType


from nst_jax import config as cfg
from nst_jax.errors import UserError


def load_module(path: str, what: str = "config file") -> ModuleType:
    """Executes the file at ``path`` (``path[:arg]`` is cut at the colon,
    as config_flags does) and returns it as a module.

    Raises:
      UserError: the file is missing or cannot be read.
    """
    path = os.fspath(path).split(":", 1)[0]
    try:
        spec = importlib.util.spec_from_file_location("nst_config_file", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except (OSError, AttributeError) as e:
        raise UserError(f"cannot load {what} {path}: {e}") from None
    return module


def get_config(path: str) -> cfg.Config:
    """``get_config()`` of the config file at ``path``."""
    return load_module(path).get_config()
