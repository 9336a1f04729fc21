"""Pictures drawn with Pillow (no plotting dependency): the loss curve of a
run and the contact sheet of a sweep.

Each lives in a module of its own; this one gathers their public names,
so ``plot.loss_curve`` and ``plot.contact_sheet`` stay where callers
look for them:

- :mod:`nst_jax.figures.loss_curve`: the loss-curve figure, drawn;
- :mod:`nst_jax.figures.loss_panels`: its layout (which terms, their panels,
  each scale's share of its first record);
- :mod:`nst_jax.figures.ticks`: round tick values and their labels;
- :mod:`nst_jax.figures.contact_sheet`: a labelled grid of images.
"""

from nst_jax.figures.contact_sheet import contact_sheet
from nst_jax.figures.loss_curve import GRID, SCALE_MARK, loss_curve
from nst_jax.figures.loss_panels import (
    LAYERS_PANEL, Panel, layer_keys, panels, percent_ticks, relative_segments,
    scale_starts, term_keys)
from nst_jax.figures.ticks import nice_ticks, value_ticks

__all__ = ["GRID", "LAYERS_PANEL", "Panel", "SCALE_MARK", "contact_sheet",
           "layer_keys", "loss_curve", "nice_ticks", "panels",
           "percent_ticks", "relative_segments", "scale_starts", "term_keys",
           "value_ticks"]
