"""sha256 digests for manifests and integrity checks (files and params)."""

from __future__ import annotations

import hashlib
import os
from typing import Union

import jax
import numpy as np

from nst_jax.errors import UserError


def sha256_file(path: Union[str, "os.PathLike[str]"]) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks.

    Raises:
      UserError: the file is missing or unreadable (one line with the path).
    """
    p = os.fspath(path)
    h = hashlib.sha256()
    try:
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as e:
        raise UserError(f"cannot read {p}: {e.strerror or e}") from None
    return h.hexdigest()


def params_sha256(params) -> str:
    """sha256 over every leaf's tree path and bytes, in sorted path order.

    Identifies caller-supplied parameters (tests, sweeps) in a manifest the
    way a file's sha256 identifies a weight file.
    """
    h = hashlib.sha256()
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    for path, leaf in sorted(leaves,
                             key=lambda kv: jax.tree_util.keystr(kv[0])):
        h.update(jax.tree_util.keystr(path).encode())
        h.update(np.ascontiguousarray(jax.device_get(leaf)).tobytes())
    return h.hexdigest()
