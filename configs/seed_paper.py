"""The layer choice of the IJERT 2021 paper "Image Style Transfer Using CNN".

The paper names layers by counting VGG19's convolutional layers: content
"convolutional layers 2, 4, 7" and style "2, 4, 10, 13". Counting the 16 conv
layers in order (conv1_1 = 1, conv1_2 = 2, conv2_1 = 3, conv2_2 = 4,
conv3_1 = 5, conv3_2 = 6, conv3_3 = 7, conv3_4 = 8, conv4_1 = 9,
conv4_2 = 10, conv4_3 = 11, conv4_4 = 12, conv5_1 = 13, ...) that is content
conv1_2, conv2_2, conv3_3 and style conv1_2, conv2_2, conv4_2, conv5_1. We
read each conv layer after its ReLU, as the rest of nst_jax does.

    python scripts/run.py --config=configs/seed_paper.py
"""

from nst_jax import config as cfg


def get_config():
    c = cfg.base()
    c.name = "seed_paper"
    c.loss.content_layers = ("relu1_2", "relu2_2", "relu3_3")
    c.loss.style_layers = ("relu1_2", "relu2_2", "relu4_2", "relu5_1")
    # Stop once 50 steps lowered the loss by < 2%: at 512 px the loss still
    # falls faster through step 300, so this preset runs all 300 there
    # (docs/performance.md, "Stopping when converged").
    c.optim.rtol = 0.02
    c.optim.rtol_window = 50
    return cfg.lock(c)
