"""Reads the weight arrays of a Keras ``.h5`` file (needs h5py).

Both layouts Keras has written: a whole saved model (``model_weights``
group) and ``save_weights`` output, with or without the ``weight_names``
index. Only arrays are read; names and shapes are checked by the caller.
"""

from __future__ import annotations

import numpy as np

from nst_jax.errors import WeightsError, one_line


def _layer_arrays(h5py, group) -> list:
    if not isinstance(group, h5py.Group):
        return []
    names = [n.decode() if isinstance(n, bytes) else str(n)
             for n in group.attrs.get("weight_names", [])]
    if not names:  # No index: every dataset below the layer group.
        group.visititems(lambda n, obj: names.append(n)
                         if isinstance(obj, h5py.Dataset) else None)
    return [np.asarray(group[n]) for n in names]


def read_layers(path: str) -> dict[str, list[np.ndarray]]:
    """{Keras layer name: its arrays, in file order} for layers with weights.

    Raises:
      WeightsError: h5py is missing or the file is unreadable (one line).
    """
    try:
        import h5py  # An optional dependency (the h5 extra).
    except ImportError:
        raise WeightsError("reading a Keras .h5 needs h5py: pip install h5py "
                           "(or convert it to an .npz elsewhere)") from None
    try:
        with h5py.File(path, "r") as f:
            root = f["model_weights"] if "model_weights" in f else f
            layers = {layer: _layer_arrays(h5py, root[layer])
                      for layer in root}
    except (OSError, KeyError, ValueError) as e:
        raise WeightsError(f"cannot read Keras weights {path}: "
                           f"{one_line(e)}") from None
    # Input and pooling layers have no weights.
    return {name: arrays for name, arrays in layers.items() if arrays}
