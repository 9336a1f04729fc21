"""Decoder for legacy (non-zip) torch.save files, without torch.

Only what a file of plain tensors needs is resolved by the unpickler; any
other global (os.system, builtins, ...) is refused before it can run. Split
out of weights.py, which fetches, checks and caches the result.
"""

from __future__ import annotations

import io
import math
import pickle
import struct
from typing import NamedTuple

import numpy as np

from nst_jax.errors import WeightsError, one_line


# torch.save's legacy format: pickles of the magic number, the protocol
# version, sys info, the object and the sorted storage keys; then for each
# key an int64 element count and the raw little-endian storage bytes.

_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
_TORCH_PROTOCOL = 1001


class _StorageType(NamedTuple):
    """Stands in for a torch.<X>Storage class (only its dtype matters)."""
    name: str
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    dtype: np.dtype
    numel: int


class _TensorRef(NamedTuple):
    storage: _StorageRef
    offset: int
    shape: tuple
    stride: tuple


def _rebuild_tensor(storage, offset, shape, stride, *unused) -> _TensorRef:
    """Stands in for torch._utils._rebuild_tensor_v2: records, reads later."""
    if not (isinstance(storage, _StorageRef) and isinstance(offset, int)
            and all(isinstance(n, int) and n >= 0 for n in shape)
            and len(stride) == len(shape)):
        raise WeightsError("malformed tensor record in weights file")
    return _TensorRef(storage, offset, tuple(shape), tuple(stride))


def _empty_hooks() -> dict:
    """Stands in for collections.OrderedDict (tensors' backward hooks)."""
    return {}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the names a legacy torch.save of tensors uses."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("collections", "OrderedDict"): _empty_hooks,
        ("torch", "FloatStorage"): _StorageType("FloatStorage",
                                                np.dtype("<f4")),
        ("torch", "ByteStorage"): _StorageType("ByteStorage",
                                               np.dtype("u1")),
    }

    def find_class(self, module: str, name: str):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise WeightsError(
                f"weights file refers to {module}.{name}, which a VGG19 "
                "weight file never needs; refusing to load it") from None

    def persistent_load(self, pid):
        # ("storage", type, key, location, numel, view metadata).
        if not (isinstance(pid, tuple) and len(pid) == 6
                and pid[0] == "storage" and isinstance(pid[1], _StorageType)
                and isinstance(pid[2], str) and isinstance(pid[4], int)
                and pid[5] is None):
            raise WeightsError(f"unexpected storage record {pid!r:.80}")
        return _StorageRef(pid[2], pid[1].dtype, pid[4])


def decode_legacy_torch(data: bytes) -> dict[str, np.ndarray]:
    """{name: array} from a legacy (non-zip) torch.save of a tensor dict.

    Raises:
      WeightsError: any other content, including pickles naming anything
        beyond the few callables such a file needs.
    """
    f = io.BytesIO(data)
    unpickler = _RestrictedUnpickler(f)
    try:
        magic, proto, info, obj, keys = (unpickler.load() for _ in range(5))
    except WeightsError:
        raise
    except Exception as e:  # Truncated or not a pickle at all.
        raise WeightsError("not a legacy torch.save file: "
                           f"{one_line(e)}") from None
    if (magic, proto) != (_TORCH_MAGIC, _TORCH_PROTOCOL) or not (
            isinstance(info, dict) and info.get("little_endian")):
        raise WeightsError("not a little-endian legacy torch.save file")
    if not (isinstance(obj, dict) and isinstance(keys, list) and all(
            isinstance(t, _TensorRef) for t in obj.values())):
        raise WeightsError("weights file does not hold a dict of tensors")
    refs = {t.storage.key: t.storage for t in obj.values()}
    if set(keys) != set(refs):
        raise WeightsError("weights file's storage list does not match "
                           "its tensors")
    storages, pos = {}, f.tell()
    for key in keys:
        ref = refs[key]
        count = struct.unpack_from("<q", data, pos)[0] \
            if pos + 8 <= len(data) else -1
        end = pos + 8 + count * ref.dtype.itemsize
        if count < 0 or count != ref.numel or end > len(data):
            raise WeightsError("weights file is truncated or inconsistent")
        storages[key] = np.frombuffer(data, ref.dtype, count, pos + 8)
        pos = end
    if pos != len(data):
        raise WeightsError("weights file has trailing bytes")
    out = {}
    for name, t in obj.items():
        n = math.prod(t.shape)  # Python ints: no overflow on crafted sizes.
        # torch.save writes fresh tensors contiguously; anything else
        # would need strided reads, which a VGG19 file never does.
        contiguous = [math.prod(t.shape[i + 1:]) for i in range(len(t.shape))]
        if (any(s != c for s, c, d in zip(t.stride, contiguous, t.shape)
                if d > 1) or t.offset < 0
                or t.offset + n > t.storage.numel):
            raise WeightsError(f"tensor {name} is not a plain contiguous "
                               "view of its storage")
        flat = storages[t.storage.key][t.offset:t.offset + n]
        out[name] = flat.reshape(t.shape)
    return out
