"""Style statistics beyond the Gram matrix, each a pure function of VGG19
feature maps (``loss.style_loss``).

Every statistic lives in its own module with the same two functions:

- ``target(style_feats_1xHxWxC, out_hw, ...) -> dict`` of arrays, made once
  per scale and style image outside the optimisation loop; ``out_hw`` is
  the (h, w) of the optimised image's map at the same layer (so targets
  that depend on the number of positions can be laid out for it);
- ``loss(feats_1xHxWxC, target, ...) -> scalar`` in each module's natural
  normalisation (per channel, per position or per patch element, so a
  value does not grow with the layer's size), differentiated with the rest
  of the total loss.

:mod:`nst_jax.optimize.losses` weighs them per layer and per style.
"""
